"""The protocols' documents are the code's: docs/asyncapi.json and docs/openapi.json are what
``careknot docs`` writes from it (a changed contract fails here until it is run again), they
name every frame the gateway sends or takes and every topic ingest reads, every reason a frame
or a message is refused for is on docs/protocol.md, and every example there is taken (or
written) by the code as it stands."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
from pydantic import BaseModel

from adapters.storage.outbox import OUTBOX_MAXLEN
from adapters.storage.postgres import Who
from careknot import protocol_docs as docs
from careknot.cli import parse
from devices import kinds
from ingest import owntracks
from ingest import parse as ingest_parse
from kernel import contracts
from kernel.errors import RejectedAnswer, RejectedInput
from kernel.settings import Settings
from ws_gateway import connection, conversation, session
from ws_gateway.limits import FrameLimits

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGE = (DOCS / "protocol.md").read_text(encoding="utf-8")
EXAMPLE = re.compile(r"^```(json|text) (\S+)(?: (\S+))?\n(.*?)\n```$", re.M | re.S)
EXAMPLES = [(m[2], m[3], m[4]) for m in EXAMPLE.finditer(PAGE)]
LIMITS = ingest_parse.Limits()


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return docs.documents()


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return docs.asyncapi()


def gateway_messages(asyncapi: dict[str, Any]) -> dict[str, Any]:
    messages: dict[str, Any] = asyncapi["channels"]["gateway"]["messages"]
    return messages


def tags_of(message: dict[str, Any]) -> set[str]:
    return {tag["name"] for tag in message.get("tags", [])}


# ---------------------------------------------------------------- the files are the code's


def test_the_committed_documents_are_what_the_code_gives(generated: dict[str, str]) -> None:
    for name, text in generated.items():
        committed = (DOCS / name).read_text(encoding="utf-8")
        assert committed == text, f"docs/{name} is not the code's: run careknot docs"


def test_the_documents_come_out_the_same_each_time(generated: dict[str, str]) -> None:
    assert docs.documents() == generated
    assert set(generated) == {"asyncapi.json", "openapi.json"}


def test_careknot_docs_writes_them_and_checks_them(
    tmp_path: Path, generated: dict[str, str]
) -> None:
    settings = Settings()
    args = parse(["docs", "--out", str(tmp_path)])
    assert args.func(args, settings) == 0
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()} == generated
    check = parse(["docs", "--out", str(tmp_path), "--check"])
    assert check.func(check, settings) == 0
    (tmp_path / "openapi.json").write_text("{}\n")
    assert check.func(check, settings) == 1
    assert (tmp_path / "openapi.json").read_text() == "{}\n"  # --check writes nothing


def test_every_reference_of_the_asyncapi_document_resolves(asyncapi: dict[str, Any]) -> None:
    def walk(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for value in node.values() for r in walk(value)]
        if isinstance(node, list):
            return [r for value in node for r in walk(value)]
        return []

    refs = walk(asyncapi)
    assert len(refs) > 100
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = asyncapi
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
    assert asyncapi["asyncapi"] == "3.0.0"
    protocols = {server["protocol"] for server in asyncapi["servers"].values()}
    assert protocols == {"ws", "wss", "mqtt", "secure-mqtt"}


# ---------------------------------------------------------------- every frame and topic


def control_frames_written() -> dict[str, list[bytes | str]]:
    """What each of ``ws_gateway.session``'s frame writers writes."""
    claims = docs.claims_of("caregiver")

    def frame(kind: str) -> Any:
        return session.parse_frame(orjson.dumps(docs.sample_frame(kind)))

    commands = ["assign", "resolve", "acknowledge", "clear", "false_alarm", "open_incident"]
    return {
        "hello_frame": [session.hello_frame(claims, "cg:someone", 5, 7)],
        "resync_frame": [session.resync_frame(7, 0)],
        "error_frame": [
            session.error_frame(RejectedInput(session.MALFORMED, "invalid offer_id")),
            session.error_frame(RejectedAnswer(session.UNKNOWN_OFFER, offer_id="off-1")),
        ],
        "ack_frame": [session.ack_frame("off-1")],
        "administration_ack_frame": [session.administration_ack_frame(frame("administration"))],
        "command_ack_frame": [session.command_ack_frame(frame(c), "cmd-1") for c in commands],
        "auth_ok_frame": [session.auth_ok_frame(claims)],
        "PONG": [session.PONG],
    }


