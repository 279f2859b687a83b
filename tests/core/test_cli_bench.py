"""``careknot bench NAME``: each benchmark has a parser of its own, so ``--help`` lists its own
options, the documented command lines parse, and one benchmark refuses another's options."""

from __future__ import annotations

import argparse
import re

import pytest

from careknot.bench import BENCHMARKS, command, own_options
from careknot.cli import parse

# Options of each benchmark; those no other benchmark has must not show in its help.
OWN = {
    "fall-to-offer": {"--falls", "--load", "--load-caregivers"},
    "dispatch": {
        "--caregivers", "--agencies", "--searches", "--k", "--radius-km", "--seed", "--fall-load",
        "--falls",
    },
    "geofence": {
        "--fences", "--fixes", "--polygons", "--batch", "--rounds", "--naive-sample", "--radius-km",
        "--seed",
    },
    "ingest": {
        "--rates", "--duration", "--caregivers", "--publishers", "--ingest", "--workers",
        "--keep-going",
    },
    "fixes-step": {"--caregivers", "--steps", "--batch", "--per-message"},
    "fuzz": {"--inputs", "--targets", "--seed"},
    "faults": {
        "--scenarios", "--events", "--rate", "--falls", "--caregivers", "--load-caregivers",
        "--down", "--proxy-seconds",
    },
    "devices": {
        "--homes", "--seconds", "--telemetry", "--events", "--fixes", "--alarms", "--doses",
    },
    "anomaly": {"--homes", "--days", "--seed", "--learn-days"},
    "gateway": {
        "--connections", "--clients", "--agencies", "--dispatchers", "--at-once", "--idle-seconds",
        "--rate", "--seconds", "--sample", "--compression", "--city",
        "--city-warm",
    },
}  # fmt: skip


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> set[str]:
    with pytest.raises(SystemExit) as done:
        parse(argv)
    assert done.value.code == 0
    return set(re.findall(r"--[a-z][a-z-]*", capsys.readouterr().out))


def test_every_benchmark_is_covered() -> None:
    assert set(OWN) == set(BENCHMARKS)


@pytest.mark.parametrize("name", sorted(OWN))
def test_help_lists_the_benchmarks_own_options(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = help_of(["bench", name, "--help"], capsys)
    others = set().union(*(OWN[other] for other in OWN if other != name)) - OWN[name]
    assert OWN[name] | {"--output", "--help"} == listed - others
    assert not listed & others


def test_bench_help_names_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["bench", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in BENCHMARKS)


def test_the_documented_command_lines_parse() -> None:
    ingest = parse(["-l", "warning", "bench", "ingest", "--rates", "5000", "--duration", "20"])
    opts = own_options("ingest", ingest)
    assert (ingest.what, opts.rates, opts.duration, opts.workers) == ("ingest", "5000", 20.0, 1)
    falls = parse(["bench", "fall-to-offer", "--falls", "100", "--load", "5000", "--output", "o"])
    opts = own_options("fall-to-offer", falls)
    assert (opts.falls, opts.load, opts.load_caregivers, falls.output) == (100, 5000, 5000, "o")


def test_the_options_once_after_a_separator_still_parse() -> None:
    args = parse(["bench", "dispatch", "--output", "o", "--", "--fall-load", "0"])
    assert (own_options("dispatch", args).fall_load, args.output) == (0, "o")


def test_a_benchmark_refuses_another_ones_option() -> None:
    with pytest.raises(SystemExit) as done:
        parse(["bench", "geofence", "--falls", "3"])
    assert done.value.code == 2


def test_a_caller_may_give_the_options_as_a_list() -> None:
    args = argparse.Namespace(extra=["--caregivers", "300"], falls=0, output="o")
    opts = own_options("dispatch", args)
    assert (opts.caregivers, opts.falls, opts.agencies) == (300, 0, 20)
    assert not hasattr(opts, "output")  # the benchmark's own options only


@pytest.mark.parametrize("name", sorted(OWN))
def test_the_recorded_command_repeats_the_run(name: str) -> None:
    given = {"ingest": ["--keep-going", "--rates", "5000"], "geofence": ["--fences", "400"]}
    opts = own_options(name, parse(["bench", name, *given.get(name, [])]))
    again = parse(command(name, opts).split()[1:])
    assert own_options(name, again) == opts
