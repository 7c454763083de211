"""The server side of the TWS API codec: what TWS sends and how it reads requests.

Server messages are written field for field as a standard client (IB's own
``ibapi``, ``ib_async``) reads them at the negotiated version, with IB's
defaults for everything the simulator does not model. Requests are read only
as far as the simulator needs: PLACE_ORDER's tail (combo legs, algos,
conditions) is not used, so it is not parsed and may hold anything.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.fields import FieldReader, fmt_bool, fmt_decimal, fmt_price, message_id
from ult_actors.brokers.ib.wire import In, Out

V_DURATION = 158
V_POST_TO_ATS = 160
V_AUTO_CANCEL_PARENT = 162
V_ADVANCED_ORDER_REJECT = 166
V_PEGBEST_PEGMID_OFFSETS = 170
V_FA_PROFILE_DESUPPORT = 177
V_PENDING_PRICE_REVISION = 178

# -- requests (client -> server) ---------------------------------------------


def _read_contract_request(r: FieldReader) -> wire.Contract:
    contract = read_contract(r)
    r.skip(2)  # secIdType, secId
    return contract


def read_contract(r: FieldReader) -> wire.Contract:
    """The 12 contract fields every request carries (conId .. tradingClass)."""
    con_id = r.integer()
    symbol = r.text()
    sec_type = r.text()
    last_trade_date = r.text()
    strike = r.decimal_or_zero()
    right = r.text()
    multiplier = r.text()
    exchange = r.text()
    primary_exchange = r.text()
    currency = r.text()
    local_symbol = r.text()
    trading_class = r.text()
    return wire.Contract(
        symbol=symbol,
        sec_type=sec_type,
        exchange=exchange,
        currency=currency,
        con_id=con_id,
        primary_exchange=primary_exchange,
        local_symbol=local_symbol,
        trading_class=trading_class,
        last_trade_date=last_trade_date,
        strike=strike,
        right=right,
        multiplier=multiplier,
    )


def read_place_order(fields: list[str], version: int) -> wire.PlaceOrder:
    r = FieldReader(fields, 1)  # no version field since server 145
    order_id = r.integer()
    contract = _read_contract_request(r)
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
    transmit = r.flag()
    parent_id = r.integer()
    r.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth = r.flag()
    r.skip(8)  # hidden, sharesAllocation, discretionaryAmt, goodAfter/TillDate, FA x3
    if version < V_FA_PROFILE_DESUPPORT:
        r.skip()  # faProfile
    r.skip(4)  # modelCode, shortSaleSlot, designatedLocation, exemptCode
    oca_type = r.integer()
    return wire.PlaceOrder(
        order_id=order_id,
        contract=contract,
        order=wire.IbOrder(
            action=action,
            total_quantity=qty,
            order_type=order_type,
            lmt_price=lmt,
            aux_price=aux,
            tif=tif,
            account=account,
            order_ref=order_ref,
            outside_rth=outside_rth,
            transmit=transmit,
            parent_id=parent_id,
            oca_group=oca_group,
            oca_type=oca_type,
        ),
    )


def read_request(fields: list[str], version: int) -> wire.Request | None:
    """The request a client's message stands for; ``None`` for ids the simulator ignores."""
    msg_id = message_id(fields)
    r = FieldReader(fields, 2)  # most requests: id, version
    if msg_id == Out.PLACE_ORDER:
        return read_place_order(fields, version)
    if msg_id == Out.CANCEL_ORDER:
        order_id = r.integer()
        cancel_time = r.text() if r.remaining() else ""
        return wire.CancelOrder(order_id=order_id, manual_order_cancel_time=cancel_time)
    if msg_id == Out.START_API:
        client_id = r.integer()
        return wire.StartApi(
            client_id=client_id, optional_capabilities=r.text() if r.remaining() else ""
        )
    simple: dict[int, Callable[[], wire.Request]] = {
        Out.REQ_OPEN_ORDERS: wire.ReqOpenOrders,
        Out.REQ_ALL_OPEN_ORDERS: wire.ReqAllOpenOrders,
        Out.REQ_MANAGED_ACCTS: wire.ReqManagedAccts,
        Out.REQ_CURRENT_TIME: wire.ReqCurrentTime,
        Out.REQ_GLOBAL_CANCEL: wire.ReqGlobalCancel,
        Out.REQ_POSITIONS: wire.ReqPositions,
        Out.CANCEL_POSITIONS: wire.CancelPositions,
    }
    if msg_id in simple:
        return simple[msg_id]()
    if msg_id == Out.REQ_AUTO_OPEN_ORDERS:
        return wire.ReqAutoOpenOrders(auto_bind=r.flag())
    if msg_id == Out.REQ_IDS:
        return wire.ReqIds(num_ids=r.integer(1))
    if msg_id == Out.REQ_ACCOUNT_SUMMARY:
        return wire.ReqAccountSummary(req_id=r.integer(), group=r.text(), tags=r.text())
    if msg_id == Out.CANCEL_ACCOUNT_SUMMARY:
        return wire.CancelAccountSummary(req_id=r.integer())
    if msg_id == Out.REQ_EXECUTIONS:
        req_id = r.integer()
        flt = wire.ExecutionFilter(
            client_id=r.integer(),
            account=r.text(),
            time=r.text(),
            symbol=r.text(),
            sec_type=r.text(),
            exchange=r.text(),
            side=r.text(),
        )
        return wire.ReqExecutions(req_id=req_id, filter=flt)
    if msg_id == Out.REQ_ACCT_DATA:
        return wire.ReqAccountUpdates(subscribe=r.flag(), account=r.text())
    if msg_id == Out.REQ_ACCOUNT_UPDATES_MULTI:
        return wire.ReqAccountUpdatesMulti(
            req_id=r.integer(), account=r.text(), model_code=r.text(), ledger_and_nlv=r.flag()
        )
    if msg_id == Out.CANCEL_ACCOUNT_UPDATES_MULTI:
        return wire.CancelAccountUpdatesMulti(req_id=r.integer())
    if msg_id == Out.REQ_COMPLETED_ORDERS:
        return wire.ReqCompletedOrders(api_only=FieldReader(fields, 1).flag())
    return None


