"""How long each benchmark section may run: the quick plan and the full plan."""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import Budget


@dataclass(frozen=True)
class Plan:
    """Count and time bounds for every measurement of one run."""

    floor_sequential: Budget
    floor_pipelined: Budget
    ult_sequential: Budget
    ult_pipelined: Budget
    window: int
    actors_sequential: Budget
    actors_pipelined: Budget
    clients: tuple[int, ...]
    #: Labels of ``bench_ult.VARIANTS`` measured after the default configuration.
    ult_variants: tuple[str, ...]
    #: The bare WAL commit measured next to the ``synchronous=full`` variant.
    commit: Budget
    restart_samples: int
    restart_seconds: float
    drop_samples: int
    scale_sizes: tuple[int, ...]
    #: Also start each size a second time on the state it left.
    scale_restart: bool
    #: How long each started size's idle CPU is watched.
    scale_idle_s: float
    peer: Budget
    #: Also through ult with the journal off (what the journal adds to each order).
    peer_journal_off: bool
    #: Each HTTP engine's turn, at each level, in each round (``bench.http_engine``).
    http: Budget
    http_rounds: int


QUICK = Plan(
    floor_sequential=Budget(20_000, 2.0),
    floor_pipelined=Budget(100_000, 2.0),
    ult_sequential=Budget(20_000, 2.0),
    ult_pipelined=Budget(100_000, 2.0),
    window=128,
    actors_sequential=Budget(20_000, 1.5),
    actors_pipelined=Budget(50_000, 1.5),
    clients=(1, 4),
    ult_variants=("journal synchronous=full", "journal off, paper account in memory"),
    commit=Budget(2_000, 1.0),
    restart_samples=5,
    restart_seconds=4.0,
    drop_samples=2,
    scale_sizes=(1, 100, 1000),
    scale_restart=False,
    scale_idle_s=1.0,
    peer=Budget(300, 3.0),
    peer_journal_off=False,
    http=Budget(300, 1.0),
    http_rounds=1,
)

FULL = Plan(
    floor_sequential=Budget(200_000, 10.0),
    floor_pipelined=Budget(1_000_000, 10.0),
    ult_sequential=Budget(200_000, 15.0),
    ult_pipelined=Budget(1_000_000, 10.0),
    window=128,
    actors_sequential=Budget(200_000, 10.0),
    actors_pipelined=Budget(1_000_000, 10.0),
    clients=(1, 4),
    ult_variants=(
        "journal synchronous=full",
        "journal synchronous=normal",
        "journal off",
        "paper account in memory",
        "journal off, paper account in memory",
    ),
    commit=Budget(10_000, 3.0),
    restart_samples=20,
    restart_seconds=20.0,
    drop_samples=5,
    scale_sizes=(1, 100, 1000),
    scale_restart=True,
    scale_idle_s=1.0,
    peer=Budget(3_000, 15.0),
    peer_journal_off=True,
    http=Budget(2_000, 3.0),
    http_rounds=3,
)


#: For the test suite: every section runs its code path once, in seconds; figures meaningless.
SMOKE = Plan(
    floor_sequential=Budget(50, 2.0),
    floor_pipelined=Budget(200, 2.0),
    ult_sequential=Budget(50, 2.0),
    ult_pipelined=Budget(200, 2.0),
    window=16,
    actors_sequential=Budget(50, 2.0),
    actors_pipelined=Budget(200, 2.0),
    clients=(1, 2),
    ult_variants=("journal synchronous=full",),
    commit=Budget(20, 1.0),
    restart_samples=1,
    restart_seconds=1.0,
    drop_samples=1,
    scale_sizes=(1, 10),
    scale_restart=True,
    scale_idle_s=0.1,
    peer=Budget(5, 2.0),
    peer_journal_off=False,
    http=Budget(5, 1.0),
    http_rounds=1,
)


def plan_for(*, quick: bool, smoke: bool = False) -> Plan:
    """The plan for a quick or a full run (or the test suite's smoke run)."""
    if smoke:
        return SMOKE
    return QUICK if quick else FULL
