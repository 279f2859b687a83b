"""The gateway against real Redis and Kafka (tansu): scope, relay, resume, answers, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from adapters.storage.outbox import Outbox
from adapters.storage.revocations import Revocations
from kernel import recipients, tokens
from kernel.contracts import DeadLetter, OfferAnswer, OfferResultFrame
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.adapters.gateway_clients import (
    TIMEOUT_S,
    Frame,
    client,
    close_code,
    consume,
    http_get,
    namespace_redis,
    put_offer,
    recv,
    send,
    token,
)
from tests.support import own_gateway
from ws_gateway import connection, conversation, web
from ws_gateway.connection import Connection
from ws_gateway.server import Gateway
from ws_gateway.session import Delivered

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def settings(stack_settings: Settings) -> Settings:
    """The session's servers, a namespace of this module's own and a free gateway port."""
    return own_gateway(stack_settings)


@pytest.fixture(scope="module")
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with Gateway(settings) as gw:
        yield gw


@pytest.fixture(scope="module")
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    async with namespace_redis(settings) as redis:
        yield redis


@pytest.fixture(scope="module")
def box(redis_client: aioredis.Redis, settings: Settings) -> Outbox:
    return Outbox(redis_client, settings)


# ---------------------------------------------------------------- helpers


def result(offer_id: str) -> OfferResultFrame:
    return OfferResultFrame(offer_id=offer_id, outcome="assigned")


# ---------------------------------------------------------------- authentication and scope


async def test_bad_token_is_refused_with_4401(gateway: Gateway, settings: Settings) -> None:
    forged = token(settings, "caregiver", "cg1").replace(".", ".x", 1)
    async with client(gateway, token=forged) as ws:
        assert (await recv(ws))["reason"] == "unauthorised"
        assert await close_code(ws) == 4401


async def test_each_read_is_recorded_for_the_audit_before_anything_is_sent(
    gateway: Gateway, settings: Settings
) -> None:
    family = token(settings, "family", "f-audit", patients=["p-audit"])
    async with client(gateway, token=family) as ws:
        assert (await recv(ws))["type"] == "hello"
        fresh = token(settings, "family", "f-audit", patients=["p-audit"])
        await send(ws, {"type": "auth", "token": fresh})
        assert (await recv(ws))["type"] == "auth_ok"

    def of(what: str) -> Callable[[Frame], bool]:
        return lambda v: v.get("subject") == "f-audit" and v.get("what") == what

    records = [await consume(settings, "access-log", of(w)) for w in ("connected", "refreshed")]
    for r in records:
        assert r.pop("_key") == b"patient:a1:p-audit"
        assert (r["role"], r["agency_id"], r["patient_id"], r["via"]) == (
            "family",
            "a1",
            "p-audit",
            "gateway",
        )


async def test_a_token_in_the_url_is_refused(gateway: Gateway, settings: Settings) -> None:
    """Proxies and logs keep URLs: a token there is refused, however genuine."""
    genuine = token(settings, "caregiver", "cg-url")
    url = f"ws://127.0.0.1:{gateway.port}/ws?{urlencode({'token': genuine})}"
    async with connect(url, open_timeout=TIMEOUT_S) as ws:
        refused = await recv(ws)
        assert refused["reason"] == "unauthorised" and "URL" in refused["detail"]
        assert await close_code(ws) == 4401


async def test_another_agencys_family_naming_a_patient_hears_nothing_of_her(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    """Patient ids may repeat across agencies, and a token names its own agency's."""
    intruder = token(settings, "family", "f-x", agency="a2", patients=["p1"])
    async with client(gateway, token=intruder) as ws:
        assert (await recv(ws))["recipient"] == "patient:a2:p1"
        await box.send([(recipients.family_of("a1", "p1"), result("a1s-p1"))])
        await box.send([(recipients.family_of("a2", "p1"), result("a2s-p1"))])
        assert (await recv(ws))["offer_id"] == "a2s-p1"