def as_control_frame(obj: dict[str, Any]) -> BaseModel:
    """The control frame model ``obj`` is, field for field."""
    for model in docs.CONTROL_FRAMES[obj["type"]]:
        try:
            frame = model.model_validate(obj)
        except ValueError:
            continue
        if frame.model_dump(mode="json", exclude_unset=True) == obj:
            return frame
    raise AssertionError(f"no control frame model is {obj}")


def test_every_frame_the_gateway_writes_is_documented_as_written(
    asyncapi: dict[str, Any],
) -> None:
    messages = gateway_messages(asyncapi)
    written = control_frames_written()
    writers = {name for name in vars(session) if name.endswith("_frame")} - {"parse_frame"}
    assert writers | {"PONG"} == set(written), "a frame writer this test does not call"
    for frames in written.values():
        for raw in frames:
            obj = orjson.loads(raw)
            as_control_frame(obj)
            assert {"gateway", "control"} <= tags_of(messages[obj["type"]])
    # and any frame written by hand anywhere in the gateway
    for source in (ROOT / "ws_gateway").glob("*.py"):
        for kind in re.findall(r'"type":\s*"(\w+)"', source.read_text()):
            assert kind in messages, f"{source.name} writes {kind!r} frames"


def test_every_frame_of_the_streams_is_documented(asyncapi: dict[str, Any]) -> None:
    messages = gateway_messages(asyncapi)
    frames = {
        name: model
        for name, model in vars(contracts).items()
        if name.endswith("Frame") and isinstance(model, type) and issubclass(model, BaseModel)
    }
    assert len(frames) >= 10
    for name, model in frames.items():
        kind = model.model_fields["type"].default
        assert kind in messages, name
        assert {"gateway", "stream"} <= tags_of(messages[kind])
        assert name in str(messages[kind]["payload"])
        assert "Stamp" in str(messages[kind]["payload"])  # seq and epoch
    received = {k for role in docs.ROLES for k in docs.receives(role)}
    assert received == {m.model_fields["type"].default for m in frames.values()}


def test_the_query_documented_is_what_the_gateway_reads(asyncapi: dict[str, Any]) -> None:
    source = (ROOT / "ws_gateway" / "server.py").read_text()
    read = set(re.findall(r'_param\(query, "(\w+)"\)', source))
    assert "token" in read  # read only to refuse it
    query = asyncapi["channels"]["gateway"]["bindings"]["ws"]["query"]
    assert set(query["properties"]) == read - {"token"}


def test_every_frame_has_its_line(asyncapi: dict[str, Any]) -> None:
    messages = gateway_messages(asyncapi)
    assert set(docs.SUMMARIES) == set(messages)
    assert all(message["summary"] for message in messages.values())


def test_every_frame_the_gateway_takes_is_documented(asyncapi: dict[str, Any]) -> None:
    messages = gateway_messages(asyncapi)
    modelled = {
        k for m in get_args(session.Frame) for k in get_args(m.model_fields["type"].annotation)
    }
    assert modelled == session.COMMAND_TYPES
    for kind in session.COMMAND_TYPES:
        assert "client" in tags_of(messages[kind]), kind
        assert session.parse_frame(orjson.dumps(docs.sample_frame(kind))).type == kind


def test_what_each_role_may_send_is_what_the_attack_matrix_tries(
    asyncapi: dict[str, Any],
) -> None:
    from tests.adapters.role_permissions import MAY

    for role in docs.ROLES:
        sends = {
            m["$ref"].rsplit("/", 1)[1] for m in asyncapi["operations"][f"{role}Sends"]["messages"]
        }
        assert "auth" in sends
        if role in MAY:
            assert sends - {"auth"} == MAY[role], role
        received = asyncapi["operations"][f"{role}Receives"]["messages"]
        assert {"hello", "error", "pong", "resync", "auth_ok"} <= {
            m["$ref"].rsplit("/", 1)[1] for m in received
        }


def test_every_topic_ingest_reads_is_a_channel(asyncapi: dict[str, Any]) -> None:
    channels = asyncapi["channels"]
    by_filter = {
        docs.subscription_of(channel["address"]): name
        for name, channel in channels.items()
        if name != "gateway"
    }
    read = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in asyncapi["operations"].values()}
    subscriptions = docs.ingest_subscriptions()
    assert owntracks.SUBSCRIPTION in subscriptions
    assert len(subscriptions) == 6
    for subscription in subscriptions:
        assert subscription in by_filter, subscription
        name = by_filter[subscription]
        assert name in read
        params = set(re.findall(r"\{(\w+)\}", channels[name]["address"]))
        assert set(channels[name]["parameters"]) == params
        assert channels[name]["messages"]
    assert {by_filter[s] for s in subscriptions} == {
        t.channel for t in docs.TOPICS if t.ingest_reads
    }


