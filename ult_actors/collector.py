"""The cyclic garbage collector's settings for the long-running service.

CPython's defaults (a young collection every 700 net container allocations,
an old one whenever the objects promoted since the last one exceed a quarter
of those already there) are made for short programs. In ``ult serve`` they
cost an order ~16 us of a ~290 us window order on the bench machine
(``gc.callbacks`` timing the collections, 20,000 orders; docs/performance.md,
"the garbage collector's share of an order"): most of it in the old
generation's full passes over everything start-up built (the configuration,
the actor tree, the journal's indexes, the imported modules), which never
becomes garbage.

So, once the service is ready: collect once, move what start-up built into
the permanent generation (``gc.freeze``: the collector no longer walks it),
and let the young generation grow to ``YOUNG_THRESHOLD`` before a collection.
Cycles made after start-up are still collected: the collector stays on.
"""

from __future__ import annotations

import gc

#: Net container allocations between two young collections (CPython's default: 700).
#: What a young pass walks is mostly what is still alive when it runs: a window of orders
#: handed to the journal's fold thread and the books' bounded windows, ~12 objects an
#: order. The rarer the pass, the more of them are gone by then: at 50,000 a window order
#: pays ~3 us of collections against ~6-7 us at 20,000, for a pass of ~12-16 ms instead
#: of ~9-10 ms once every ~3,700 orders (docs/performance.md, "the collector's young
#: threshold").
YOUNG_THRESHOLD = 50_000
#: Young collections per middle one, and middle ones per old one (CPython's: 10, 10).
OLDER_THRESHOLDS = (10, 10)


def settle_after_start() -> None:
    """Freeze what start-up built and space the young collections (call once, when ready)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


def release_frozen() -> None:
    """Give frozen objects back to the collector (a service torn down in a running process:
    a cluster instance that stops being active), so its cycles can be collected."""
    gc.unfreeze()
