"""The four servers of a fault run, started by us on ports we know, so each can be killed with
SIGKILL and started again where its clients look: Mosquitto (its sessions on disk, saved every
second), Redis (no persistence: it comes back empty), Postgres (its data directory kept: it
comes back with what it had committed, after crash recovery) and tansu (memory only: it comes
back empty).

Never the machine's own servers: everything here is a child of :class:`FaultServers`, on free
ports, stopped on ``close``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

from careknot.servers.embedded import Launcher, Started
from careknot.servers.postgres import start_postgres
from careknot.servers.processes import Child
from kernel.errors import ServerStartError

log = logging.getLogger(__name__)

Server = Literal["mqtt", "redis", "postgres", "kafka"]
SERVERS: tuple[Server, ...] = ("mqtt", "redis", "postgres", "kafka")
START_TIMEOUT_S = 60.0
SESSION_GONE_S = 30.0


def _session_members(sid: int) -> list[int]:
    """Pids of live processes in session ``sid`` (Linux /proc): a postmaster's backends."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


class FaultServers:
    """``with FaultServers() as servers:`` the four servers, each killable and
    restartable; :attr:`urls` maps each to where it answers."""

    def __init__(self) -> None:
        # A folder of their own that every user may enter: Postgres runs unprivileged under
        # root, and a data directory it could not reach would be made anew elsewhere at each
        # start, so a restarted Postgres would come back empty.
        self.workdir = Path(tempfile.mkdtemp(prefix="careknot-fault-servers-"))
        os.chmod(self.workdir, 0o755)
        self._launcher = Launcher(self.workdir, use_installed=True, timeout=START_TIMEOUT_S)
        self.urls: dict[Server, str] = {}
        self._children: dict[Server, Child] = {}
        self.kills: dict[Server, int] = dict.fromkeys(SERVERS, 0)

    def __enter__(self) -> FaultServers:
        try:
            for server in SERVERS:
                self.start(server)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._launcher.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def port(self, server: Server) -> int:
        url = self.urls[server]
        host_port = url if server == "kafka" else urlsplit(url).netloc.rsplit("@", 1)[-1]
        return int(host_port.rsplit(":", 1)[1].split("/")[0])

    def start(self, server: Server) -> None:
        """Start ``server``: on a free port the first time, then where it was."""
        port = self.port(server) if server in self.urls else None
        started = self._start(server, port)
        self.urls[server] = started.url
        self._children[server] = self._launcher.children[-1]
        log.info("%s %s at %s", "restarted" if port else "started", server, started.url)

    def _start(self, server: Server, port: int | None) -> Started:
        if server == "mqtt":
            return self._launcher.mqtt(port)
        if server == "redis":
            return self._launcher.redis("0", port)
        if server == "postgres":
            return self._retrying(lambda: start_postgres(self._launcher, port, durable=True))
        return self._launcher.kafka(port)

    @staticmethod
    def _retrying(start: object) -> Started:
        """Postgres may refuse to start while the old one's port or shared memory is let go."""
        assert callable(start)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                result: Started = start()
                return result
            except ServerStartError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # the old server's resources are let go by the kernel

    def kill(self, server: Server) -> None:
        """SIGKILL ``server`` (Postgres: its postmaster, then wait until its backends, which
        notice, are gone) and wait until it is dead."""
        child = self._children[server]
        pid = child.proc.pid
        os.kill(pid, signal.SIGKILL)
        child.proc.wait()
        self.kills[server] += 1
        if server == "postgres":
            deadline = time.monotonic() + SESSION_GONE_S
            while _session_members(pid) and time.monotonic() < deadline:
                time.sleep(0.05)  # polling the kernel's process table
        log.info("killed %s (pid %d) with SIGKILL", server, pid)
