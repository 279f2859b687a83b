"""``careknot bench fuzz``: every parser at the system's edges under a coverage-guided fuzzer.

The targets (:mod:`careknot.bench.fuzz_targets`): the MQTT payloads ingest takes (a phone's
location through the fast path and the parser, a device event, a device's vitals (one sample
or a batch) and its status (birth, last will or heartbeat), a phone's last will, the OwnTracks
app's messages), MQTT topics, the broker's byte stream as ingest frames it, a WebSocket
client's frames and the gateway's tokens (as given, and with any claims genuinely signed). Each
runs under atheris (libFuzzer) in a process of its own (:mod:`careknot.bench.fuzzing`), one
after another, from a few valid seeds and a dictionary of its fields' names (JSON inputs are
also mutated field by field), for its share of ``--inputs``. The laws: only the project's typed
errors escape, and whatever validates also serialises. The figures: inputs and inputs a second
per target (atheris's instrumentation and the mutations included), their outcomes, the coverage
libFuzzer reached, and every exception type that escaped with the first input that raised it;
the run fails if any escaped.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from careknot.bench import command, own_options
from careknot.bench.fuzz_targets import TARGETS, Target
from careknot.bench.report import machine, write
from kernel.settings import Settings

INSTRUMENTED = ("ingest", "kernel", "adapters", "ws_gateway")
CHILD = f"""\
import sys
import atheris
with atheris.instrument_imports(include={list(INSTRUMENTED)!r}):
    from careknot.bench import fuzzing
fuzzing.main(sys.argv[1:])
"""
"""The fuzzing process: the parsers imported instrumented, before anything else imports them."""
_COVERAGE = re.compile(rb"cov: (\d+) ft: (\d+) corp: (\d+)/")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    del settings  # no servers: the parsers are pure
    opts = own_options("fuzz", args)
    names = list(TARGETS) if opts.targets == "all" else opts.targets.split(",")
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        print(f"no such target: {', '.join(unknown)} (targets: {', '.join(TARGETS)})")
        return 2
    figures = measure([TARGETS[n] for n in names], opts.inputs, opts.seed)
    figures["command"] = command("fuzz", opts)
    path = write(args.output, "bench-fuzz.json", figures)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    for line in summary(figures):
        print(line)
    print(f"written to {path}")
    return 0 if figures["clean"] else 1


def measure(targets: list[Target], inputs: int, seed: int) -> dict[str, Any]:
    """Fuzz each target for its share of ``inputs``, one after another."""
    share = -(-inputs // len(targets))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="careknot-fuzz-") as tmp:
        results = [fuzz_one(t, share, seed, Path(tmp) / t.name) for t in targets]
    escaped = sorted({kind for r in results for kind in r["escapes"]})
    return {
        "benchmark": "fuzz",
        "engine": "atheris",
        "inputs": sum(r["inputs"] for r in results),
        "seconds": round(time.perf_counter() - started, 1),
        "escaped_types": escaped,
        "clean": not escaped and all(r["inputs"] == share and r["exit"] == 0 for r in results),
        "targets": results,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def fuzz_one(target: Target, runs: int, seed: int, workdir: Path) -> dict[str, Any]:
    """One target's run in a fuzzing process; its tally, libFuzzer's last coverage line, and
    the end of its log if it did not exit cleanly."""
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True)
    for i, s in enumerate(target.seeds):
        (corpus / f"seed-{i}").write_bytes(s)
    words, stats, log = workdir / "words.dict", workdir / "stats.json", workdir / "log"
    words.write_text(dictionary(target.words))
    argv = [target.name, str(runs), str(stats), str(corpus), str(words), str(seed)]
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *argv], stdout=out, stderr=subprocess.STDOUT, check=False
        )
    text = log.read_bytes()
    result: dict[str, Any] = {"target": target.name, "inputs": 0, "escapes": {}}
    if stats.exists():
        result |= json.loads(stats.read_text())
    seconds = result.get("seconds") or 0.0
    result["inputs_per_s"] = round(result["inputs"] / seconds) if seconds else 0
    result["edge"] = target.edge
    result["exit"] = done.returncode
    result |= coverage(text)
    if done.returncode != 0:
        result["log_tail"] = text[-2000:].decode(errors="replace")
    return result


def coverage(log: bytes) -> dict[str, int]:
    """The coverage libFuzzer last reported: edges, features, inputs kept in the corpus."""
    found = _COVERAGE.findall(log)
    if not found:
        return {}
    cov, features, corpus = (int(n) for n in found[-1])
    return {"coverage": cov, "features": features, "corpus": corpus}


def dictionary(words: tuple[bytes, ...]) -> str:
    """libFuzzer's dictionary format: one quoted word a line, ``\\xNN`` for what is not
    printable ASCII, and for the quote and the backslash."""
    return "".join(f'"{"".join(_escaped(b) for b in w)}"\n' for w in words)


def _escaped(byte: int) -> str:
    return chr(byte) if 0x20 <= byte < 0x7F and byte not in b'"\\' else f"\\x{byte:02x}"


def summary(figures: dict[str, Any]) -> list[str]:
    """One line a target, then the verdict."""
    lines = [
        f"{r['target']:>13}: {r['inputs']:>9,} inputs, {r['inputs_per_s']:>7,}/s,"
        f" accepted {r.get('outcomes', {}).get('accepted', 0):>8,},"
        f" coverage {r.get('coverage', '?')}, escaped {sorted(r['escapes']) or 'nothing'}"
        for r in figures["targets"]
    ]
    verdict = "clean" if figures["clean"] else "NOT CLEAN"
    lines.append(f"{figures['inputs']:,} inputs in {figures['seconds']} s: {verdict}")
    return lines
