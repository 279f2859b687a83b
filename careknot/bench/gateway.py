"""``careknot bench gateway``: how many WebSocket clients one gateway process holds, what each
costs in memory, and how long a message takes from the outbox to them.

A gateway of its own (``careknot gateway`` as a child process, in a namespace of its own, on the
configured Redis and Kafka, or servers started for it) takes ``--connections`` clients opened
from ``--clients`` processes (asyncio and websockets): ``--dispatchers`` of them are dispatchers
of ``--agencies`` agencies, the rest caregivers, each authenticated with its own token in an
``Authorization: Bearer`` header and counted open once its ``hello`` came. Every process, the
gateway's too, raises its open-file limit to its hard limit first.

- Memory: the gateway's resident set (``VmRSS``) with no client, and again once every client has
  been open and idle for ``--idle-seconds``; the difference divided by the clients, in KiB.
- Delivery: ``--rate`` frames a second for ``--seconds`` through the outbox
  (:meth:`adapters.storage.outbox.Outbox.send`, as the services send), each stamped with its
  send time, round robin over ``--sample`` recipients (every agency's dispatchers, the rest
  caregivers); each client times every frame it gets, from that stamp to its receipt (one
  machine, one clock). A frame to an agency reaches each of its dispatchers.
- The end: every recipient is sent a last frame; a client process is done once each of its
  clients got its own (a recipient's frames come in order), so every delivery has come or is
  counted missing.

``--compression`` says whether the gateway offers permessage-deflate (the clients always ask
for it, as browsers do): ``on``, ``off`` or ``both`` (a gateway each, in turn). The figures at
the top are those of the gateway as configured (``CAREKNOT_GATEWAY_COMPRESSION``, on by
default), when it ran; each run's are under ``runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from adapters.storage.namespace import drop_namespace
from adapters.storage.outbox import Outbox
from careknot.bench import command, own_options
from careknot.bench.report import latency_figures, machine, write
from careknot.running import RunningSystem, isolated, own_token_key, worker_ready
from careknot.servers import ServerStack, die_with_parent, free_port
from careknot.up import settings_env
from kernel import recipients, tokens
from kernel.contracts import Role
from kernel.settings import Settings
from simulators.population import AGENCY_ID as CITY_AGENCY

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
OPEN_TIMEOUT_S = 60.0
"""A client's handshake and hello, with thousands of others queued at the gateway."""
DRAIN_S = 60.0
"""How long a client process waits for its clients' last frames once they are all sent."""
STOP_TIMEOUT_S = 20.0
SLOW_MS = 100.0
"""The target's p99: frames slower than this are counted by the second they were sent in."""
TOKEN_TTL_S = 4 * 3600.0
END: Literal["bench_end"] = "bench_end"
FRAME: Literal["bench"] = "bench"
CITY = "careknot up --simulate: 50 caregivers, 200 homes, a fix every 3 s each"


class BenchFrame(BaseModel):
    """What the bench sends through the outbox: stamped with its send time (epoch s)."""

    type: Literal["bench", "bench_end"] = "bench"
    n: int = 0
    sent_at: float = 0.0


@dataclass(frozen=True)
class Plan:
    connections: int
    clients: int
    agencies: int
    dispatchers: int
    at_once: int
    idle_seconds: float
    rate: float
    seconds: float
    sample: int
    city: bool = False
    """Whether the simulated city runs meanwhile (its agency's dispatchers among the clients)."""
    city_warm: float = 0.0
    """Seconds the city runs before the clients open (its start-up publishes every resident's
    history)."""


@dataclass(frozen=True)
class Share:
    """One client process's part: the gateway's URL and its clients' (recipient, token)."""

    url: str
    clients: list[tuple[str, str]]
    at_once: int


@dataclass
class Held:
    """What one client process saw."""

    opened: int = 0
    refused: int = 0
    deflated: int = 0
    """Clients the gateway agreed permessage-deflate with."""
    open_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    """When each timed frame was sent (epoch s), beside its latency."""
    ended: int = 0
    closed: int = 0
    """Clients whose connection closed before their last frame."""
    closes: dict[str, int] = field(default_factory=dict)
    """Why they closed (the close frame received or sent, or none), how many each."""


def people(plan: Plan) -> list[tuple[Role, str, str, str]]:
    """Every client's (role, subject, agency, recipient): the dispatchers first, shared among
    the agencies in turn, then the caregivers, shared likewise."""
    dispatchers = min(plan.dispatchers, plan.connections)
    out: list[tuple[Role, str, str, str]] = []
    for n in range(plan.connections):
        agency = CITY_AGENCY if plan.city and n % plan.agencies == 0 else f"bga{n % plan.agencies}"
        if n < dispatchers:
            out.append(("dispatcher", f"bgd{n}", agency, recipients.dispatchers(agency)))
        else:
            out.append(("caregiver", f"bgc{n}", agency, recipients.caregiver(f"bgc{n}")))
    return out


