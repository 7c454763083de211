"""One connection, many requests in flight: every request answered exactly once."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import trio
import trio.testing

from tests.fakes import FakeVenue
from tests.ipc.harness import ipc_service
from ult_actors.ipc.framing import FrameReader, ReplyCodec
from ult_actors.messages import OrderReply, OrderRequest, Ping, Submit

#: About 540 KB of frames: more than twice what a Unix socket buffers (about 210 KB here),
#: and twelve times the server's 256 in flight, so the client's write waits on the reads.
N_ORDERS = 3_000


async def test_thousands_of_pipelined_orders_are_each_answered_exactly_once(
    sock_dir: Path,
) -> None:
    venue = FakeVenue()
    # The client writes all 3,000 frames in one go; the server works on at most
    # 256 at a time and stops reading past that, so the rest wait in the socket
    # (back-pressure, not loss).
    async with ipc_service(sock_dir, venue, max_in_flight=256) as (_svc, path):
        codec = ReplyCodec()
        frames = b"".join(
            codec.encode(
                Submit(
                    id=i,
                    order=OrderRequest(
                        symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"pipe-{i}"
                    ),
                )
            )
            for i in range(1, N_ORDERS + 1)
        )
        stream = await trio.open_unix_socket(str(path))
        answers: dict[int, int] = {}
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, frames)  # all of them, without waiting
                reader = FrameReader()
                while len(answers) < N_ORDERS:
                    for payload in reader.feed(await stream.receive_some(1 << 16)):
                        reply = codec.decode(payload)
                        assert isinstance(reply, OrderReply), reply
                        assert reply.order.client_order_id == f"pipe-{reply.id}"
                        answers[reply.id] = answers.get(reply.id, 0) + 1
            # Nothing more is owed: the next frame is the answer to the next request.
            await stream.send_all(codec.encode(Ping(id=N_ORDERS + 1)))
            reply = codec.decode(next(iter(FrameReader().feed(await _one_frame(stream)))))
        assert reply.id == N_ORDERS + 1
        assert sorted(answers) == list(range(1, N_ORDERS + 1))
        assert set(answers.values()) == {1}
        assert venue.submits == N_ORDERS  # none lost, none doubled at the broker
        await stream.aclose()


async def _one_frame(stream: trio.SocketStream) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        chunk = await stream.receive_some(1 << 16)
        assert chunk, "connection closed"
        data += chunk
    return data
