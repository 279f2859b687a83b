"""How the hostile-input test of the HTTP API makes its requests and judges the answers: the
API's OpenAPI document (:data:`ROUTES`), the agency the requests aim at (:data:`OWN`, the ids of
its records, kept current by the test as it makes them again), hypothesis strategies drawn from
each route's document (:func:`requests_of`: values a schema allows, and hostile ones in one
part of a request), and the checks of an answer (:func:`refusal_is_a_reason`,
:func:`answer_is_not_as_documented`, the latter with a small JSON-schema validator for what
the API's pydantic models write, :func:`misfit`).
"""

from __future__ import annotations

import functools
import json
import math
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as dt_time
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
from hypothesis import strategies as st

from api.app import create_app
from devices.kinds import KINDS
from kernel.settings import Settings
from tests.adapters.api_routes import operations, path_params

TAG = uuid.uuid4().hex[:6]
AGENCY = f"hx-{TAG}"
CG, PATIENT, DEVICE = f"{AGENCY}.cg", f"{AGENCY}.p", f"{AGENCY}.fd"
OWN = path_params(AGENCY, user=f"hx{TAG}")
"""A path parameter's or an id field's value that names the agency's own record, so input gets
past the lookups to what is done with it (the ids the records were given on their making, and a
device's after one is decommissioned); a parameter not here is drawn from its schema."""


DOCUMENT: dict[str, Any] = create_app(
    Settings(token_keys=f"hx:{secrets.token_urlsafe(32)}")
).openapi()
"""The API's OpenAPI document (of an app on a throwaway key: it does not depend on settings)."""
ROUTES: dict[tuple[str, str], dict[str, Any]] = operations(DOCUMENT)
"""Every (method, path) the API has, and its operation: parameters, request body."""
COMPONENTS: dict[str, Any] = DOCUMENT["components"]

# ---------------------------------------------------------------- values a schema allows


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:  # noqa: PLR0911
    """Values the JSON schema allows, for the keywords the API's pydantic models write (types,
    bounds, lengths, patterns, the formats date-time, date and time, enums, ``anyOf``,
    ``$ref`` to the document's components, properties required or not); a keyword it does not
    know draws as it can, the route then refusing what does not hold."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: from_schema(COMPONENTS["schemas"][name]))
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return json_object(schema)
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {})),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
        )
    if kind == "string":
        return string(schema)
    if kind in ("number", "integer"):
        low, high = schema.get("minimum"), schema.get("maximum")
        low = schema.get("exclusiveMinimum", low)
        if kind == "integer":
            return st.integers(low, high).filter(lambda n: n != schema.get("exclusiveMinimum"))
        return st.floats(low, high, allow_nan=False, allow_infinity=False).filter(
            lambda n: n != schema.get("exclusiveMinimum")
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))


CALENDAR_ENDS = [
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59.999999Z",
]
"""Moments at the ends of the calendar: the first two are before its start in UTC, the third
after its end."""
NEAR = datetime(2031, 1, 1, tzinfo=UTC)
"""The day the module's records are on (its shift, its visit): times near it meet them."""
NEAR_TIMES = st.builds(
    lambda minutes, zone: (NEAR + timedelta(minutes=minutes)).astimezone(zone).isoformat(),
    st.integers(-12 * 60, 12 * 60),
    st.sampled_from([UTC, ZoneInfo("Europe/London"), ZoneInfo("Pacific/Kiritimati")]),
)
FIRST, LAST = datetime(1900, 1, 2), datetime(2999, 12, 30)
"""The times the API takes (``api.windows``), a day within them either side."""
FORMATS: dict[str, st.SearchStrategy[str]] = {
    "date-time": st.one_of(
        st.sampled_from(CALENDAR_ENDS),
        NEAR_TIMES,
        NEAR_TIMES,
        st.datetimes(FIRST, LAST, timezones=st.timezones()).map(lambda t: t.isoformat()),
        st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    ),
    "date": st.one_of(
        st.sampled_from(["0001-01-01", "9999-12-31", NEAR.date().isoformat()]),
        st.dates(FIRST.date(), LAST.date()).map(lambda d: d.isoformat()),
        st.dates().map(lambda d: d.isoformat()),
    ),
    "time": st.times().map(lambda t: t.isoformat(timespec="minutes")),
}


