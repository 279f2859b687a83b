"""The live index's scripts name keys through the Lua functions of :data:`kernel.keys.LUA`; run
in the real Redis, they give the same strings as :class:`kernel.keys.Keys` does in Python."""

from __future__ import annotations

import redis.asyncio as aioredis

from kernel.keys import LUA, Keys

_NAMES = (
    LUA
    + """
local ns, id, agency, cell = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
return {caregiver_key(ns, id), cell_key(ns, 'street', agency, cell),
        cell_key(ns, 'area', agency, cell), shapes_key(ns), live_seq_key(ns),
        live_changes_key(ns)}
"""
)


async def test_the_scripts_spell_each_key_as_python_does(redis: aioredis.Redis) -> None:
    keys = Keys("ns-x")
    names = redis.register_script(_NAMES)
    got = await names(keys=[], args=[keys.ns, "cg-1", "ag:1", "88194ad2c3fffff"])
    assert [k.decode() for k in got] == [
        keys.caregiver("cg-1"),
        keys.cell("street", "ag:1", "88194ad2c3fffff"),
        keys.cell("area", "ag:1", "88194ad2c3fffff"),
        keys.shapes(),
        keys.live_seq(),
        keys.live_changes(),
    ]
