"""The hot-path issue's goals, each judged on figures of one benchmark run.

Every row is a figure the run measured ("now"), the bound it must meet and
the bound it aims for; the verdict is ``aim met``, ``must met``, ``NOT met``
or ``not measured`` (a section did not run). A row of several figures (the
1,000 paper connections' RSS and start-up) meets a bound only when each of
its figures does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bench.report import dig
from bench.ult import FULL_SYNC

Verdict = Literal["aim met", "must met", "NOT met", "not measured"]

#: The floor server's CPU per pipelined message in the run the goals were set from
#: (c2e54af, 2026-11-25: docs/performance.md's first full run). The CPU row's bounds are
#: microseconds of that host's speed, and this host's speed moves by half within an hour.
GOALS_FLOOR_CPU_US = 23.2


@dataclass(frozen=True)
class Bound:
    """One figure of a goal: how to read it off the run, and its two bounds."""

    name: str
    unit: str
    #: ``"<="``: lower is better; ``">="``: higher is better.
    op: Literal["<=", ">="]
    must: float
    aim: float
    read: Callable[[dict[str, Any]], float | None]

    def meets(self, value: float, bound: float) -> bool:
        """Whether ``value`` is on the good side of ``bound``."""
        return value <= bound if self.op == "<=" else value >= bound


@dataclass(frozen=True)
class Goal:
    """One row of the goals table."""

    key: str
    figure: str
    bounds: tuple[Bound, ...]
    #: A line under the table that says what the row's figure means in this run, if any.
    note: Callable[[Goal, dict[str, Any]], str | None] | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ratio(a: Any, b: Any) -> float | None:
    x, y = _number(a), _number(b)
    return round(x / y, 3) if x is not None and y else None


def _full_sync_parts(doc: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """The ``full`` row's figures: its sequential p50, the round trip taken off, the bare
    WAL commit's p50, and the floor's sequential p50.

    The round trip taken off is the quicker of the floor's sequential p50 and the
    service's own (default configuration): the floor's stands for a bare round trip only
    where it is the quicker. Since the loop's busy poll (docs/performance.md, "the loop's
    busy poll"), a host whose wake-ups are dear can serve the service's sequential order
    quicker than the floor's echo, whose server sleeps between messages; there, taking
    the floor's off would credit the service with the floor's wake-up.
    """
    full = _number(dig(doc, "ult", "variants", FULL_SYNC, "sequential", "p50_us"))
    floor = _number(dig(doc, "floor", "sequential", "p50_us"))
    commit = _number(dig(doc, "ult", "bare_commit", "p50_us"))
    if full is None or floor is None or commit is None:
        return None
    own = _number(dig(doc, "ult", "sequential", "p50_us"))
    trip = own if own is not None and own < floor else floor
    return full, trip, commit, floor


def _full_sync_overhead_us(doc: dict[str, Any]) -> float | None:
    """``synchronous=full`` sequential p50, less a bare round trip's p50 (see
    ``_full_sync_parts``) and one bare WAL commit's.

    None (not measured) when that comes out below zero: the service's path holds
    one such commit, so the disk's fsyncs were slower while the bare commit was
    timed than while the service ran (a busy disk), and the difference says
    nothing about the service.
    """
    parts = _full_sync_parts(doc)
    if parts is None:
        return None
    full, trip, commit, _ = parts
    overhead = full - trip - commit
    return round(overhead, 1) if overhead >= 0 else None


def _full_sync_terms(goal: Goal, doc: dict[str, Any]) -> str | None:
    """The ``full`` row's terms, and which round trip was taken off."""
    parts = _full_sync_parts(doc)
    if parts is None:
        return None
    full, trip, commit, floor = parts
    p99 = _number(dig(doc, "ult", "bare_commit", "p99_us"))
    trip_text = (
        f"ult's default seq p50 {trip:g} us (quicker than the floor's {floor:g} us)"
        if trip < floor
        else f"floor p50 {trip:g} us"
    )
    return (
        f'synchronous="full": seq p50 {full:g} us - {trip_text} - bare WAL commit p50'
        f" {commit:g} us" + (f" (p99 {p99:g} us)" if p99 is not None else "")
    )


def _pipelined_ratio(doc: dict[str, Any]) -> float | None:
    """1 client's orders/s over the floor's, when it kept the goal's 128 orders in flight."""
    if dig(doc, "ult", "pipelined", "1", "window") != 128:
        return None
    return _ratio(dig(doc, "ult", "pipelined", "1", "per_s"), dig(doc, "floor", "pipelined", "per_s"))


