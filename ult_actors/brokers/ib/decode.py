"""One decoder per server message we use, for server versions 157 to 178.

Each takes the message's fields (id first) and the negotiated version and
returns a record from ``wire``. OPEN_ORDER and COMPLETED_ORDER are long and
full of optional blocks (combo legs, delta-neutral, scale, algo parameters,
conditions); we walk every block so that the fields we keep are read from
the right position, whatever order TWS describes. ``decode_message``
returns ``None`` for message ids we do not use.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.fields import FieldError, FieldReader, message_id
from ult_actors.brokers.ib.wire import In

V_ADVANCED_ORDER_REJECT = 166
V_PEGBEST_PEGMID_OFFSETS = 170
V_FA_PROFILE_DESUPPORT = 177
V_PENDING_PRICE_REVISION = 178

# Fields following each order-condition type (after the type itself).
_CONDITION_FIELDS = {1: 6, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5}
_PEG_BENCH_TYPES = frozenset({"PEG BENCH", "PEGBENCH"})


def _contract(r: FieldReader, *, primary_venue: bool = False) -> wire.Contract:
    """The 11 contract fields of OPEN_ORDER, COMPLETED_ORDER, EXECUTION_DATA, POSITION_DATA.

    PORTFOLIO_VALUE has the same 11, but its venue field is the primary
    exchange (``primary_venue``), and it has no routing exchange.
    """
    con_id = r.integer()
    symbol = r.text()
    sec_type = r.text()
    last_trade_date = r.text()
    strike = r.decimal_or_zero()
    right = r.text()
    multiplier = r.text()
    venue = r.text()
    currency = r.text()
    local_symbol = r.text()
    trading_class = r.text()
    return wire.Contract(
        symbol=symbol,
        sec_type=sec_type,
        exchange="" if primary_venue else venue,
        currency=currency,
        con_id=con_id,
        primary_exchange=venue if primary_venue else "",
        local_symbol=local_symbol,
        trading_class=trading_class,
        last_trade_date=last_trade_date,
        strike=strike,
        right=right,
        multiplier=multiplier,
    )


def order_status(fields: list[str], version: int) -> wire.OrderStatus:
    r = FieldReader(fields, 1)  # no version field since server 131
    return wire.OrderStatus(
        order_id=r.integer(),
        status=r.text(),
        filled=r.decimal_or_zero(),
        remaining=r.decimal_or_zero(),
        avg_fill_price=r.decimal(),
        perm_id=r.integer(),
        parent_id=r.integer(),
        last_fill_price=r.decimal(),
        client_id=r.integer(),
        why_held=r.text(),
        mkt_cap_price=r.decimal(),
    )


def error_message(fields: list[str], version: int) -> wire.ErrorMessage:
    r = FieldReader(fields, 2)  # id, version 2
    req_id = r.integer(-1)
    code = r.integer()
    message = r.text()
    json = r.text() if version >= V_ADVANCED_ORDER_REJECT and r.remaining() else ""
    return wire.ErrorMessage(
        req_id=req_id, code=code, message=message, advanced_order_reject_json=json
    )


def _order_head(r: FieldReader, *, with_client_id: bool) -> tuple[wire.IbOrder, wire.Contract]:
    """From the contract to the FA parameters, shared by open and completed orders."""
    contract = _contract(r)
    action = r.text()
    qty = r.decimal_or_zero()
    order_type = r.text()
    lmt = r.decimal()
    aux = r.decimal()
    tif = r.text()
    oca_group = r.text()
    account = r.text()
    r.skip(2)  # openClose, origin
    order_ref = r.text()
    client_id = r.integer() if with_client_id else 0
    perm_id = r.integer()
    outside_rth = r.flag()
    order = wire.IbOrder(
        action=action,
        total_quantity=qty,
        order_type=order_type,
        lmt_price=lmt,
        aux_price=aux,
        tif=tif,
        account=account,
        order_ref=order_ref,
        outside_rth=outside_rth,
        client_id=client_id,
        perm_id=perm_id,
        oca_group=oca_group,
    )
    return order, contract


def _oca(order: wire.IbOrder, oca_type: int) -> int:
    # TWS reports a type (3) for orders in no group; it means nothing there.
    return oca_type if order.oca_group else 0


def _skip_delta_neutral_order(r: FieldReader, *, open_order: bool) -> None:
    r.skip(2)  # volatility, volatilityType
    dn_type = r.text()
    r.skip()  # deltaNeutralAuxPrice
    if dn_type:
        r.skip(4 if open_order else 1)  # conId (+ settlingFirm, clearingAccount/Intent)
        r.skip(4 if open_order else 3)  # (openClose +) shortSale, slot, location
    r.skip(2)  # continuousUpdate, referencePriceType


def _skip_legs_to_algo(r: FieldReader, *, open_order: bool) -> None:
    """Combo legs through algo parameters: count-prefixed and flag-guarded blocks."""
    r.skip()  # comboLegsDescrip
    r.skip(8 * r.integer())  # contract combo legs
    r.skip(r.integer())  # order combo leg prices
    r.skip(2 * r.integer())  # smart combo routing params
    r.skip(2)  # scaleInitLevelSize, scaleSubsLevelSize
    increment = r.decimal()
    if increment is not None and increment > 0:
        r.skip(7)
    if r.text():  # hedgeType
        r.skip()  # hedgeParam
    if open_order:
        r.skip()  # optOutSmartRouting
    r.skip(2)  # clearingAccount, clearingIntent
    r.skip()  # notHeld
    if r.flag():  # delta-neutral contract present
        r.skip(3)
    if r.text():  # algoStrategy
        r.skip(2 * r.integer())
    r.skip()  # solicited


def _skip_conditions(r: FieldReader, order_type: str) -> None:
    if order_type.upper() in _PEG_BENCH_TYPES:
        r.skip(5)
    count = r.integer()
    for _ in range(count):
        kind = r.integer()
        if kind not in _CONDITION_FIELDS:
            raise FieldError(f"unknown order condition type {kind}")
        r.skip(_CONDITION_FIELDS[kind])
    if count:
        r.skip(2)  # conditionsIgnoreRth, conditionsCancelOrder


def open_order(fields: list[str], version: int) -> wire.OpenOrder:
    """OPEN_ORDER, read up to the order state's status (what follows we do not use)."""
    r = FieldReader(fields, 1)  # no version field since server 145
    order_id = r.integer()
    order, contract = _order_head(r, with_client_id=True)
    r.skip(4)  # hidden, discretionaryAmt, goodAfterTime, sharesAllocation
    r.skip(3)  # faGroup, faMethod, faPercentage
    if version < V_FA_PROFILE_DESUPPORT:
        r.skip()  # faProfile
    r.skip(5)  # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm
    r.skip(3)  # shortSaleSlot, designatedLocation, exemptCode
    r.skip(6)  # auctionStrategy, startingPrice, stockRefPrice, delta, stockRange x2
    r.skip(5)  # displaySize, blockOrder, sweepToFill, allOrNone, minQty
    oca_type = r.integer()
    r.skip(3)  # eTradeOnly, firmQuoteOnly, nbboPriceCap (deprecated)
    parent_id = r.integer()
    r.skip()  # triggerMethod
    _skip_delta_neutral_order(r, open_order=True)
    r.skip(4)  # trailStopPrice, trailingPercent, basisPoints, basisPointsType
    _skip_legs_to_algo(r, open_order=True)
    r.skip()  # whatIf
    status = r.text()
    order = msgspec.structs.replace(order, parent_id=parent_id, oca_type=_oca(order, oca_type))
    return wire.OpenOrder(order_id=order_id, contract=contract, order=order, status=status)


