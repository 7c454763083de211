"""The contract battery every connector passes.

Use: in ``tests/brokers/test_<name>.py`` define a ``contract_case`` fixture
that yields a ``ContractCase`` (connected connector, ``stream_updates``
running into ``case.updates``), and a class ``TestXContract(ContractBattery)``.
Remote connectors run it against their loopback simulator over real sockets.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import trio

from ult_actors.brokers.base import Connector, SupportsQuotes
from ult_actors.errors import AlreadyFinal, DuplicateOrder, NotFound
from ult_actors.messages import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    Fill,
    Order,
    OrderRequest,
    OrderUpdate,
    TimeInForce,
)

WAIT_S = 10.0
_ids = itertools.count(1)


class UpdateLog:
    """Collects streamed updates; lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.updates: list[OrderUpdate] = []
        self._changed = trio.Event()

    async def sink(self, update: OrderUpdate) -> None:
        self.updates.append(update)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(
        self, predicate: Callable[[OrderUpdate], bool], timeout: float = WAIT_S
    ) -> OrderUpdate:
        with trio.fail_after(timeout):
            seen = 0
            while True:
                for update in self.updates[seen:]:
                    if predicate(update):
                        return update
                seen = len(self.updates)
                await self._changed.wait()

    def for_client_id(self, client_order_id: str) -> list[OrderUpdate]:
        return [u for u in self.updates if u.order.client_order_id == client_order_id]


@dataclass
class ContractCase:
    """What a connector's test module hands the battery."""

    connector: Connector
    updates: UpdateLog
    symbol: str
    qty: Decimal
    #: A buy limit far enough below the market that it rests.
    resting_buy_limit: Decimal
    #: A buy stop far enough above the market that it does not trigger.
    resting_buy_stop: Decimal
    #: Time-in-force values this broker supports for a resting limit order.
    resting_tifs: tuple[TimeInForce, ...] = ("day", "gtc")
    #: Prefix making client order ids unique per test run.
    id_prefix: str = field(default="ct")
    # Venue hooks for the order-type battery (``contract_orders.py``); a case that
    # needs one the venue's case leaves out is skipped, saying so.
    #: The symbol's market price now (brackets and OCOs are priced around it).
    market_price: Decimal | None = None
    #: Move the symbol's market price at the venue, so resting orders trigger or fill.
    move_price: Callable[[Decimal], Awaitable[None]] | None = None
    #: Make the venue execute ``qty`` of a resting order, as if a counterparty came.
    partial_fill: Callable[[Order, Decimal], Awaitable[None]] | None = None
    #: What the venue charges for one execution, by the simulator's rates (commission
    #: plus named fees): the fees battery checks each fill brings exactly that.
    fees_of: Callable[[Fill], Decimal] | None = None
    #: The venue's mid price of ``symbol`` now, for a connector that can ask for quotes.
    quote_now: Callable[[], Decimal] | None = None

    def client_id(self) -> str:
        return f"{self.id_prefix}-{next(_ids)}"


