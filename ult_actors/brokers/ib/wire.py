"""The TWS API messages we use, as typed records.

One frozen Struct per message, named after IB's message; only the fields we
read or write are kept, and everything else on the wire is written with
IB's defaults (see ``encode.py`` and the simulator's codec). Prices and
quantities are ``Decimal``; IB's "unset" is ``None``.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

# -- message ids --------------------------------------------------------------


class Out:
    """Ids of messages a client sends."""

    REQ_MKT_DATA = 1
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_COMPLETED_ORDERS = 99


class In:
    """Ids of messages a server sends."""

    TICK_PRICE = 1
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    CURRENT_TIME = 49
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


# -- shared parts -------------------------------------------------------------


class Contract(msgspec.Struct, frozen=True, kw_only=True):
    """What is traded; for stocks symbol, exchange and currency suffice."""

    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    currency: str = "USD"
    con_id: int = 0
    primary_exchange: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    last_trade_date: str = ""
    strike: Decimal = Decimal(0)
    right: str = ""
    multiplier: str = ""


class IbOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The order attributes we set or read; the rest keep IB's defaults."""

    action: str  # BUY / SELL
    total_quantity: Decimal
    order_type: str  # MKT, LMT, STP, STP LMT
    lmt_price: Decimal | None = None
    aux_price: Decimal | None = None
    tif: str = "DAY"
    account: str = ""
    order_ref: str = ""
    outside_rth: bool = False
    transmit: bool = True
    client_id: int = 0
    perm_id: int = 0
    parent_id: int = 0
    #: One-cancels-all group: orders sharing this name are linked (empty: none).
    oca_group: str = ""
    #: What a fill in the group does to the others: 1 cancel (with block),
    #: 2 reduce (with block), 3 reduce (without block).
    oca_type: int = 0


# -- client -> server ---------------------------------------------------------


class StartApi(msgspec.Struct, frozen=True, kw_only=True):
    client_id: int
    optional_capabilities: str = ""


