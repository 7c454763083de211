"""Alpaca's fee activities joined to the executions they charged.

Alpaca posts what a trade cost beyond its price as activities of their own,
after the execution: ``FEE`` for the regulatory fees of a sale (the SEC's
``REG`` fee, FINRA's ``TAF``) and ``CFEE`` for crypto. They name neither
order nor execution, only a symbol, a quantity and a price. So an activity
is joined to the oldest execution this connection delivered of that symbol,
quantity and price (a sale, for a ``FEE``) that has no fee of its name yet,
and comes out as a fill of quantity 0 whose ``fee_of`` is that execution
(see ``Fill``).
"""

from __future__ import annotations

from decimal import Decimal

from ult_actors.brokers.alpaca.wire import WireFeeActivity
from ult_actors.brokers.base import UpdateSink
from ult_actors.messages import Fill, Order, OrderUpdate
from ult_actors.recent import Recent

#: Executions remembered for joining (fees post within a day; a busy day fits).
KEEP_EXECUTIONS = 50_000
#: A FEE activity's name by the first word of its description.
_FEE_NAMES = {"REG": "sec", "TAF": "finra_taf"}

_Key = tuple[str, Decimal, Decimal]


def fee_name(activity: WireFeeActivity) -> str:
    """The fee's name on our fill: ``sec``, ``finra_taf``, ``crypto`` or ``regulatory``."""
    if activity.activity_type == "CFEE":
        return "crypto"
    first = activity.description.split(" ", 1)[0].upper()
    return _FEE_NAMES.get(first, "regulatory")


class _Execution:
    __slots__ = ("charged", "fill", "order")

    def __init__(self, order: Order, fill: Fill) -> None:
        self.order = order
        self.fill = fill
        #: Names of the fees joined to it so far.
        self.charged: set[str] = set()


class FeeJoin:
    """Executions delivered lately, and the fee activities joined to them."""

    def __init__(self, keep: int = KEEP_EXECUTIONS) -> None:
        self._by_key: dict[_Key, list[str]] = {}
        self._executions: Recent[str, _Execution] = Recent(keep, on_evict=self._forget)
        self._joined: Recent[str, None] = Recent(keep)

    def noting(self, sink: UpdateSink) -> UpdateSink:
        """``sink``, noting each update it is given first."""

        async def noted(update: OrderUpdate) -> None:
            self.saw(update)
            await sink(update)

        return noted

    def saw(self, update: OrderUpdate) -> None:
        """Note an update delivered: an execution in it may be charged later."""
        fill = update.fill
        if fill is None or not fill.qty or fill.fill_id in self._executions:
            return
        self._executions.put(fill.fill_id, _Execution(update.order, fill))
        self._by_key.setdefault((fill.symbol, fill.qty, fill.price), []).append(fill.fill_id)

    def joined(self, activity: WireFeeActivity) -> bool:
        """Whether ``activity`` was joined to its execution already."""
        return activity.id in self._joined

    def join(self, activity: WireFeeActivity, ts: int) -> OrderUpdate | None:
        """The fill bringing ``activity``'s fee; ``None``: joined before, or to no execution
        delivered here (one from before this connection)."""
        if activity.id in self._joined or activity.symbol is None:
            return None
        if activity.qty is None or activity.price is None:
            return None
        name = fee_name(activity)
        key = (activity.symbol, abs(activity.qty), activity.price)
        for fill_id in self._by_key.get(key, ()):
            execution = self._executions[fill_id]
            if name in execution.charged:
                continue
            if activity.activity_type == "FEE" and execution.fill.side != "sell":
                continue  # regulatory fees are charged on sales
            execution.charged.add(name)
            self._joined.add(activity.id)
            fill = execution.fill
            charge = Fill(
                fill_id=activity.id,
                order_id=fill.order_id,
                client_order_id=fill.client_order_id,
                broker=fill.broker,
                symbol=fill.symbol,
                side=fill.side,
                qty=Decimal(0),
                price=fill.price,
                ts=ts,
                fees={name: -activity.net_amount},
                fee_currency="USD",
                fee_of=fill.fill_id,
            )
            return OrderUpdate(order=execution.order, fill=charge, ts=ts, fill_only=True)
        return None

    def _forget(self, fill_id: str, execution: _Execution) -> None:
        fill = execution.fill
        key = (fill.symbol, fill.qty, fill.price)
        ids = self._by_key.get(key)
        if ids is not None:
            ids.remove(fill_id)
            if not ids:
                del self._by_key[key]
