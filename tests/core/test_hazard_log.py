"""The hazard log (docs/hazard-log.md) names a test for every control: each test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def named_tests() -> list[tuple[str, str | None]]:
    text = (ROOT / "docs" / "hazard-log.md").read_text()
    return [(m.group(1), m.group(2)) for m in NAMED.finditer(text)]


def test_every_test_the_hazard_log_names_exists() -> None:
    named = named_tests()
    assert len(named) >= 20
    missing = []
    for path, name in named:
        source = ROOT / path
        if not source.exists():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_every_hazard_has_a_control_with_a_test_or_says_it_is_open() -> None:
    text = (ROOT / "docs" / "hazard-log.md").read_text()
    hazards = re.split(r"^## ", text, flags=re.M)[1:]
    assert len(hazards) >= 6
    for hazard in hazards:
        title = hazard.splitlines()[0]
        assert NAMED.search(hazard) or "(open)" in hazard, title
