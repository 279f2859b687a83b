"""The benchmark's CPU accounting: roles by process, CPU per fix, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from careknot.bench import cpu


def proc(comm: str, cmdline: str) -> cpu.Proc:
    return cpu.Proc(pid=10, ppid=1, comm=comm, cmdline=cmdline, cpu_s=0.0)


@pytest.mark.parametrize(
    ("comm", "cmdline", "role"),
    [
        ("python", "/x/python -m careknot.cli ingest", "ingest"),
        ("python", "/x/python -m careknot.cli -l warning worker", "worker"),
        ("python", "/x/python -m careknot.cli worker --role dispatch", "worker-dispatch"),
        ("python", "/x/python -m careknot.cli worker --role fixes", "worker-fixes"),
        ("python", "/x/python -m careknot.cli worker --role all", "worker"),
        ("python", "/x/python -m careknot.cli worker --role devices", "worker-devices"),
        ("python", "/x/python -m careknot.cli ingest --streams telemetry", "ingest-telemetry"),
        ("python", "/x/python -m careknot.cli ingest --streams all", "ingest"),
        ("python", "/x/python -m careknot.cli gateway", "gateway"),
        ("tansu-v0.6.0-51", "/x/tansu-v0.6.0-510f3e2 broker --listener-url tcp://x", "kafka"),
        ("mosquitto", "mosquitto -c /etc/mosquitto/mosquitto.conf", "mqtt"),
        ("redis-server", "redis-server 127.0.0.1:6379", "redis"),
        ("postgres", "postgres: 15/main: postgres test 127.0.0.1(4) idle", "postgres"),
        ("python", "/x/python -m pytest worker", None),
        ("bash", "bash -c ingest", None),
    ],
)
def test_role_of(comm: str, cmdline: str, role: str | None) -> None:
    assert cpu.role_of(proc(comm, cmdline)) == role


def test_per_fix_us() -> None:
    before = {"ingest": 1.0, "worker": 2.0}
    after = {"ingest": 1.5, "worker": 2.0, "kafka": 0.25}
    assert cpu.per_fix_us(before, after, 5000) == {"ingest": 100.0, "kafka": 50.0}
    assert cpu.per_fix_us(before, after, 0) == {}


@pytest.mark.skipif(not cpu.PROC.is_dir(), reason="reads /proc (Linux)")
def test_cpu_of_a_busy_child_is_counted_under_the_bench() -> None:
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    child = subprocess.Popen([sys.executable, "-c", busy + "input()"], stdin=subprocess.PIPE)
    try:
        pids = cpu.roles([os.getpid()])
        assert pids[child.pid] == "bench" and pids[os.getpid()] == "bench"
        deadline = time.monotonic() + 30
        while cpu.cpu_by_role({child.pid: "bench"}).get("bench", 0.0) < 0.25:
            assert time.monotonic() < deadline, "the child's CPU time never showed"
            time.sleep(0.01)  # polling the child's CPU counter
    finally:
        child.communicate(b"\n", timeout=30)