def sample_of(plan: Plan, everyone: list[tuple[Role, str, str, str]]) -> list[str]:
    """The recipients the timed frames go to: every agency's dispatchers (if any), then
    caregivers spread evenly over the rest."""
    agencies = sorted({r for role, _, _, r in everyone if role == "dispatcher"})
    caregivers = [r for role, _, _, r in everyone if role == "caregiver"]
    wanted = max(0, plan.sample - len(agencies))
    step = max(1, len(caregivers) // wanted) if wanted else 1
    return (agencies + caregivers[::step][:wanted])[: max(1, plan.sample)]


async def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = own_options("gateway", args)
    plan = Plan(
        opts.connections,
        opts.clients,
        opts.agencies,
        opts.dispatchers,
        opts.at_once,
        opts.idle_seconds,
        opts.rate,
        opts.seconds,
        opts.sample,
        opts.city,
        opts.city_warm,
    )
    modes = {"on": [True], "off": [False], "both": [True, False]}[opts.compression]
    workdir = Path(tempfile.mkdtemp(prefix="careknot-bench-gateway-"))
    own = settings.model_copy(
        update={
            "namespace": f"benchgw{secrets.token_hex(3)}",
            "token_keys": settings.token_keys or own_token_key(),
        }
    )
    async with _servers(own, workdir, plan.city, plan.city_warm) as resolved:
        runs = {
            ("deflate" if on else "none"): await measure(resolved, plan, on, workdir)
            for on in modes
        }
    configured = "deflate" if settings.gateway_compression else "none"
    top = runs.get(configured) or next(iter(runs.values()))
    figures: dict[str, Any] = {
        "benchmark": "gateway",
        **{k: top[k] for k in ("connections", "p50_ms", "p99_ms", "kib_per_connection")},
        "compression": top["compression"],
        "city": CITY if plan.city else None,
        "runs": runs,
        "plan": vars(opts),
        "command": command("gateway", opts),
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = write(args.output, "bench-gateway.json", figures)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path}")
    return 0 if all(r["missing"] == 0 and r["refused"] == 0 for r in runs.values()) else 1


@contextlib.asynccontextmanager
async def _servers(
    own: Settings, workdir: Path, city: bool, warm_s: float
) -> AsyncIterator[Settings]:
    """Resolved settings of servers the gateway can use: the configured Redis and a Kafka that
    answers (or one started); with ``city``, the whole system simulating the city
    (``careknot up --simulate``, on a Kafka and MQTT broker of its own), whose namespace the
    bench's gateway relays, once it has run ``warm_s``. The namespace is dropped on the way
    out."""
    if not city:
        with ServerStack(own, workdir / "servers") as resolved:
            try:
                yield resolved
            finally:
                await drop_namespace(resolved)
        return
    running = RunningSystem(isolated(own, workdir / "city"), workdir / "city", simulate=True)
    (workdir / "city").mkdir()
    live = await asyncio.to_thread(running.__enter__)
    try:
        await worker_ready(live, READY_TIMEOUT_S)
        await asyncio.sleep(warm_s)  # the city's start-up passes, as it would in a day's run
        yield live
    except BaseException:
        log.error("the system said:\n%s", running.log_tail())
        raise
    finally:
        await asyncio.to_thread(running.__exit__, None, None, None)
        await drop_namespace(live)


async def measure(
    settings: Settings, plan: Plan, compression: bool, workdir: Path
) -> dict[str, Any]:
    """One gateway (offering permessage-deflate or not), its clients, their memory and their
    frames' latency. ``settings`` are resolved (Redis and Kafka answer)."""
    s = settings.model_copy(
        update={
            "gateway_host": "127.0.0.1",
            "gateway_port": free_port(),
            "gateway_admin_port": free_port(),
            "gateway_compression": compression,
        }
    )
    log_path = workdir / f"gateway-{'deflate' if compression else 'none'}.log"
    proc = await asyncio.to_thread(start_gateway, s, log_path)
    try:
        return await _measure(s, plan, proc.pid)
    except BaseException:
        log.error("the gateway said:\n%s", log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        await asyncio.to_thread(stop, proc)


def start_gateway(s: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """``careknot gateway`` as a child process, its open-file limit raised; returns once it
    answers ``/readyz``."""
    argv = [sys.executable, "-m", "careknot.cli", "gateway"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **settings_env(s)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_gateway_preexec,  # noqa: PLW1509 - prctl and setrlimit only
        )
    ready = f"http://127.0.0.1:{s.gateway_admin_port}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2) as answer:
            if answer.status == 200:
                return proc
        if time.monotonic() > deadline:
            stop(proc)
            raise TimeoutError(f"the gateway not ready within {READY_TIMEOUT_S} s")
        time.sleep(0.1)


def _gateway_preexec() -> None:
    die_with_parent(signal.SIGTERM)()
    raise_open_files()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit; the limit now."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kib(pid: int) -> int:
    """A process's resident set (``VmRSS``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


async def _measure(s: Settings, plan: Plan, pid: int) -> dict[str, Any]:
    everyone = people(plan)
    ring, now = tokens.keyring_of(s), time.time()
    minted = [
        (recipient, tokens.mint(ring, role, sub, agency, TOKEN_TTL_S, now))
        for role, sub, agency, recipient in everyone
    ]
    url = f"ws://127.0.0.1:{s.gateway_port}/ws"
    shares = [Share(url, minted[k :: plan.clients], plan.at_once) for k in range(plan.clients)]
    rss_before = rss_kib(pid)
    ctx = multiprocessing.get_context("spawn")
    status: Queue[tuple[str, Any]] = ctx.Queue()
    controls: list[Queue[str]] = [ctx.Queue() for _ in shares]
    procs = [
        ctx.Process(target=hold, args=(share, status, control), daemon=True)
        for share, control in zip(shares, controls, strict=True)
    ]
    for p in procs:
        p.start()
    try:
        return await _drive(s, plan, pid, everyone, rss_before, status, controls)
    finally:
        for control in controls:
            control.put("stop")
        for p in procs:
            await asyncio.to_thread(p.join, STOP_TIMEOUT_S)
            if p.is_alive():
                p.kill()


async def _drive(
    s: Settings,
    plan: Plan,
    pid: int,
    everyone: list[tuple[Role, str, str, str]],
    rss_before: int,
    status: Queue[tuple[str, Any]],
    controls: list[Queue[str]],
) -> dict[str, Any]:
    opened = [await _next(status, "opened") for _ in controls]
    held = [h for _, h in opened]
    connected = sum(h.opened for h in held)
    refused = sum(h.refused for h in held)
    await asyncio.sleep(plan.idle_seconds)  # the clients idle, as most of a day's do
    rss_idle = rss_kib(pid)
    sample = sample_of(plan, everyone)
    listeners: dict[str, int] = {}
    for *_, recipient in everyone:
        listeners[recipient] = listeners.get(recipient, 0) + 1
    r = aioredis.Redis.from_url(s.redis_url)
    try:
        box = Outbox(r, s)
        sent, expected, cpu_s, wall_s = await _send(box, plan, sample, listeners, pid)
        await box.send([(recipient, BenchFrame(type=END)) for recipient in listeners])
    finally:
        await r.aclose()
    for control in controls:
        control.put("ended")
    done = [h for _, h in [await _next(status, "done") for _ in controls]]
    latencies = [ms for h in done for ms in h.latencies_ms]
    slow = slow_seconds([t for h in done for t in h.sent_at], latencies, SLOW_MS)
    kib = (rss_idle - rss_before) / max(1, connected)
    return {
        "compression": "deflate" if s.gateway_compression else "none",
        "connections": connected,
        "refused": refused,
        "deflated": sum(h.deflated for h in held),
        "open_s": round(max(h.open_s for h in held), 1),
        "rss_before_kib": rss_before,
        "rss_idle_kib": rss_idle,
        "rss_after_kib": rss_kib(pid),
        "kib_per_connection": round(kib, 2),
        "sent": sent,
        "delivered": len(latencies),
        "missing": expected - len(latencies),
        "closed_early": sum(h.closed for h in done),
        "closes": _summed([h.closes for h in done]),
        "rate": plan.rate,
        "seconds": round(wall_s, 1),
        "gateway_cpu_share": round(cpu_s / wall_s, 3) if wall_s else 0.0,
        "recipients_sampled": len(sample),
        "slow_seconds": slow,
        **_latency(latencies),
    }


def slow_seconds(sent_at: list[float], latencies: list[float], over_ms: float) -> dict[str, int]:
    """How many frames took over ``over_ms``, by the second they were sent in (counted from the
    first frame's): where the tail is, a pause of the gateway or a steady queue."""
    if not sent_at:
        return {}
    first, out = min(sent_at), dict[str, int]()
    for at, ms in sorted(zip(sent_at, latencies, strict=True)):
        if ms > over_ms:
            second = str(int(at - first))
            out[second] = out.get(second, 0) + 1
    return out


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for each in counts:
        for k, n in each.items():
            out[k] = out.get(k, 0) + n
    return out


def _latency(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    figures = latency_figures(latencies, "delivery")
    return {
        "p50_ms": figures["delivery_p50_ms"],
        "p99_ms": figures["delivery_p99_ms"],
        **figures,
    }


async def _send(
    box: Outbox, plan: Plan, sample: list[str], listeners: dict[str, int], pid: int
) -> tuple[int, int, float, float]:
    """Frames at ``plan.rate`` a second for ``plan.seconds``, round robin over ``sample``, each
    stamped as it goes (those due at once in one pipeline); (sent, deliveries expected, the
    gateway's CPU seconds meanwhile, wall seconds)."""
    total = max(1, round(plan.rate * plan.seconds))
    cpu_before, started = _cpu_s(pid), time.monotonic()
    n = expected = 0
    while n < total:
        due = min(total, 1 + int((time.monotonic() - started) * plan.rate))
        if due <= n:
            await asyncio.sleep((n / plan.rate) - (time.monotonic() - started))
            continue
        at = time.time()
        batch = [(sample[k % len(sample)], BenchFrame(n=k, sent_at=at)) for k in range(n, due)]
        await box.send(batch)
        expected += sum(listeners[recipient] for recipient, _ in batch)
        n = due
    wall = time.monotonic() - started
    return n, expected, _cpu_s(pid) - cpu_before, wall


def _cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _next(status: Queue[tuple[str, Any]], what: str) -> tuple[str, Held]:
    """The next word of a client process, which must be ``what``."""
    word, held = await asyncio.to_thread(status.get, True, OPEN_TIMEOUT_S * 10)
    if word != what:
        raise RuntimeError(f"a client process said {word}: {held}")
    return word, held


# ---------------------------------------------------------------- a client process


def hold(share: Share, status: Queue[tuple[str, Any]], control: Queue[str]) -> None:
    """A client process: open ``share``'s clients, say ``opened``; time every frame they get;
    once told ``ended``, wait for each client's last frame and say ``done``."""
    raise_open_files()
    try:
        asyncio.run(_hold(share, status, control))
    except BaseException as exc:
        status.put(("failed", repr(exc)))
        raise


async def _hold(share: Share, status: Queue[tuple[str, Any]], control: Queue[str]) -> None:
    held = Held()
    gate = asyncio.Semaphore(share.at_once)
    started = time.monotonic()
    opened = await asyncio.gather(*(_open(share.url, tok, gate) for _, tok in share.clients))
    clients = [ws for ws in opened if ws is not None]
    held.opened, held.refused = len(clients), len(opened) - len(clients)
    held.deflated = sum(1 for ws in clients if ws.protocol.extensions)
    held.open_s = time.monotonic() - started
    status.put(("opened", held))
    readers = [asyncio.create_task(_read(ws, held)) for ws in clients]
    word = await asyncio.to_thread(control.get)
    if word == "ended":
        _, pending = await asyncio.wait(readers, timeout=DRAIN_S)
        for task in pending:
            task.cancel()
        held.closed = sum(1 for t in readers if t.done() and not t.cancelled() and not t.result())
        status.put(("done", held))
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def _open(url: str, token: str, gate: asyncio.Semaphore) -> ClientConnection | None:
    async with gate:
        try:
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=OPEN_TIMEOUT_S,
                compression="deflate",
                ping_interval=None,  # the gateway pings; a client starved of CPU by the
                # others on this machine would time its pong out, which no gateway is to blame for
            )
            hello = orjson.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
        except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
            log.warning("a client not opened: %r", exc)
            return None
        if hello.get("type") != "hello":
            await ws.close()
            return None
        return ws


async def _read(ws: ClientConnection, held: Held) -> bool:
    """Time each bench frame until the client's last; False if its connection closed first."""
    try:
        async for raw in ws:
            frame = orjson.loads(raw)
            kind = frame.get("type")
            if kind == FRAME:
                held.latencies_ms.append((time.time() - frame["sent_at"]) * 1000)
                held.sent_at.append(frame["sent_at"])
            elif kind == END:
                return True
    except ConnectionClosed as exc:
        why = exc.rcvd or exc.sent
        said = f"{'received' if exc.rcvd else 'sent'} {why.code} {why.reason}" if why else "none"
        held.closes[said] = held.closes.get(said, 0) + 1
    return False
