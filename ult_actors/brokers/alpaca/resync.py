"""What the ``trade_updates`` stream missed, rebuilt from Alpaca's own record.

After a lost, silent or gappy stream the connector reads back the orders
changed since the last event it saw (``GET /v2/orders``) and the executions
since then (``GET /v2/account/activities/FILL``). ``missed_updates`` turns
them into the order updates the stream would have delivered, in the order
they happened: one per execution not yet delivered, carrying the venue's
execution id and the order as it stood just after it, then the order's
present state if that is news.

The fill ledger decides what is news, by cumulative quantity per order, so
an execution the stream did deliver is never delivered again, whatever id
either path knows it by. Executions that no activity shows (older than the
activities asked for) still come out, as one fill for the difference.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec

from ult_actors.brokers.alpaca.ledger import Execution, FillLedger
from ult_actors.brokers.alpaca.wire import WireFillActivity, optional_ns
from ult_actors.messages import Order, OrderUpdate


def missed_updates(
    orders: list[Order], activities: list[WireFillActivity], ledger: FillLedger
) -> list[OrderUpdate]:
    """The updates ``orders`` (present states) and ``activities`` hold that ``ledger`` has not had.

    ``activities`` must be read before ``orders``, so that no execution is
    newer than the order it belongs to. The ledger is advanced: asking again
    with the same record gives nothing.
    """
    executions: dict[str, list[WireFillActivity]] = defaultdict(list)
    for activity in activities:
        executions[activity.order_id].append(activity)
    timed: list[tuple[int, int, OrderUpdate]] = []

    def add(ts: int, update: OrderUpdate) -> None:
        timed.append((ts, len(timed), update))

    for order in orders:
        for activity in sorted(executions.get(order.id, ()), key=lambda a: a.cum_qty):
            delivered = ledger.delivered(order.id)
            if activity.cum_qty > order.filled_qty:
                continue  # cannot be: the order was read after its activities
            if delivered is not None and activity.cum_qty <= delivered[0]:
                continue  # the stream (or an earlier resync) delivered it
            ts = optional_ns(activity.transaction_time) or order.updated_at
            then = _as_of(order, activity, ts)
            _, fills = ledger.settle(
                then, Execution(activity.execution_id, activity.qty, activity.price, ts)
            )
            after = ledger.delivered(order.id)
            if then is not order and after is not None and after[1] is not None:
                then = msgspec.structs.replace(then, avg_fill_price=after[1])
            for fill in fills:
                add(fill.ts, OrderUpdate(order=then, fill=fill, ts=fill.ts))
        changed, fills = ledger.settle(order, None)
        for fill in fills:
            add(order.updated_at, OrderUpdate(order=order, fill=fill, ts=order.updated_at))
        if changed and not fills:
            add(order.updated_at, OrderUpdate(order=order, ts=order.updated_at))
    timed.sort(key=lambda entry: entry[:2])
    return [update for _, _, update in timed]


def _as_of(order: Order, activity: WireFillActivity, ts: int) -> Order:
    """``order`` as it stood just after ``activity`` (itself, after its last execution)."""
    if activity.cum_qty >= order.filled_qty:
        return order
    return msgspec.structs.replace(
        order, status="partially_filled", filled_qty=activity.cum_qty, updated_at=ts
    )
