"""The broker kinds the service can run, looked up by the ``kind`` of a config entry.

Each kind names its module, its settings Struct, the function applying its
environment overrides and its connector class. Modules are imported on first
use, so a service that runs only the paper broker never imports httpx-based
connectors.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ult_actors.brokers.base import Connector
from ult_actors.errors import ConfigError


@dataclass(frozen=True)
class BrokerKind:
    """How to configure and build connectors of one kind."""

    name: str
    module: str
    settings_class: str
    from_env_function: str
    connector_class: str
    #: Environment variables whose presence adds a connection of this kind.
    auto_enable_vars: tuple[str, ...] = ()

    def _module(self) -> Any:
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            raise ConfigError(f"broker kind {self.name!r} is not available: {exc}") from None

    def settings_type(self) -> type[Any]:
        """The kind's settings Struct (all fields defaulted)."""
        return getattr(self._module(), self.settings_class)  # type: ignore[no-any-return]

    def from_env(self, env: Mapping[str, str], base: Any) -> Any:
        """``base`` with the kind's environment overrides applied."""
        return getattr(self._module(), self.from_env_function)(env, base)

    def auto_enable(self, env: Mapping[str, str]) -> bool:
        """Whether a credential of this kind is set (environment or credentials directory)."""
        from ult_actors.secrets import read_secret

        return any(read_secret(name, env) for name in self.auto_enable_vars)

    def factory(self, name: str, settings: Any, **kwargs: Any) -> Callable[[], Connector]:
        """A function making a fresh connector (one per actor incarnation).

        A kind whose incarnations must share state (OANDA's transaction cursor,
        so a restarted actor fetches what it missed) provides its own
        ``connector_factory(name, settings, **kwargs)``.
        """
        module = self._module()
        custom = getattr(module, "connector_factory", None)
        if custom is not None:
            return custom(name, settings, **kwargs)  # type: ignore[no-any-return]
        cls = getattr(module, self.connector_class)

        def make() -> Connector:
            return cls(name, settings, **kwargs)  # type: ignore[no-any-return]

        return make


BROKER_KINDS: dict[str, BrokerKind] = {
    "paper": BrokerKind(
        "paper",
        "ult_actors.brokers.paper.connector",
        "PaperSettings",
        "paper_settings_from_env",
        "PaperConnector",
    ),
    "alpaca": BrokerKind(
        "alpaca",
        "ult_actors.brokers.alpaca.connector",
        "AlpacaSettings",
        "alpaca_settings_from_env",
        "AlpacaConnector",
        ("ALPACA_API_KEY",),
    ),
    "oanda": BrokerKind(
        "oanda",
        "ult_actors.brokers.oanda.connector",
        "OandaSettings",
        "oanda_settings_from_env",
        "OandaConnector",
        ("OANDA_API_TOKEN",),
    ),
    "ib": BrokerKind(
        "ib",
        "ult_actors.brokers.ib",
        "IbSettings",
        "ib_settings_from_env",
        "IbConnector",
        ("IB_PORT",),
    ),
}


def broker_kind(kind: str) -> BrokerKind:
    """The registered kind, or ``ConfigError`` naming the known ones."""
    try:
        return BROKER_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(BROKER_KINDS))
        raise ConfigError(f"unknown broker kind {kind!r} (known: {known})") from None
