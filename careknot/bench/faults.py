"""``careknot bench faults``: the fault scenarios (:mod:`careknot.faults.scenarios`), each on the
whole system at load with one fault, written to ``bench-faults.json`` with a list
``scenarios`` (each: ``name``, ``published``, ``accepted``, ``lost``, ``duplicated``,
``recovered_s`` and the details), and printed as a table.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from careknot.bench import command, own_options
from careknot.bench.report import machine, write
from careknot.faults.scenarios import SCENARIOS, Options, run_scenarios
from kernel.settings import Settings

log = logging.getLogger(__name__)


def options_of(opts: argparse.Namespace) -> Options:
    return Options(
        events=opts.events,
        rate=opts.rate,
        falls=opts.falls,
        caregivers=opts.caregivers,
        load_caregivers=opts.load_caregivers,
        down_s=opts.down,
        proxy_s=opts.proxy_seconds,
    )


def chosen(spec: str) -> list[str]:
    if spec == "all":
        return list(SCENARIOS)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(unknown)} (of {', '.join(SCENARIOS)})")
    return names


async def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = own_options("faults", args)
    names = chosen(opts.scenarios)
    workdir = Path(tempfile.mkdtemp(prefix="careknot-bench-faults-"))
    started = time.time()
    scenarios = await run_scenarios(settings, names, options_of(opts), workdir)
    figures: dict[str, Any] = {
        "benchmark": "faults",
        "command": command("faults", opts),
        "scenarios": scenarios,
        "took_s": round(time.time() - started, 1),
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = write(args.output, "bench-faults.json", figures)
    print(table(scenarios))
    print(f"written to {path}")
    return 0


COLUMNS = (
    ("scenario", 26), ("published", 9), ("accepted", 8), ("lost", 5), ("dup", 4),
    ("recovered_s", 11), ("falls ok", 9), ("resyncs", 7), ("restarts", 20),
)  # fmt: skip


def table(scenarios: list[dict[str, Any]]) -> str:
    """One line a scenario: the counts, and falls assigned or escalated of those accepted."""
    lines = [" ".join(f"{name:>{width}}" for name, width in COLUMNS)]
    for s in scenarios:
        falls = s["falls"]
        restarts = ",".join(f"{k}:{v}" for k, v in s["restarts"].items()) or "-"
        recovered = "-" if s["recovered_s"] is None else f"{s['recovered_s']:.2f}"
        row = (
            s["name"], s["published"], s["accepted"], s["lost"], s["duplicated"], recovered,
            f"{falls['assigned_or_escalated']}/{falls['accepted']}", s["websocket"]["resyncs"],
            restarts,
        )  # fmt: skip
        lines.append(" ".join(f"{v!s:>{w}}" for v, (_, w) in zip(row, COLUMNS, strict=True)))
    return "\n".join(lines)
