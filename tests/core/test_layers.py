"""The layer contract (``[tool.importlinter]`` in pyproject.toml) holds for the tree as it is, and
catches each kind of import it forbids: a lower layer importing a higher one, a pure core
importing an I/O library, a service importing a server's client library.

Each case copies the packages, adds one import to one module and runs ``lint-imports`` on the
copy, as ``scripts/test`` runs it on the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "api", "careknot", "ingest", "streams", "ws_gateway", "simulators", "adapters", "kernel",
    "visits", "alarms", "medication", "vitals", "devices", "dispatch", "geofence", "routines",
)  # fmt: skip
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_the_contract(tmp_path: Path) -> None:
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("kernel/keys.py", "import ingest.parse", "Layers: imports only go down"),
        ("geofence/geodesy.py", "import streams.handling", "Layers: imports only go down"),
        ("adapters/kafka.py", "import careknot.cli", "Layers: imports only go down"),
        ("ingest/parse.py", "import ws_gateway.session", "Layers: imports only go down"),
        ("dispatch/ranking.py", "import redis", "Pure cores: no I/O"),
        ("visits/rules.py", "import pydantic", "Pure cores: no I/O"),
        ("geofence/quality.py", "import asyncio", "Pure cores: no I/O"),
        ("ws_gateway/session.py", "import asyncpg", "Only the adapters talk to"),
        ("streams/handling.py", "import redis.asyncio", "Only the adapters talk to"),
        ("ingest/parse.py", "import aiomqtt", "Only the adapters talk to"),
        ("kernel/settings.py", "import aiokafka", "Only the adapters talk to"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    tree = _copy(tmp_path)
    with (tree / module).open("a") as source:
        source.write(f"\n{line}  # noqa\n")
    done = _lint(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    assert broken in done.stdout.split("Broken contracts")[-1]