def completed_order(fields: list[str], version: int) -> wire.CompletedOrder:
    """COMPLETED_ORDER: no order id, no client id; the status and fill come late."""
    r = FieldReader(fields, 1)
    order, contract = _order_head(r, with_client_id=False)
    r.skip(3)  # hidden, discretionaryAmt, goodAfterTime
    r.skip(3)  # faGroup, faMethod, faPercentage
    if version < V_FA_PROFILE_DESUPPORT:
        r.skip()  # faProfile
    r.skip(5)  # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm
    r.skip(3)  # shortSaleSlot, designatedLocation, exemptCode
    r.skip(5)  # startingPrice, stockRefPrice, delta, stockRange x2
    r.skip(4)  # displaySize, sweepToFill, allOrNone, minQty
    order = msgspec.structs.replace(order, oca_type=_oca(order, r.integer()))
    r.skip()  # triggerMethod
    _skip_delta_neutral_order(r, open_order=False)
    r.skip(2)  # trailStopPrice, trailingPercent
    _skip_legs_to_algo(r, open_order=False)
    status = r.text()
    r.skip(2)  # randomizeSize, randomizePrice
    _skip_conditions(r, order.order_type)
    r.skip(2)  # trailStopPrice, lmtPriceOffset
    r.skip(4)  # cashQty, dontUseAutoPriceForHedge, isOmsContainer, autoCancelDate
    filled = r.decimal()
    r.skip(6)  # refFuturesConId, autoCancelParent, shareholder, imbalanceOnly,
    #            routeMarketableToBbo, parentPermId
    completed_time = r.text()
    completed_status = r.text()
    return wire.CompletedOrder(
        contract=contract,
        order=order,
        status=status,
        filled_quantity=filled,
        completed_time=completed_time,
        completed_status=completed_status,
    )


