"""The hazard log (docs/hazard-log.md) names a test for every control, and the security page
(docs/security.md) one for every threat a layer stops: each test they name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def named_tests(doc: str = "hazard-log.md") -> list[tuple[str, str | None]]:
    text = (ROOT / "docs" / doc).read_text()
    return [(m.group(1), m.group(2)) for m in NAMED.finditer(text)]


@pytest.mark.parametrize(("doc", "at_least"), [("hazard-log.md", 20), ("security.md", 15)])
def test_every_test_the_hazard_log_and_security_page_name_exists(doc: str, at_least: int) -> None:
    named = named_tests(doc)
    assert len(named) >= at_least
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
