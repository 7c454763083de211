"""The paper broker as a kind the registry lists: settings, environment, connector."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ult_actors.brokers.base import BrokerKind, Connector
from ult_actors.brokers.paper.settings import (
    DEFAULT_FILE,
    PaperSettings,
    paper_settings_from_env,
)


def _factory(name: str, settings: PaperSettings, **kwargs: Any) -> Callable[[], Connector]:
    from ult_actors.brokers.paper.connector import PaperConnector

    return lambda: PaperConnector(name, settings, **kwargs)


def state_file(settings: PaperSettings, state_dir: Path, name: str) -> str:
    """The file holding the account of connection ``name``: ``state_path``, else the
    one file every paper connection of the service shares, in ``state_dir``."""
    if settings.state_path is not None:
        return settings.state_path
    return str(state_dir / DEFAULT_FILE)


def _place_state(settings: PaperSettings, state_dir: Path, name: str) -> PaperSettings:
    if settings.state_path is not None:
        return settings
    return msgspec.structs.replace(settings, state_path=state_file(settings, state_dir, name))


KIND = BrokerKind(
    "paper", PaperSettings, paper_settings_from_env, _factory, (), _place_state, books_fills=True
)
