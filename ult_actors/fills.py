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


class FillLedger:
    """Cumulative filled quantity per order, so a repeated report adds nothing.

    Finished orders are remembered (the latest ``keep_done`` of them), so a
    late repeat of one is recognised; beyond that they are forgotten.
    """

    def __init__(self, keep_done: int = DONE_KEPT) -> None:
        #: Cumulative quantity and average price applied, per client order id.
        self._applied: dict[str, tuple[Decimal, Decimal | None]] = {}
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
        filled = order.filled_qty
        # ``Any``: each tuple is built once (compiled, a ``FillDelta`` is kept unboxed and
        # built again to be stored, then to be returned).
        new: Any = None
        if filled > _ZERO:
            # ``get`` without a default: compiled, a default tuple is built for each call.
            applied = self._applied.get(coid)
            if applied is None:  # its first fills (the usual case): all of them are new
                new = (filled, order.avg_fill_price)
                self._applied[coid] = new
            elif filled > applied[0]:
                before, before_avg = applied
                delta = filled - before
                avg = order.avg_fill_price
                price = avg
                if avg is not None and before_avg is not None:
                    # The price of just this part, from the change of the cumulative average.
                    price = (avg * filled - before_avg * before) / delta
                self._applied[coid] = (filled, avg if avg is not None else before_avg)
                new = (delta, price)
        status = order.status
        # As ``_finish_if_final``, without the call; a fill is never the service's own
        # verdict, so the usual final state needs no ``is_local_verdict`` (its reads).
        if status in _TERMINAL and (status == "filled" or not is_local_verdict(order)):
            self._done.add(coid)
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
