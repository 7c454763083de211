"""``ult --url nats://...``: the same commands, output and exit codes as over the socket."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ult_actors.testing.nats_server import NatsServer
from ult_actors.testing.process import UltProcess, run_ult


@pytest.fixture(scope="module")
def service(nats_server: NatsServer) -> Iterator[UltProcess]:
    svc = UltProcess.serve(env={"ULT_NATS_URL": nats_server.url}).start()
    yield svc
    svc.stop()
    svc.cleanup()


def test_ult_url_places_and_shows_an_order_like_the_socket(
    service: UltProcess, nats_server: NatsServer
) -> None:
    placed = run_ult("--url", nats_server.url, "submit", "AAPL", "buy", "2",
                     "--client-order-id", "cli-nats-1", "--json")  # fmt: skip
    assert placed.returncode == 0, placed.stderr
    assert json.loads(placed.stdout)["client_order_id"] == "cli-nats-1"
    over_nats = run_ult("order", "cli-nats-1", "--url", nats_server.url, "--json")
    over_socket = run_ult("order", "cli-nats-1", "--socket", str(service.socket), "--json")
    assert over_nats.returncode == over_socket.returncode == 0
    assert json.loads(over_nats.stdout)["id"] == json.loads(over_socket.stdout)["id"]


def test_ult_url_exit_codes_match_the_socket(service: UltProcess, nats_server: NatsServer) -> None:
    missing = run_ult("--url", nats_server.url, "order", "no-such-order", "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"]["code"] == "not_found"
    refused = run_ult("--url", nats_server.url, "submit", "AAPL", "buy", "1", "--type", "limit")
    assert refused.returncode == 1 and "limit_price" in refused.stderr
    nobody = run_ult("--url", nats_server.url, "--cluster", "nobody", "orders")
    assert nobody.returncode == 3
    assert "ult.nobody.cmd" in nobody.stderr and "--url / --cluster" in nobody.stderr
