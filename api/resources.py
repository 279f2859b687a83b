"""What every resource of the API shares: ids as paths take them, a version (``ETag``) of what
a client reads, and the precondition a write is made on (``If-Match``, ``If-None-Match: *``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, TypeVar

import orjson
from fastapi import Path
from pydantic import BaseModel

from api.problems import Refused

ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
AgencyId = Annotated[str, Path(pattern=ID, description="the agency's id")]
PAGE_MAX = 500
WRITE_RESPONSES: dict[int | str, dict[str, str]] = {
    201: {"description": "created"},
    409: {"description": "the id is another agency's"},
    412: {"description": "changed since the version given"},
    428: {"description": "replacing needs If-Match"},
}

T = TypeVar("T")


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
            return Refused(428, "precondition_required", f"replacing {what} needs If-Match")
        return Refused(412, "changed", "changed since the version given: read it again")
