"""One fuzz target under atheris, in a process of its own, as ``careknot bench fuzz`` starts it.

atheris (libFuzzer for Python) takes the process over: ``Fuzz`` never returns, and after
``-atheris_runs`` inputs it leaves by ``sys.exit``, so the figures are written at exit. Every
input is counted with its outcome (``accepted`` or the reason it was refused); an exception
that escapes the target (anything but its typed refusal, a
:class:`~careknot.bench.fuzz_targets.Breach` among them) is counted by type with the first input
that raised it and where, and fuzzing goes on, so one run finds every kind.

libFuzzer mutates bytes, and learns only from the branches of Python code: the JSON decoder
(orjson) and pydantic's validation are native, so it cannot see an input get further into them.
For a target whose inputs are JSON, :class:`JsonMutator` mutates half of them field by field
instead (a field dropped, set to an odd value or another field's name, a number nudged across
the bounds the parsers check, a value nested about :data:`~ingest.parse.MAX_DEPTH`), so that
inputs stay near valid and reach the checks past decoding.

The parsers must be imported inside ``atheris.instrument_imports`` for their branches to guide
the fuzzer: :data:`careknot.bench.fuzz.CHILD` imports this module that way.
"""

from __future__ import annotations

import atexit
import json
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-untyped]  # atheris ships no type information
import orjson

from careknot.bench.fuzz_targets import TARGETS, Target
from ingest.parse import MAX_DEPTH

INPUT_SHOWN_BYTES = 512
ODD_VALUES: tuple[object, ...] = (
    None, True, False, 0, -1, -0.0, 0.5, 1e308, -1e308, 5e-324, 2**63, 2**64 - 1, -(2**63) - 1,
    "", "x" * 129, "\u0000", [], {}, [1, "a"], {"a": None},
)  # fmt: skip
NUDGES = (1e-9, 1, 60, 299, 300, 301, 400, 3600, 1e9)
"""Steps a number is moved by: across the clock-skew window, the ranges of the fields."""


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


class JsonMutator:
    """libFuzzer's custom mutator for a target whose inputs hold a JSON object at
    ``target.json_at``: half the time one field of the object changes, else the bytes."""

    def __init__(self, target: Target) -> None:
        self.at = target.json_at or 0
        self.names = [orjson.loads(w) for w in target.words if w.startswith(b'"')]

    def __call__(self, data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        head, body = data[: self.at], data[self.at :]
        doc = _object(body)
        if doc is not None and rng.random() < 0.5:
            mutate_object(doc, rng, self.names)
            try:
                return (head + orjson.dumps(doc))[:max_size]
            except orjson.JSONEncodeError:  # nested deeper than orjson writes
                pass
        return head + bytes(atheris.Mutate(body, max(max_size - len(head), 0)))


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def mutate_object(doc: dict[str, Any], rng: random.Random, names: list[str]) -> None:
    """Change one field of ``doc``, or of an object inside it."""
    while rng.random() < 0.3:
        inner = [v for v in doc.values() if isinstance(v, dict)]
        if not inner:
            break
        doc = rng.choice(inner)
    key = rng.choice(list(doc) if doc and rng.random() < 0.8 else names or ["a"])
    how = rng.randrange(5)
    if how == 0:
        doc.pop(key, None)
    elif how == 1:
        doc[key] = rng.choice([*ODD_VALUES, *names])
    elif how == 2:
        doc[key] = nudged(doc.get(key), rng)
    elif how == 3:
        doc[key] = nested(doc.get(key), rng.choice([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH]))
    elif doc:
        doc[key] = doc[rng.choice(list(doc))]


def nudged(value: object, rng: random.Random) -> object:
    """``value`` moved a little or a lot, or written as another type."""
    if isinstance(value, bool) or value is None:
        return rng.choice(ODD_VALUES)
    if isinstance(value, int | float):
        step = rng.choice(NUDGES) * rng.choice((-1, 1))
        return rng.choice([value + step, -value, float(value), int(value), str(value)])
    if isinstance(value, str):
        return rng.choice([value * rng.randint(0, 70), value[: rng.randint(0, len(value))]])
    if isinstance(value, list):
        return [*value, *value] if value else [rng.choice(ODD_VALUES)]
    return value


def nested(value: object, depth: int) -> object:
    for _ in range(depth):
        value = [value]
    return value


def main(argv: list[str]) -> None:
    """``NAME RUNS STATS_FILE CORPUS_DIR DICT_FILE SEED``: fuzz target NAME for RUNS inputs
    from the seeds in CORPUS_DIR (where it also keeps what it finds), then write STATS_FILE."""
    name, runs, stats, corpus, words, seed = argv
    tally = Tally(TARGETS[name])
    atexit.register(tally.write, Path(stats))
    mutator = {} if tally.target.json_at is None else {"custom_mutator": JsonMutator(tally.target)}
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
        **mutator,
    )
    atheris.Fuzz()
