"""ult: the real service as a process, driven through ``ult_actors.client.AsyncClient``."""

from __future__ import annotations

import importlib.util
from typing import Any

from bench_common import Unavailable


def missing() -> str | None:
    """What the ult section still lacks, or None when it can run."""
    needs = {
        "ult_actors.client": "the client library",
        "ult_actors.ipc.server": "the IPC server",
        "ult_actors.brokers.paper": "the paper broker",
    }
    absent = [what for mod, what in needs.items() if importlib.util.find_spec(mod) is None]
    return f"not written yet: {', '.join(absent)}" if absent else None


async def measure(plan: Any) -> dict[str, Any]:
    """Sequential and pipelined submits through the client."""
    raise Unavailable(missing() or "not wired in yet")