# -- server messages (server -> client) --------------------------------------


def _contract_fields(c: wire.Contract, *, primary_venue: bool = False) -> list[str]:
    """The 11 contract fields of OPEN_ORDER, COMPLETED_ORDER, EXECUTION_DATA, POSITION_DATA.

    PORTFOLIO_VALUE writes the same 11 with the primary exchange in the venue slot.
    """
    return [
        str(c.con_id),
        c.symbol,
        c.sec_type,
        c.last_trade_date,
        fmt_price(c.strike),
        c.right,
        c.multiplier,
        c.primary_exchange if primary_venue else c.exchange,
        c.currency,
        c.local_symbol or c.symbol,
        c.trading_class or c.symbol,
    ]


def order_status(m: wire.OrderStatus, version: int) -> list[str]:
    return [
        str(In.ORDER_STATUS),
        str(m.order_id),
        m.status,
        fmt_decimal(m.filled),
        fmt_decimal(m.remaining),
        fmt_price(m.avg_fill_price or Decimal(0)),
        str(m.perm_id),
        str(m.parent_id),
        fmt_price(m.last_fill_price or Decimal(0)),
        str(m.client_id),
        m.why_held,
        fmt_price(m.mkt_cap_price or Decimal(0)),
    ]


def error_message(m: wire.ErrorMessage, version: int) -> list[str]:
    fields = [str(In.ERR_MSG), "2", str(m.req_id), str(m.code), m.message]
    if version >= V_ADVANCED_ORDER_REJECT:
        fields.append(m.advanced_order_reject_json)
    return fields


def _order_head(o: wire.IbOrder, c: wire.Contract, *, with_client_id: bool) -> list[str]:
    fields = [
        *_contract_fields(c),
        o.action,
        fmt_decimal(o.total_quantity),
        o.order_type,
        fmt_price(o.lmt_price or Decimal(0)),
        fmt_price(o.aux_price or Decimal(0)),
        o.tif,
        o.oca_group,
        o.account,
        "O",  # openClose
        "0",  # origin
        o.order_ref,
    ]
    if with_client_id:
        fields.append(str(o.client_id))
    fields += [str(o.perm_id), fmt_bool(o.outside_rth)]
    return fields


def _oca_type(o: wire.IbOrder) -> str:
    # TWS reports 3 for an order outside any group.
    return str(o.oca_type) if o.oca_group else "3"


def _fa_fields(version: int) -> list[str]:
    fields = ["", "", ""]  # faGroup, faMethod, faPercentage
    if version < V_FA_PROFILE_DESUPPORT:
        fields.append("")  # faProfile
    return fields


