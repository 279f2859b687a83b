"""What the API answers when it refuses: a status and a body that says why, the same shape
everywhere (``{"reason": "...", "detail": ...}``), never a 500 for what a client sent. Every
refusal is counted by status and reason (``app.state.refused``, served as
``careknot_api_refused_total``); a path the API does not have is 404 ``no_such_route``, a
method it does not take there 405 ``method_not_allowed``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

HTTP_REASONS = {404: "no_such_route", 405: "method_not_allowed"}


class Refused(Exception):
    """A request refused with ``status`` and a stable ``reason``."""

    def __init__(
        self, status: int, reason: str, detail: object = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers


def install(app: FastAPI) -> None:
    refused: Counter[tuple[int, str]] = Counter()
    app.state.refused = refused

    def answer(status: int, reason: str, detail: object, headers: Any = None) -> JSONResponse:
        refused[(status, reason)] += 1
        body = {"reason": reason, "detail": detail}
        return JSONResponse(body, status_code=status, headers=headers)

    async def refusal(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        return answer(exc.status, exc.reason, exc.detail, exc.headers)

    async def malformed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return answer(400, "malformed", [_said(e) for e in exc.errors()])

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        reason = HTTP_REASONS.get(exc.status_code, f"http_{exc.status_code}")
        return answer(exc.status_code, reason, request.url.path, exc.headers)

    app.add_exception_handler(Refused, refusal)
    app.add_exception_handler(RequestValidationError, malformed)
    app.add_exception_handler(HTTPException, http)


def _said(error: Any) -> dict[str, object]:
    """A validation error without the value that failed (it may be personal data)."""
    return {"at": [str(p) for p in error.get("loc", ())], "problem": error.get("msg", "")}
