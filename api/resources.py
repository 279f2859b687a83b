"""What every resource of the API shares: ids as paths take them, a version (``ETag``) of what
a client reads, and the precondition a write is made on (``If-Match``, ``If-None-Match: *``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

import orjson
from fastapi import Header, Path, Query, Request, Response
from pydantic import BaseModel, Field

from adapters.storage.directory import Directory
from api.problems import Refused

ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
TEXT = r"^[^\x00]*$"
"""Text the record can keep: anything but NUL (U+0000), which no Postgres text nor JSON holds."""
AgencyId = Annotated[str, Path(pattern=ID, description="the agency's id")]
PAGE_MAX = 500
PRECONDITION_RESPONSES: dict[int | str, dict[str, str]] = {
    412: {"description": "changed since the version given"},
    428: {"description": "changing it needs If-Match"},
}
"""What a write made against a version may answer (``Precondition.refuse``)."""
WRITE_RESPONSES: dict[int | str, dict[str, str]] = {
    201: {"description": "created"},
    409: {"description": "the id is another agency's"},
    **PRECONDITION_RESPONSES,
}
IfMatch = Annotated[str | None, Header(description="the ETag the change is made on")]
IfNoneMatch = Annotated[str | None, Header(description="* to create only")]

T = TypeVar("T")
Shown = TypeVar("Shown", bound=BaseModel)
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description="at most this many")]
After = Annotated[str, Query(max_length=128, pattern=TEXT, description="the previous page's next")]


class Page(BaseModel, Generic[Shown]):
    items: list[Shown]
    next: str | None = Field(description="pass as ?after= for the next page; null: the last")


def page(rows: Sequence[T], limit: int, shown: Callable[[T], Shown]) -> Page[Shown]:
    """A page of ``rows`` read ``limit + 1`` at a time: one more than shown says there is a
    next page, which starts after the last id shown."""
    items = [shown(r) for r in rows[:limit]]
    after = getattr(items[-1], "id", None) if len(rows) > limit and items else None
    return Page[Shown](items=items, next=after)


def directory(request: Request) -> Directory:
    return Directory(request.app.state.db)


def versioned(
    response: Response, found: T | None, shown: Callable[[T], Shown], unknown: str, what: str
) -> Shown:
    """One resource as read, its ``ETag`` set; 404 ``unknown`` when there is none."""
    if found is None:
        raise Refused(404, unknown, what)
    out = shown(found)
    response.headers["ETag"] = etag(out)
    return out


def etag(shown: BaseModel) -> str:
    """The version of what a client reads: a digest of the resource as shown."""
    body = orjson.dumps(shown.model_dump(), option=orjson.OPT_SORT_KEYS)
    return f'"{hashlib.sha256(body).hexdigest()[:20]}"'


class Precondition:
    """A write's precondition from its headers, judged on the resource as it stands (shown as
    the client would read it); ``refuse`` says why it did not hold."""

    def __init__(self, if_match: str | None, if_none_match: str | None) -> None:
        self._if_match, self._if_none_match = if_match, if_none_match
        self._missing = False

    def holds(self, current: T | None, shown: Callable[[T], BaseModel]) -> bool:
        if current is None:
            return self._if_match is None
        if self._if_none_match == "*":
            return False
        if self._if_match is None:
            self._missing = True
            return False
        return self._if_match == etag(shown(current))

    def refuse(self, what: str) -> Refused:
        if self._missing:
            return Refused(428, "precondition_required", f"changing {what} needs If-Match")
        return Refused(412, "changed", "changed since the version given: read it again")
