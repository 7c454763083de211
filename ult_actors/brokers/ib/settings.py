"""Configuration of one IB connection: ``[brokers.NAME]`` with ``kind = "ib"`` plus ``IB_*``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from ult_actors.bounds import PerSecond, Port, Seconds, SecondsOrZero, Times
from ult_actors.brokers.settings_env import env_int
from ult_actors.errors import ConfigError

#: TWS and IB Gateway ports that trade real money by IB's convention.
LIVE_PORTS = frozenset({7496, 4001})


class IbSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One TWS / IB Gateway API connection; every field has a default.

    Ports 7496 (TWS) and 4001 (IB Gateway) are IB's live-trading ports: the
    connector refuses them unless ``live_trading_confirmed = true`` is set in
    the config file (deliberately not from the environment).
    """

    host: str = "127.0.0.1"
    #: 7497 paper TWS (default), 7496 live TWS, 4002 paper Gateway, 4001 live Gateway.
    port: Port = 7497
    #: Unique per API connection to the same TWS; 0 also sees orders typed into TWS.
    client_id: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 1
    #: Account to trade; empty: the only account of the login (an error if there are several).
    account: str = ""
    live_trading_confirmed: bool = False
    #: Routing of stock orders.
    exchange: str = "SMART"
    currency: str = "USD"
    connect_timeout_s: Seconds = 5.0
    #: Bound on every request/answer exchange (open orders, positions, account...).
    request_timeout_s: Seconds = 10.0
    #: How long a submit waits for TWS to acknowledge before its outcome is "unknown".
    ack_timeout_s: Seconds = 10.0
    #: Outgoing messages in any one second, bursts included (TWS allows 50, then
    #: answers error 100 and drops the socket); the account's budget may allow fewer.
    max_messages_per_second: PerSecond = 45.0
    #: Silence on the socket after which TWS is asked the time (it sends nothing
    #: while nothing happens); no answer within ``probe_timeout_s`` (at most this
    #: long) and the connection counts as dropped: reconnect, then resync.
    stale_after_s: Seconds = 30.0
    probe_timeout_s: Seconds = 5.0
    #: Connect attempts repeated after error 326, for the old socket of a restarted
    #: actor that TWS has not noticed closing yet.
    client_id_in_use_retries: Times = 1
    client_id_in_use_delay_s: SecondsOrZero = 1.0


def ib_settings_from_env(env: Mapping[str, str], base: IbSettings) -> IbSettings:
    """``base`` with ``IB_HOST``, ``IB_PORT``, ``IB_CLIENT_ID``, ``IB_ACCOUNT`` applied."""
    changes: dict[str, Any] = {}
    if env.get("IB_HOST"):
        changes["host"] = env["IB_HOST"]
    if env.get("IB_PORT"):
        port = env_int("IB_PORT", env["IB_PORT"])
        if not 0 < port < 65536:
            raise ConfigError(f"environment variable IB_PORT: {port} is not a TCP port")
        changes["port"] = port
    if env.get("IB_CLIENT_ID"):
        changes["client_id"] = env_int("IB_CLIENT_ID", env["IB_CLIENT_ID"])
    if env.get("IB_ACCOUNT"):
        changes["account"] = env["IB_ACCOUNT"]
    return msgspec.structs.replace(base, **changes)