async def test_an_open_connection_closes_when_its_token_expires_unless_refreshed(
    settings: Settings,
) -> None:
    ring = tokens.keyring_of(settings)
    async with Gateway(settings.model_copy(update={"gateway_port": 0})) as gw:
        now = time.time()
        short = tokens.mint(ring, "caregiver", "cg-short", "a1", 1.0, now)
        async with client(gw, token=short) as ws:
            assert (await recv(ws))["type"] == "hello"
            lapsed = await recv(ws)  # nothing sent meanwhile: the gateway speaks first
            assert (lapsed["reason"], lapsed["detail"]) == ("unauthorised", "token expired")
            assert await close_code(ws) == 4401
        brief = tokens.mint(ring, "caregiver", "cg-kept", "a1", 2.0, time.time())
        async with client(gw, token=brief) as ws:
            await recv(ws)
            fresh = tokens.mint(ring, "caregiver", "cg-kept", "a1", 600.0, time.time())
            await send(ws, {"type": "auth", "token": fresh})
            ok = await recv(ws)
            assert ok["type"] == "auth_ok" and ok["exp"] > time.time() + 500
            someone = tokens.mint(ring, "caregiver", "cg-other", "a1", 600.0, time.time())
            await send(ws, {"type": "auth", "token": someone})
            assert (await recv(ws))["reason"] == "forbidden"
            await asyncio.sleep(2.5)  # past the first token's expiry: a wait for the clock
            await send(ws, {"type": "ping"})
            assert await recv(ws) == {"type": "pong"}  # still open under the fresh token


async def test_a_client_too_slow_for_what_it_is_sent_is_closed_1013_not_waited_for(
    settings: Settings, box: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that reads nothing while it is sent megabytes: once the socket's buffers and its
    connection's queue are full, the gateway closes it (1013, try again later: a reconnect with
    resume misses nothing) rather than hold what it is owed without bound."""
    monkeypatch.setattr(connection, "QUEUE_SIZE", 4)
    ring = tokens.keyring_of(settings)
    slow = tokens.mint(ring, "caregiver", "cg-slow", "a1", 600.0, time.time())
    async with Gateway(settings.model_copy(update={"gateway_port": 0})) as gw:
        url = f"ws://127.0.0.1:{gw.port}/ws"
        headers = {"Authorization": f"Bearer {slow}"}
        async with connect(url, additional_headers=headers, max_queue=1) as ws:
            owed = [orjson.dumps({"type": "bulk", "n": n, "pad": "x" * 4096}) for n in range(3000)]
            await box.send_many([(recipients.caregiver("cg-slow"), owed)])
            got = 0
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(TIMEOUT_S):
                    async for _ in ws:  # it reads at last: what was sent before the close
                        got += 1
            assert ws.close_code == 1013 and ws.close_reason == "too slow"
            assert got < len(owed)  # not everything owed was held for it


async def test_revoking_a_persons_tokens_closes_her_connection_and_refuses_her_next(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conversation, "TOKEN_CHECK_S", 0.2)
    ring = tokens.keyring_of(settings)
    async with Gateway(settings.model_copy(update={"gateway_port": 0})) as gw:
        mine = tokens.mint(ring, "dispatcher", "d-gone", "a1", 600.0, time.time())
        async with client(gw, token=mine) as ws:
            assert (await recv(ws))["type"] == "hello"
            await Revocations(redis_client, settings.keys).revoke(
                "dispatcher", "d-gone", time.time()
            )
            refused = await recv(ws)
            assert (refused["reason"], refused["detail"]) == ("unauthorised", "token revoked")
            assert await close_code(ws) == 4401
        async with client(gw, token=mine) as ws:
            assert (await recv(ws))["detail"] == "token revoked"
        newer = tokens.mint(ring, "dispatcher", "d-gone", "a1", 600.0, time.time() + 1)
        async with client(gw, token=newer) as ws:
            assert (await recv(ws))["type"] == "hello"  # issued after: taken


@pytest.mark.parametrize(
    ("origin", "taken"),
    [
        (None, True),  # a phone or a device: no browser, no page to pose as
        ("http://localhost:8765", True),
        ("http://127.0.0.1", True),
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),
    ],
)
async def test_only_the_allowed_origins_may_open_a_websocket(
    gateway: Gateway, settings: Settings, origin: str | None, taken: bool
) -> None:
    headers = {"Authorization": f"Bearer {token(settings, 'caregiver', 'cg-o')}"}
    url = f"ws://127.0.0.1:{gateway.port}/ws"
    said = None if origin is None else Origin(origin)
    opened = connect(url, open_timeout=TIMEOUT_S, additional_headers=headers, origin=said)
    if taken:
        async with opened as ws:
            assert (await recv(ws))["type"] == "hello"
    else:
        with pytest.raises(InvalidStatus) as refused:
            async with opened:
                pass
        assert refused.value.response.status_code == 403


async def test_token_in_first_message(gateway: Gateway, settings: Settings) -> None:
    async with client(gateway) as ws:
        await send(ws, {"type": "auth", "token": token(settings, "caregiver", "cg-first")})
        hello = await recv(ws)
    assert hello["type"] == "hello"
    assert (hello["recipient"], hello["seq_now"]) == ("cg:cg-first", 0)
    assert "seq" not in hello


async def test_caregiver_sees_only_her_own(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    async with client(gateway, token=token(settings, "caregiver", "cg-a")) as ws:
        assert (await recv(ws))["recipient"] == "cg:cg-a"
        await box.send([(recipients.caregiver("cg-b"), result("for-b"))])
        await box.send([(recipients.caregiver("cg-a"), result("for-a"))])
        frame = await recv(ws)
    assert (frame["offer_id"], frame["seq"]) == ("for-a", 1)


async def test_an_idle_connection_holds_no_queue_and_no_task_once_it_is_sent_all(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    """Ten thousand idle clients must each cost little: a connection's queue and its pump task
    live only while the relay has handed it something not yet sent."""
    async with client(gateway, token=token(settings, "caregiver", "cg-idle")) as ws:
        await recv(ws)  # hello
        (held,) = gateway.connections_of("cg:cg-idle")
        assert (held.queue, held.pump) == (None, None)  # nothing relayed yet
        await box.send([(recipients.caregiver("cg-idle"), result(f"o{n}")) for n in range(3)])
        assert [(await recv(ws))["offer_id"] for _ in range(3)] == ["o0", "o1", "o2"]
        await sent_all(held)
        await box.send([(recipients.caregiver("cg-idle"), result("again"))])
        assert (await recv(ws))["offer_id"] == "again"  # a new pump for what came after
        await sent_all(held)


async def sent_all(held: Connection) -> None:
    """Until the connection's pump has ended, and with it its queue."""

    async def probe() -> bool | None:
        return True if held.pump is None else None

    await poll_until(probe, within=TIMEOUT_S, what="the pump ended")
    assert held.queue is None


