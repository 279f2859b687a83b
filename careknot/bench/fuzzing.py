"""One fuzz target under atheris, in a process of its own, as ``careknot bench fuzz`` starts it.

atheris (libFuzzer for Python) takes the process over: ``Fuzz`` never returns, and after
``-atheris_runs`` inputs it leaves by ``sys.exit``, so the figures are written at exit. Every
input is counted with its outcome (``accepted`` or the reason it was refused); an exception
that escapes the target (anything but its typed refusal, a
:class:`~careknot.bench.fuzz_targets.Breach` among them) is counted by type with the first input
that raised it and where, and fuzzing goes on, so one run finds every kind.

The parsers must be imported inside ``atheris.instrument_imports`` for their branches to guide
the fuzzer: :data:`careknot.bench.fuzz.CHILD` imports this module that way.
"""

from __future__ import annotations

import atexit
import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-untyped]  # atheris ships no type information

from careknot.bench.fuzz_targets import TARGETS, Target

INPUT_SHOWN_BYTES = 512


class Tally:
    """What one target made of its inputs, and what escaped it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.inputs = 0
        self.outcomes: Counter[str] = Counter()
        self.escapes: dict[str, dict[str, Any]] = {}
        self.started = 0.0

    def one_input(self, data: bytes) -> None:
        if not self.inputs:
            self.started = time.perf_counter()
        self.inputs += 1
        try:
            outcome = self.target.run(data)
        except Exception as exc:  # what escapes is the finding: counted, and fuzzing goes on
            self._escaped(exc, data)
            outcome = "escaped"
        self.outcomes[outcome] += 1

    def _escaped(self, exc: Exception, data: bytes) -> None:
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        seen = self.escapes.setdefault(kind, {"count": 0})
        seen["count"] += 1
        if seen["count"] == 1:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            seen.update(
                message=str(exc)[:300],
                raised_at=f"{where.filename}:{where.lineno} in {where.name}",
                input_hex=data[:INPUT_SHOWN_BYTES].hex(),
                input_bytes=len(data),
            )

    def figures(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started if self.inputs else 0.0
        return {
            "target": self.target.name,
            "inputs": self.inputs,
            "seconds": round(seconds, 3),
            "outcomes": dict(self.outcomes.most_common()),
            "escapes": self.escapes,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.figures(), indent=2) + "\n")


def main(argv: list[str]) -> None:
    """``NAME RUNS STATS_FILE CORPUS_DIR DICT_FILE SEED``: fuzz target NAME for RUNS inputs
    from the seeds in CORPUS_DIR (where it also keeps what it finds), then write STATS_FILE."""
    name, runs, stats, corpus, words, seed = argv
    tally = Tally(TARGETS[name])
    atexit.register(tally.write, Path(stats))
    atheris.Setup(
        [
            sys.argv[0],
            f"-atheris_runs={runs}",
            f"-seed={seed}",
            f"-max_len={tally.target.max_len}",
            f"-dict={words}",
            corpus,
        ],
        tally.one_input,
    )
    atheris.Fuzz()
