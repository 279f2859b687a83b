"""The API answers the gateway's web pages across origins, and no other page: a preflight from an
allowed origin is answered with the methods and headers a page may use, one from elsewhere gets
none of it; an answer read by a page tells it the ``ETag`` to write against. And ``/config.json``
gives the pages the API's URL as they can reach it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.cors import page_origins
from kernel.settings import Settings
from ws_gateway.web import api_url

GATEWAY = "http://127.0.0.1:8765"


def _settings(**changes: object) -> Settings:
    base = {"development": True, "gateway_host": "127.0.0.1", "gateway_port": 8765}
    return Settings(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    """The app alone, its lifespan not entered: a preflight touches no server."""
    transport = httpx.ASGITransport(app=create_app(_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


def _preflight(origin: str, method: str = "PUT") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,if-match",
    }


async def test_a_preflight_from_the_gateways_page_is_answered(api: httpx.AsyncClient) -> None:
    for origin in (GATEWAY, "http://localhost:8765"):
        answer = await api.options("/v1/agencies/a1/visits/v1", headers=_preflight(origin))
        assert answer.status_code == 200, origin
        assert answer.headers["access-control-allow-origin"] == origin
        allowed = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
        assert {"GET", "PUT", "POST", "DELETE"} <= allowed
        headers = answer.headers["access-control-allow-headers"].lower()
        for name in ("authorization", "content-type", "if-match", "if-none-match"):
            assert name in headers
        assert "idempotency-key" in headers
        assert "access-control-allow-credentials" not in answer.headers


async def test_a_preflight_from_another_page_is_not(api: httpx.AsyncClient) -> None:
    for origin in ("https://evil.example", "http://127.0.0.1:9999", "http://127.0.0.1:87650"):
        answer = await api.options("/v1/agencies/a1/visits/v1", headers=_preflight(origin))
        assert answer.status_code == 400, origin
        assert "access-control-allow-origin" not in answer.headers


async def test_a_pages_read_is_let_through_with_its_etag(api: httpx.AsyncClient) -> None:
    mine = await api.get("/openapi.json", headers={"Origin": GATEWAY})
    assert mine.headers["access-control-allow-origin"] == GATEWAY
    assert mine.headers["access-control-expose-headers"] == "ETag"
    theirs = await api.get("/openapi.json", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in theirs.headers


def test_the_allowed_pages_are_the_gateways_origins_when_named() -> None:
    named = _settings(gateway_origins="https://desk.example.org, https://family.example.org/")
    assert page_origins(named) == (["https://desk.example.org", "https://family.example.org"], None)
    origins, pattern = page_origins(_settings(gateway_host="10.0.0.5"))
    assert origins == [] and pattern is not None
    assert "10\\.0\\.0\\.5" in pattern and pattern.startswith("http://")
    _, anywhere = page_origins(_settings(gateway_host="0.0.0.0"))
    assert anywhere is not None and "0\\.0\\.0\\.0" not in anywhere


def test_the_pages_are_given_the_apis_url_as_they_reach_it() -> None:
    assert api_url(_settings(api_port=8780), "127.0.0.1:8765") == "http://127.0.0.1:8780"
    every = _settings(api_host="0.0.0.0", api_port=8780)
    assert api_url(every, "desk.example.org:8765") == "http://desk.example.org:8780"
    assert api_url(every, "[::1]:8765") == "http://[::1]:8780"
    proxied = _settings(public_api_url="https://api.example.org/")
    assert api_url(proxied, "desk.example.org") == "https://api.example.org"
