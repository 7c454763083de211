"""The contract battery of replaces and order lists (issue 17), for every connector.

Use as ``ContractBattery``: a venue's ``test_contract.py`` adds a class
``TestXOrderTypes(OrderTypesBattery)`` next to its contract class; its
``contract_case`` fixture fills the two venue hooks of ``ContractCase`` these
cases need (``move_price``, ``partial_fill``). A case needing a capability the
connector lacks, or a hook the case left out, is skipped saying which:
skips are visible, never a pass.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.brokers.contract import ContractCase
from ult_actors.brokers.base import SupportsOrderLists, SupportsReplace
from ult_actors.errors import NotReplaceable
from ult_actors.messages import (
    OPEN_STATUSES,
    Contingency,
    Order,
    OrderListRequest,
    OrderRequest,
    ReplaceRequest,
)


def replacer(case: ContractCase) -> SupportsReplace:
    if not isinstance(case.connector, SupportsReplace):
        pytest.skip(f"{type(case.connector).__name__} has no replace")
    return case.connector


def lister(case: ContractCase, contingency: Contingency) -> SupportsOrderLists:
    connector = case.connector
    if not isinstance(connector, SupportsOrderLists):
        pytest.skip(f"{type(connector).__name__} sends no native order lists")
    if contingency not in connector.native_contingencies:
        pytest.skip(f"{type(connector).__name__}: {contingency} is emulated by the service")
    return connector


def lower_limit(case: ContractCase) -> Decimal:
    """A resting buy limit further from the market: 10 % lower, in the case's own decimals.

    (Not ``- 1``: a price of 1 or less, as in FX, would go to zero or below.)
    """
    return (case.resting_buy_limit * Decimal("0.9")).quantize(case.resting_buy_limit)


async def resting_buy(case: ContractCase, qty: Decimal | None = None) -> Order:
    return await case.connector.submit(
        OrderRequest(
            symbol=case.symbol,
            side="buy",
            qty=case.qty if qty is None else qty,
            type="limit",
            limit_price=case.resting_buy_limit,
            time_in_force="gtc" if "gtc" in case.resting_tifs else case.resting_tifs[0],
            client_order_id=case.client_id(),
        )
    )


async def wait_status(case: ContractCase, coid: str, *statuses: str) -> Order:
    update = await case.updates.wait_for(
        lambda u: u.order.client_order_id == coid and u.order.status in statuses
    )
    return update.order


class OrderTypesBattery:
    """Replace and order-list behaviour every connector promises; subclass per connector."""

    async def test_replace_changes_a_resting_order_and_links_both_ways(
        self, contract_case: ContractCase
    ) -> None:
        case = contract_case
        connector = replacer(case)
        old = await resting_buy(case)
        new_price = lower_limit(case)
        new_coid = case.client_id()
        new = await connector.replace(
            old,
            ReplaceRequest(order_id=old.id, limit_price=new_price, client_order_id=new_coid),
        )
        assert (new.client_order_id, new.replaces) == (new_coid, old.client_order_id)
        assert new.limit_price == new_price and new.qty == old.qty
        assert new.status in OPEN_STATUSES
        assert (await case.connector.get_order_by_client_id(new_coid)).limit_price == new_price
        replaced = await wait_status(case, old.client_order_id, "replaced")
        assert replaced.replaced_by == new_coid
        open_ids = {o.client_order_id for o in await case.connector.open_orders()}
        assert new_coid in open_ids and old.client_order_id not in open_ids

    async def test_replace_of_a_filled_order_is_refused_naming_its_state(
        self, contract_case: ContractCase
    ) -> None:
        """The replace lost the race with a fill: a clear refusal, the fill kept."""
        case = contract_case
        connector = replacer(case)
        if case.partial_fill is None:
            pytest.skip("this case's venue cannot fill a resting order on demand")
        old = await resting_buy(case)
        await case.partial_fill(old, old.qty)
        filled = await wait_status(case, old.client_order_id, "filled")
        with pytest.raises(NotReplaceable, match="filled"):
            await connector.replace(
                filled,
                ReplaceRequest(
                    order_id=old.id,
                    limit_price=lower_limit(case),
                    client_order_id=case.client_id(),
                ),
            )
        current = await case.connector.get_order_by_client_id(old.client_order_id)
        assert (current.status, current.filled_qty) == ("filled", old.qty)

    async def test_partial_fill_then_replace_keeps_the_fill(
        self, contract_case: ContractCase
    ) -> None:
        case = contract_case
        connector = replacer(case)
        if case.partial_fill is None:
            pytest.skip("this case's venue cannot fill a resting order on demand")
        old = await resting_buy(case, case.qty * 2)
        await case.partial_fill(old, case.qty)
        partly = await wait_status(case, old.client_order_id, "partially_filled")
        assert partly.filled_qty == case.qty
        new_coid = case.client_id()
        new = await connector.replace(
            partly,
            ReplaceRequest(
                order_id=old.id, limit_price=lower_limit(case), client_order_id=new_coid
            ),
        )
        assert new.status in OPEN_STATUSES and new.replaces == old.client_order_id
        # What is still to fill is what the replacement works for; the fill stays the old order's.
        assert new.qty - new.filled_qty == case.qty
        old_now = await case.connector.get_order_by_client_id(old.client_order_id)
        assert old_now.filled_qty == case.qty

    async def test_bracket_stop_loss_fill_cancels_the_take_profit(
        self, contract_case: ContractCase
    ) -> None:
        case = contract_case
        connector = lister(case, "bracket")
        if case.move_price is None or case.market_price is None:
            pytest.skip("this case's venue cannot move its price on demand")
        price = case.market_price
        entry, tp, sl = (case.client_id() for _ in range(3))
        legs = await connector.submit_list(
            OrderListRequest(
                contingency="bracket",
                list_id=case.client_id(),
                legs=[
                    OrderRequest(
                        symbol=case.symbol, side="buy", qty=case.qty, client_order_id=entry
                    ),
                    OrderRequest(
                        symbol=case.symbol,
                        side="sell",
                        qty=case.qty,
                        type="limit",
                        limit_price=price * Decimal("1.2"),
                        time_in_force="gtc" if "gtc" in case.resting_tifs else case.resting_tifs[0],
                        client_order_id=tp,
                    ),
                    OrderRequest(
                        symbol=case.symbol,
                        side="sell",
                        qty=case.qty,
                        type="stop",
                        stop_price=price * Decimal("0.8"),
                        time_in_force="gtc" if "gtc" in case.resting_tifs else case.resting_tifs[0],
                        client_order_id=sl,
                    ),
                ],
            )
        )
        assert [o.client_order_id for o in legs] == [entry, tp, sl]
        assert [o.leg.role if o.leg else None for o in legs] == [
            "entry",
            "take_profit",
            "stop_loss",
        ]
        assert legs[1].leg is not None and legs[1].leg.parent_id == entry
        await wait_status(case, entry, "filled")
        await case.move_price(price * Decimal("0.7"))
        await wait_status(case, sl, "filled")
        await wait_status(case, tp, "canceled")

    async def test_oco_one_fill_cancels_the_other(self, contract_case: ContractCase) -> None:
        case = contract_case
        connector = lister(case, "oco")
        if case.move_price is None or case.market_price is None:
            pytest.skip("this case's venue cannot move its price on demand")
        price = case.market_price
        bought = case.client_id()
        await case.connector.submit(
            OrderRequest(symbol=case.symbol, side="buy", qty=case.qty, client_order_id=bought)
        )
        await wait_status(case, bought, "filled")
        tif = "gtc" if "gtc" in case.resting_tifs else case.resting_tifs[0]
        tp, sl = case.client_id(), case.client_id()
        legs = await connector.submit_list(
            OrderListRequest(
                contingency="oco",
                list_id=case.client_id(),
                legs=[
                    OrderRequest(
                        symbol=case.symbol,
                        side="sell",
                        qty=case.qty,
                        type="limit",
                        limit_price=price * Decimal("1.2"),
                        time_in_force=tif,
                        client_order_id=tp,
                    ),
                    OrderRequest(
                        symbol=case.symbol,
                        side="sell",
                        qty=case.qty,
                        type="stop",
                        stop_price=price * Decimal("0.8"),
                        time_in_force=tif,
                        client_order_id=sl,
                    ),
                ],
            )
        )
        assert [o.client_order_id for o in legs] == [tp, sl]
        await case.move_price(price * Decimal("1.3"))
        await wait_status(case, tp, "filled")
        await wait_status(case, sl, "canceled")

    async def test_oto_child_works_once_the_parent_fills(self, contract_case: ContractCase) -> None:
        case = contract_case
        connector = lister(case, "oto")
        if case.partial_fill is None:
            pytest.skip("this case's venue cannot fill a resting order on demand")
        tif = "gtc" if "gtc" in case.resting_tifs else case.resting_tifs[0]
        parent, child = case.client_id(), case.client_id()
        legs = await connector.submit_list(
            OrderListRequest(
                contingency="oto",
                list_id=case.client_id(),
                legs=[
                    OrderRequest(
                        symbol=case.symbol,
                        side="buy",
                        qty=case.qty,
                        type="limit",
                        limit_price=case.resting_buy_limit,
                        time_in_force=tif,
                        client_order_id=parent,
                    ),
                    OrderRequest(
                        symbol=case.symbol,
                        side="sell",
                        qty=case.qty,
                        type="limit",
                        limit_price=case.resting_buy_stop * 2,
                        time_in_force=tif,
                        client_order_id=child,
                    ),
                ],
            )
        )
        assert legs[1].status == "held"
        await case.partial_fill(legs[0], case.qty)
        await wait_status(case, parent, "filled")
        working = await wait_status(case, child, "accepted", "pending_new")
        assert working.leg is not None and working.leg.parent_id == parent