def string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if "format" in schema and schema["format"] in FORMATS:
        return FORMATS[schema["format"]]
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda t: schema.get("minLength", 0) <= len(t) <= schema.get("maxLength", 10**9)
        )
    return st.text(min_size=low, max_size=max(low, high))


def json_object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    given = {k: from_schema(v) for k, v in properties.items() if k in required}
    optional = {k: from_schema(v) for k, v in properties.items() if k not in required}
    return st.fixed_dictionaries(given, optional=optional)


# ---------------------------------------------------------------- hostile values


class Raw(bytes):
    """JSON text written as it is: what no encoder writes (NaN, 1e400, nesting 10,000 deep...)."""


def encode(value: Any) -> bytes:
    """``value`` as JSON text, its :class:`Raw` parts as they are."""
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, dict):
        return b"{" + b",".join(encode(str(k)) + b":" + encode(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


EDGE_TEXTS = [
    "",
    " ",
    "NaN",
    "Infinity",
    "-1",
    "0",
    "1e400",
    "9" * 400,
    "true",
    "null",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-23:59",
    "2031-01-01T09:00:00",
    "2031-02-30T09:00:00Z",
    "0001-01-01",
    "9999-12-31",
    "24:00",
    "23:59:60",
    "Mars/Olympus",
    "/etc/passwd",
    "../../etc/localtime",
    "Europe/../../etc/passwd",
    "UTC",
    "Etc/GMT+14",
    "localtime",
    "\x00",
    "a\x00b",
    "\u202e\ufeff",
    "\u00b9",  # a digit to str.isdigit(), not to int()
    "\u0661\u0662",  # Arabic-Indic twelve: a number to int(), not ASCII
    "😀" * 50,
    "x" * 5_000,
    "%s%n",
    "' OR 1=1 --",
    "*",
    '"',
]
"""Texts that broke something somewhere once: calendar ends, time zones that are paths, NULs,
digits not ASCII."""

RAW_NUMBERS = [
    Raw(b"NaN"),
    Raw(b"Infinity"),
    Raw(b"-Infinity"),
    Raw(b"1e400"),
    Raw(b"-1e400"),
    Raw(b"1e-400"),
    Raw(b"-0.0"),
    Raw(b'"\\ud800"'),  # a lone surrogate
]
NUMBERS: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, -(2**63) - 1, 2**31, -1, 0, 10**30, -(10**30), 10**400]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(RAW_NUMBERS),
)
LEAVES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.sampled_from(EDGE_TEXTS),
    st.just("x" * 100_000),
    st.text(max_size=40),
)


def deep(depth: int, array: bool) -> Raw:
    return Raw((b"[" * depth + b"]" * depth) if array else (b'{"a":' * depth + b"1" + b"}" * depth))


DEEP = st.builds(deep, st.sampled_from([64, 1_000, 100_000]), st.booleans())
POSITIONS = st.lists(
    st.lists(st.one_of(st.floats(), NUMBERS), min_size=0, max_size=3), min_size=0, max_size=6
)
GEOJSON = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Polygon", "MultiPolygon", "Point", "", "Feature"]),
        "coordinates": st.one_of(
            st.lists(POSITIONS, max_size=3), st.lists(st.lists(POSITIONS, max_size=2), max_size=2)
        ),
    }
)
"""Shapes that look like GeoJSON: rings open, short, of NaN and huge numbers, nested wrong."""
HOSTILE: st.SearchStrategy[Any] = st.recursive(
    st.one_of(LEAVES, DEEP, GEOJSON),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)

# ---------------------------------------------------------------- requests


@dataclass(slots=True)
class Hostile:
    """One request: its method, path, query, headers and body, and who sends it."""

    method: str
    path: str
    template: str
    caller: str = "admin"
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, bytes] = field(default_factory=dict)
    content: bytes | None = None

    def __repr__(self) -> str:
        def short(value: object) -> str:
            text = repr(value)
            return text if len(text) < 300 else f"{text[:200]}...({len(text)} characters)"

        return (
            f"Hostile({self.method} {short(self.path)} as {self.caller},"
            f" params={short(self.params)}, headers={short(self.headers)},"
            f" content={short(self.content)})"
        )


