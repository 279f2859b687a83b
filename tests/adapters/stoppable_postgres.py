"""A Postgres cluster of the module's own that can be stopped and started again on the same
port (the session's is shared and must not stop), started as ``careknot up`` starts one on a
bare machine (``initdb``/``postgres`` on PATH, else the ``pgserver`` wheel's): the
``own_postgres`` fixture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from careknot.servers.embedded import Launcher
from careknot.servers.postgres import start_postgres
from careknot.servers.probes import postgres_answers
from careknot.servers.processes import Child, RunAs, spawn

STARTS_WITHIN_S = 60.0


class OwnPostgres:
    """A Postgres cluster of the module's own that can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        self._launcher = Launcher(workdir, use_installed=True, timeout=STARTS_WITHIN_S)
        self.dsn = ""

    def start(self) -> None:
        self.dsn = start_postgres(self._launcher).url

    def stop(self) -> None:
        self._child.stop()

    def start_again(self) -> None:
        """The same server, data and port."""
        old = self._child
        argv = [str(arg) for arg in old.proc.args]  # type: ignore[union-attr]
        child = spawn(
            old.name, argv, old.log_path, stop_signal=old.stop_signal, run_as=RunAs.for_postgres()
        )
        self._launcher.children[-1] = child
        child.wait_ready(lambda: postgres_answers(self.dsn), STARTS_WITHIN_S)

    def close(self) -> None:
        self._launcher.close()

    @property
    def _child(self) -> Child:
        return self._launcher.children[-1]


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    postgres = OwnPostgres(tmp_path_factory.mktemp("own-postgres"))
    try:
        postgres.start()
        yield postgres
    finally:
        postgres.close()
