"""The ``careknot`` command line, run as a user runs it (a child process); ``careknot alarms``
against the real Postgres."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from adapters.storage.alarms import AlarmStore
from adapters.storage.postgres import Database
from adapters.storage.revocations import Revocations
from alarms.ladder import Ladder, Step
from kernel import tokens
from kernel.settings import Settings
from tests.adapters.cli_runs import careknot

pytestmark = pytest.mark.servers


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
    ring = tokens.keyring_of(stack_settings)
    claims = tokens.verify(done.stdout.strip(), ring, time.time())
    assert (claims.role, claims.sub, claims.agency, claims.patients) == (
        "family",
        "f1",
        "a1",
        ["p1"],
    )
    assert time.time() + 590 < claims.exp <= time.time() + 600


def test_token_will_not_sign_with_the_public_development_key(
    stack_settings: Settings, tmp_path: Path
) -> None:
    public = stack_settings.model_copy(
        update={"token_keys": "", "token_keys_file": str(tmp_path / "none")}
    )
    done = careknot(public, "token", "--role", "family", "--subject", "f", "--agency", "a")
    assert (done.returncode, done.stdout) == (1, "")
    assert "development" in done.stderr
    told = public.model_copy(update={"development": True})
    done = careknot(told, "token", "--role", "family", "--subject", "f", "--agency", "a")
    assert done.returncode == 0, done.stderr


async def test_token_revoke_refuses_a_persons_tokens_issued_until_now(
    stack_settings: Settings,
) -> None:
    before = time.time()
    done = careknot(stack_settings, "token", "--role", "caregiver", "--subject", "cg-r", "--revoke")
    assert done.returncode == 0, done.stderr
    redis = aioredis.Redis.from_url(stack_settings.redis_url)
    try:
        revocations = Revocations(redis, stack_settings.keys)
        at = await revocations.revoked_before("caregiver", "cg-r")
        assert at is not None and before <= at <= time.time()
        assert await revocations.revoked_before("caregiver", "cg-other") is None
    finally:
        await redis.aclose()


def test_token_refuses_an_unknown_role(stack_settings: Settings) -> None:
    role = "operator"  # no such role
    done = careknot(stack_settings, "token", "--role", role, "--subject", "x", "--agency", "a")
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


# ---------------------------------------------------------------- careknot alarms


async def alarms(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(careknot, settings, "alarms", *args)


async def agency(db: Database) -> str:
    agency_id = f"ag-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency_id, "Agency")
    return agency_id


async def test_an_agency_sets_a_ladder_and_sees_it_beside_the_defaults(
    settings: Settings, db: Database
) -> None:
    a = await agency(db)
    done = await alarms(
        settings, "ladder", a, "critical", "dispatchers:0", "on_call:10", "external:30"
    )
    assert done.returncode == 0, done.stderr
    own = Ladder((Step("dispatchers", 0.0), Step("on_call", 10.0), Step("external", 30.0)))
    assert await AlarmStore(db).ladders(a) == {"critical": own}
    shown = await alarms(settings, "ladder", a)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()}
    assert list(lines) == ["critical", "major", "minor", "warning"]
    assert "dispatchers:0 on_call:10 external:30" in lines["critical"]
    assert lines["critical"].endswith("(own)")
    assert "dispatchers:0 on_call:120 external:600" in lines["major"]
    assert lines["major"].endswith("(default)")
    again = await alarms(settings, "ladder", a, "critical", "dispatchers:0", "external:5")
    assert again.returncode == 0, again.stderr  # set again: the new one stands
    one = await alarms(settings, "ladder", a, "critical")
    assert one.stdout.split()[:3] == ["critical", "dispatchers:0", "external:5"]


@pytest.mark.parametrize(
    ("steps", "says"),
    [
        (["on_call:20", "dispatchers:0"], "rungs out of order"),
        (["dispatchers:0", "on_call:30", "external:20"], "times out of order"),
        (["dispatchers:0", "pager:20"], "unknown rung 'pager'"),
        (["dispatchers:0", "on_call"], "RUNG:SECONDS"),
        (["dispatchers:0", "external:90"], "within 60 s"),  # critical: the whole ladder in 60 s
    ],
)
async def test_a_ladder_out_of_order_or_with_an_unknown_rung_is_refused(
    settings: Settings, db: Database, steps: list[str], says: str
) -> None:
    a = await agency(db)
    done = await alarms(settings, "ladder", a, "critical", *steps)
    assert done.returncode == 1
    assert says in done.stderr
    assert await AlarmStore(db).ladders(a) == {}


async def test_a_ladder_or_contact_of_an_unknown_agency_is_refused(settings: Settings) -> None:
    for args in (
        ["ladder", "nobody", "major", "dispatchers:0"],
        ["ladder", "nobody"],
        ["contact", "add", "nobody", "on_call", "json://127.0.0.1:1/manager"],
        ["contact", "list", "nobody"],
    ):
        done = await alarms(settings, *args)
        assert done.returncode == 1, args
        assert "unknown agency 'nobody'" in done.stderr


async def test_contacts_are_added_listed_with_credentials_masked_and_removed(
    settings: Settings, db: Database
) -> None:
    a = await agency(db)
    secret = "json://ops:s3cret@127.0.0.1:1/manager"
    added = await alarms(settings, "contact", "add", a, "on_call", secret)
    assert added.returncode == 0, added.stderr
    assert "s3cret" not in added.stdout
    twice = await alarms(settings, "contact", "add", a, "on_call", secret)
    assert "already there" in twice.stdout
    await alarms(settings, "contact", "add", a, "external", "mailto://family@example.org")
    listed = await alarms(settings, "contact", "list", a)
    assert listed.returncode == 0, listed.stderr
    assert "s3cret" not in listed.stdout
    assert listed.stdout.splitlines() == [
        "on_call   json://ops:****@127.0.0.1:1/manager",
        "external  mailto://family@example.org",
    ]
    store = AlarmStore(db)
    assert await store.contacts(a) == {
        "on_call": [secret],
        "external": ["mailto://family@example.org"],
    }
    # removed as list shows it (the password masked)
    gone = await alarms(
        settings, "contact", "remove", a, "on_call", "json://ops:****@127.0.0.1:1/manager"
    )
    assert gone.returncode == 0, gone.stderr
    assert await store.contacts(a) == {"external": ["mailto://family@example.org"]}
    again = await alarms(settings, "contact", "remove", a, "on_call", secret)
    assert again.returncode == 1
    assert "has no contact" in again.stderr


@pytest.mark.parametrize(
    ("rung", "url", "says"),
    [
        ("on_call", "not a url", "not one URL of a service Apprise knows"),
        ("on_call", "json://127.0.0.1:1/a json://127.0.0.1:1/b", "not one URL"),
        ("dispatchers", "json://127.0.0.1:1/a", "invalid choice"),
    ],
)
async def test_a_contact_that_is_not_one_apprise_url_at_a_notified_rung_is_refused(
    settings: Settings, db: Database, rung: str, url: str, says: str
) -> None:
    a = await agency(db)
    done = await alarms(settings, "contact", "add", a, rung, url)
    assert done.returncode != 0
    assert says in done.stderr
    assert await AlarmStore(db).contacts(a) == {}
