"""A fitted routine model as data to keep: its scalar fields as JSON-able params, its arrays as
one compressed ``.npz`` (read back without pickle, so a stored model can carry no code), and
back. Field by field over the model's dataclass fields, so a field added to the model is kept
without a change here; ``prior`` (the population prior, fixed) is not kept.
"""

from __future__ import annotations

import io
from dataclasses import fields
from typing import Any

import numpy as np

from routines.models import HourlyBaseline

_NOT_KEPT = frozenset({"prior"})


def params_and_arrays(model: HourlyBaseline) -> tuple[dict[str, Any], bytes]:
    params: dict[str, Any] = {}
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for f in fields(model):
        if f.name in _NOT_KEPT:
            continue
        value = getattr(model, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        elif isinstance(value, bool | int | float | str):
            params[f.name] = value
        else:
            raise TypeError(f"{f.name}: a {type(value).__name__} cannot be kept")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return params, buffer.getvalue()


def restored(params: dict[str, Any], arrays: bytes) -> HourlyBaseline:
    """The model as kept; fields it no longer has are left out, new ones keep their default."""
    names = {f.name for f in fields(HourlyBaseline)} - _NOT_KEPT
    with np.load(io.BytesIO(arrays), allow_pickle=False) as npz:
        loaded = {k: npz[k] for k in npz.files if k in names}
    kept = {k: v for k, v in params.items() if k in names}
    return HourlyBaseline(**kept, **loaded)
