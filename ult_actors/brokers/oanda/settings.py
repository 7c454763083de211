"""Settings of an OANDA connection: the Struct, its ``OANDA_*`` overrides, its hosts.

Practice or live is chosen by ``environment`` (``OANDA_ENVIRONMENT``,
default ``practice``); ``base_url``/``stream_url`` (``OANDA_BASE_URL``/
``OANDA_STREAM_URL``) point the connection anywhere else, e.g. at
``ult sim oanda``; a base URL alone is used for streams too, since the
simulator serves both on one port. The token comes from ``OANDA_API_TOKEN``
or ``$CREDENTIALS_DIRECTORY/OANDA_API_TOKEN``, never from the config file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from ult_actors.bounds import Count, PerSecond, Seconds
from ult_actors.brokers.settings_env import no_secret
from ult_actors.errors import ConfigError
from ult_actors.secrets import Secret, read_secret

PRACTICE_URL = "https://api-fxpractice.oanda.com"
PRACTICE_STREAM_URL = "https://stream-fxpractice.oanda.com"
LIVE_URL = "https://api-fxtrade.oanda.com"
LIVE_STREAM_URL = "https://stream-fxtrade.oanda.com"


class OandaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One OANDA connection; every field has a default. The token comes from the environment."""

    token: Secret = msgspec.field(default_factory=no_secret)
    #: ``101-004-1435156-001``; empty: the token's only account (an error if it has several).
    account_id: str = ""
    #: ``practice`` (fxTrade Practice) or ``live`` (fxTrade, real money).
    environment: Literal["practice", "live"] = "practice"
    #: Real-money trading must be confirmed here, in the config file, on purpose.
    live_trading_confirmed: bool = False
    #: REST root, e.g. ``http://127.0.0.1:8620``; empty: OANDA's host for ``environment``.
    base_url: str = ""
    #: Streaming root; empty: OANDA's stream host, or ``base_url`` when that is set.
    stream_url: str = ""
    connect_timeout_s: Seconds = 5.0
    read_timeout_s: Seconds = 10.0
    write_timeout_s: Seconds = 10.0
    pool_timeout_s: Seconds = 5.0
    max_connections: Count = 8
    #: A transaction stream with no transaction and no heartbeat for this long is dead
    #: (OANDA sends a heartbeat every 5 s): it is dropped, reconnected and resynced.
    stale_after_s: Seconds = 15.0
    #: New connections opened per second, at most, by every connection to the account.
    #: OANDA allows 2; paced at half of it: the venue counts a connection at its first
    #: request, which on a busy host may arrive a good part of a second after the
    #: connect (at 1.6/s a chaos run under load still met a 429). Connections are kept
    #: alive, so the pace only matters after a reconnect.
    new_connections_per_s: PerSecond = 1.0


def oanda_settings_from_env(env: Mapping[str, str], base: OandaSettings) -> OandaSettings:
    """``base`` with ``OANDA_*`` applied (the token also from ``$CREDENTIALS_DIRECTORY``)."""
    changes: dict[str, Any] = {}
    token = read_secret("OANDA_API_TOKEN", env)
    if token:
        changes["token"] = token
    account = read_secret("OANDA_ACCOUNT_ID", env).reveal().strip()
    if account:
        changes["account_id"] = account
    if env.get("OANDA_ENVIRONMENT"):
        environment = env["OANDA_ENVIRONMENT"].strip().lower()
        if environment not in ("practice", "live"):
            raise ConfigError(
                f"environment variable OANDA_ENVIRONMENT: expected practice or live,"
                f" got {env['OANDA_ENVIRONMENT']!r}"
            )
        changes["environment"] = environment
    if env.get("OANDA_BASE_URL"):
        changes["base_url"] = _checked_url("OANDA_BASE_URL", env["OANDA_BASE_URL"])
    if env.get("OANDA_STREAM_URL"):
        changes["stream_url"] = _checked_url("OANDA_STREAM_URL", env["OANDA_STREAM_URL"])
    return msgspec.structs.replace(base, **changes)


def _checked_url(name: str, url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}: expected an http(s) URL like https://host:port, got {url!r}")
    if parts.username or parts.password:
        raise ConfigError(f"{name}: credentials do not belong in the URL")
    return url.strip().rstrip("/")


def rest_url(settings: OandaSettings) -> str:
    """The REST root this connection talks to."""
    if settings.base_url:
        return _checked_url("base_url", settings.base_url)
    return LIVE_URL if settings.environment == "live" else PRACTICE_URL


def stream_url(settings: OandaSettings) -> str:
    """The streaming root: explicit, else the base URL override, else OANDA's stream host."""
    if settings.stream_url:
        return _checked_url("stream_url", settings.stream_url)
    if settings.base_url:
        return rest_url(settings)
    return LIVE_STREAM_URL if settings.environment == "live" else PRACTICE_STREAM_URL