def managed_accounts(fields: list[str], version: int) -> wire.ManagedAccounts:
    text = FieldReader(fields, 2).text()
    return wire.ManagedAccounts(accounts=[a for a in text.split(",") if a])


def exec_details(fields: list[str], version: int) -> wire.ExecDetails:
    r = FieldReader(fields, 1)  # no version field since server 136
    req_id = r.integer(-1)
    order_id = r.integer()
    contract = _contract(r)
    exec_id = r.text()
    time = r.text()
    account = r.text()
    exchange = r.text()
    side = r.text()
    shares = r.decimal_or_zero()
    price = r.decimal_or_zero()
    perm_id = r.integer()
    client_id = r.integer()
    liquidation = r.integer()
    cum_qty = r.decimal_or_zero()
    avg_price = r.decimal_or_zero()
    order_ref = r.text()
    ev_rule = r.text()
    ev_multiplier = r.decimal()
    model_code = r.text()
    last_liquidity = r.integer()
    revision = r.flag() if version >= V_PENDING_PRICE_REVISION else False
    return wire.ExecDetails(
        req_id=req_id,
        order_id=order_id,
        contract=contract,
        exec_id=exec_id,
        time=time,
        account=account,
        exchange=exchange,
        side=side,
        shares=shares,
        price=price,
        perm_id=perm_id,
        client_id=client_id,
        liquidation=liquidation,
        cum_qty=cum_qty,
        avg_price=avg_price,
        order_ref=order_ref,
        ev_rule=ev_rule,
        ev_multiplier=ev_multiplier,
        model_code=model_code,
        last_liquidity=last_liquidity,
        pending_price_revision=revision,
    )


def commission_report(fields: list[str], version: int) -> wire.CommissionReport:
    r = FieldReader(fields, 2)
    return wire.CommissionReport(
        exec_id=r.text(),
        commission=r.decimal_or_zero(),
        currency=r.text(),
        realized_pnl=r.decimal(),
    )


def position_data(fields: list[str], version: int) -> wire.PositionData:
    r = FieldReader(fields, 2)  # id, version 3
    account = r.text()
    contract = _contract(r)
    return wire.PositionData(
        account=account,
        contract=contract,
        position=r.decimal_or_zero(),
        avg_cost=r.decimal_or_zero(),
    )


def account_summary(fields: list[str], version: int) -> wire.AccountSummary:
    r = FieldReader(fields, 2)
    return wire.AccountSummary(
        req_id=r.integer(), account=r.text(), tag=r.text(), value=r.text(), currency=r.text()
    )