# ---------------------------------------------------------------- every reason and close


def reasons_raised(modules: list[str], exceptions: set[str]) -> set[str]:
    """The reasons the modules raise ``exceptions`` with, read from their source."""
    found: set[str] = set()
    for name in modules:
        module = importlib.import_module(name)
        source = Path(module.__file__ or "").read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if called not in exceptions:
                continue
            found |= resolved(node.args[0], module)
    return found


def resolved(arg: ast.expr, module: Any) -> set[str]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return {arg.value}
    if isinstance(arg, ast.Name) and isinstance(getattr(module, arg.id, None), str):
        return {getattr(module, arg.id)}
    if isinstance(arg, ast.Name) and arg.id == "reason" and module is ingest_parse:
        return {kinds.UNKNOWN_KIND, kinds.EVENT_NOT_FOR_KIND}  # devices.kinds.event_refusal's
    if isinstance(arg, ast.JoinedStr):  # f"unknown_{who}": each publisher's
        return {
            "".join(str(v.value) if isinstance(v, ast.Constant) else who for v in arg.values)
            for who in get_args(Who)
        }
    raise AssertionError(f"{module.__name__}: a reason not read: {ast.unparse(arg)}")


def documented(reason: str) -> bool:
    return f"| `{reason}` |" in PAGE


def test_every_error_reason_of_the_gateway_is_documented(asyncapi: dict[str, Any]) -> None:
    modules = [f"ws_gateway.{p.stem}" for p in (ROOT / "ws_gateway").glob("*.py")]
    raised = reasons_raised(modules, {"RejectedInput", "RejectedAnswer"})
    raised |= {"rate_limited"}  # OverBudget's own (its first argument is its lane)
    assert set(docs.GATEWAY_REASONS) == raised
    assert set(asyncapi["channels"]["gateway"]["x-error-reasons"]) == raised
    for reason in raised:
        assert documented(reason), reason


def test_every_close_code_of_the_gateway_is_documented(asyncapi: dict[str, Any]) -> None:
    codes = {1001}  # websockets' own, as the gateway stops
    for source in (ROOT / "ws_gateway").glob("*.py"):
        codes |= {int(c) for c in re.findall(r"^CLOSE_\w+ = (\d+)$", source.read_text(), re.M)}
    assert set(docs.CLOSE_CODES) == codes
    assert set(asyncapi["channels"]["gateway"]["x-close-codes"]) == {str(c) for c in codes}
    for code in codes:
        assert f"| {code} |" in PAGE, code


def test_every_reason_ingest_refuses_a_message_for_is_documented(
    asyncapi: dict[str, Any],
) -> None:
    modules = [f"ingest.{p.stem}" for p in (ROOT / "ingest").glob("*.py")]
    raised = reasons_raised(modules, {"RejectedPayload"})
    assert {r.reason for r in docs.MQTT_REFUSALS} == raised
    for reason in raised:
        assert documented(reason), reason
    told = {r["reason"] for c in asyncapi["channels"].values() for r in c.get("x-refused", [])}
    assert told == raised


# ---------------------------------------------------------------- the page's examples


def test_the_page_gives_the_codes_figures() -> None:
    limits, frames = ingest_parse.Limits(), FrameLimits()
    said = [
        f"within {conversation.AUTH_TIMEOUT_S:g} s",
        f"({Settings.model_fields['token_ttl_s'].default} s by default)",
        f"checked every {conversation.TOKEN_CHECK_S:g} s",
        f"over {session.MAX_FRAME_BYTES // 1024} KiB",
        f"({connection.QUEUE_SIZE:,} messages",
        f"the last {OUTBOX_MAXLEN:,} or so messages",
        f"a burst of {frames.burst} frames, refilled at {frames.rate:g} a second",
        f"at most {session.GIVEN_AHEAD_S:g} s ahead",
        f"and {session.GIVEN_BEHIND_S / 3600:g} h behind",
        f"of 1 to {contracts.TELEMETRY_BATCH_MAX} in the order taken",
        f"a payload over {limits.max_payload_bytes:,} bytes",
        f"deeper than {ingest_parse.MAX_DEPTH} levels",
        f"a device's `ts` more than {limits.max_clock_skew_s:g} s",
        f"a phone's `tst` more than {limits.max_fix_ahead_s:g} s",
        f"a device event older than {limits.max_clock_skew_s:g} s",
        f"a telemetry sample older than {ingest_parse.TELEMETRY_MAX_AGE_S / 3600:g} h",
    ]
    for words in said:
        assert words in " ".join(PAGE.split()), words