class ContractBattery:
    """Behaviour every connector promises; subclass per connector."""

    async def test_account_reports_cash_and_buying_power(self, contract_case: ContractCase) -> None:
        account = await contract_case.connector.account()
        assert account.broker == contract_case.connector.name
        assert account.cash > 0
        assert account.buying_power > 0
        assert account.equity > 0

    async def test_market_buy_fills_and_streams_the_fill(self, contract_case: ContractCase) -> None:
        case = contract_case
        coid = case.client_id()
        order = await case.connector.submit(
            OrderRequest(symbol=case.symbol, side="buy", qty=case.qty, client_order_id=coid)
        )
        assert order.client_order_id == coid
        assert order.broker == case.connector.name
        assert order.symbol == case.symbol
        filled = await case.updates.wait_for(
            lambda u: u.order.client_order_id == coid and u.order.status == "filled"
        )
        assert filled.order.filled_qty == case.qty
        assert filled.order.avg_fill_price is not None and filled.order.avg_fill_price > 0
        fills = [u.fill for u in case.updates.for_client_id(coid) if u.fill is not None]
        assert sum(f.qty for f in fills) == case.qty
        current = await case.connector.get_order(order.id)
        assert current.status == "filled"
        positions = {p.symbol: p for p in await case.connector.positions()}
        assert positions[case.symbol].qty >= case.qty

    async def test_fills_bring_the_fees_the_venue_charged(
        self, contract_case: ContractCase
    ) -> None:
        case = contract_case
        if case.fees_of is None:
            pytest.skip("this venue's case gives no fee rates")
        charged = Decimal(0)
        for side in ("buy", "sell"):  # some fees are charged on sales only
            coid = case.client_id()
            await case.connector.submit(
                OrderRequest(symbol=case.symbol, side=side, qty=case.qty, client_order_id=coid)
            )
            await case.updates.wait_for(
                lambda u, coid=coid: u.order.client_order_id == coid and u.order.status == "filled"
            )

            def paid_and_due(coid: str = coid) -> tuple[Decimal, Decimal] | None:
                fills = [u.fill for u in case.updates.for_client_id(coid) if u.fill is not None]
                executions = [f for f in fills if f.qty > 0]
                if sum(f.qty for f in executions) < case.qty:
                    return None
                assert case.fees_of is not None
                due = sum((case.fees_of(f) for f in executions), Decimal(0))
                return sum((f.total_fees for f in fills), Decimal(0)), due

            # A venue may report fees after the execution (a later record joined to it).
            await case.updates.wait_for(
                lambda _u, f=paid_and_due: (c := f()) is not None and c[0] >= c[1]
            )
            paid, due = paid_and_due() or (Decimal(0), Decimal(-1))
            assert paid == due, (side, paid, due)
            charged += paid
        assert charged > 0

    async def test_the_venues_quote_is_its_mid_price(self, contract_case: ContractCase) -> None:
        case = contract_case
        if case.quote_now is None or not isinstance(case.connector, SupportsQuotes):
            pytest.skip("this venue's connector asks for no quotes")
        assert await case.connector.quote(case.symbol) == case.quote_now()

    async def test_resting_limit_is_open_findable_and_cancelable(
        self, contract_case: ContractCase
    ) -> None:
        case = contract_case
        coid = case.client_id()
        order = await case.connector.submit(
            OrderRequest(
                symbol=case.symbol,
                side="buy",
                qty=case.qty,
                type="limit",
                limit_price=case.resting_buy_limit,
                time_in_force="gtc" if "gtc" in case.resting_tifs else case.resting_tifs[0],
                client_order_id=coid,
            )
        )
        assert order.status in OPEN_STATUSES
        assert order.limit_price == case.resting_buy_limit
        by_client = await case.connector.get_order_by_client_id(coid)
        assert by_client.id == order.id
        assert order.id in {o.id for o in await case.connector.open_orders()}
        await case.connector.cancel(order.id)
        await case.updates.wait_for(
            lambda u: u.order.id == order.id and u.order.status == "canceled"
        )
        assert (await case.connector.get_order(order.id)).status == "canceled"
        assert order.id not in {o.id for o in await case.connector.open_orders()}

    async def test_cancel_of_a_final_order_is_refused_naming_its_state(
        self, contract_case: ContractCase
    ) -> None:
        case = contract_case
        coid = case.client_id()
        filled = await case.connector.submit(
            OrderRequest(symbol=case.symbol, side="buy", qty=case.qty, client_order_id=coid)
        )
        await case.updates.wait_for(
            lambda u: u.order.client_order_id == coid and u.order.status == "filled"
        )
        with pytest.raises(AlreadyFinal, match="is already filled") as err:
            await case.connector.cancel(filled.id)
        assert coid in err.value.message
        resting = await case.connector.submit(
            OrderRequest(
                symbol=case.symbol,
                side="buy",
                qty=case.qty,
                type="limit",
                limit_price=case.resting_buy_limit,
                time_in_force=case.resting_tifs[0],
                client_order_id=case.client_id(),
            )
        )
        await case.connector.cancel(resting.id)
        await case.updates.wait_for(
            lambda u: u.order.id == resting.id and u.order.status == "canceled"
        )
        with pytest.raises(AlreadyFinal, match="is already canceled"):
            await case.connector.cancel(resting.id)
        assert (await case.connector.get_order(filled.id)).status == "filled"

    async def test_resting_stop_and_stop_limit_are_accepted(
        self, contract_case: ContractCase
    ) -> None:
        case = contract_case
        stop = await case.connector.submit(
            OrderRequest(
                symbol=case.symbol,
                side="buy",
                qty=case.qty,
                type="stop",
                stop_price=case.resting_buy_stop,
                time_in_force="gtc" if "gtc" in case.resting_tifs else case.resting_tifs[0],
                client_order_id=case.client_id(),
            )
        )
        assert stop.status in OPEN_STATUSES
        assert stop.stop_price == case.resting_buy_stop
        stop_limit = await case.connector.submit(
            OrderRequest(
                symbol=case.symbol,
                side="buy",
                qty=case.qty,
                type="stop_limit",
                stop_price=case.resting_buy_stop,
                limit_price=case.resting_buy_stop + 1,
                time_in_force="gtc" if "gtc" in case.resting_tifs else case.resting_tifs[0],
                client_order_id=case.client_id(),
            )
        )
        assert stop_limit.status in OPEN_STATUSES
        open_ids = {o.id for o in await case.connector.open_orders()}
        assert {stop.id, stop_limit.id} <= open_ids
        for o in (stop, stop_limit):
            await case.connector.cancel(o.id)

    @pytest.mark.parametrize("tif", ["day", "gtc"])
    async def test_resting_limit_accepts_time_in_force(
        self, contract_case: ContractCase, tif: TimeInForce
    ) -> None:
        case = contract_case
        if tif not in case.resting_tifs:
            pytest.skip(f"{case.connector.name} has no {tif} for resting limits")
        order = await case.connector.submit(
            OrderRequest(
                symbol=case.symbol,
                side="buy",
                qty=case.qty,
                type="limit",
                limit_price=case.resting_buy_limit,
                time_in_force=tif,
                client_order_id=case.client_id(),
            )
        )
        assert order.time_in_force == tif
        assert order.status in OPEN_STATUSES
        await case.connector.cancel(order.id)

    @pytest.mark.parametrize("tif", ["ioc", "fok"])
    async def test_unmarketable_immediate_limit_does_not_rest(
        self, contract_case: ContractCase, tif: TimeInForce
    ) -> None:
        case = contract_case
        coid = case.client_id()
        order = await case.connector.submit(
            OrderRequest(
                symbol=case.symbol,
                side="buy",
                qty=case.qty,
                type="limit",
                limit_price=case.resting_buy_limit,
                time_in_force=tif,
                client_order_id=coid,
            )
        )
        done = (
            await case.updates.wait_for(
                lambda u: u.order.client_order_id == coid and u.order.status in TERMINAL_STATUSES
            )
            if order.status not in TERMINAL_STATUSES
            else None
        )
        final = done.order if done else order
        assert final.status in {"canceled", "expired"}
        assert final.filled_qty == 0
        assert order.id not in {o.id for o in await case.connector.open_orders()}

    async def test_unknown_orders_are_not_found(self, contract_case: ContractCase) -> None:
        with pytest.raises(NotFound):
            await contract_case.connector.get_order_by_client_id("never-sent-0")
        with pytest.raises(NotFound):
            await contract_case.connector.get_order("999999999")

    async def test_reused_client_order_id_never_makes_a_second_order(
        self, contract_case: ContractCase
    ) -> None:
        case = contract_case
        coid = case.client_id()
        request = OrderRequest(
            symbol=case.symbol,
            side="buy",
            qty=case.qty,
            type="limit",
            limit_price=case.resting_buy_limit,
            time_in_force=case.resting_tifs[0],
            client_order_id=coid,
        )
        first = await case.connector.submit(request)
        try:
            second = await case.connector.submit(request)
        except DuplicateOrder:
            second = first
        assert second.id == first.id
        same = [o for o in await case.connector.open_orders() if o.client_order_id == coid]
        assert len(same) == 1
        await case.connector.cancel(first.id)

    async def test_disconnect_is_idempotent(self, contract_case: ContractCase) -> None:
        await contract_case.connector.disconnect()
        await contract_case.connector.disconnect()
