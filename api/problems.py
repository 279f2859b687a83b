"""What the API answers when it refuses: a status and a body that says why, the same shape
everywhere (``{"reason": "...", "detail": ...}``), never a 500 for what a client sent."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class Refused(Exception):
    """A request refused with ``status`` and a stable ``reason``."""

    def __init__(
        self, status: int, reason: str, detail: object = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers


def install(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        body = {"reason": exc.reason, "detail": exc.detail}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    async def malformed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(
            {"reason": "malformed", "detail": [_said(e) for e in exc.errors()]}, status_code=400
        )

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(RequestValidationError, malformed)


def _said(error: Any) -> dict[str, object]:
    """A validation error without the value that failed (it may be personal data)."""
    return {"at": [str(p) for p in error.get("loc", ())], "problem": error.get("msg", "")}