async def test_what_is_relayed_while_the_pump_sends_follows_in_order(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    """Messages relayed while the pump is sending join its queue: all arrive, in order, once."""
    async with client(gateway, token=token(settings, "caregiver", "cg-burst")) as ws:
        await recv(ws)  # hello
        (held,) = gateway.connections_of("cg:cg-burst")
        owed = [(recipients.caregiver("cg-burst"), result(f"b{n}")) for n in range(300)]
        await asyncio.gather(box.send(owed[:150]), box.send(owed[150:]))
        got = [await recv(ws) for _ in owed]
        await sent_all(held)
    seqs = [frame["seq"] for frame in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(owed)
    assert {frame["offer_id"] for frame in got} == {f"b{n}" for n in range(300)}


async def test_a_pump_that_fails_closes_its_client_1011_and_queues_it_nothing_more(
    settings: Settings, box: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault of the gateway's own in sending is not a silent stall: the client is closed (1011)
    and reconnects and resumes; nothing more is queued for the closing connection."""

    def broken(self: Delivered, seq: int) -> bool:
        raise RuntimeError("a fault in sending")

    async with Gateway(settings.model_copy(update={"gateway_port": 0})) as gw:
        async with client(gw, token=token(settings, "caregiver", "cg-broken")) as ws:
            await recv(ws)  # hello
            (held,) = gw.connections_of("cg:cg-broken")
            monkeypatch.setattr(Delivered, "take_live", broken)
            await box.send([(recipients.caregiver("cg-broken"), result("lost-in-sending"))])
            assert await close_code(ws) == 1011
        assert held.closing and held.queue is None
        assert held.offer(99, 0, b"{}") and held.queue is None


async def test_family_scoped_to_their_patient(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    family = token(settings, "family", "f1", patients=["p1", "p2"])
    async with client(gateway, token=family, patient="p2") as ws:
        assert (await recv(ws))["recipient"] == "patient:a1:p2"
        await box.send([(recipients.family_of("a1", "p1"), result("for-p1"))])
        await box.send([(recipients.family_of("a2", "p2"), result("a2s-p2"))])  # another's p2
        await box.send([(recipients.family_of("a1", "p2"), result("for-p2"))])
        assert (await recv(ws))["offer_id"] == "for-p2"
    async with client(gateway, token=family, patient="p9") as ws:
        assert (await recv(ws))["reason"] == "forbidden"
        assert await close_code(ws) == 4403
    async with client(gateway, token=token(settings, "family", "f2")) as ws:
        assert (await recv(ws))["reason"] == "forbidden"
        assert await close_code(ws) == 4403


async def test_dispatcher_sees_only_own_agency(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    async with client(gateway, token=token(settings, "dispatcher", "d1", agency="north")) as ws:
        assert (await recv(ws))["recipient"] == "agency:north"
        await box.send([(recipients.dispatchers("south"), result("for-south"))])
        await box.send([(recipients.dispatchers("north"), result("for-north"))])
        assert (await recv(ws))["offer_id"] == "for-north"


# ---------------------------------------------------------------- resume


async def test_resume_replays_exactly_the_missed(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    me = token(settings, "caregiver", "cg-r")
    recipient = recipients.caregiver("cg-r")
    async with client(gateway, token=me) as ws:
        await recv(ws)
        await box.send([(recipient, result("r1"))])
        assert (await recv(ws))["seq"] == 1
    await box.send([(recipient, result("r2")), (recipient, result("r3"))])
    async with client(gateway, token=me) as ws:
        assert (await recv(ws))["seq_now"] == 3
        await send(ws, {"type": "resume", "last_seq": 1})
        replayed = [await recv(ws), await recv(ws)]
        await box.send([(recipient, result("r4"))])
        live = await recv(ws)
        await send(ws, {"type": "ping"})
        pong = await recv(ws)
    assert [(f["seq"], f["offer_id"]) for f in replayed] == [(2, "r2"), (3, "r3")]
    assert (live["seq"], live["offer_id"]) == (4, "r4")
    assert pong == {"type": "pong"}  # nothing was sent twice in between


async def test_resume_in_the_url(gateway: Gateway, settings: Settings, box: Outbox) -> None:
    recipient = recipients.caregiver("cg-u")
    await box.send([(recipient, result("u1")), (recipient, result("u2"))])
    async with client(gateway, token=token(settings, "caregiver", "cg-u"), last_seq="1") as ws:
        assert (await recv(ws))["type"] == "hello"
        assert (await recv(ws))["offer_id"] == "u2"


# ---------------------------------------------------------------- answers


async def test_accept_own_offer_reaches_kafka(
    gateway: Gateway, settings: Settings, redis_client: aioredis.Redis
) -> None:
    offer_id, incident_id = await put_offer(redis_client, settings, "cg-k")
    async with client(gateway, token=token(settings, "caregiver", "cg-k")) as ws:
        await recv(ws)
        await send(ws, {"type": "accept", "offer_id": offer_id})
        assert await recv(ws) == {"type": "ack", "offer_id": offer_id}
    value = await consume(settings, "offer-answers", lambda v: v.get("offer_id") == offer_id)
    assert value.pop("_key") == incident_id.encode()
    answer = OfferAnswer.model_validate(value)
    assert (answer.incident_id, answer.caregiver_id, answer.agency_id, answer.answer) == (
        incident_id,
        "cg-k",
        "a1",
        "accept",
    )


async def test_accept_of_anothers_offer_is_dead_lettered(
    gateway: Gateway, settings: Settings, redis_client: aioredis.Redis
) -> None:
    offer_id, _ = await put_offer(redis_client, settings, "cg-owner")
    async with client(gateway, token=token(settings, "caregiver", "cg-thief")) as ws:
        await recv(ws)
        await send(ws, {"type": "accept", "offer_id": offer_id})
        error = await recv(ws)
    assert (error["type"], error["reason"]) == ("error", "not_your_offer")
    value = await consume(settings, "deadletter", lambda v: offer_id in v.get("payload", ""))
    value.pop("_key")
    letter = DeadLetter.model_validate(value)
    assert letter.reason == "not_your_offer"
    assert "cg-thief" in letter.source
    assert gateway.counters.rejected["not_your_offer"] >= 1


async def test_unknown_offer_and_wrong_role(gateway: Gateway, settings: Settings) -> None:
    async with client(gateway, token=token(settings, "caregiver", "cg-x")) as ws:
        await recv(ws)
        await send(ws, {"type": "decline", "offer_id": "nope"})
        assert (await recv(ws))["reason"] == "unknown_offer"
    async with client(gateway, token=token(settings, "dispatcher", "d9")) as ws:
        await recv(ws)
        await send(ws, {"type": "accept", "offer_id": "nope"})
        assert (await recv(ws))["reason"] == "forbidden"


# ---------------------------------------------------------------- malformed input


async def test_malformed_frames_leave_the_connection_open(
    gateway: Gateway, settings: Settings
) -> None:
    async with client(gateway, token=token(settings, "caregiver", "cg-m")) as ws:
        await recv(ws)
        await ws.send("{not json")
        assert (await recv(ws))["reason"] == "malformed"
        await send(ws, {"type": "dance"})
        assert (await recv(ws))["reason"] == "unknown_type"
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}


async def test_too_large_frame_closes_with_1009(gateway: Gateway, settings: Settings) -> None:
    async with client(gateway, token=token(settings, "caregiver", "cg-big")) as ws:
        await recv(ws)
        await ws.send("x" * (70 * 1024))
        assert await close_code(ws) == 1009


# ---------------------------------------------------------------- plain HTTP


async def test_healthz_and_metrics_are_on_the_admin_port_only(gateway: Gateway) -> None:
    status, headers, body = await http_get(gateway, "/healthz", admin=True)
    assert (status, orjson.loads(body)["ok"]) == (200, True)
    assert headers["content-type"] == "application/json"
    status, _, body = await http_get(gateway, "/metrics", admin=True)
    assert status == 200
    assert b"careknot_gateway_connections " in body
    assert b"careknot_gateway_rejected_total{reason=" in body
    for path in ("/healthz", "/readyz", "/metrics"):  # not where the public comes
        assert (await http_get(gateway, path))[0] == 404
    assert (await http_get(gateway, "/", admin=True))[0] == 404  # nor the console there


async def test_static_files_and_no_traversal(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<h1>console</h1>")
    (static / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("secret")
    monkeypatch.setattr(web, "STATIC_DIR", static)
    status, headers, body = await http_get(gateway, "/")
    assert (status, headers["content-type"], body) == (
        200,
        "text/html; charset=utf-8",
        b"<h1>console</h1>",
    )
    status, headers, _ = await http_get(gateway, "/app.js")
    assert (status, headers["content-type"].split(";")[0]) == (200, "text/javascript")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/nothing.css", "/..%2fsecret.txt"):
        status, _, body = await http_get(gateway, path)
        assert status == 404, path
        assert b"secret" not in body


CONSOLE_SECTIONS = {
    "alarms-title": "h2",
    "alarms": "ol",
    "alarms-cleared": "ol",
    "alarm-alert": "p",
    "count-alarms": "dd",
    "doses-title": "h2",
    "doses": "ol",
}


async def test_static_console_page_has_every_element_its_script_fills(gateway: Gateway) -> None:
    """The console as served: each element console.js looks up by id is on the page, the
    alarms (with a role=alert region for a new critical one) and the medication list among
    them."""
    status, _, page = await http_get(gateway, "/")
    assert status == 200
    elements = {id_: tag for tag, id_ in re.findall(r'<(\w+)[^>]*\bid="([^"]+)"', page.decode())}
    status, _, script = await http_get(gateway, "/console.js")
    assert status == 200
    looked_up = set(re.findall(r'\bel\("([\w-]+)"\)', script.decode()))
    assert {"alarms", "alarms-cleared", "alarm-alert", "doses"} <= looked_up
    assert looked_up - elements.keys() == set()
    assert {id_: elements.get(id_) for id_ in CONSOLE_SECTIONS} == CONSOLE_SECTIONS
    assert re.search(r'<p id="alarm-alert"[^>]*role="alert"', page.decode())


async def test_family_page_leaflet_and_the_pages_settings(
    gateway: Gateway, settings: Settings
) -> None:
    """The family's page at ``/family``, Leaflet from the console's npm folder (nothing else
    of it), and the map's tiles and the API's URL as configured (``/config.json``)."""
    status, headers, page = await http_get(gateway, "/family")
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert b'src="/family.js"' in page
    status, headers, script = await http_get(gateway, "/vendor/leaflet/leaflet.js")
    assert (status, headers["content-type"].split(";")[0]) == (200, "text/javascript")
    assert b"Leaflet 1.9.4" in script[:200]
    for path in ("/vendor/leaflet/../package.json", "/vendor/leaflet/%2e%2e/%2e%2e/package.json"):
        assert (await http_get(gateway, path))[0] == 404, path
    status, _, body = await http_get(gateway, "/config.json")
    assert status == 200
    assert orjson.loads(body) == {
        "tile_url": settings.console_tile_url,
        "tile_attribution": settings.console_tile_attribution,
        "api_url": f"http://{settings.api_host}:{settings.api_port}",
    }