def test_the_page_says_what_each_role_may_send_and_is_sent() -> None:
    def listed(line: str) -> set[str]:
        found = re.search(rf"^- {re.escape(line)} (.*)$", PAGE, re.M)
        assert found is not None, line
        return set(re.findall(r"`(\w+)`", found[1]))

    for role in docs.ROLES:
        sends = {kind for kind in docs.client_frames() if docs.may_send(role, kind)}
        assert listed(f"**{role}** may send:") == sends, role
        assert listed(f"**{role}** receives:") == set(docs.receives(role)), role


def test_every_json_example_of_the_page_is_checked() -> None:
    assert "```json\n" not in PAGE
    assert len(EXAMPLES) >= 40


def check_frame(kind: str, text: str) -> None:
    obj = orjson.loads(text)
    assert obj["type"] == kind
    if kind in docs.client_frames():
        taken = session.parse_frame(text)
        assert taken.model_dump(mode="json", exclude_unset=True) == obj
    elif kind in docs.outbox_frames():
        stamp = docs.Stamp.model_validate({"seq": obj.pop("seq"), "epoch": obj.pop("epoch")})
        assert stamp.seq > 0
        model = docs.outbox_frames()[kind]
        assert model.model_validate(obj).model_dump(mode="json", exclude_unset=True) == obj
    else:
        frame = as_control_frame(obj)
        if isinstance(frame, docs.ErrorFrame):
            assert frame.reason in docs.GATEWAY_REASONS


def mqtt_payload_name(topic: str, text: str) -> str:
    """What ingest makes of the example: the name of the payload it is."""
    payload = text.encode()
    if owntracks.is_owntracks(topic):
        message = owntracks.parse(topic, payload, LIMITS)
        if isinstance(message, owntracks.OwnTracksLastWill):
            docs.OwnTracksLastWill.model_validate_json(payload)
        return {
            owntracks.OwnTracksLocation: "ownTracksLocation",
            owntracks.OwnTracksLastWill: "ownTracksLastWill",
            owntracks.OwnTracksOther: "ownTracksOther",
        }[type(message)]
    r = ingest_parse.route(topic)
    if r.kind == "presence":
        ingest_parse.parse_presence(topic, payload)
        return "presence"
    obj = orjson.loads(payload) if payload.lstrip().startswith(b"{") else {}
    at = obj.get("ts") or obj.get("tst") or (obj.get("samples") or [{}])[0].get("ts") or 1e9
    now = float(at) + 1.0
    if r.kind == "evt":
        ingest_parse.parse_device_event(r, topic, payload, now, LIMITS)
        return "deviceEvent"
    if r.kind == "tel":
        assert ingest_parse.parse_telemetry(r, topic, payload, now, LIMITS)
        return "telemetryBatch" if "samples" in obj else "telemetryReading"
    if r.kind == "status":
        status = ingest_parse.parse_device_status(r, topic, payload, now, LIMITS)
        return "deviceHeartbeat" if status.status == "heartbeat" else "deviceBirthOrWill"
    ingest_parse.parse_location(r, topic, payload, now, LIMITS)
    return "location"


@pytest.mark.parametrize(("tag", "topic", "text"), EXAMPLES)
def test_each_example_of_the_page_is_what_the_code_takes_or_writes(
    tag: str, topic: str | None, text: str, asyncapi: dict[str, Any]
) -> None:
    side, _, name = tag.partition(":")
    if side == "ws":
        assert name in gateway_messages(asyncapi)
        check_frame(name, text)
        return
    assert side == "mqtt" and topic is not None, tag
    assert mqtt_payload_name(topic, text) == name
    channels = [
        c
        for c in asyncapi["channels"].values()
        if re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(c["address"])), topic)
    ]
    assert len(channels) == 1, topic
    assert name in channels[0]["messages"]


def test_the_page_has_an_example_of_every_frame_and_payload(asyncapi: dict[str, Any]) -> None:
    shown = {tag for tag, _, _ in EXAMPLES}
    for kind in gateway_messages(asyncapi):
        assert f"ws:{kind}" in shown, kind
    for topic in docs.TOPICS:
        for payload in topic.payloads:
            assert f"mqtt:{payload.name}" in shown, payload.name
