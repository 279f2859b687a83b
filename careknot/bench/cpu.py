"""Where the CPU goes during a benchmark run: CPU seconds per role, read from ``/proc``.

A role is a kind of process (ingest, worker, gateway, kafka, mqtt, redis, postgres, or the
bench itself); :func:`roles` finds them among the descendants of the given processes and the
servers running on this machine by name. Dividing a run's CPU seconds per role by the fixes it
carried gives the cost of one fix in each part of the system, which, unlike latency, does not
depend much on what else the machine is doing. Linux only; elsewhere every reading is empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_SERVERS = {"mosquitto": "mqtt", "redis-server": "redis", "postgres": "postgres"}
_CARE_VERBS = ("ingest", "worker", "gateway")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str
    cpu_s: float


def _read(pid: int) -> Proc | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        cmdline = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return Proc(pid, int(fields[1]), comm, cmdline, (utime + stime) / _TICKS)


def processes() -> list[Proc]:
    if not PROC.is_dir():
        return []
    found = (_read(int(p.name)) for p in PROC.iterdir() if p.name.isdigit())
    return [p for p in found if p is not None]


def role_of(p: Proc) -> str | None:
    """The role of a process by its name and command line, or None for one of no interest."""
    if p.comm in _SERVERS:
        return _SERVERS[p.comm]
    if "tansu" in p.comm or "tansu" in p.cmdline.split(" ", 1)[0]:
        return "kafka"
    words = p.cmdline.split()
    for verb in _CARE_VERBS:
        if verb in words and "careknot.cli" in p.cmdline:
            return verb + _role_suffix(words) if verb != "gateway" else verb
    return None


def _role_suffix(words: list[str]) -> str:
    """``-dispatch``, ``-fixes`` or ``-devices`` for a worker started with that ``--role``;
    ``-positions``, ``-emergencies`` or ``-telemetry`` for an ingest of those ``--streams``."""
    option = next((o for o in ("--role", "--streams") if o in words), None)
    at = words.index(option) + 1 if option is not None else len(words)
    return f"-{words[at]}" if at < len(words) and words[at] != "all" else ""


def roles(roots: Iterable[int]) -> dict[int, str]:
    """pid → role of the servers on this machine, and of ``roots`` and every descendant of
    theirs (those of no known role count as ``bench``)."""
    procs = processes()
    children: dict[int, list[Proc]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    out = {p.pid: r for p in procs if (r := role_of(p)) in ("mqtt", "redis", "postgres")}
    todo = list(roots)
    out.update(dict.fromkeys(todo, "bench"))
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out[child.pid] = role_of(child) or "bench"
            todo.append(child.pid)
    return out


def cpu_by_role(pids: dict[int, str]) -> dict[str, float]:
    """CPU seconds used so far per role, by the processes in ``pids`` still running."""
    out: dict[str, float] = {}
    for pid, role in pids.items():
        p = _read(pid)
        if p is not None:
            out[role] = out.get(role, 0.0) + p.cpu_s
    return out


def per_fix_us(before: dict[str, float], after: dict[str, float], fixes: int) -> dict[str, float]:
    """Microseconds of CPU per fix, per role, between two readings."""
    if fixes <= 0:
        return {}
    used = {r: after.get(r, 0.0) - before.get(r, 0.0) for r in after}
    return {r: round(s * 1e6 / fixes, 1) for r, s in sorted(used.items()) if s > 0}
