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

And while a service starts (``Service.run``, until every actor is up), the
young generation may grow to ``STARTING_YOUNG_THRESHOLD``: start-up builds the
tree's objects, which live as long as the service, and makes almost no
garbage (1,000 paper connections: ~220,000 containers, as many alive at ready
with the collector held as without). With CPython's defaults the collector
walked them ~580 times on the way, four of them full passes: about a third of
the process's start to ready (docs/performance.md, ready5). When the last start is up,
what it built is moved to the oldest generation unwalked (``_age_without_a_pass``), not
handed to a young pass that would walk it all right before ready (ready6).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

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


#: Net container allocations between two young collections while a service starts: above
#: what 1,000 paper connections allocate (~220,000), a bound all the same (a start that
#: runs long, or a larger tree, is still collected now and then).
STARTING_YOUNG_THRESHOLD = 1_000_000

#: Young containers above which a start's are aged unwalked when it is up
#: (``_age_without_a_pass``); at or below, a young pass walks them, as CPython would.
AGE_UNWALKED_ABOVE = 50_000

# The collector's thresholds are the process's, and services may start at once in one
# process (tests, a cluster's takeover): the first start to hold them keeps what they
# were, the last to let go puts that back.
_holding = 0
_held_from: tuple[int, int, int] | None = None


def hold_while_starting() -> Callable[[], None]:
    """Space the young collections out while a service starts; returns the call (safe to
    make twice) that ends this hold. Once the last hold ends, the thresholds are back to
    what they were, unless something set others meanwhile (``settle_after_start``)."""
    global _holding, _held_from
    if _holding == 0:
        young, middle, old = gc.get_threshold()
        _held_from = (young, middle, old)
        gc.set_threshold(max(young, STARTING_YOUNG_THRESHOLD), middle, old)
    _holding += 1
    released = False

    def release() -> None:
        global _holding, _held_from
        nonlocal released
        if released:
            return
        released = True
        _holding -= 1
        if _holding == 0 and _held_from is not None:
            _age_without_a_pass()
            if gc.get_threshold()[0] == max(_held_from[0], STARTING_YOUNG_THRESHOLD):
                gc.set_threshold(*_held_from)
            _held_from = None

    return release


def _age_without_a_pass() -> None:
    """Move every tracked object into the oldest generation without walking them.

    What a start built is still all young when its hold ends: given CPython's young
    threshold back, the next allocation would walk all of it (1,000 paper connections:
    ~220,000 containers, a 0.15-0.2 s pass right before ready, then a middle pass over
    them again; ready6). ``freeze`` then ``unfreeze`` splices the generations' lists into
    the oldest one and zeroes the young count, in microseconds; those objects are then
    walked only by full passes, as they would be once promoted. Not while anything is
    frozen (``settle_after_start``): ``unfreeze`` would give that back to the collector.
    Nor after a small start (``AGE_UNWALKED_ABOVE``): its young pass is short, and what
    the move would take along, garbage of the process's past included, would wait for a
    full pass (a test process starts thousands of small services).
    """
    if gc.get_count()[0] > AGE_UNWALKED_ABOVE and gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def settle_after_start() -> None:
    """Freeze what start-up built and space the young collections (call once, when ready)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


def release_frozen() -> None:
    """Give frozen objects back to the collector (a service torn down in a running process:
    a cluster instance that stops being active), so its cycles can be collected."""
    gc.unfreeze()
