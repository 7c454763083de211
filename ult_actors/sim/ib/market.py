"""Reference and market data the TWS simulator answers: contract details and quote snapshots.

``reqContractDetails`` (what ``ib_async.IB.qualifyContracts`` sends first)
is answered with CONTRACT_DATA then CONTRACT_DATA_END, or IB's error 200
for a contract it does not know. ``reqMktData`` is answered with the
current bid, ask (and, for stocks, last) as TICK_PRICE with their sizes,
then TICK_SNAPSHOT_END when a snapshot was asked; the simulator does not
stream further ticks. Messages are written as IB's clients read them at
the negotiated server version (157..178): below 164 CONTRACT_DATA has a
version field and the obsolete ``mdSizeMultiplier``, from 164 on it has the
size rules (``minSize``, ``sizeIncrement``, ``suggestedSizeIncrement``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.fields import FieldReader, fmt_decimal, fmt_price, message_id
from ult_actors.sim.ib.codec import encode_message, read_contract
from ult_actors.sim.ib.exchange import SimExchange
from ult_actors.sim.ib.instruments import Instrument, resolve

REQ_MKT_DATA, CANCEL_MKT_DATA, REQ_CONTRACT_DATA = 1, 2, 9
_TICK_PRICE, _TICK_SIZE, _CONTRACT_DATA, _CONTRACT_DATA_END, _TICK_SNAPSHOT_END = 1, 2, 10, 52, 57
_BID_SIZE, _BID, _ASK, _ASK_SIZE, _LAST, _LAST_SIZE = 0, 1, 2, 3, 4, 5
_V_SIZE_RULES = 164
#: Quoted size at the touch: shares for a stock, base-currency units for FX.
_STOCK_SIZE, _FX_SIZE = 100, 1_000_000
_NO_DEFINITION = "No security definition has been found for the request"


@dataclass(frozen=True)
class ContractQuery:
    """``reqContractDetails``."""

    req_id: int
    contract: wire.Contract


@dataclass(frozen=True)
class QuoteQuery:
    """``reqMktData``; ``snapshot``: one set of ticks then TICK_SNAPSHOT_END."""

    req_id: int
    contract: wire.Contract
    snapshot: bool


@dataclass(frozen=True)
class QuoteCancel:
    """``cancelMktData``: nothing streams, so nothing to stop."""

    req_id: int


MarketRequest = ContractQuery | QuoteQuery | QuoteCancel


def read_market_request(fields: list[str]) -> MarketRequest | None:
    """The market-data request ``fields`` hold, or ``None`` if they are another request."""
    msg_id = message_id(fields)
    r = FieldReader(fields, 2)  # id, version
    if msg_id == REQ_CONTRACT_DATA:
        return ContractQuery(req_id=r.integer(), contract=read_contract(r))
    if msg_id == REQ_MKT_DATA:
        req_id = r.integer()
        contract = read_contract(r)
        if contract.sec_type == "BAG":
            r.skip(4 * r.integer())  # combo legs: conId, ratio, action, exchange
        if r.flag():
            r.skip(3)  # delta-neutral contract: conId, delta, price
        r.skip()  # genericTickList
        return QuoteQuery(req_id=req_id, contract=contract, snapshot=r.flag())
    if msg_id == CANCEL_MKT_DATA:
        return QuoteCancel(req_id=r.integer())
    return None


def answer_market_request(
    request: MarketRequest, exchange: SimExchange, version: int
) -> list[list[str]]:
    """The messages (as fields) TWS answers ``request`` with."""
    if isinstance(request, QuoteCancel):
        return []
    instrument = resolve(request.contract)
    if instrument is None:
        error = wire.ErrorMessage(req_id=request.req_id, code=200, message=_NO_DEFINITION)
        return [encode_message(error, version)]
    if isinstance(request, ContractQuery):
        exchange_name = request.contract.exchange or instrument.contract.exchange
        return [
            contract_data(request.req_id, instrument, exchange_name, version),
            [str(_CONTRACT_DATA_END), "1", str(request.req_id)],
        ]
    exchange.instruments.setdefault(instrument.key, instrument)
    ticks = quote_ticks(request.req_id, instrument, exchange)
    if request.snapshot:
        ticks.append([str(_TICK_SNAPSHOT_END), "1", str(request.req_id)])
    return ticks


def quote_ticks(req_id: int, instrument: Instrument, exchange: SimExchange) -> list[list[str]]:
    """TICK_PRICE for bid and ask (and last, for a stock), each with its TICK_SIZE."""
    bid, ask = exchange.quote(instrument.key)
    size = _FX_SIZE if instrument.is_fx else _STOCK_SIZE
    prices = [(_BID, _BID_SIZE, bid), (_ASK, _ASK_SIZE, ask)]
    if not instrument.is_fx:  # IDEALPRO quotes have no last trade
        prices.append((_LAST, _LAST_SIZE, exchange.price(instrument.key)))
    out: list[list[str]] = []
    for price_type, size_type, price in prices:
        attrib = "1"  # canAutoExecute
        out.append(
            [
                str(_TICK_PRICE),
                "6",
                str(req_id),
                str(price_type),
                fmt_price(price),
                str(size),
                attrib,
            ]
        )
        out.append([str(_TICK_SIZE), "6", str(req_id), str(size_type), str(size)])
    return out


def contract_data(
    req_id: int, instrument: Instrument, exchange_name: str, version: int
) -> list[str]:
    """CONTRACT_DATA for ``instrument`` at server ``version``."""
    c = instrument.contract
    fx = instrument.is_fx
    head = [str(_CONTRACT_DATA)]
    if version < _V_SIZE_RULES:
        head.append("8")
    head += [
        str(req_id),
        c.symbol,
        c.sec_type,
        "",  # lastTradeDateOrContractMonth
        fmt_price(Decimal(0)),  # strike
        "",  # right
        exchange_name,
        c.currency,
        c.local_symbol,
        c.local_symbol if fx else "NMS",  # marketName
        c.trading_class,
        str(c.con_id),
        fmt_decimal(instrument.min_tick),
    ]
    if version < _V_SIZE_RULES:
        head.append("1")  # mdSizeMultiplier (obsolete from 164)
    body = [
        "",  # multiplier
        "LMT,MKT,STP,STP LMT" if fx else "LMT,MKT,STP,STP LMT,MOC,LOC",  # orderTypes
        "IDEALPRO" if fx else "SMART,NASDAQ,ISLAND,ARCA",  # validExchanges
        "1",  # priceMagnifier
        "0",  # underConId
        instrument.long_name,
        "" if fx else "NASDAQ",  # primaryExchange
        "",  # contractMonth
        "" if fx else "Technology",  # industry
        "" if fx else "Computers",  # category
        "",  # subcategory
        "US/Eastern",  # timeZoneId
        "",  # tradingHours
        "",  # liquidHours
        "",  # evRule
        "0",  # evMultiplier
        "0",  # secIdList count
        "4" if fx else "1",  # aggGroup
        "",  # underSymbol
        "",  # underSecType
        "",  # marketRuleIds
        "",  # realExpirationDate
        "" if fx else "COMMON",  # stockType
    ]
    if version == _V_SIZE_RULES - 1:
        body.append("1")  # suggestedSizeIncrement alone, at 163
    if version >= _V_SIZE_RULES:
        step = "1" if fx else "0.0001"
        body += [step, step, "100" if not fx else "1"]  # minSize, sizeIncrement, suggested
    return head + body