class PlaceOrder(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int
    contract: Contract
    order: IbOrder


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int
    manual_order_cancel_time: str = ""


class ReqOpenOrders(msgspec.Struct, frozen=True):
    """This client's open orders, then OPEN_ORDER_END."""


class ReqAllOpenOrders(msgspec.Struct, frozen=True):
    """Every API client's open orders, then OPEN_ORDER_END."""


class ReqAutoOpenOrders(msgspec.Struct, frozen=True, kw_only=True):
    auto_bind: bool


class ReqIds(msgspec.Struct, frozen=True, kw_only=True):
    num_ids: int = 1


class ReqManagedAccts(msgspec.Struct, frozen=True):
    pass


class ReqCurrentTime(msgspec.Struct, frozen=True):
    pass


class ReqGlobalCancel(msgspec.Struct, frozen=True):
    pass


class ReqPositions(msgspec.Struct, frozen=True):
    pass


class CancelPositions(msgspec.Struct, frozen=True):
    pass


class ReqAccountSummary(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int
    group: str = "All"
    tags: str = "TotalCashValue,BuyingPower,NetLiquidation"


class CancelAccountSummary(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int


class ExecutionFilter(msgspec.Struct, frozen=True, kw_only=True):
    client_id: int = 0
    account: str = ""
    time: str = ""
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""


class ReqExecutions(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int
    filter: ExecutionFilter = ExecutionFilter()


class ReqAccountUpdates(msgspec.Struct, frozen=True, kw_only=True):
    subscribe: bool
    account: str = ""


class ReqAccountUpdatesMulti(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int
    account: str = ""
    model_code: str = ""
    ledger_and_nlv: bool = False


class CancelAccountUpdatesMulti(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int


class ReqCompletedOrders(msgspec.Struct, frozen=True, kw_only=True):
    api_only: bool = True


class ReqMktData(msgspec.Struct, frozen=True, kw_only=True):
    """``reqMktData``: market data of a contract; ``snapshot``: its quote once."""

    req_id: int
    contract: Contract
    snapshot: bool = True


Request = (
    StartApi
    | PlaceOrder
    | CancelOrder
    | ReqOpenOrders
    | ReqAllOpenOrders
    | ReqAutoOpenOrders
    | ReqIds
    | ReqManagedAccts
    | ReqCurrentTime
    | ReqGlobalCancel
    | ReqPositions
    | CancelPositions
    | ReqAccountSummary
    | CancelAccountSummary
    | ReqExecutions
    | ReqAccountUpdates
    | ReqAccountUpdatesMulti
    | CancelAccountUpdatesMulti
    | ReqCompletedOrders
    | ReqMktData
)

# -- server -> client ---------------------------------------------------------


class NextValidId(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int


class ManagedAccounts(msgspec.Struct, frozen=True, kw_only=True):
    accounts: list[str]


class OrderStatus(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int
    status: str
    filled: Decimal
    remaining: Decimal
    avg_fill_price: Decimal | None
    perm_id: int = 0
    parent_id: int = 0
    last_fill_price: Decimal | None = None
    client_id: int = 0
    why_held: str = ""
    mkt_cap_price: Decimal | None = None


class OpenOrder(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int
    contract: Contract
    order: IbOrder
    status: str


class OpenOrderEnd(msgspec.Struct, frozen=True):
    pass


class CompletedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A finished order (no order id on the wire: match by perm id or order ref)."""

    contract: Contract
    order: IbOrder
    status: str
    filled_quantity: Decimal | None = None
    completed_time: str = ""
    completed_status: str = ""


class CompletedOrdersEnd(msgspec.Struct, frozen=True):
    pass


class ExecDetails(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int
    order_id: int
    contract: Contract
    exec_id: str
    time: str
    account: str
    exchange: str
    side: str  # BOT / SLD
    shares: Decimal
    price: Decimal
    perm_id: int = 0
    client_id: int = 0
    liquidation: int = 0
    cum_qty: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    order_ref: str = ""
    ev_rule: str = ""
    ev_multiplier: Decimal | None = None
    model_code: str = ""
    last_liquidity: int = 0
    pending_price_revision: bool = False


class ExecDetailsEnd(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int


class CommissionReport(msgspec.Struct, frozen=True, kw_only=True):
    exec_id: str
    commission: Decimal
    currency: str = "USD"
    realized_pnl: Decimal | None = None


class PositionData(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    contract: Contract
    position: Decimal
    avg_cost: Decimal


class PositionEnd(msgspec.Struct, frozen=True):
    pass


class AccountSummary(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int
    account: str
    tag: str
    value: str
    currency: str = ""


class AccountSummaryEnd(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int


class ErrorMessage(msgspec.Struct, frozen=True, kw_only=True):
    """ERR_MSG: errors, warnings and notices alike (``req_id`` -1 for system notices)."""

    req_id: int
    code: int
    message: str
    advanced_order_reject_json: str = ""


class CurrentTime(msgspec.Struct, frozen=True, kw_only=True):
    epoch_s: int


class AccountValue(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    value: str
    currency: str
    account: str


class PortfolioValue(msgspec.Struct, frozen=True, kw_only=True):
    contract: Contract
    position: Decimal
    market_price: Decimal
    market_value: Decimal
    average_cost: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    account: str


class AccountUpdateTime(msgspec.Struct, frozen=True, kw_only=True):
    time: str


class AccountDownloadEnd(msgspec.Struct, frozen=True, kw_only=True):
    account: str


class AccountUpdateMulti(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int
    account: str
    model_code: str
    key: str
    value: str
    currency: str


class AccountUpdateMultiEnd(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int


class TickPrice(msgspec.Struct, frozen=True, kw_only=True):
    """One price of a market data request; ``field``: ``TICK_BID``, ``TICK_ASK``, ``TICK_LAST`` ..."""

    req_id: int
    field: int
    price: Decimal


class TickSnapshotEnd(msgspec.Struct, frozen=True, kw_only=True):
    req_id: int


#: ``TickPrice.field`` of the best bid and ask.
TICK_BID, TICK_ASK = 1, 2


Incoming = (
    NextValidId
    | ManagedAccounts
    | OrderStatus
    | OpenOrder
    | OpenOrderEnd
    | CompletedOrder
    | CompletedOrdersEnd
    | ExecDetails
    | ExecDetailsEnd
    | CommissionReport
    | PositionData
    | PositionEnd
    | AccountSummary
    | AccountSummaryEnd
    | ErrorMessage
    | CurrentTime
    | AccountValue
    | PortfolioValue
    | AccountUpdateTime
    | AccountDownloadEnd
    | AccountUpdateMulti
    | AccountUpdateMultiEnd
    | TickPrice
    | TickSnapshotEnd
)
