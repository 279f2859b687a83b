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

Beside the alarms: drift over days for care review (:mod:`routines.drift`, run each morning once
a home has three weeks): how many illnesses it flags and how often it finds something in homes
without one; a routine change (up to 20 homes, no anomaly, her week changing mid-history: a
day-centre day, a new visitor), the kept model's false alarms on each day after it; and
``bench-anomaly.png`` beside the JSON, the week around the first home's first silent fall: its
events per room, the anomalies shaded, the kept model's alarms marked.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from careknot.bench import command, own_options
from careknot.bench.report import machine, write
from kernel.settings import Settings
from routines.drift import drift
from routines.evaluation import Alarm, Figures, Truth, alarms, evaluate
from routines.features import ROOMS, Timeline, day_bounds, resident_day
from routines.models import DayWindowLOF, Detection, HourlyBaseline, RoutineModel, Rule
from simulators.residents import Anomaly, ResidentHistory, simulate_home

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
    week: list[Week] = []
    figures = measure(Options(**vars(opts)), week)
    figures["command"] = command("anomaly", opts)
    path = write(args.output, "bench-anomaly.json", figures)
    if week:
        plot_week(week[0], Path(args.output) / "bench-anomaly.png")
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path} and bench-anomaly.png beside it")
    return 0


def _away(history: ResidentHistory, t: float) -> bool:
    return any(lo <= t < hi for lo, hi in history.away)


def walk(
    history: ResidentHistory,
    learn_days: int,
    make: Callable[[], dict[str, RoutineModel]] | None = None,
) -> tuple[dict[str, list[Alarm]], float, dict[str, RoutineModel], Timeline]:
    """One home walked forward: each model's alarms, the home-days scored, the models as
    fitted for the last day, and the home's timeline."""
    tl = Timeline.of(history.events, history.zone)
    first = resident_day(
        (history.midnights[0] if history.midnights else START) + 12 * 3600.0, tl.zone
    )
    models = (make or _models)()
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


@dataclass(frozen=True, slots=True)
class Week:
    """One home's week to plot: its events, its anomalies and the kept model's alarms."""

    home: int
    persona: str
    tl: Timeline
    start: float
    end: float
    anomalies: list[Anomaly]
    alarms: list[Alarm]
    model: str


def _drift(history: ResidentHistory, tl: Timeline, learn_days: int, found: dict[str, int]) -> None:
    """Drift for care review, run each morning (04:00) once a home has three weeks: an
    illness is flagged when a run between its first day and two days after its last finds
    anything; every run with a finding on a home without illness is counted."""
    first = resident_day(history.midnights[0] + 12 * 3600.0, tl.zone)
    ills = [a for a in history.anomalies if a.kind == "illness"]
    runs: list[tuple[float, bool]] = []
    for offset in range(max(learn_days, 21), len(history.midnights)):
        until = day_bounds(first + timedelta(days=offset), tl.zone)[0]
        if until > history.midnights[-1]:
            break
        runs.append((until, bool(drift(tl, until))))
    found["illnesses"] += len(ills)
    found["illnesses_flagged"] += sum(
        any(hit and a.start <= u <= a.end + 2 * 86_400.0 for u, hit in runs) for a in ills
    )
    if not ills:
        found["well_home_runs"] += len(runs)
        found["well_home_runs_with_a_finding"] += sum(hit for _, hit in runs)


