"""The paper broker's knobs (``[brokers.<name>]`` with ``kind = "paper"``) and their env overrides.

Every field has a default, so the paper broker runs with no configuration
at all. The defaults favour speed for a local rehearsal venue: orders reach
the venue at once (``latency_ms = 0``), fills are a little worse than the
quote (``slippage_bps``), and the price walk ticks once a second.

Like a real venue, paper trades a list of instruments (``symbols``): by
default liquid US stocks and ETFs and the major FX pairs, each starting at
a plausible price (``DEFAULT_START_PRICES``); ``symbols = ["*"]`` trades
any well-formed symbol.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated

import msgspec

from ult_actors.bounds import Millis, SecondsOrZero, check_decimal_setting, key_error
from ult_actors.brokers.settings_env import env_int
from ult_actors.errors import ConfigError

#: The default instruments and their starting prices (a rough recent level of each).
DEFAULT_START_PRICES: dict[str, Decimal] = {
    symbol: Decimal(price)
    for symbol, price in (
        ("AAPL", "190"), ("MSFT", "410"), ("AMZN", "180"), ("GOOGL", "165"),
        ("META", "500"), ("NVDA", "120"), ("TSLA", "175"), ("JPM", "200"),
        ("V", "275"), ("XOM", "115"), ("IBM", "185"), ("SPY", "520"), ("QQQ", "440"),
        ("IWM", "205"), ("DIA", "390"), ("GLD", "215"), ("TLT", "92"),
        ("EUR_USD", "1.085"), ("GBP_USD", "1.27"), ("USD_JPY", "155"),
        ("USD_CHF", "0.9"), ("AUD_USD", "0.66"), ("USD_CAD", "1.36"),
        ("NZD_USD", "0.6"), ("EUR_GBP", "0.855"), ("EUR_JPY", "168"),
    )
}  # fmt: skip
#: ``symbols = ["*"]``: any well-formed symbol trades.
ANY_SYMBOL = "*"
#: The accounts file every paper connection shares, in the state directory.
DEFAULT_FILE = "paper.db"


class PaperSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """How the embedded paper venue behaves."""

    #: Cash of a fresh account (also after ``ult paper reset``).
    starting_cash: Decimal = Decimal("100000")
    #: Account currency reported by ``account()``.
    currency: str = "USD"
    #: Delay between the venue acknowledging an order and matching it. 0 matches
    #: inside ``submit``; above 0 ``submit`` returns the accepted order at once and
    #: fills arrive on the update stream after the delay (it never blocks the caller).
    latency_ms: Millis = 0
    #: Fills are this many basis points worse than the current price.
    slippage_bps: Decimal = Decimal("1")
    #: Extra basis points of slippage per share (or unit) of a fill: size impact.
    size_impact_bps_per_share: Decimal = Decimal("0.001")
    #: Commission charged per share (or unit) filled.
    commission_per_share: Decimal = Decimal("0.005")
    #: Seed of the price walk; the same seed replays the same prices.
    seed: int = 0
    #: The instruments this venue trades; an order for another is refused
    #: (``invalid_order``, field ``symbol``). ``["*"]``: any symbol.
    symbols: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_START_PRICES))
    #: Starting price of a symbol, e.g. ``{ AAPL = 190.0 }``, over ``DEFAULT_START_PRICES``;
    #: others start at ``default_start_price``.
    start_prices: dict[str, Decimal] = msgspec.field(default_factory=dict)
    default_start_price: Decimal = Decimal("100")
    #: Standard deviation of one tick's price move, in basis points.
    volatility_bps: Decimal = Decimal("2")
    #: Prices are rounded to this many decimals (4 suits both equities and FX).
    price_decimals: Annotated[int, msgspec.Meta(ge=0, le=10)] = 4
    #: Most an order can fill per tick; the rest waits for the next tick
    #: (ioc cancels it, fok refuses the whole order). 0 means no limit.
    displayed_size: Decimal = Decimal("10000")
    #: Seconds between price ticks (resting orders are checked on each); 0 stops the clock.
    tick_interval_s: SecondsOrZero = 1.0
    #: The SQLite file of the account. Absent: ``<state_dir>/paper.db``, the file every
    #: paper connection shares (accounts keyed by connection name); ``":memory:"``: an
    #: account that lives only as long as one connection.
    state_path: str | None = None


def _decimal(env: Mapping[str, str], name: str) -> Decimal:
    try:
        value = Decimal(env[name])
    except InvalidOperation:
        raise ConfigError(
            f"environment variable {name}: expected a number, got {env[name]!r}"
        ) from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"environment variable {name}: must be a number >= 0, got {env[name]!r}")
    return value


def _int(env: Mapping[str, str], name: str) -> int:
    value = env_int(name, env[name])
    if value < 0 and name != "PAPER_SEED":
        raise ConfigError(f"environment variable {name}: must be >= 0, got {env[name]!r}")
    return value


def paper_settings_from_env(env: Mapping[str, str], base: PaperSettings) -> PaperSettings:
    """``base`` with ``PAPER_STARTING_CASH``, ``PAPER_LATENCY_MS``, ``PAPER_SLIPPAGE_BPS``,
    ``PAPER_COMMISSION_PER_SHARE`` and ``PAPER_SEED`` applied (empty values are ignored)."""
    changes: dict[str, object] = {}
    if env.get("PAPER_STARTING_CASH"):
        changes["starting_cash"] = _decimal(env, "PAPER_STARTING_CASH")
    if env.get("PAPER_LATENCY_MS"):
        changes["latency_ms"] = _int(env, "PAPER_LATENCY_MS")
    if env.get("PAPER_SLIPPAGE_BPS"):
        changes["slippage_bps"] = _decimal(env, "PAPER_SLIPPAGE_BPS")
    if env.get("PAPER_COMMISSION_PER_SHARE"):
        changes["commission_per_share"] = _decimal(env, "PAPER_COMMISSION_PER_SHARE")
    if env.get("PAPER_SEED"):
        changes["seed"] = _int(env, "PAPER_SEED")
    settings = msgspec.structs.replace(base, **changes) if changes else base
    check_paper_settings(settings)
    return settings


def check_paper_settings(settings: PaperSettings) -> None:
    """Refuse values no venue could run with (``ConfigError`` naming the key)."""
    for key in (
        "starting_cash",
        "slippage_bps",
        "size_impact_bps_per_share",
        "commission_per_share",
        "volatility_bps",
        "displayed_size",
    ):
        problem = check_decimal_setting(getattr(settings, key), allow_zero=True)
        if problem:
            raise ConfigError(f"paper broker: {key}: {problem}")
    prices = {"default_start_price": settings.default_start_price}
    prices.update({f"start_prices.{k}": v for k, v in settings.start_prices.items()})
    for key, price in prices.items():
        problem = check_decimal_setting(price, allow_zero=False)
        if problem:
            raise ConfigError(f"paper broker: {key}: {problem}")
    if settings.state_path == "":
        raise ConfigError("paper broker: state_path is empty; leave it out for the default file")
    try:  # the declared ranges, again for what the environment changed
        msgspec.convert(msgspec.structs.asdict(settings), PaperSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"paper broker: {key_error(exc)}") from None
    if not settings.symbols:
        raise ConfigError('paper broker: symbols is empty; list instruments, or ["*"] for any')


def start_prices(settings: PaperSettings) -> dict[str, Decimal]:
    """Every symbol's configured start price: ``start_prices`` over the defaults."""
    return {**DEFAULT_START_PRICES, **settings.start_prices}


def trades_symbol(settings: PaperSettings, symbol: str) -> bool:
    """Whether the paper venue trades ``symbol`` (``symbols``, or ``["*"]`` for any)."""
    # ``symbol`` first: asked per order (arrival prices), and the scan for a listed one
    # stops where it is found; ``"*"`` first scanned the whole list every time.
    return symbol in settings.symbols or ANY_SYMBOL in settings.symbols
