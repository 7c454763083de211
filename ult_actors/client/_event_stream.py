"""The async client's event iterators, as async generators.

They live apart from ``_async`` because mypyc cannot compile an async
generator, and ``_async`` is compiled in the compiled build (the request path
runs there); following events is not on that path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from ult_actors.client._errors import ConnectionLost
from ult_actors.client._requests import event_of
from ult_actors.messages import Event, EventTopic

if TYPE_CHECKING:
    from pathlib import Path

    from ult_actors.client._async import AsyncClient
    from ult_actors.client._connection import Connection


async def follow(client: AsyncClient, topics: Iterable[EventTopic] | None) -> AsyncIterator[Event]:
    """``client.events(topics)``: subscribes on the first step, then yields each event."""
    async for event in await client.subscribe(topics):
        yield event


async def received(connection: Connection, socket_path: Path) -> AsyncIterator[Event]:
    """The events ``connection`` receives, until it closes (then its error is raised)."""
    async for message in connection.events:
        yield event_of(message)
    raise connection.closed_error or ConnectionLost(socket_path, "connection closed")
