"""``careknot bench fuzz``: a fuzzing process counts every input and what escaped, and the
benchmark gathers each target's figures from it."""

from __future__ import annotations

import copy
import random

import orjson
import pytest

from careknot.bench.fuzz import coverage, dictionary, measure
from careknot.bench.fuzz_targets import DEVICE_EVENT, TARGETS, Target

fuzzing = pytest.importorskip("careknot.bench.fuzzing", reason="atheris is not installed")


def broken(data: bytes) -> str:
    if data.startswith(b"k"):
        raise KeyError(data)
    if data.startswith(b"v"):
        raise ValueError("no")
    return "accepted" if data else "empty"


def test_a_tally_counts_outcomes_and_each_kind_that_escaped_with_its_first_input() -> None:
    tally = fuzzing.Tally(Target("broken", "", broken, (), (), 16))
    for data in (b"", b"ok", b"k1", b"k2", b"v"):
        tally.one_input(data)
    figures = tally.figures()
    assert figures["inputs"] == 5
    assert figures["outcomes"] == {"escaped": 3, "empty": 1, "accepted": 1}
    assert {kind: e["count"] for kind, e in figures["escapes"].items()} == {
        "builtins.KeyError": 2,
        "builtins.ValueError": 1,
    }
    assert figures["escapes"]["builtins.KeyError"]["input_hex"] == b"k1".hex()
    assert "in broken" in figures["escapes"]["builtins.KeyError"]["raised_at"]


def test_a_dictionary_escapes_what_is_not_printable() -> None:
    assert dictionary((b"lat", b'"a\\', b"\xff\x00")) == '"lat"\n"\\x22a\\x5c"\n"\\xff\\x00"\n'


def test_coverage_is_libfuzzers_last_report() -> None:
    log = b"#2 INITED cov: 9 ft: 9 corp: 1/1b\n#64 NEW cov: 11 ft: 14 corp: 2/3b lim: 4\n"
    assert coverage(log) == {"coverage": 11, "features": 14, "corpus": 2}
    assert coverage(b"nothing") == {}


def test_the_benchmark_fuzzes_each_target_under_atheris_for_its_share_of_the_inputs() -> None:
    """Bytes mutated (presence) and JSON mutated field by field (the token's claims)."""
    figures = measure([TARGETS["presence"], TARGETS["token-claims"]], 600, seed=1)
    assert figures["clean"], [r.get("log_tail") for r in figures["targets"]]
    assert figures["inputs"] == 600
    for result in figures["targets"]:
        assert result["inputs"] == sum(result["outcomes"].values()) == 300
        assert result["outcomes"]["accepted"] >= len(TARGETS[result["target"]].seeds)
        assert result["coverage"] > 0
    assert figures["escaped_types"] == []


def test_the_json_mutator_reaches_every_check_past_decoding() -> None:
    """Mutated field by field, a device event is accepted, or refused for each reason the
    parser has once the JSON is decoded."""
    target = TARGETS["device-event"]
    names = fuzzing.JsonMutator(target).names
    outcomes = set()
    for seed in range(2000):
        doc = copy.deepcopy(DEVICE_EVENT)
        rng = random.Random(seed)
        for _ in range(rng.randint(1, 3)):
            fuzzing.mutate_object(doc, rng, names)
        try:
            payload = orjson.dumps(doc)
        except orjson.JSONEncodeError:
            continue
        outcomes.add(target.run(payload))
    assert {"accepted", "invalid_fields", "too_deep", "too_old", "from_future"} <= outcomes