def _legs_to_algo(*, open_order: bool) -> list[str]:
    fields = [
        "",  # comboLegsDescrip
        "0",  # combo legs
        "0",  # order combo legs
        "0",  # smart combo routing params
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize
        "",  # scalePriceIncrement
        "",  # hedgeType
    ]
    if open_order:
        fields.append("0")  # optOutSmartRouting
    fields += [
        "",  # clearingAccount
        "",  # clearingIntent
        "0",  # notHeld
        "0",  # delta-neutral contract present
        "",  # algoStrategy
        "0",  # solicited
    ]
    return fields


def _peg_best_mid(version: int) -> list[str]:
    if version < V_PEGBEST_PEGMID_OFFSETS:
        return []
    # minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsetAtWhole/Half
    return ["", "", "", "", ""]


def open_order(m: wire.OpenOrder, version: int) -> list[str]:
    o = m.order
    fields = [str(In.OPEN_ORDER), str(m.order_id)]
    fields += _order_head(o, m.contract, with_client_id=True)
    fields += ["0", "0", "", ""]  # hidden, discretionaryAmt, goodAfterTime, sharesAllocation
    fields += _fa_fields(version)
    fields += ["", "", "", "", ""]  # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm
    fields += ["0", "", "-1"]  # shortSaleSlot, designatedLocation, exemptCode
    fields += ["0", "", "", "", "", ""]  # auctionStrategy, box x3, stock range x2
    fields += ["0", "0", "0", "0", "", _oca_type(o)]  # displaySize .. minQty, ocaType
    fields += ["0", "0", ""]  # eTradeOnly, firmQuoteOnly, nbboPriceCap
    fields += [str(o.parent_id), "0"]  # parentId, triggerMethod
    fields += ["", "0", "", "", "0", ""]  # volatility .. continuousUpdate, referencePriceType
    fields += ["", "", "", ""]  # trailStopPrice, trailingPercent, basisPoints, basisPointsType
    fields += _legs_to_algo(open_order=True)
    fields += ["0", m.status]  # whatIf, status
    fields += [""] * 9  # margin before/change/after (what-if only)
    fields += ["", "", "", ""]  # commission, min, max, currency (what-if only)
    fields += [""]  # warningText
    fields += ["0", "0"]  # randomizeSize, randomizePrice
    fields += ["0"]  # conditions
    fields += ["", "", "", "", "", "", "", "0"]  # adjusted order params
    fields += ["", "", ""]  # soft dollar tier name, value, display name
    fields += [
        "",
        "0",
        "0",
        "0",
        "0",
    ]  # cashQty, dontUseAutoPrice.., isOms.., discretionaryUpTo.., usePriceMgmtAlgo
    if version >= V_DURATION:
        fields.append("")
    if version >= V_POST_TO_ATS:
        fields.append("")
    if version >= V_AUTO_CANCEL_PARENT:
        fields.append("0")
    fields += _peg_best_mid(version)
    return fields


def completed_order(m: wire.CompletedOrder, version: int) -> list[str]:
    o = m.order
    fields = [str(In.COMPLETED_ORDER)]
    fields += _order_head(o, m.contract, with_client_id=False)
    fields += ["0", "0", ""]  # hidden, discretionaryAmt, goodAfterTime
    fields += _fa_fields(version)
    fields += ["", "", "", "", ""]  # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm
    fields += ["0", "", "-1"]  # shortSaleSlot, designatedLocation, exemptCode
    fields += ["", "", "", "", ""]  # box x3, stock range x2
    # displaySize, sweepToFill, allOrNone, minQty, ocaType
    fields += ["0", "0", "0", "", _oca_type(o)]
    fields += ["0"]  # triggerMethod
    fields += ["", "0", "", "", "0", ""]  # volatility .. referencePriceType
    fields += ["", ""]  # trailStopPrice, trailingPercent
    fields += _legs_to_algo(open_order=False)
    fields += [m.status]
    fields += ["0", "0"]  # randomizeSize, randomizePrice
    fields += ["0"]  # conditions
    fields += ["", ""]  # trailStopPrice, lmtPriceOffset
    fields += ["", "0", "0", ""]  # cashQty, dontUseAutoPrice.., isOmsContainer, autoCancelDate
    fields += [fmt_decimal(m.filled_quantity or Decimal(0))]
    fields += ["0", "0", "", "0", "0", "0"]  # refFuturesConId .. parentPermId
    fields += [m.completed_time, m.completed_status]
    fields += _peg_best_mid(version)
    return fields


