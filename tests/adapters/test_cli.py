"""The ``careknot`` command line, run as a user runs it (a child process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import asyncpg
import pytest

from careknot.up import settings_env
from kernel import tokens
from kernel.settings import Settings

pytestmark = pytest.mark.servers


def careknot(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "careknot.cli", "-l", "warning", *args],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_issues_a_token_the_gateway_accepts(stack_settings: Settings) -> None:
    done = careknot(
        stack_settings,
        "token",
        "--role",
        "family",
        "--subject",
        "f1",
        "--agency",
        "a1",
        "--patient",
        "p1",
        "--ttl",
        "600",
    )
    assert done.returncode == 0, done.stderr
    claims = tokens.verify(done.stdout.strip(), stack_settings.token_secret, time.time())
    assert (claims.role, claims.sub, claims.agency, claims.patients) == (
        "family",
        "f1",
        "a1",
        ["p1"],
    )
    assert time.time() + 590 < claims.exp <= time.time() + 600


def test_token_refuses_an_unknown_role(stack_settings: Settings) -> None:
    done = careknot(stack_settings, "token", "--role", "admin", "--subject", "x", "--agency", "a")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


async def test_migrate_twice_applies_once(stack_settings: Settings) -> None:
    fresh = stack_settings.model_copy(update={"namespace": f"{stack_settings.namespace}_cli"})
    try:
        first, second = careknot(fresh, "migrate"), careknot(fresh, "migrate")
        assert first.returncode == second.returncode == 0, first.stderr + second.stderr
        assert "applied [1" in first.stdout
        assert "nothing (up to date)" in second.stdout
    finally:
        conn = await asyncpg.connect(fresh.postgres_dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{fresh.namespace}" CASCADE')
        await conn.close()


def test_an_unknown_option_is_refused(stack_settings: Settings) -> None:
    done = careknot(stack_settings, "migrate", "--bogus")
    assert done.returncode == 2
    assert "--bogus" in done.stderr
