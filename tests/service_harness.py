"""A built service run in-process behind its real IPC socket, with a client connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from ult_actors.client import AsyncClient
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.ipc.paths import SocketLocation
from ult_actors.ipc.server import IpcSettings, serve_ipc
from ult_actors.service import Service


@asynccontextmanager
async def served(
    svc: Service, sock_dir: Path, *, timeout: float = 60
) -> AsyncIterator[AsyncClient]:
    """Run ``svc`` with its socket at ``sock_dir/s`` (keep it short); yield a connected client."""
    ipc = IpcSettings(location=SocketLocation(sock_dir / "s", dedicated=False, source="test"))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(svc.run)
            path = await nursery.start(serve_ipc, svc.gateway, ipc)
        async with AsyncClient(path, timeout=timeout) as client:
            yield client
        nursery.cancel_scope.cancel()


def one_broker_config(state_dir: Path, kind: str, settings: Any) -> ServiceConfig:
    """A configuration with one broker connection, named as its kind, state in ``state_dir``."""
    return ServiceConfig(
        service=ServiceSection(default_broker=kind, state_dir=str(state_dir)),
        brokers=[BrokerEntry(name=kind, kind=kind, enabled=True, settings=settings)],
    )
