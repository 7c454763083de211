"""The service tree in-process (fake broker) behind a real IPC socket, for the IPC tests.

No tests live here; the test modules import these helpers (the fixtures are in ``conftest.py``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from tests.fakes import FakeConnector, FakeVenue
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.ipc.paths import SocketLocation
from ult_actors.ipc.server import IpcLoad, IpcSettings, serve_ipc
from ult_actors.service import Service, build_service

#: A request to the in-process venue lands at once: a restarted broker actor reconciles
#: after 0.2 s, not the 2 s a remote venue is given.
IN_PROCESS = ReconcilePolicy(settle_grace_s=0.2)


def fake_config(state_dir: Path) -> ServiceConfig:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="fake", state_dir=str(state_dir)),
        brokers=[BrokerEntry(name="fake", kind="fake", enabled=True, settings=None)],
    )
    cfg.supervision.backoff_initial_ms = 10
    return cfg


def settings_for(path: Path, **overrides: Any) -> IpcSettings:
    settings = IpcSettings(location=SocketLocation(path, dedicated=False, source="test"))
    return replace(settings, **overrides)


@asynccontextmanager
async def ipc_service(
    sock_dir: Path,
    venue: FakeVenue | None = None,
    *,
    connector: type[FakeConnector] = FakeConnector,
    load: IpcLoad | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[Service, Path]]:
    """The tree with one fake broker (a ``connector`` onto ``venue``), served on
    ``sock_dir/s``; yields (service, socket path). ``load``, if given, is the
    server's count of connections and unsent bytes, for the test to watch."""
    venue = venue or FakeVenue("fake")
    svc = build_service(
        fake_config(sock_dir),
        env={},
        rng=random.Random(7),
        connector_factories={"fake": lambda: connector("fake", venue)},
        reconcile=IN_PROCESS,
    )
    settings = settings_for(sock_dir / "s", **overrides)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(svc.run)
            path = await nursery.start(partial(serve_ipc, load=load), svc.gateway, settings)
        yield svc, path
        nursery.cancel_scope.cancel()
