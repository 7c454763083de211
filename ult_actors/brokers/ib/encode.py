"""One encoder per message a client sends, for server versions 157 to 178.

Each returns the message's fields (id first); ``protocol.encode_fields``
frames them. Fields that only exist from some server version on are written
only when the negotiated version has them, so the same request serialises
correctly for any server in our range.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.fields import fmt_bool, fmt_decimal, fmt_price
from ult_actors.brokers.ib.wire import Out

# Server versions at which PLACE_ORDER / CANCEL_ORDER grew fields.
V_DURATION = 158
V_POST_TO_ATS = 160
V_AUTO_CANCEL_PARENT = 162
V_ADVANCED_ORDER_REJECT = 166
V_MANUAL_ORDER_TIME = 169
V_FA_PROFILE_DESUPPORT = 177


def start_api(msg: wire.StartApi, version: int) -> list[str]:
    return [str(Out.START_API), "2", str(msg.client_id), msg.optional_capabilities]


def _contract_fields(c: wire.Contract) -> list[str]:
    return [
        str(c.con_id),
        c.symbol,
        c.sec_type,
        c.last_trade_date,
        fmt_price(c.strike),
        c.right,
        c.multiplier,
        c.exchange,
        c.primary_exchange,
        c.currency,
        c.local_symbol,
        c.trading_class,
        "",  # secIdType
        "",  # secId
    ]


def place_order(msg: wire.PlaceOrder, version: int) -> list[str]:
    """PLACE_ORDER for a plain (non-combo, non-algo) order: 110 fields at 157, 114 at 178."""
    o = msg.order
    fields = [str(Out.PLACE_ORDER), str(msg.order_id), *_contract_fields(msg.contract)]
    fields += [
        o.action,
        fmt_decimal(o.total_quantity),
        o.order_type,
        fmt_price(o.lmt_price),
        fmt_price(o.aux_price),
        o.tif,
        o.oca_group,
        o.account,
        "",  # openClose: empty lets TWS choose (server >= 155)
        "0",  # origin: customer
        o.order_ref,
        fmt_bool(o.transmit),
        str(o.parent_id),
        "0",  # blockOrder
        "0",  # sweepToFill
        "0",  # displaySize
        "0",  # triggerMethod
        fmt_bool(o.outside_rth),
        "0",  # hidden
        "",  # sharesAllocation (deprecated)
        "0",  # discretionaryAmt
        "",  # goodAfterTime
        "",  # goodTillDate
        "",  # faGroup
        "",  # faMethod
        "",  # faPercentage
    ]
    if version < V_FA_PROFILE_DESUPPORT:
        fields.append("")  # faProfile
    fields += [
        "",  # modelCode
        "0",  # shortSaleSlot
        "",  # designatedLocation
        "-1",  # exemptCode
        str(o.oca_type),
        "",  # rule80A
        "",  # settlingFirm
        "0",  # allOrNone
        "",  # minQty
        "",  # percentOffset
        "0",  # eTradeOnly
        "0",  # firmQuoteOnly
        "",  # nbboPriceCap
        "0",  # auctionStrategy
        "",  # startingPrice
        "",  # stockRefPrice
        "",  # delta
        "",  # stockRangeLower
        "",  # stockRangeUpper
        "0",  # overridePercentageConstraints
        "",  # volatility
        "",  # volatilityType
        "",  # deltaNeutralOrderType (empty: no delta-neutral block follows)
        "",  # deltaNeutralAuxPrice
        "0",  # continuousUpdate
        "",  # referencePriceType
        "",  # trailStopPrice
        "",  # trailingPercent
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize
        "",  # scalePriceIncrement (empty: no scale block follows)
        "",  # scaleTable
        "",  # activeStartTime
        "",  # activeStopTime
        "",  # hedgeType (empty: no hedgeParam)
        "0",  # optOutSmartRouting
        "",  # clearingAccount
        "",  # clearingIntent
        "0",  # notHeld
        "0",  # deltaNeutralContract present
        "",  # algoStrategy (empty: no algo params)
        "",  # algoId
        "0",  # whatIf
        "",  # orderMiscOptions
        "0",  # solicited
        "0",  # randomizeSize
        "0",  # randomizePrice
        "0",  # conditions count
        "",  # adjustedOrderType
        "",  # triggerPrice
        "",  # lmtPriceOffset
        "",  # adjustedStopPrice
        "",  # adjustedStopLimitPrice
        "",  # adjustedTrailingAmount
        "0",  # adjustableTrailingUnit
        "",  # extOperator
        "",  # softDollarTier name
        "",  # softDollarTier value
        "",  # cashQty
        "",  # mifid2DecisionMaker
        "",  # mifid2DecisionAlgo
        "",  # mifid2ExecutionTrader
        "",  # mifid2ExecutionAlgo
        "0",  # dontUseAutoPriceForHedge
        "0",  # isOmsContainer
        "0",  # discretionaryUpToLimitPrice
        "",  # usePriceMgmtAlgo (empty: TWS default)
    ]
    if version >= V_DURATION:
        fields.append("")  # duration
    if version >= V_POST_TO_ATS:
        fields.append("")  # postToAts
    if version >= V_AUTO_CANCEL_PARENT:
        fields.append("0")  # autoCancelParent
    if version >= V_ADVANCED_ORDER_REJECT:
        fields.append("")  # advancedErrorOverride
    if version >= V_MANUAL_ORDER_TIME:
        fields.append("")  # manualOrderTime
    # From 170 on, PEG BEST / PEG MID and IBKRATS orders append more; we send neither.
    return fields


def cancel_order(msg: wire.CancelOrder, version: int) -> list[str]:
    fields = [str(Out.CANCEL_ORDER), "1", str(msg.order_id)]
    if version >= V_MANUAL_ORDER_TIME:
        fields.append(msg.manual_order_cancel_time)
    return fields


def req_open_orders(msg: wire.ReqOpenOrders, version: int) -> list[str]:
    return [str(Out.REQ_OPEN_ORDERS), "1"]


def req_all_open_orders(msg: wire.ReqAllOpenOrders, version: int) -> list[str]:
    return [str(Out.REQ_ALL_OPEN_ORDERS), "1"]


def req_auto_open_orders(msg: wire.ReqAutoOpenOrders, version: int) -> list[str]:
    return [str(Out.REQ_AUTO_OPEN_ORDERS), "1", fmt_bool(msg.auto_bind)]


def req_ids(msg: wire.ReqIds, version: int) -> list[str]:
    return [str(Out.REQ_IDS), "1", str(msg.num_ids)]


def req_managed_accts(msg: wire.ReqManagedAccts, version: int) -> list[str]:
    return [str(Out.REQ_MANAGED_ACCTS), "1"]


def req_current_time(msg: wire.ReqCurrentTime, version: int) -> list[str]:
    return [str(Out.REQ_CURRENT_TIME), "1"]


def req_global_cancel(msg: wire.ReqGlobalCancel, version: int) -> list[str]:
    return [str(Out.REQ_GLOBAL_CANCEL), "1"]


def req_positions(msg: wire.ReqPositions, version: int) -> list[str]:
    return [str(Out.REQ_POSITIONS), "1"]


def cancel_positions(msg: wire.CancelPositions, version: int) -> list[str]:
    return [str(Out.CANCEL_POSITIONS), "1"]


def req_account_summary(msg: wire.ReqAccountSummary, version: int) -> list[str]:
    return [str(Out.REQ_ACCOUNT_SUMMARY), "1", str(msg.req_id), msg.group, msg.tags]


def cancel_account_summary(msg: wire.CancelAccountSummary, version: int) -> list[str]:
    return [str(Out.CANCEL_ACCOUNT_SUMMARY), "1", str(msg.req_id)]


def req_executions(msg: wire.ReqExecutions, version: int) -> list[str]:
    f = msg.filter
    return [
        str(Out.REQ_EXECUTIONS),
        "3",
        str(msg.req_id),
        str(f.client_id),
        f.account,
        f.time,
        f.symbol,
        f.sec_type,
        f.exchange,
        f.side,
    ]


def req_account_updates(msg: wire.ReqAccountUpdates, version: int) -> list[str]:
    return [str(Out.REQ_ACCT_DATA), "2", fmt_bool(msg.subscribe), msg.account]


def req_account_updates_multi(msg: wire.ReqAccountUpdatesMulti, version: int) -> list[str]:
    return [
        str(Out.REQ_ACCOUNT_UPDATES_MULTI),
        "1",
        str(msg.req_id),
        msg.account,
        msg.model_code,
        fmt_bool(msg.ledger_and_nlv),
    ]


def cancel_account_updates_multi(msg: wire.CancelAccountUpdatesMulti, version: int) -> list[str]:
    return [str(Out.CANCEL_ACCOUNT_UPDATES_MULTI), "1", str(msg.req_id)]


def req_completed_orders(msg: wire.ReqCompletedOrders, version: int) -> list[str]:
    return [str(Out.REQ_COMPLETED_ORDERS), fmt_bool(msg.api_only)]


def req_mkt_data(msg: wire.ReqMktData, version: int) -> list[str]:
    # The contract without secIdType/secId (place_order's last two): this request has none.
    return [
        str(Out.REQ_MKT_DATA),
        "11",
        str(msg.req_id),
        *_contract_fields(msg.contract)[:-2],
        "0",  # no delta-neutral contract
        "",  # genericTickList: the default ticks
        fmt_bool(msg.snapshot),
        "0",  # regulatorySnapshot (a fee per request)
        "",  # mktDataOptions
    ]


_ENCODERS: dict[type[Any], Callable[[Any, int], list[str]]] = {
    wire.StartApi: start_api,
    wire.PlaceOrder: place_order,
    wire.CancelOrder: cancel_order,
    wire.ReqOpenOrders: req_open_orders,
    wire.ReqAllOpenOrders: req_all_open_orders,
    wire.ReqAutoOpenOrders: req_auto_open_orders,
    wire.ReqIds: req_ids,
    wire.ReqManagedAccts: req_managed_accts,
    wire.ReqCurrentTime: req_current_time,
    wire.ReqGlobalCancel: req_global_cancel,
    wire.ReqPositions: req_positions,
    wire.CancelPositions: cancel_positions,
    wire.ReqAccountSummary: req_account_summary,
    wire.CancelAccountSummary: cancel_account_summary,
    wire.ReqExecutions: req_executions,
    wire.ReqAccountUpdates: req_account_updates,
    wire.ReqAccountUpdatesMulti: req_account_updates_multi,
    wire.CancelAccountUpdatesMulti: cancel_account_updates_multi,
    wire.ReqCompletedOrders: req_completed_orders,
    wire.ReqMktData: req_mkt_data,
}


def encode_request(msg: wire.Request, version: int) -> list[str]:
    """The fields of any request at the negotiated server version."""
    return _ENCODERS[type(msg)](msg, version)