def exec_details(m: wire.ExecDetails, version: int) -> list[str]:
    fields = [str(In.EXECUTION_DATA), str(m.req_id), str(m.order_id)]
    fields += _contract_fields(m.contract)
    fields += [
        m.exec_id,
        m.time,
        m.account,
        m.exchange,
        m.side,
        fmt_decimal(m.shares),
        fmt_price(m.price),
        str(m.perm_id),
        str(m.client_id),
        str(m.liquidation),
        fmt_decimal(m.cum_qty),
        fmt_price(m.avg_price),
        m.order_ref,
        m.ev_rule,
        fmt_price(m.ev_multiplier),
        m.model_code,
        str(m.last_liquidity),
    ]
    if version >= V_PENDING_PRICE_REVISION:
        fields.append(fmt_bool(m.pending_price_revision))
    return fields


def commission_report(m: wire.CommissionReport, version: int) -> list[str]:
    return [
        str(In.COMMISSION_REPORT),
        "1",
        m.exec_id,
        fmt_decimal(m.commission),
        m.currency,
        fmt_price(m.realized_pnl) or "1.7976931348623157E308",
        "1.7976931348623157E308",  # yield
        "0",  # yieldRedemptionDate
    ]


def position_data(m: wire.PositionData, version: int) -> list[str]:
    return [
        str(In.POSITION_DATA),
        "3",
        m.account,
        *_contract_fields(m.contract),
        fmt_decimal(m.position),
        fmt_price(m.avg_cost),
    ]


def portfolio_value(m: wire.PortfolioValue, version: int) -> list[str]:
    return [
        str(In.PORTFOLIO_VALUE),
        "8",
        *_contract_fields(m.contract, primary_venue=True),
        fmt_decimal(m.position),
        fmt_price(m.market_price),
        fmt_price(m.market_value),
        fmt_price(m.average_cost),
        fmt_price(m.unrealized_pnl),
        fmt_price(m.realized_pnl),
        m.account,
    ]


def _simple(msg_id: int, *values: str) -> list[str]:
    return [str(msg_id), "1", *values]


def encode_message(m: wire.Incoming, version: int) -> list[str]:
    """The fields of any server message at the negotiated version."""
    if isinstance(m, wire.OrderStatus):
        return order_status(m, version)
    if isinstance(m, wire.ErrorMessage):
        return error_message(m, version)
    if isinstance(m, wire.OpenOrder):
        return open_order(m, version)
    if isinstance(m, wire.CompletedOrder):
        return completed_order(m, version)
    if isinstance(m, wire.ExecDetails):
        return exec_details(m, version)
    if isinstance(m, wire.CommissionReport):
        return commission_report(m, version)
    if isinstance(m, wire.PositionData):
        return position_data(m, version)
    if isinstance(m, wire.PortfolioValue):
        return portfolio_value(m, version)
    if isinstance(m, wire.NextValidId):
        return _simple(In.NEXT_VALID_ID, str(m.order_id))
    if isinstance(m, wire.ManagedAccounts):
        return _simple(In.MANAGED_ACCTS, ",".join(m.accounts))
    if isinstance(m, wire.CurrentTime):
        return _simple(In.CURRENT_TIME, str(m.epoch_s))
    if isinstance(m, wire.OpenOrderEnd):
        return _simple(In.OPEN_ORDER_END)
    if isinstance(m, wire.CompletedOrdersEnd):
        return [str(In.COMPLETED_ORDERS_END)]  # no version field
    if isinstance(m, wire.ExecDetailsEnd):
        return _simple(In.EXECUTION_DATA_END, str(m.req_id))
    if isinstance(m, wire.PositionEnd):
        return _simple(In.POSITION_END)
    if isinstance(m, wire.AccountSummary):
        return _simple(In.ACCOUNT_SUMMARY, str(m.req_id), m.account, m.tag, m.value, m.currency)
    if isinstance(m, wire.AccountSummaryEnd):
        return _simple(In.ACCOUNT_SUMMARY_END, str(m.req_id))
    if isinstance(m, wire.AccountValue):
        return [str(In.ACCT_VALUE), "2", m.key, m.value, m.currency, m.account]
    if isinstance(m, wire.AccountUpdateTime):
        return _simple(In.ACCT_UPDATE_TIME, m.time)
    if isinstance(m, wire.AccountDownloadEnd):
        return _simple(In.ACCT_DOWNLOAD_END, m.account)
    if isinstance(m, wire.AccountUpdateMulti):
        return _simple(
            In.ACCOUNT_UPDATE_MULTI,
            str(m.req_id),
            m.account,
            m.model_code,
            m.key,
            m.value,
            m.currency,
        )
    if isinstance(m, wire.AccountUpdateMultiEnd):
        return _simple(In.ACCOUNT_UPDATE_MULTI_END, str(m.req_id))
    raise TypeError(f"no encoder for {type(m).__name__}")
