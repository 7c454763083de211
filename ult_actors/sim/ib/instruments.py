"""What the TWS simulator trades: US stocks and the major FX pairs, as IB defines them.

A stock is any symbol with ``secType`` ``STK`` in USD (routed ``SMART``,
listed on NASDAQ). An FX pair is ``secType`` ``CASH`` on ``IDEALPRO``: the
base currency as symbol, the quote currency as currency, ``EUR.USD`` as
local symbol, prices in the quote currency to IDEALPRO's increments. Any
other contract has no security definition (IB's error 200).

Commissions follow IB's fixed pricing: stocks $0.005 a share, at least
$1.00 and at most 1% of the trade value; FX 0.2 basis points of the trade
value, at least $2.00.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from decimal import Decimal

from ult_actors.brokers.ib import wire

CENT = Decimal("0.01")
#: Starting price and minimum increment of each FX pair the simulator trades.
FX_PAIRS: dict[str, tuple[Decimal, Decimal]] = {
    pair: (Decimal(price), Decimal(tick))
    for pair, price, tick in (
        ("EUR.USD", "1.08500", "0.00005"),
        ("GBP.USD", "1.27000", "0.00005"),
        ("AUD.USD", "0.66000", "0.00005"),
        ("NZD.USD", "0.60000", "0.00005"),
        ("USD.JPY", "155.000", "0.005"),
        ("USD.CHF", "0.90000", "0.00005"),
        ("USD.CAD", "1.36000", "0.00005"),
        ("EUR.GBP", "0.85500", "0.00005"),
        ("EUR.JPY", "168.000", "0.005"),
    )
}
_STOCK_MAX_SHARE_OF_VALUE = Decimal("0.01")
_FX_RATE = Decimal("0.00002")
_FX_MIN = Decimal("2.00")


@dataclass(frozen=True)
class Instrument:
    """One tradable contract: its key in the book, IB's full contract, its price increment."""

    #: How the exchange keys prices and holdings: ``AAPL``, ``EUR.USD``.
    key: str
    contract: wire.Contract
    min_tick: Decimal
    long_name: str

    @property
    def is_fx(self) -> bool:
        return self.contract.sec_type == "CASH"


def resolve(contract: wire.Contract) -> Instrument | None:
    """The instrument a client's contract names, or ``None`` if IB would not know it.

    A contract given by ``conId`` alone (as after ``qualifyContracts``) is
    found by its id among the FX pairs and the stocks in ``known``.
    """
    sec_type = contract.sec_type.upper()
    if sec_type == "CASH" or (not sec_type and contract.local_symbol in FX_PAIRS):
        return _fx(contract)
    if sec_type in ("STK", "") and contract.symbol:
        if contract.currency not in ("", "USD"):
            return None
        return stock(contract.symbol.upper())
    if not sec_type and not contract.symbol and contract.con_id:
        return next(
            (fx for pair in FX_PAIRS if (fx := fx_pair(pair)).contract.con_id == contract.con_id),
            None,
        )
    return None


def stock(symbol: str) -> Instrument:
    """A US stock, routed SMART with NASDAQ as its primary listing."""
    return Instrument(
        key=symbol,
        contract=wire.Contract(
            symbol=symbol,
            sec_type="STK",
            exchange="SMART",
            currency="USD",
            con_id=con_id(symbol),
            primary_exchange="NASDAQ",
            local_symbol=symbol,
            trading_class=symbol,
        ),
        min_tick=CENT,
        long_name=f"{symbol} (simulated)",
    )


def fx_pair(pair: str) -> Instrument:
    """One of ``FX_PAIRS`` as an IDEALPRO ``CASH`` contract."""
    base, quote = pair.split(".")
    return Instrument(
        key=pair,
        contract=wire.Contract(
            symbol=base,
            sec_type="CASH",
            exchange="IDEALPRO",
            currency=quote,
            con_id=con_id(pair),
            local_symbol=pair,
            trading_class=pair,
        ),
        min_tick=FX_PAIRS[pair][1],
        long_name=f"European Currency {pair}" if base == "EUR" else f"{base} {quote}",
    )


def _fx(contract: wire.Contract) -> Instrument | None:
    pair = contract.local_symbol or f"{contract.symbol}.{contract.currency}".upper()
    if pair not in FX_PAIRS or contract.exchange not in ("", "IDEALPRO"):
        return None
    return fx_pair(pair)


def con_id(key: str) -> int:
    """A stable contract id per instrument (IB's are opaque integers too)."""
    return 100_000 + zlib.crc32(key.encode()) % 900_000


def commission(
    instrument: Instrument,
    qty: Decimal,
    value_usd: Decimal,
    *,
    per_share: Decimal = Decimal("0.005"),
    minimum: Decimal = Decimal("1.00"),
) -> Decimal:
    """IB's fixed-rate commission of one execution, in USD (stock rates as given)."""
    if instrument.is_fx:
        return max(_FX_MIN, (value_usd * _FX_RATE).quantize(CENT))
    by_shares = max(minimum, (qty * per_share).quantize(CENT))
    return min(by_shares, max(minimum, (value_usd * _STOCK_MAX_SHARE_OF_VALUE).quantize(CENT)))
