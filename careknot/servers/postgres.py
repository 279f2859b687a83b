"""Starting Postgres: initdb/postgres on ``PATH``, else the ``pgserver`` wheel's; a data
directory per major version (initialised once), run as an unprivileged user when we are root,
tuned for tests (no fsync), with the ``careknot`` database created."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from careknot.servers.embedded import Launcher, Started
from careknot.servers.probes import LOOPBACK, postgres_answers, run_async
from careknot.servers.processes import RunAs, free_port, run_to_end, wheel_dir
from kernel.errors import ServerStartError

PG_SUPERUSER = "postgres"
PG_DATABASE = "careknot"
SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200")
DURABLE = ("max_connections=200",)  # Postgres's own defaults: a commit survives a crash


def start_postgres(
    launcher: Launcher, port: int | None = None, *, durable: bool = False
) -> Started:
    """Postgres on a free port, or on ``port`` (where one that died listened: its data
    directory, the launcher's, is kept, so it starts again with what it had committed).
    ``durable`` keeps production's durability (fsync, synchronous commits) instead of the
    tests' speed, for a server that is to be killed."""
    bindir, how = _bindir(launcher)
    run_as = RunAs.for_postgres()
    datadir = _datadir(launcher, bindir, run_as)
    port = port or free_port()
    sockets = str(datadir) if len(str(datadir)) < 80 else ""
    argv = [str(bindir / "postgres"), "-D", str(datadir), "-p", str(port)]
    for setting in (
        f"listen_addresses={LOOPBACK}",
        f"unix_socket_directories={sockets}",
        *(DURABLE if durable else SETTINGS),
    ):
        argv += ["-c", setting]
    child = launcher.start("postgres", argv, stop_signal=signal.SIGINT, run_as=run_as)
    admin = f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{port}/postgres"
    child.wait_ready(lambda: postgres_answers(admin), launcher.timeout)
    run_async(_create_database(admin, PG_DATABASE))
    dsn = f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{port}/{PG_DATABASE}"
    return Started(how, dsn, {"postgres_dsn": dsn})


def _bindir(launcher: Launcher) -> tuple[Path, str]:
    installed = launcher.installed("initdb", "postgres")
    if installed and (installed / "postgres").exists():
        return installed, "postgres"
    wheel = wheel_dir("pgserver")
    bindir = wheel / "pginstall" / "bin" if wheel else None
    if bindir is None or not (bindir / "initdb").exists():
        raise ServerStartError("postgres", "no initdb/postgres on PATH and no pgserver wheel")
    return bindir, "pgserver"


def _datadir(launcher: Launcher, bindir: Path, run_as: RunAs | None) -> Path:
    """Data directory for this Postgres version, initialised (initdb) if new."""
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+)", out)
    base = launcher.workdir
    if run_as is not None and not _world_traversable(base):
        base = Path(tempfile.mkdtemp(prefix="careknot-pg-"))
        os.chmod(base, 0o755)
        launcher.scratch.append(base)
    datadir = base / f"postgres-{match.group(1) if match else 'x'}"
    if not (datadir / "PG_VERSION").exists():
        datadir.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(datadir, run_as.uid, run_as.gid)
        argv = [str(bindir / "initdb"), "-D", str(datadir), "-U", PG_SUPERUSER]
        argv += ["--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        run_to_end("initdb", argv, launcher.workdir / "initdb.log", run_as)
    return datadir


def _world_traversable(path: Path) -> bool:
    """True if every directory down to ``path`` can be entered by any user."""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.exists())


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
