"""NATS for remote clients and events: requests on ``ult.<cluster>.cmd``, events on JetStream.

Optional: needs the ``nats`` extra (nats-py). ``bridge.py`` runs nats-py on
its own asyncio thread; ``commands.py`` answers requests through the same
dispatch as the Unix socket; ``events.py`` publishes every event to the
cluster's JetStream stream; ``child.py`` joins them to the actor tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ult_actors.config import ServiceConfig
from ult_actors.errors import ConfigError

if TYPE_CHECKING:
    from ult_actors.service import ExtraChild


def nats_children(config: ServiceConfig) -> list[ExtraChild]:
    """The tree's ``nats`` child when ``[nats] url`` is set, else none (nats-py, an
    optional extra, is imported only then); ``ConfigError`` if it is not installed."""
    if not config.nats.url:
        return []
    try:
        from ult_actors.nats.child import nats_child
        from ult_actors.nats.connection import settings_from_config
    except ImportError as exc:
        raise ConfigError(
            f"{config.source}: nats.url is set but NATS support is not installed"
            f" (pip install 'ult-actors[nats]'): {exc}"
        ) from None
    settings = settings_from_config(config)
    assert settings is not None
    return [nats_child(settings, config.nats)]
