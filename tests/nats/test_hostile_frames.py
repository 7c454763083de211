"""A hostile frame on the command subject is answered ``bad_request``; it does not
crash (and restart) the service's NATS side, which goes on serving."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest

from ult_actors.client import Client
from ult_actors.testing.nats_server import NatsServer
from ult_actors.testing.process import UltProcess


@pytest.fixture(scope="module")
def service(nats_server: NatsServer) -> Iterator[UltProcess]:
    svc = UltProcess.serve(env={"ULT_NATS_URL": nats_server.url}).start()
    yield svc
    svc.stop()
    svc.cleanup()


def test_maps_nested_deeper_than_msgspec_recurses_are_a_bad_request(
    service: UltProcess, nats_server: NatsServer
) -> None:
    import nats

    # A ping whose extra field holds maps nested 100,000 deep (well under max_payload).
    nested = b"\x83\xa4kind\xa4ping\xa2id\x07\xa1x" + b"\x81\xa1a" * 100_000 + b"\x01"

    async def ask() -> object:
        nc = await nats.connect(nats_server.url)
        try:
            reply = await nc.request("ult.default.cmd", nested, timeout=20)
        finally:
            await nc.close()
        return msgspec.msgpack.decode(reply.data)

    answer = asyncio.run(ask())
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == "bad_request"
    assert "nests too deeply" in answer["error"]["message"]
    assert service.socket is not None
    with Client(service.socket, timeout=20) as c:
        nats_actor = next(a for a in c.health().actors if a.name == "nats")
    assert nats_actor.restarts == 0
