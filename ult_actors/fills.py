"""How much of each order's fill a book has applied: the one rule that counts each fill once.

Every path that reports an order — the broker's stream, the submit reply, a
lookup, a sweep, reconciliation after a restart — carries the order's
cumulative ``filled_qty`` (and average price); only the stream has execution
ids. So a book keys what it has applied by client order id and cumulative
quantity: the same execution reported by two paths, or twice by one, moves
the book once, and a report that skipped executions (a stream gap) still
moves it by all of them.

A book that starts from a broker's position report (after a restart) already
contains the fills the journal knew of: ``baseline`` records them as applied,
so a later report of the same order adds only what is new.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, TypeAlias

from ult_actors.messages import TERMINAL_STATUSES, Order
from ult_actors.order_state import is_local_verdict
from ult_actors.recent import Recent

#: How many finished orders are remembered, so their repeats are no-ops.
DONE_KEPT: Final = 100_000
# ``Final``: compiled, these are C statics, not a look-up in the module's dict per use.
_ZERO: Final = Decimal(0)
_TERMINAL: Final = TERMINAL_STATUSES

#: The part of an order's fill a book has not applied yet: (quantity, average price
#: of just this part, ``None`` when the broker gave no price). A plain tuple: two
#: books build one per fill, and a ``NamedTuple`` cost ~6 times as much to build.
FillDelta: TypeAlias = tuple[Decimal, Decimal | None]


class SharedAdvance:
    """The last report a ledger advanced by, with the entry it found for the order and what
    it made of it, so a second ledger that holds the same entry for the same report takes
    the result instead of working it out again (risk's and positions' ledgers fold every
    order event: ``service.py`` hands both the same one).

    Matched by identity: the same ``Order`` object and the same entry object (or none in
    both) are the same inputs, and ``FillLedger.advance`` reads nothing else, so the
    result is the one the second ledger would work out (the same objects, even). The
    ledgers stay two (their restarts differ): each stores the entry in its own map. A
    native class (compiled): its fields are plain slots.
    """

    def __init__(self) -> None:
        #: The report last advanced by (``None``: nothing to take).
        self.order: Order | None = None
        #: The entry the ledger found for it, and the one it left (the same if none moved).
        self.found: Any = None
        self.left: Any = None
        #: What ``advance`` returned, and whether it marked the order finished.
        self.new: Any = None
        self.done = False


class FillLedger:
    """Cumulative filled quantity per order, so a repeated report adds nothing.

    Finished orders are remembered (the latest ``keep_done`` of them), so a
    late repeat of one is recognised; beyond that they are forgotten.
    ``shared``: the last advance shared with another ledger (``SharedAdvance``).
    """

    def __init__(self, keep_done: int = DONE_KEPT, shared: SharedAdvance | None = None) -> None:
        #: Cumulative quantity and average price applied, per client order id.
        self._applied: dict[str, tuple[Decimal, Decimal | None]] = {}
        self._shared = shared
        # A finished order forgotten takes its applied fill with it: ``on_evict(coid, None)``
        # is ``self._applied.pop(coid, None)`` (a dict's method: no Python call per order
        # once ``keep_done`` orders have finished).
        self._done: Recent[str, None] = Recent(keep_done, refresh=True, on_evict=self._applied.pop)

    def is_done(self, client_order_id: str) -> bool:
        """Whether the order is known to be final (a later open report of it is stale)."""
        return client_order_id in self._done

    def applied_qty(self, client_order_id: str) -> Decimal:
        """How much of the order's fill has been applied."""
        applied = self._applied.get(client_order_id)
        return _ZERO if applied is None else applied[0]

    def baseline(self, order: Order) -> None:
        """Record ``order``'s fills as already in the book (it started from a report)."""
        if order.filled_qty > self.applied_qty(order.client_order_id):
            self._applied[order.client_order_id] = (order.filled_qty, order.avg_fill_price)
        self._finish_if_final(order)

    def advance(self, order: Order) -> FillDelta | None:
        """What ``order`` adds to what was applied (recorded as applied now), or ``None``."""
        # Folded by risk and positions for every order event: kept to plain operations.
        coid = order.client_order_id
        shared = self._shared
        if shared is not None and order is shared.order:
            # The other ledger advanced by this report last: if it found what this one
            # holds, its result is this one's (see ``SharedAdvance``).
            found = self._applied.get(coid)
            if found is shared.found:
                left = shared.left
                if left is not found:
                    self._applied[coid] = left
                if shared.done:
                    self._done.add(coid)
                taken: FillDelta | None = shared.new
                return taken
        filled = order.filled_qty
        # ``Any``: each tuple is built once (compiled, a ``FillDelta`` is kept unboxed and
        # built again to be stored, then to be returned).
        new: Any = None
        # The entry found and left (``shared``), when the order has fills.
        applied: Any = None
        left_entry: Any = None
        has_fills = filled > _ZERO
        if has_fills:
            # ``get`` without a default: compiled, a default tuple is built for each call.
            entry = self._applied.get(coid)
            applied = left_entry = entry  # (an object already: the same one for both)
            if entry is None:  # its first fills (the usual case): all of them are new
                # Not ``new = left_entry = (...)``: compiled, a tuple assigned to two names
                # is built (boxed) twice, and the other ledger would store a second object.
                new = (filled, order.avg_fill_price)
                left_entry = new
                self._applied[coid] = new
            elif filled > entry[0]:
                before, before_avg = entry
                delta = filled - before
                avg = order.avg_fill_price
                price = avg
                if avg is not None and before_avg is not None:
                    # The price of just this part, from the change of the cumulative average.
                    price = (avg * filled - before_avg * before) / delta
                left_entry = (filled, avg if avg is not None else before_avg)
                self._applied[coid] = left_entry
                new = (delta, price)
        status = order.status
        # As ``_finish_if_final``, without the call; a fill is never the service's own
        # verdict, so the usual final state needs no ``is_local_verdict`` (its reads).
        done = status in _TERMINAL and (status == "filled" or not is_local_verdict(order))
        if done:
            self._done.add(coid)
        if shared is not None:
            if has_fills:  # the entry was read: the other ledger may take the result
                shared.order = order
                shared.found = applied
                shared.left = left_entry
                shared.new = new
                shared.done = done
            else:
                shared.order = None
        new_part: FillDelta | None = new
        return new_part

    def finish(self, client_order_id: str) -> None:
        """The order is final: remember that a while (its repeats then add nothing)."""
        self._done.add(client_order_id)

    def _finish_if_final(self, order: Order) -> None:
        # The service's own verdict (lost, never acknowledged) may be overturned by the
        # broker's record, which must then count: only the broker's final states are final.
        if order.status in _TERMINAL and not is_local_verdict(order):
            self.finish(order.client_order_id)