def account_value(fields: list[str], version: int) -> wire.AccountValue:
    r = FieldReader(fields, 2)
    return wire.AccountValue(key=r.text(), value=r.text(), currency=r.text(), account=r.text())


def portfolio_value(fields: list[str], version: int) -> wire.PortfolioValue:
    r = FieldReader(fields, 2)  # id, version 8
    return wire.PortfolioValue(
        contract=_contract(r, primary_venue=True),
        position=r.decimal_or_zero(),
        market_price=r.decimal_or_zero(),
        market_value=r.decimal_or_zero(),
        average_cost=r.decimal_or_zero(),
        unrealized_pnl=r.decimal_or_zero(),
        realized_pnl=r.decimal_or_zero(),
        account=r.text(),
    )


def account_update_multi(fields: list[str], version: int) -> wire.AccountUpdateMulti:
    r = FieldReader(fields, 2)
    return wire.AccountUpdateMulti(
        req_id=r.integer(),
        account=r.text(),
        model_code=r.text(),
        key=r.text(),
        value=r.text(),
        currency=r.text(),
    )


def _body(fields: list[str]) -> FieldReader:
    """A reader past the id and version fields most server messages start with."""
    return FieldReader(fields, 2)


def tick_price(fields: list[str], version: int) -> wire.TickPrice:
    r = _body(fields)
    return wire.TickPrice(req_id=r.integer(), field=r.integer(), price=r.decimal_or_zero())


# Messages of one field or none are decoded in place; the rest by the functions above.
DECODERS: dict[int, Callable[[list[str], int], wire.Incoming]] = {
    In.TICK_PRICE: tick_price,
    In.TICK_SNAPSHOT_END: lambda f, v: wire.TickSnapshotEnd(req_id=_body(f).integer()),
    In.ORDER_STATUS: order_status,
    In.ERR_MSG: error_message,
    In.OPEN_ORDER: open_order,
    In.ACCT_VALUE: account_value,
    In.PORTFOLIO_VALUE: portfolio_value,
    In.ACCT_UPDATE_TIME: lambda f, v: wire.AccountUpdateTime(time=_body(f).text()),
    In.NEXT_VALID_ID: lambda f, v: wire.NextValidId(order_id=_body(f).integer()),
    In.EXECUTION_DATA: exec_details,
    In.MANAGED_ACCTS: managed_accounts,
    In.CURRENT_TIME: lambda f, v: wire.CurrentTime(epoch_s=_body(f).integer()),
    In.OPEN_ORDER_END: lambda f, v: wire.OpenOrderEnd(),
    In.ACCT_DOWNLOAD_END: lambda f, v: wire.AccountDownloadEnd(account=_body(f).text()),
    In.EXECUTION_DATA_END: lambda f, v: wire.ExecDetailsEnd(req_id=_body(f).integer(-1)),
    In.COMMISSION_REPORT: commission_report,
    In.POSITION_DATA: position_data,
    In.POSITION_END: lambda f, v: wire.PositionEnd(),
    In.ACCOUNT_SUMMARY: account_summary,
    In.ACCOUNT_SUMMARY_END: lambda f, v: wire.AccountSummaryEnd(req_id=_body(f).integer()),
    In.ACCOUNT_UPDATE_MULTI: account_update_multi,
    In.ACCOUNT_UPDATE_MULTI_END: lambda f, v: wire.AccountUpdateMultiEnd(req_id=_body(f).integer()),
    In.COMPLETED_ORDER: completed_order,
    In.COMPLETED_ORDERS_END: lambda f, v: wire.CompletedOrdersEnd(),
}


def decode_message(fields: list[str], version: int) -> wire.Incoming | None:
    """The record for one server message, ``None`` for ids we do not use.

    Raises ``FieldError`` when a message we use is malformed.
    """
    msg_id = message_id(fields)
    decoder = DECODERS.get(msg_id)
    return decoder(fields, version) if decoder is not None else None
