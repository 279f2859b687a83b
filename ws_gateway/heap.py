"""The gateway process's heap: thousands of connections, each holding its objects for as long as
it is open.

With 10,000 clients the gateway holds millions of objects that live for hours, and the cyclic
collector's full collection scans every one: ~0.8 s on a 2-core AMD EPYC, every half minute or
so while frames flow, in which no frame goes out (``careknot bench gateway``: delivery p99
365 to 628 ms, every slow frame sent in the second or two of one such collection). Every
:data:`FREEZE_S` the heap as it stands is frozen (:func:`gc.freeze`: the collector leaves it
alone), so a collection scans only what came since. A connection closed after its objects were
frozen may leave cycles there, which only a collection of the whole heap frees: every
:data:`SWEEP_S` the heap is unfrozen and collected once, one such pause in ten minutes.
"""

from __future__ import annotations

import asyncio
import gc
import time

from kernel import heap

FREEZE_S = 5.0
SWEEP_S = 600.0


async def keep_frozen(freeze_s: float = FREEZE_S, sweep_s: float = SWEEP_S) -> None:
    """Freeze the heap every ``freeze_s``, and collect it whole every ``sweep_s``, until
    cancelled (a process's one caller: ``careknot gateway``)."""
    heap.settle()
    swept = time.monotonic()
    while True:
        await asyncio.sleep(freeze_s)
        if time.monotonic() - swept >= sweep_s:
            gc.unfreeze()
            gc.collect()
            swept = time.monotonic()
        gc.freeze()
