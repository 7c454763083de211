"""Settings of one Alpaca connection, their ``ALPACA_*`` overrides, and its REST and stream URLs.

Paper or live is chosen by ``paper`` (``ALPACA_PAPER_TRADING``, default
true); ``base_url``/``stream_url``/``data_url`` (``ALPACA_BASE_URL``/
``ALPACA_STREAM_URL``/``ALPACA_DATA_URL``) point the connector anywhere else,
e.g. at ``ult sim alpaca``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ult_actors.bounds import Count, Seconds, SecondsOrZero, Times
from ult_actors.brokers.settings_env import env_bool, no_secret
from ult_actors.errors import ConfigError
from ult_actors.secrets import Secret, read_secret

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
#: Market data, for paper and live accounts alike.
DATA_URL = "https://data.alpaca.markets"


class AlpacaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One Alpaca connection; every field has a default. Keys come from the environment."""

    api_key: Secret = msgspec.field(default_factory=no_secret)
    api_secret: Secret = msgspec.field(default_factory=no_secret)
    #: Paper account (``ALPACA_PAPER_TRADING``); false means real money.
    paper: bool = True
    #: Real-money trading must be confirmed here, in the config file, on purpose.
    live_trading_confirmed: bool = False
    #: REST root, e.g. ``http://127.0.0.1:8765``; empty: Alpaca's paper or live host.
    base_url: str = ""
    #: WebSocket URL of ``trade_updates``; empty: ``base_url`` with ws(s) and ``/stream``.
    stream_url: str = ""
    #: Market data REST root (latest quotes, for arrival prices); empty: Alpaca's, or
    #: ``base_url`` when that is set (a simulator serves both).
    data_url: str = ""
    connect_timeout_s: Seconds = 5.0
    read_timeout_s: Seconds = 10.0
    write_timeout_s: Seconds = 10.0
    pool_timeout_s: Seconds = 5.0
    max_connections: Count = 8
    #: ``trade_updates`` is pinged when quiet this long (at most half ``stale_after_s``).
    stream_ping_interval_s: Seconds = 10.0
    #: ``trade_updates`` with no update and no pong for this long is lost (reconnect, resync).
    stale_after_s: Seconds = 30.0
    #: Stream reconnects in a row before the actor is restarted instead.
    stream_max_reconnects: Times = 5
    #: A stream session that lasted this long resets the count of failures in a row.
    stream_stable_after_s: Seconds = 30.0
    stream_backoff_initial_s: Seconds = 0.1
    stream_backoff_cap_s: Seconds = 5.0
    #: Longest a request waits for a rate-limit window to reset before failing.
    rate_limit_max_wait_s: SecondsOrZero = 1.0
    #: How often the fee activities (posted after their executions) are read; 0: never.
    fee_poll_s: SecondsOrZero = 60.0


def alpaca_settings_from_env(env: Mapping[str, str], base: AlpacaSettings) -> AlpacaSettings:
    """``base`` with ``ALPACA_*`` applied (secrets also from ``$CREDENTIALS_DIRECTORY``)."""
    changes: dict[str, Any] = {}
    for field, var in (("api_key", "ALPACA_API_KEY"), ("api_secret", "ALPACA_API_SECRET")):
        secret = read_secret(var, env)
        if secret:
            changes[field] = secret
    if "ALPACA_PAPER_TRADING" in env:
        changes["paper"] = env_bool("ALPACA_PAPER_TRADING", env["ALPACA_PAPER_TRADING"])
    if env.get("ALPACA_BASE_URL"):
        changes["base_url"] = _checked_url(
            "ALPACA_BASE_URL", env["ALPACA_BASE_URL"], ("http", "https")
        )
    if env.get("ALPACA_DATA_URL"):
        changes["data_url"] = _checked_url(
            "ALPACA_DATA_URL", env["ALPACA_DATA_URL"], ("http", "https")
        )
    if env.get("ALPACA_STREAM_URL"):
        changes["stream_url"] = _checked_url(
            "ALPACA_STREAM_URL", env["ALPACA_STREAM_URL"], ("ws", "wss")
        )
    return msgspec.structs.replace(base, **changes)


def rest_url(settings: AlpacaSettings) -> str:
    """The REST root this connection talks to."""
    if settings.base_url:
        return _checked_url("base_url", settings.base_url, ("http", "https"))
    return PAPER_URL if settings.paper else LIVE_URL


def data_url(settings: AlpacaSettings) -> str:
    """The market data REST root: explicit, else the REST root when that was given, else Alpaca's."""
    if settings.data_url:
        return _checked_url("data_url", settings.data_url, ("http", "https")).rstrip("/")
    if settings.base_url:
        return rest_url(settings).rstrip("/")
    return DATA_URL


def stream_url(settings: AlpacaSettings) -> str:
    """The ``trade_updates`` WebSocket URL: explicit, else derived from the REST root."""
    if settings.stream_url:
        return _checked_url("stream_url", settings.stream_url, ("ws", "wss"))
    root = rest_url(settings)
    scheme, _, rest = root.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}/stream"


def _checked_url(name: str, url: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(
            f"{name}: expected a {' or '.join(schemes)} URL such as"
            f" {schemes[0]}://127.0.0.1:8765, got scheme {parts.scheme!r}"
        )
    if parts.username or parts.password:
        # Keys go in headers only; a URL is logged and shown in errors.
        raise ConfigError(f"{name}: must not carry credentials; use ALPACA_API_KEY/SECRET")
    return url.rstrip("/")