RAW_SEGMENTS = ["%2F", "a%2Fb", "%00", "a%00b", "%2e%2e", "..", ".", "%ZZ", "%c3%28", "%", "a;b=c"]
"""Path segments sent as they are: encoded slashes and NULs, dots, bad escapes, bad UTF-8."""


def segment(name: str, schema: dict[str, Any], hostile: bool) -> st.SearchStrategy[str]:
    """A path parameter: the agency's own resource (or, for a parameter the API gained since,
    one its schema allows); when ``hostile``, an odd segment."""
    own = OWN.get(name)
    good = st.just(own) if own is not None else from_schema(schema).map(str)
    if not hostile:
        return good.map(lambda s: quote(s, safe=""))
    return st.one_of(
        st.sampled_from(RAW_SEGMENTS),
        st.sampled_from([*EDGE_TEXTS, "x" * 129, "-lead", f"{own}."]).map(
            lambda s: quote(s, safe="")
        ),
        st.text(max_size=64).map(lambda s: quote(s, safe="")),
        st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,30}\Z").map(lambda s: f"{AGENCY}.{s}"),
    )


def query_value(schema: dict[str, Any], hostile: bool) -> st.SearchStrategy[list[str]]:
    """A query parameter's values: none or as its schema says; when ``hostile``, junk too,
    once or repeated."""

    def as_text(value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, bool):
            return [str(value).lower()]
        if isinstance(value, list):
            return [t for v in value for t in as_text(v)]
        return [str(value)]

    good: st.SearchStrategy[list[str]] = st.one_of(st.just([]), from_schema(schema).map(as_text))
    if not hostile:
        return good
    return st.one_of(
        good,
        st.lists(st.one_of(st.sampled_from(EDGE_TEXTS), st.text(max_size=30)), max_size=3),
        NUMBERS.map(lambda n: [n.decode() if isinstance(n, bytes) else str(n)]),
    )


HEADER_JUNK = st.one_of(
    st.sampled_from(['"any"', "*", "W/*", '"', "", "*, *", " " * 3, "x" * 10_000]).map(
        lambda s: s.encode()
    ),
    st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x20 or c == 0x09)),
)
"""Header values as an HTTP parser would pass them on: any bytes but controls other than tab."""


