"""Smoke test of ``python -m bench.full_sync``: each way answers its orders, and the ways
put the lone batches' fsyncs where they say."""

from __future__ import annotations

import os
import threading

import trio

from bench import full_sync


def test_each_way_answers_its_orders_and_fsyncs_where_it_says() -> None:
    result = trio.run(full_sync._drive, 60, 20, 10, 50.0)
    assert result["thread"]["on_the_trio_thread"] == 0.0
    if os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat"):
        assert result["loop"]["on_the_trio_thread"] > 0.5  # every lone batch of an idle loop
    for way in (way for way in full_sync.WAYS if way in result):
        assert result[way]["p50_us"] >= 50  # an order's answer waits for its batch's fsync
        assert result[way]["cpu_per_order_us"] > 0