def _routine_change(o: Options, kept: str) -> dict[str, Any]:
    """Homes whose week changes mid-history (a day-centre day, a new visitor), with no anomaly:
    every alarm of the kept model is false. How many fall in each day after the change, against
    the days before it, as her 28 days learn the new week."""
    homes = min(o.homes, 20)
    after = [0] * 21
    before, before_days = 0, 0.0
    for home in range(homes):
        history = simulate_home(home, o.days, o.seed, START, anomaly_rate=0.0, routine_change=True)
        changed = history.changed_at
        if changed is None:
            continue
        raised, _, _, _ = walk(history, o.learn_days, lambda: {kept: _models()[kept]})
        for a in raised[kept]:
            day = int((a.at - changed) // 86_400.0)
            if day < 0:
                before += 1
            elif day < len(after):
                after[day] += 1
        first_scored = history.midnights[min(o.learn_days, len(history.midnights) - 1)]
        before_days += max(0.0, (changed - first_scored) / 86_400.0)
    return {
        "homes": homes,
        "model": kept,
        "false_alarms_per_home_day_before": round(before / before_days, 4) if before_days else None,
        "false_alarms_by_day_after": after,
        "false_alarms_per_home_day_week_1": round(sum(after[:7]) / (7 * homes), 4),
        "false_alarms_per_home_day_week_2": round(sum(after[7:14]) / (7 * homes), 4),
        "false_alarms_per_home_day_week_3": round(sum(after[14:21]) / (7 * homes), 4),
    }


def _week(
    home: int, history: ResidentHistory, tl: Timeline, raised: dict[str, list[Alarm]]
) -> list[Week]:
    """The week around a home's first silent fall, for each model (chosen later)."""
    falls = [a for a in history.anomalies if a.kind == "silent_fall"]
    if not falls:
        return []
    fall = falls[0]
    start = max(history.midnights[0], fall.start - 4 * 86_400.0)
    end = start + 7 * 86_400.0
    start = day_bounds(resident_day(start, tl.zone), tl.zone)[0]
    end = day_bounds(resident_day(end, tl.zone), tl.zone)[0]
    near = [a for a in history.anomalies if a.end > start and a.start < end]
    return [
        Week(home, history.persona, tl, start, end, near, [a for a in r if start <= a.at < end], n)
        for n, r in raised.items()
    ]


def plot_week(week: Week, target: Path) -> None:
    """Events per room over the week (one tick an event), the injected anomalies shaded, the
    kept model's alarms marked, each labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = week.tl.span(week.start, week.end)
    hours = (week.tl.ts[s] - week.start) / 3600.0
    fig, ax = plt.subplots(figsize=(12, 4.8))
    ax.scatter(hours, week.tl.room[s], marker="|", s=60, linewidths=0.6, color="0.3")
    colours = {"silent_fall": "tab:red", "illness": "tab:purple", "missed_meal": "tab:orange"}
    for a in week.anomalies:
        lo, hi = (max(a.start, week.start) - week.start) / 3600.0, (a.end - week.start) / 3600.0
        ax.axvspan(lo, max(hi, lo + 0.3), color=colours.get(a.kind, "tab:blue"), alpha=0.25)
        ax.text(lo, len(ROOMS) - 0.35, a.kind.replace("_", " "), fontsize=8, rotation=0)
    for alarm in week.alarms:
        x = (alarm.at - week.start) / 3600.0
        ax.axvline(x, color="tab:green", linewidth=1.0, linestyle="--")
        ax.plot([x], [-0.6], marker="^", color="tab:green")
        ax.text(x, -0.95, alarm.kind.replace("_", " "), fontsize=7, color="tab:green", ha="center")
    ax.set_yticks(range(len(ROOMS)), ROOMS)
    ax.set_ylim(-1.1, len(ROOMS) - 0.1)
    days = round((week.end - week.start) / 86_400.0)
    ax.set_xticks([24 * d for d in range(days + 1)])
    ax.set_xticklabels(
        [
            (resident_day(week.start, week.tl.zone) + timedelta(days=d)).strftime("%a %d %b")
            for d in range(days + 1)
        ],
        fontsize=8,
    )
    ax.set_xlim(0, 24 * days)
    ax.set_xlabel("the resident's days (from 04:00 local)")
    ax.set_title(
        f"home {week.home} ({week.persona}): events per room; anomalies shaded,"
        f" the {week.model} model's alarms marked (green)"
    )
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def measure(o: Options, week: list[Week] | None = None) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    started = time.perf_counter()
    raised: dict[str, list[Alarm]] = {name: [] for name in MODELS}
    truths: list[Truth] = []
    home_days = 0.0
    fitted: list[tuple[dict[str, RoutineModel], Timeline]] = []
    personas: dict[str, int] = {}
    found = dict.fromkeys(
        ("illnesses", "illnesses_flagged", "well_home_runs", "well_home_runs_with_a_finding"), 0
    )
    weeks: list[Week] = []
    for home in range(o.homes):
        history = simulate_home(home, o.days, o.seed, START)
        personas[history.persona] = personas.get(history.persona, 0) + 1
        mine, scored, models, tl = walk(history, o.learn_days)
        for name in MODELS:
            raised[name].extend(mine[name])
        truths.extend(Truth(home, a.kind, a.start, a.end) for a in history.anomalies)
        home_days += scored
        fitted.append((models, tl))
        _drift(history, tl, o.learn_days, found)
        if not weeks:
            weeks = _week(home, history, tl, mine)
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
    if week is not None:
        week.extend(w for w in weeks if w.model == kept)
    change = _routine_change(o, kept)
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
        "drift": found,
        "routine_change": change,
        "walk_s": round(walked_s, 1),
        "machine": machine(),
    }