def mutated(document: Any, replacement: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``document`` with one place in it (a field anywhere, an item, the whole) replaced,
    removed, or joined by an unknown field."""
    places: list[tuple[Any, ...]] = [()]

    def walk(node: Any, at: tuple[Any, ...]) -> None:
        children = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in children:
            places.append((*at, key))
            walk(child, (*at, key))

    walk(document, ())

    def put(place: tuple[Any, ...], how: str, value: Any) -> Any:
        if not place:
            return (
                value
                if how != "extra" or not isinstance(document, dict)
                else {
                    **document,
                    "unknown_field": value,
                }
            )
        copy = json.loads(json.dumps(document))
        parent = copy
        for key in place[:-1]:
            parent = parent[key]
        last = place[-1]
        if how == "drop":
            del parent[last]
        elif how == "extra" and isinstance(parent, dict):
            parent[f"{last}_unknown"] = value
        else:
            parent[last] = value
        return copy

    return st.builds(
        put, st.sampled_from(places), st.sampled_from(["set", "set", "drop", "extra"]), replacement
    )


def with_own_ids(document: Any) -> Any:
    """The document with its ids (``patient_id``, ``caregiver_id``...) the agency's own, and
    fields the API knows the values of (a device's kind, a time zone) mostly known ones, so a
    body drawn from the schema gets past 'unknown patient' to what the route does with it."""
    if isinstance(document, dict):
        return {
            k: OWN[k]
            if k in OWN and k.endswith("_id") and isinstance(v, str)
            else KNOWN[k][len(v) % len(KNOWN[k])]
            if k in KNOWN and isinstance(v, str) and len(v) % 4
            else with_own_ids(v)
            for k, v in document.items()
        }
    if isinstance(document, list):
        return [with_own_ids(v) for v in document]
    return document


KNOWN = {
    "kind": sorted(KINDS),
    "zone": ["Europe/London", "UTC", "Pacific/Kiritimati"],
}
"""Values of the fields of those names the API knows, drawn three times in four."""

JSON_TYPES = [
    "application/json",
    "application/json",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/merge-patch+json",
    "",
]
RAW_BODIES = [
    b"",
    b"{",
    b'{"name":',
    b"{}garbage",
    b'{"name": "\xff\xfe"}',
    b"\xef\xbb\xbf{}",
    b"\xff" * 64,
    b'{"a": 1, "a": 2}',
    b"[" * 100_000,
    b'"' + b"x" * 100_000 + b'"',
]


def json_body(
    schema: dict[str, Any], aspect: str, fields: st.SearchStrategy[dict[str, Any]] | None = None
) -> st.SearchStrategy[tuple[bytes, str]]:
    """A JSON route's body and content type: as its schema says (``fields`` over what it
    draws, where the route's rules between fields are more than its schema says); with a
    field anywhere in it made hostile (``field``); or anything at all (``body``, ``all``)."""
    valid = from_schema(schema).map(with_own_ids)
    if fields is not None:
        valid = st.builds(lambda drawn, given: {**drawn, **given}, valid, fields)
    if aspect == "field":
        return st.tuples(valid.flatmap(lambda d: mutated(d, HOSTILE)).map(encode), JSON)
    if aspect not in ("body", "all"):
        return st.tuples(valid.map(encode), JSON)
    documents = st.one_of(
        valid, valid.flatmap(lambda d: mutated(d, HOSTILE)), st.just({}), HOSTILE
    ).map(encode)
    raw = st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=100))
    return st.tuples(st.one_of(documents, raw), st.sampled_from(JSON_TYPES))


JSON = st.just("application/json")

# ---------------------------------------------------------------- valid bases


def stretch(starts: str, ends: str, minutes: tuple[int, int]) -> st.SearchStrategy[dict[str, str]]:
    """A stretch of time near :data:`NEAR` as two fields, its end after its start by
    ``minutes`` (a range), each written in one of a few time zones."""
    zones: st.SearchStrategy[tzinfo] = st.sampled_from(
        [UTC, ZoneInfo("Europe/London"), ZoneInfo("Pacific/Kiritimati")]
    )

    def written(start: int, length: int, zone: tzinfo, other: tzinfo) -> dict[str, str]:
        begins = NEAR + timedelta(minutes=start)
        ends_at = (begins + timedelta(minutes=length)).astimezone(other)
        return {starts: begins.astimezone(zone).isoformat(), ends: ends_at.isoformat()}

    return st.builds(written, st.integers(-12 * 60, 12 * 60), st.integers(*minutes), zones, zones)


HOME = {"lat": 53.8, "lon": -1.55}
"""Where the agency's patient lives, kept current by the test (a route may move her home)."""
METRES_A_DEGREE = 111_320.0


def ring_about_home(east: float, north: float, radius: float, corners: int) -> list[list[float]]:
    """A closed ring of ``corners`` about a point ``east``/``north`` metres from her home."""
    lat, lon = HOME["lat"], HOME["lon"]
    across = METRES_A_DEGREE * max(math.cos(math.radians(lat)), 0.01)
    ring = [
        [
            lon + (east + radius * math.cos(2 * math.pi * k / corners)) / across,
            lat + (north + radius * math.sin(2 * math.pi * k / corners)) / METRES_A_DEGREE,
        ]
        for k in range(corners)
    ]
    return [*ring, ring[0]]


POLYGONS = st.builds(
    lambda ring, multi: (
        {"type": "MultiPolygon", "coordinates": [[ring]]}
        if multi
        else {"type": "Polygon", "coordinates": [ring]}
    ),
    st.builds(
        ring_about_home,
        st.floats(-300, 300),
        st.floats(-300, 300),
        st.floats(5, 1_500),
        st.integers(3, 24),
    ),
    st.booleans(),
)
"""Small valid polygons about her home: convex rings, closed, of a sane size."""
FENCES = st.one_of(
    st.builds(lambda r: {"radius_m": r, "polygon": None}, st.floats(0.5, 2_000)),
    POLYGONS.map(lambda polygon: {"radius_m": None, "polygon": polygon}),
)
VISITS = st.builds(
    lambda times: {"patient_id": PATIENT, "caregiver_id": CG, **times},
    stretch("starts_at", "ends_at", (15, 240)),
)
AGENCY_ROUTE = "/v1/agencies/{agency_id}"
VALID_FIELDS: dict[tuple[str, str], st.SearchStrategy[dict[str, Any]]] = {
    ("PUT", f"{AGENCY_ROUTE}/visits/{{visit_id}}"): VISITS,
    ("PUT", f"{AGENCY_ROUTE}/patients/{{patient_id}}/fence"): FENCES,
    ("POST", f"{AGENCY_ROUTE}/caregivers/{{caregiver_id}}/shifts"): stretch(
        "starts_at", "ends_at", (15, 24 * 60)
    ),
}
"""The fields of a route's body drawn as its rules between them say (an end after its start,
the agency's own patient, a fence about her home), over those drawn from its schema: the
valid base a hostile field is put in, so that most bodies get past the route's checks."""
VALID_QUERIES: dict[tuple[str, str], st.SearchStrategy[dict[str, str]]] = {
    ("GET", f"{AGENCY_ROUTE}/visit-report"): stretch("since", "until", (1, 93 * 24 * 60)),
}
"""The same for a route's query: the parameters drawn together, over those drawn alone."""
CSV_COLUMNS = ["visit_id", "patient_id", "caregiver_id", "starts_at", "ends_at", "service", "tasks"]
CSV_CELLS = st.one_of(
    st.sampled_from([*EDGE_TEXTS, PATIENT, CG, "2031-01-01T09:00:00Z", "a;b;c", "18" * 10]),
    st.text(max_size=20),
)


def csv_body(aspect: str) -> st.SearchStrategy[tuple[bytes, str]]:
    """A CSV route's body: a header of the columns (some, shuffled, doubled, unknown) and rows
    of cells good and bad, quoted wrong, not UTF-8; and its content type."""
    header = st.lists(st.sampled_from([*CSV_COLUMNS, "version", "", "x"]), max_size=10)
    rows = st.lists(st.lists(CSV_CELLS, max_size=9), max_size=6)

    def text(head: list[str], body: list[list[str]]) -> bytes:
        lines = [",".join(head)] + [",".join(row) for row in body]
        return "\n".join(lines).encode("utf-8", "surrogatepass")

    good = st.builds(text, st.just(CSV_COLUMNS), rows)
    if aspect not in ("field", "body", "all"):
        return st.tuples(good, st.just("text/csv"))
    files = st.one_of(
        good,
        st.builds(text, header, rows),
        st.sampled_from(RAW_BODIES),
        st.binary(max_size=200),
        st.just(b'visit_id,"unterminated\n' + b"x" * 1000),
        st.just(b"\x00" * 100),
    )
    content_type = st.sampled_from(
        ["text/csv", "text/csv", "text/csv; charset=utf-8", "application/json", "", "text/plain"]
    )
    return st.tuples(files, content_type)


CURRENT = b"<the current ETag>"
"""An ``If-Match`` sent as the ETag a ``GET`` of the same path gives when it is sent, so a
write gets past its precondition to what it writes."""


ASPECTS = ["none", "field", "field", "field", "body", "body", "query", "path", "headers", "all"]
"""What of a request is made hostile, the rest of it as the route's schema says: so that most
requests get past the checks of the rest to where the hostile part is used."""


Parameters = list[dict[str, Any]]
"""A route's parameters, as its operation in the document lists them."""


@functools.cache
def requests_of(route: tuple[str, str]) -> st.SearchStrategy[Hostile]:
    """The requests the route is sent: one aspect of each (:data:`ASPECTS`) made hostile, the
    rest as the route's document says."""
    method, template = route
    operation = ROUTES[route]
    parameters: Parameters = operation.get("parameters", [])
    body = operation.get("requestBody", {}).get("content", {})

    @st.composite
    def draw(draw: st.DrawFn) -> Hostile:
        aspect = draw(st.sampled_from(ASPECTS))
        one = Hostile(method, path_drawn(draw, template, parameters, aspect), template)
        query_drawn(draw, one, parameters, aspect)
        headers_drawn(draw, one, parameters, aspect)
        body_drawn(draw, one, body, aspect)
        return one

    return draw()


def path_drawn(draw: st.DrawFn, template: str, parameters: Parameters, aspect: str) -> str:
    """The path: each parameter a segment, odd at random when the path is the hostile aspect."""
    path = template
    for p in (p for p in parameters if p["in"] == "path"):
        odd = aspect in ("path", "all") and draw(st.booleans())
        path = path.replace("{" + p["name"] + "}", draw(segment(p["name"], p["schema"], odd)))
    return path


def query_drawn(draw: st.DrawFn, one: Hostile, parameters: Parameters, aspect: str) -> None:
    """The query's values, junk too and an unknown parameter when it is the hostile aspect."""
    junk = aspect in ("query", "all")
    route = (one.method, one.template)
    valid = draw(VALID_QUERIES[route]) if route in VALID_QUERIES else {}
    for p in (p for p in parameters if p["in"] == "query"):
        if p["name"] in valid and not (junk and draw(st.booleans())):
            one.params.append((p["name"], valid[p["name"]]))
        else:
            one.params += [(p["name"], v) for v in draw(query_value(p["schema"], junk))]
    if junk and draw(st.booleans()):
        one.params.append((draw(st.text(min_size=1, max_size=8)), draw(st.text(max_size=8))))


def headers_drawn(draw: st.DrawFn, one: Hostile, parameters: Parameters, aspect: str) -> None:
    """The header parameters, none or as their schema says (an ``If-Match`` mostly
    :data:`CURRENT`, else none: an ETag of its schema's text is one that does not hold); junk
    too, and an ``If-Match`` of any text, when they are the hostile aspect."""
    hostile = aspect in ("headers", "all")
    for p in (p for p in parameters if p["in"] == "header"):
        drawn: st.SearchStrategy[Any] = st.one_of(st.none(), from_schema(p["schema"]))
        good = drawn
        if p["name"].lower() == "if-match":  # the simplest first
            good = st.one_of(st.just(CURRENT), st.just(CURRENT), st.none())
            drawn = st.one_of(good, drawn)
        value = draw(st.one_of(drawn, HEADER_JUNK) if hostile else good)
        if value is not None:
            one.headers[p["name"]] = value if isinstance(value, bytes) else str(value).encode()


def body_drawn(draw: st.DrawFn, one: Hostile, body: dict[str, Any], aspect: str) -> None:
    """The body and its content type, of the type the route takes (JSON, CSV); where it takes
    none, one all the same when the body is the hostile aspect."""
    drawn: tuple[bytes, str] | None = None
    if "application/json" in body:
        fields = VALID_FIELDS.get((one.method, one.template))
        drawn = draw(json_body(body["application/json"]["schema"], aspect, fields))
    elif "text/csv" in body:
        drawn = draw(csv_body(aspect))
    elif aspect in ("body", "all"):  # a body where none is taken
        drawn = draw(json_body({}, aspect))
    if drawn is not None:
        one.content, content_type = drawn
        if content_type:
            one.headers["content-type"] = content_type.encode()


BODIES = {"application/json", "text/csv"}
"""The bodies a request is drawn with (``json_body``, ``csv_body``)."""
PLACES = {"path", "query", "header"}
"""Where a parameter is drawn (``segment``, ``query_value``, the headers)."""


async def send(
    api: httpx.AsyncClient, tokens: dict[str, dict[str, str]], one: Hostile
) -> httpx.Response:
    """The request sent as it is (its path not normalised, its headers as bytes), with its
    caller's bearer."""
    headers = {k.encode(): v.encode() for k, v in tokens[one.caller].items()}
    headers.update((k.encode(), v) for k, v in one.headers.items())
    url = httpx.URL("http://api" + one.path, params=one.params)
    return await api.request(one.method, url, headers=headers, content=one.content)


# ---------------------------------------------------------------- answers refused


def refusal_is_a_reason(answer: httpx.Response) -> str | None:
    """What is wrong with an answer (None: nothing): a 5xx, or a 4xx not ``{reason, detail}``."""
    status = answer.status_code
    if status >= 500:
        return f"{status}: {answer.text[:300]}"
    if status < 400:
        return None
    try:
        body = answer.json()
    except ValueError:
        return f"{status} not JSON: {answer.text[:300]}"
    if not isinstance(body, dict) or set(body) != {"reason", "detail"}:
        return f"{status} not {{reason, detail}}: {answer.text[:300]}"
    if not isinstance(body["reason"], str) or not re.fullmatch(r"[a-z0-9_]+", body["reason"]):
        return f"{status} reason not a word: {body['reason']!r}"
    return None


# ---------------------------------------------------------------- answers as documented

ANNOTATIONS = {"title", "description", "default", "examples", "discriminator", "deprecated"}
CHECKED = {
    "$ref", "anyOf", "enum", "const", "type", "properties", "required", "additionalProperties",
    "items", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum",
}  # fmt: skip
"""The keywords of what pydantic writes that :func:`misfit` judges, and those it passes over."""
TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
PARSE_FORMAT: dict[str, Callable[[str], object]] = {
    "date-time": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": dt_time.fromisoformat,
}

BOUNDS: dict[str, Callable[[float, float], bool]] = {
    "minimum": lambda v, b: v >= b,
    "maximum": lambda v, b: v <= b,
    "exclusiveMinimum": lambda v, b: v > b,
    "exclusiveMaximum": lambda v, b: v < b,
}


def misfit(value: Any, schema: dict[str, Any], at: str = "$") -> str | None:  # noqa: PLR0911, PLR0912
    """Where ``value`` (a JSON document) does not hold to ``schema`` (None: it does), for the
    keywords of what the API's pydantic models write; a keyword it does not know fails it."""
    unknown = set(schema) - CHECKED - ANNOTATIONS
    if unknown:
        return f"{at}: keywords {sorted(unknown)} not judged here"
    if "$ref" in schema:
        return misfit(value, COMPONENTS["schemas"][schema["$ref"].rsplit("/", 1)[-1]], at)
    if "anyOf" in schema and all(misfit(value, s, at) for s in schema["anyOf"]):
        return f"{at}: {short(value)} none of {schema['anyOf']}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{at}: {short(value)} not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        return f"{at}: {short(value)} not {schema['const']!r}"
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(TYPES[k](value) for k in kinds):
        return f"{at}: {short(value)} not {'|'.join(kinds)}"
    if isinstance(value, dict):
        missing = set(schema.get("required", [])) - set(value)
        if missing:
            return f"{at}: {sorted(missing)} missing"
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        for key, item in value.items():
            if key not in properties and extra is False:
                return f"{at}.{key}: not in the schema"
            inner = properties.get(key, extra if isinstance(extra, dict) else {})
            wrong = misfit(item, inner, f"{at}.{key}")
            if wrong:
                return wrong
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return f"{at}: {len(value)} items"
        for n, item in enumerate(value):
            wrong = misfit(item, schema.get("items", {}), f"{at}[{n}]")
            if wrong:
                return wrong
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return f"{at}: {len(value)} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{at}: {short(value)} not /{schema['pattern']}/"
        if schema.get("format") in PARSE_FORMAT:
            try:
                PARSE_FORMAT[schema["format"]](value)
            except ValueError:
                return f"{at}: {short(value)} not a {schema['format']}"
    if TYPES["number"](value):
        for keyword, holds in BOUNDS.items():
            if keyword in schema and not holds(value, schema[keyword]):
                return f"{at}: {value} against {keyword} {schema[keyword]}"
    return None


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 120 else f"{text[:100]}...({len(text)} characters)"


def answer_is_not_as_documented(route: tuple[str, str], answer: httpx.Response) -> str | None:
    """What is wrong with a 2xx answer (None: nothing): a status the route's document does
    not list, or a JSON body not as its schema there (a status listed with no body's schema
    of its own, such as a 201 beside the 200, has the route's 2xx one)."""
    if not answer.is_success:
        return None
    responses: dict[str, Any] = ROUTES[route]["responses"]
    if str(answer.status_code) not in responses:
        return f"{answer.status_code} not among {sorted(responses)}"
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return None
    documented = [responses[str(answer.status_code)]] + [
        r for s, r in sorted(responses.items()) if s.startswith("2")
    ]
    schemas = [
        r["content"]["application/json"]["schema"]
        for r in documented
        if "schema" in r.get("content", {}).get("application/json", {})
    ]
    if not schemas:
        return None
    wrong = misfit(answer.json(), schemas[0])
    return None if wrong is None else f"{answer.status_code} not as documented: {wrong}"