def _cpu_beside_floor(goal: Goal, doc: dict[str, Any]) -> str | None:
    """The CPU row beside the floor's CPU in the same run and on the goals' day: which of
    a slower host and a slower service a miss comes from."""
    ult = _number(dig(doc, "ult", "pipelined", "1", "server_cpu_us"))
    floor = _number(dig(doc, "floor", "pipelined", "server_cpu_us"))
    if ult is None or not floor:
        return None
    (bound,) = goal.bounds
    return (
        f"server CPU per pipelined order {ult:g} us = {ult / floor:.2f}x the floor's {floor:g} us"
        f" in this run; the floor's was {GOALS_FLOOR_CPU_US:g} us when the goals were set"
        f" ({bound.must:g} us was {bound.must / GOALS_FLOOR_CPU_US:.1f}x it,"
        f" {bound.aim:g} us {bound.aim / GOALS_FLOOR_CPU_US:.1f}x)"
    )


def _scale_1000(field: str) -> Callable[[dict[str, Any]], float | None]:
    def read(doc: dict[str, Any]) -> float | None:
        for row in dig(doc, "scale", "sizes") or []:
            if row.get("brokers") == 1000:
                return _number(row.get(field))
        return None

    return read


GOALS: tuple[Goal, ...] = (
    Goal(
        "sequential_p50",
        "sequential submit->ack p50 / floor p50",
        (Bound("ratio", "x", "<=", 3.0, 2.0, lambda d: _ratio(
            dig(d, "ult", "sequential", "p50_us"), dig(d, "floor", "sequential", "p50_us"))),),
    ),
    Goal(
        "pipelined_per_s",
        "pipelined orders/s (1 client, window 128) / floor",
        (Bound("ratio", "x", ">=", 0.25, 0.5, _pipelined_ratio),),
    ),
    Goal(
        "full_sync_overhead",
        'synchronous="full": seq p50 - a bare round trip - one bare WAL commit',
        (Bound("overhead", "us", "<=", 200.0, 100.0, _full_sync_overhead_us),),
        _full_sync_terms,
    ),
    Goal(
        "peer_p50",
        "through ult to ult sim alpaca p50 / alpaca-py direct p50",
        (Bound("ratio", "x", "<=", 1.5, 1.0, lambda d: _ratio(
            dig(d, "peer", "via_ult", "p50_us"), dig(d, "peer", "direct", "p50_us"))),),
    ),
    Goal(
        "paper_1000",
        "1,000 paper connections: RSS / process start -> ready",
        (
            Bound("rss", "MB", "<=", 120.0, 100.0, _scale_1000("rss_mb")),
            Bound("ready", "s", "<=", 1.5, 1.0, _scale_1000("process_ready_s")),
        ),
    ),
    Goal(
        "server_cpu_pipelined",
        "server CPU per order, pipelined (1 client)",
        (Bound("cpu", "us", "<=", 120.0, 60.0, lambda d: _number(
            dig(d, "ult", "pipelined", "1", "server_cpu_us"))),),
        _cpu_beside_floor,
    ),
)  # fmt: skip


def verdict(bounds: tuple[Bound, ...], values: list[float | None]) -> Verdict:
    """The verdict of one row from its figures."""
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return "not measured"
    if all(b.meets(v, b.aim) for b, v in zip(bounds, known, strict=True)):
        return "aim met"
    if all(b.meets(v, b.must) for b, v in zip(bounds, known, strict=True)):
        return "must met"
    return "NOT met"


def goals(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal with the figures this run measured, its bounds and its verdict."""
    out = []
    for goal in GOALS:
        values = [b.read(doc) for b in goal.bounds]
        out.append(
            {
                "goal": goal.key,
                "figure": goal.figure,
                "now": {b.name: v for b, v in zip(goal.bounds, values, strict=True)},
                "must": {b.name: f"{b.op} {b.must:g}" for b in goal.bounds},
                "aim": {b.name: f"{b.op} {b.aim:g}" for b in goal.bounds},
                "unit": {b.name: b.unit for b in goal.bounds},
                "verdict": verdict(goal.bounds, values),
                "note": goal.note(goal, doc) if goal.note else None,
            }
        )
    return out
