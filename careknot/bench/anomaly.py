"""``careknot bench anomaly``: each home's routine models against the fixed rule, on simulated
residents with labelled anomalies (``simulators.residents``).

Walk forward, as the nightly retraining would: for each home and each day after its first
``--learn-days`` (which carry no anomaly), every model is fitted on that home's events before the
day begins (04:00 local, the start of a resident's day) and scores the day every 5 minutes,
whether or not anything happened (silence is the signal). Moments when the house is empty
because she is in hospital are not scored: the care record knows she is away. Detections become
alarms and are matched to the anomalies by :mod:`routines.evaluation`.

Throughput: after the walk, the last hour of every home (12 scorings, a model's every five
minutes) is scored again, repeatedly, on one core; ``homes_scored_per_s`` is homes a CPU second.

The model kept is the one with the highest inactivity recall among those with at most 0.05
false alarms a home-day, or, if none meets that, the one with the fewest false alarms.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from careknot.bench import command, own_options
from careknot.bench.report import machine, write
from kernel.settings import Settings
from routines.evaluation import Alarm, Figures, Truth, alarms, evaluate
from routines.features import Timeline, day_bounds, resident_day
from routines.models import DayWindowLOF, Detection, HourlyBaseline, RoutineModel, Rule
from simulators.residents import ResidentHistory, simulate_home

START = 1_788_220_800.0  # 2026-09-01 00:00 UTC
STEP_S = 300.0
FALSE_ALARMS_TARGET = 0.05
MODELS = ("rule", "baseline", "lof")


@dataclass(frozen=True, slots=True)
class Options:
    homes: int
    days: int
    seed: int
    learn_days: int


def _models() -> dict[str, RoutineModel]:
    return {"rule": Rule(), "baseline": HourlyBaseline(), "lof": DayWindowLOF()}


async def run(settings: Settings, args: argparse.Namespace) -> int:
    del settings  # no servers: the routine models are pure
    opts = own_options("anomaly", args)
    figures = measure(Options(**vars(opts)))
    figures["command"] = command("anomaly", opts)
    path = write(args.output, "bench-anomaly.json", figures)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path}")
    return 0


def _away(history: ResidentHistory, t: float) -> bool:
    return any(lo <= t < hi for lo, hi in history.away)


def walk(
    history: ResidentHistory, learn_days: int
) -> tuple[dict[str, list[Alarm]], float, dict[str, RoutineModel], Timeline]:
    """One home walked forward: each model's alarms, the home-days scored, the models as
    fitted for the last day, and the home's timeline."""
    tl = Timeline.of(history.events, history.zone)
    first = resident_day(
        (history.midnights[0] if history.midnights else START) + 12 * 3600.0, tl.zone
    )
    models = _models()
    raised: dict[str, list[tuple[float, Detection]]] = {name: [] for name in models}
    scored = 0.0
    end = history.midnights[-1] if history.midnights else float(tl.ts[-1])
    day = first
    for offset in range(learn_days, 10_000):
        day = first.fromordinal(first.toordinal() + offset)
        lo, hi = day_bounds(day, tl.zone)
        if lo >= end:
            break
        hi = min(hi, end)  # the last day ends at the simulation's end
        for model in models.values():
            model.fit(tl, lo)
        moments = [
            t
            for t in (lo + STEP_S * k for k in range(int((hi - lo) // STEP_S)))
            if not _away(history, t)
        ]
        if not moments:
            continue
        scored += len(moments) * STEP_S / 86_400.0
        for name, model in models.items():
            for t in moments:
                raised[name].extend((t, d) for d in model.score(tl, t))
    return {n: alarms(history.home, r) for n, r in raised.items()}, scored, models, tl


def _summary(f: Figures) -> dict[str, Any]:
    return {
        "inactivity_recall": f.inactivity.recall,
        "inactivity_median_delay_s": f.inactivity.median_delay_s,
        "inactivity_p90_delay_s": f.inactivity.p90_delay_s,
        "inactivity_anomalies": f.inactivity.anomalies,
        "false_alarms": f.false_alarms,
        "false_alarms_per_home_day": f.false_alarms_per_home_day,
        "by_anomaly": {k: asdict(v) for k, v in f.by_anomaly.items()},
        "by_alarm": {k: asdict(v) for k, v in f.by_alarm.items()},
    }


def _throughput(homes: list[tuple[dict[str, RoutineModel], Timeline]]) -> dict[str, float]:
    """Homes a CPU second: each home's last hour, scored every 5 minutes."""
    out: dict[str, float] = {}
    for name in MODELS:
        rounds, spent = 0, 0.0
        while spent < 0.5 or rounds < 1:
            started = time.process_time()
            for models, tl in homes:
                last = float(tl.ts[-1])
                for k in range(12):
                    models[name].score(tl, last - 3600.0 + STEP_S * (k + 1))
            spent += time.process_time() - started
            rounds += 1
        out[name] = round(rounds * len(homes) / spent, 1)
    return out


def _kept(summaries: dict[str, dict[str, Any]]) -> str:
    fair = [
        n
        for n in MODELS[1:]
        if (summaries[n]["false_alarms_per_home_day"] or 0.0) <= FALSE_ALARMS_TARGET
    ]
    if fair:
        return max(fair, key=lambda n: summaries[n]["inactivity_recall"] or 0.0)
    return min(MODELS[1:], key=lambda n: summaries[n]["false_alarms_per_home_day"] or 0.0)


def measure(o: Options) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    started = time.perf_counter()
    raised: dict[str, list[Alarm]] = {name: [] for name in MODELS}
    truths: list[Truth] = []
    home_days = 0.0
    fitted: list[tuple[dict[str, RoutineModel], Timeline]] = []
    personas: dict[str, int] = {}
    for home in range(o.homes):
        history = simulate_home(home, o.days, o.seed, START)
        personas[history.persona] = personas.get(history.persona, 0) + 1
        mine, scored, models, tl = walk(history, o.learn_days)
        for name in MODELS:
            raised[name].extend(mine[name])
        truths.extend(Truth(home, a.kind, a.start, a.end) for a in history.anomalies)
        home_days += scored
        fitted.append((models, tl))
    walked_s = time.perf_counter() - started
    summaries = {name: _summary(evaluate(raised[name], truths, home_days)) for name in MODELS}
    speed = _throughput(fitted)
    for name in MODELS:
        summaries[name]["homes_scored_per_s"] = speed[name]
        summaries[name]["examples"] = [
            a.explanation for a in raised[name] if a.kind == "inactivity"
        ][:3]
    rule = summaries["rule"]
    for name in MODELS[1:]:
        summaries[name]["rule_inactivity_recall"] = rule["inactivity_recall"]
        summaries[name]["rule_false_alarms_per_home_day"] = rule["false_alarms_per_home_day"]
    kept = _kept(summaries)
    headline = {
        k: summaries[kept][k]
        for k in (
            "inactivity_recall",
            "inactivity_median_delay_s",
            "inactivity_p90_delay_s",
            "false_alarms_per_home_day",
            "rule_inactivity_recall",
            "rule_false_alarms_per_home_day",
            "homes_scored_per_s",
        )
    }
    return {
        "benchmark": "anomaly",
        "homes": o.homes,
        "days": o.days,
        "seed": o.seed,
        "learn_days": o.learn_days,
        "home_days_scored": round(home_days, 1),
        "anomalies": len(truths),
        "personas": personas,
        "kept": kept,
        **headline,
        "models": summaries,
        "walk_s": round(walked_s, 1),
        "machine": machine(),
    }
