"""The ``careknot`` command line run as a user runs it: a child process with the settings in
its environment, its output captured."""

from __future__ import annotations

import os
import subprocess
import sys

from careknot.up import settings_env
from kernel.settings import Settings


def careknot(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "careknot.cli", "-l", "warning", *args],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
