"""What a refusal may say: where and why, never the values refused (they may be a patient's
data). Logs and dead letters' ``detail`` carry these; a dead letter's ``payload`` keeps the
value itself, to be replayed, and no log prints it."""

from __future__ import annotations

from pydantic import ValidationError

FREE_TEXT = frozenset({"value_error", "assertion_error"})
"""Error types whose message a validator wrote, and may quote the value in."""


def validation_detail(exc: ValidationError, limit: int = 500) -> str:
    """``field.path: message`` for each error, without the input values pydantic's own text
    quotes (``input_value=...``)."""
    parts = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(map(str, e["loc"])) or "(root)"
        parts.append(f"{where}: {e['type'] if e['type'] in FREE_TEXT else e['msg']}")
    return f"{exc.title}: " + "; ".join(parts)[:limit]
