"""peer: alpaca-py straight to ``ult sim alpaca`` against the same order through ult."""

from __future__ import annotations

import importlib.util
from typing import Any

from bench_common import Unavailable


def missing() -> str | None:
    """What the peer section still lacks, or None when it can run."""
    needs = {
        "ult_actors.sim.alpaca": "the Alpaca simulator (not written yet)",
        "ult_actors.brokers.alpaca": "the Alpaca connector (not written yet)",
        "alpaca": "alpaca-py (pip install -e '.[bench]')",
    }
    absent = [what for mod, what in needs.items() if importlib.util.find_spec(mod) is None]
    return f"missing: {', '.join(absent)}" if absent else None


async def measure(plan: Any) -> dict[str, Any]:
    """p50 of alpaca-py direct against through ult."""
    raise Unavailable(missing() or "not wired in yet")


async def measure_drop(plan: Any) -> dict[str, Any]:
    """Simulator drops its connections -> first order acknowledged through ult."""
    raise Unavailable(missing() or "not wired in yet")
