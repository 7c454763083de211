"""The silent-stream benchmark runs end to end: each venue's silence is found and timed."""

from __future__ import annotations

from bench.silent_stream import measure


async def test_each_venues_silence_is_found_and_timed() -> None:
    results = await measure(["alpaca", "oanda", "ib"], [0.3], samples=1, seed=1)
    assert set(results) == {("alpaca", 0.3), ("oanda", 0.3), ("ib", 0.3)}
    assert all(len(times) == 1 and times[0] > 0 for times in results.values())
