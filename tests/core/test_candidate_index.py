"""The in-memory live index's bookkeeping: a caregiver is in exactly the cells of her last
place, empty cells are dropped, a status change keeps her position. (Its search is checked
against the Redis script's on real data in tests/adapters/test_live_mirror.py.)"""

from __future__ import annotations

import h3

from adapters.storage.live_mirror import applied_places
from dispatch.candidates import CandidateIndex, area_of
from dispatch.ranking import STREET_RESOLUTION, search_plan

LEEDS = (53.800, -1.549)
YORK = (53.960, -1.082)
NOW = 1_800_000_000.0


def street(lat: float, lon: float) -> str:
    return str(h3.latlng_to_cell(lat, lon, STREET_RESOLUTION))


def cells_holding(index: CandidateIndex, caregiver_id: str) -> list[tuple[str, str, str]]:
    return [
        (level, agency, cell)
        for level, by_agency in index._cells.items()
        for agency, by_cell in by_agency.items()
        for cell, entries in by_cell.items()
        if caregiver_id in entries
    ]


def test_a_move_leaves_the_old_cells_and_drops_them_when_empty() -> None:
    index = CandidateIndex()
    index.put("a", "ag", street(*LEEDS), NOW, *LEEDS, "available")
    index.put("a", "ag", street(*YORK), NOW + 1, *YORK, "available")
    assert cells_holding(index, "a") == [
        ("street", "ag", street(*YORK)),
        ("area", "ag", area_of(street(*YORK))),
    ]
    assert street(*LEEDS) not in index._cells["street"]["ag"]
    assert len(index) == 1


def test_a_status_change_keeps_her_place_and_an_unknown_caregiver_is_ignored() -> None:
    index = CandidateIndex()
    index.put("a", "ag", street(*LEEDS), NOW, *LEEDS, "available")
    index.set_status("a", "busy")
    index.set_status("nobody", "busy")
    assert index.entry_of("a") == (NOW, *LEEDS, *index.entry_of("a")[3:6], "busy")  # type: ignore[index]
    assert index.entry_of("nobody") is None
    plan = list(search_plan(*LEEDS, 1))
    found = index.nearest("ag", plan, lat=LEEDS[0], lon=LEEDS[1], need=3, now=NOW, stale_after_s=60)
    assert found == []
    index.set_status("a", "available")
    found = index.nearest("ag", plan, lat=LEEDS[0], lon=LEEDS[1], need=3, now=NOW, stale_after_s=60)
    assert [c.caregiver_id for c in found] == ["a"]
    assert index.nearest("ag", plan, lat=LEEDS[0], lon=LEEDS[1], need=3, now=NOW + 61,
                         stale_after_s=60) == []  # fmt: skip


def test_an_update_log_entry_gives_the_places_of_the_applied_fixes_only() -> None:
    rows = [
        ["a", "ag", "53.8", "-1.549", "100.0", "cellA", "areaA", "", "", "100.5"],
        ["b", "ag", "53.9", "-1.5", "90.0", "cellB", "areaB", "5.0", "80", "91.0"],
    ]
    assert list(applied_places(rows, [(1, "offline")])) == [
        ("b", "ag", "cellB", 90.0, 53.9, -1.5, "offline")
    ]
