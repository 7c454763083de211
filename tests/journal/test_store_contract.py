"""The journal store contract, run against every implementation (SQLite and PostgreSQL).

What the service relies on of any journal: a record is durable when
``record`` returns; concurrent records share transactions; the brokers'
news is seen at once, committed with the next batch and folded; everything
is read back intact by a store opened later; fills are kept once.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.journal.harness import Backend, fill, order, paper_service, short_socket_path
from ult_actors.client import AsyncClient, DuplicateOrder
from ult_actors.errors import Internal
from ult_actors.messages import ReportQuery


async def test_a_record_is_durable_when_record_returns(backend: Backend) -> None:
    async with backend.open() as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        assert backend.rows() == {"c-1": "pending_new"}
        with trio.fail_after(10):
            await store.record(order("c-1", "filled", oid="b-1"))
        assert backend.rows() == {"c-1": "filled"}
        assert [(e.event, e.order.status) for e in await store.history("c-1")] == [
            ("submit", "pending_new"),
            ("update", "filled"),
        ]


async def test_concurrent_records_share_transactions(backend: Backend) -> None:
    async with backend.open() as store:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(500):
                    nursery.start_soon(store.record, order(f"c-{i}"))
        assert store.records == 500
        # Grouped, not one transaction per order.
        assert 0 < await backend.transactions(store) < 500 // 4
        assert len(backend.rows()) == 500


async def test_without_group_commit_every_record_is_its_own_transaction(
    backend: Backend,
) -> None:
    async with backend.open(group_commit=False) as store:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(store.record, order(f"c-{i}"))
        assert (store.records, store.commits) == (50, 50)


async def test_a_reopened_journal_answers_every_read_from_storage(backend: Backend) -> None:
    with trio.fail_after(20):
        async with backend.open() as store:
            await store.record(order("open-1", "accepted", oid="b-1"))
            await store.record(order("done-1", "filled", oid="b-2"))
            await store.record(order("other-1", "pending_new", broker="alpaca"))
            await store.record(order("open-1", "partially_filled", oid="b-1"))
        # A small cache forces reads of older orders to go to storage.
        async with backend.open(cache_size=1) as store:
            assert (await store.get("done-1")) == order("done-1", "filled", oid="b-2")
            assert (await store.get_by_order_id("b-2")) == order("done-1", "filled", oid="b-2")
            assert await store.find_by_order_id("b-2") == [order("done-1", "filled", oid="b-2")]
            got = await store.get("open-1")
            assert got is not None and got.status == "partially_filled"
            assert await store.get("never") is None
            assert await store.get_by_order_id("b-404") is None
            newest = await store.list_orders()
            assert [o.client_order_id for o in newest] == ["open-1", "other-1", "done-1"]
            assert [o.client_order_id for o in await store.list_orders(limit=1)] == ["open-1"]
            only_open = await store.list_orders(open_only=True, broker="paper")
            assert [o.client_order_id for o in only_open] == ["open-1"]
            pending = await store.non_terminal("alpaca")
            assert [(o.client_order_id, o.outcome) for o in pending] == [("other-1", "unknown")]
            assert {o.client_order_id for o in await store.non_terminal()} == {"open-1", "other-1"}
            # Decimals come back exact.
            assert got.qty == Decimal("1.5")
            # The sequence continues after the rows it found.
            await store.record(order("new-1"), event="submit")
            assert [e.seq for e in await store.history("new-1")] == [5]


async def test_a_broker_the_journal_never_had_an_order_of_is_answered_without_a_read(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each broker actor asks this on start; 1,000 brokers must not cost 1,000 thread trips.
    with trio.fail_after(20):
        async with backend.open() as store:
            await store.record(order("p-1", "filled", oid="b-1"))
        async with backend.open() as store:
            assert [o.client_order_id for o in await store.list_orders(broker="paper")] == ["p-1"]
            trips: list[object] = []
            run_sync = trio.to_thread.run_sync

            async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
                trips.append(fn)
                return await run_sync(fn, *args, **kwargs)

            with monkeypatch.context() as patched:
                patched.setattr(trio.to_thread, "run_sync", counted)
                assert await store.list_orders(broker="alpaca", limit=1) == []
            assert trips == []  # no read of the file: no thread trip
            await store.record(order("a-1", "accepted", oid="b-2", broker="alpaca"))
        async with backend.open() as store:
            assert [o.client_order_id for o in await store.list_orders(broker="alpaca")] == ["a-1"]


async def test_a_record_made_soon_is_seen_at_once_and_stored_in_the_background(
    backend: Backend,
) -> None:
    async with backend.open(**unhurried(backend)) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        store.record_soon(order("c-1", "filled", oid="b-1"))  # returns without a checkpoint
        got = await store.get("c-1")
        assert got is not None and got.status == "filled"
        assert backend.rows() == {"c-1": "pending_new"}  # not stored yet
        with trio.fail_after(10):
            await store.in_file()
        assert backend.rows() == {"c-1": "filled"}


def unhurried(backend: Backend) -> dict[str, float]:
    """Options under which the SQLite journal folds only when asked (``in_file``): its
    news goes to the fold's thread, which runs beside the test's own steps."""
    return {"fold_interval_s": 3600.0} if backend.name == "sqlite" else {}


async def test_accepted_and_filled_in_one_batch_are_one_row_each_in_orders_and_events(
    backend: Backend,
) -> None:
    async with backend.open() as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_soon(order("c-1", "accepted", oid="b-1"))
            store.record_soon(order("c-2", "accepted", oid="b-2"))
            store.record_soon(order("c-1", "filled", oid="b-1"))
            await store.record(order("c-3"), event="submit")
        history = [(e.event, e.order.status) for e in await store.history("c-1")]
    assert history == [("submit", "pending_new"), ("update", "filled")]  # the latest state wins
    assert backend.events("c-2") == [("update", "accepted")]
    assert backend.rows() == {"c-1": "filled", "c-2": "accepted", "c-3": "pending_new"}


async def test_closing_commits_what_was_recorded_soon(backend: Backend) -> None:
    async with backend.open() as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        store.record_soon(order("c-1", "filled", oid="b-1"))
    assert backend.rows() == {"c-1": "filled"}


async def test_a_record_an_order_needs_before_it_leaves_is_never_made_soon(
    backend: Backend,
) -> None:
    async with backend.open() as store:
        for event in ("submit", "resend"):
            with pytest.raises(Internal, match="must be durable before the order leaves"):
                store.record_soon(order("c-1"), event=event)
        assert await store.get("c-1") is None


async def test_news_alone_is_committed_within_the_interval(backend: Backend) -> None:
    async with backend.open(sync_interval_s=0.01) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_soon(order("c-1", "filled", oid="b-1"))
            while backend.rows() != {"c-1": "filled"}:
                await trio.sleep(0.005)


async def test_an_order_known_only_from_news_not_yet_committed_is_listed_first(
    backend: Backend,
) -> None:
    async with backend.open(sync_interval_s=60.0, **unhurried(backend)) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            await store.record(order("c-2", broker="alpaca"), event="submit")
        # An order the service never sent (a position closed by the broker itself,
        # an adopted one): news only, no submit record to commit it with.
        store.record_soon(order("close-1", "filled", oid="b-9"))
        store.record_soon(order("c-1", "accepted", oid="b-1"))
        assert backend.rows() == {"c-1": "pending_new", "c-2": "pending_new"}
        listed = [(o.client_order_id, o.status) for o in await store.list_orders()]
        assert listed == [("c-1", "accepted"), ("close-1", "filled"), ("c-2", "pending_new")]
        paper = await store.list_orders(broker="paper", limit=2)
        assert [o.client_order_id for o in paper] == ["c-1", "close-1"]


async def test_fills_are_kept_once_and_read_back_for_cost_reports(backend: Backend) -> None:
    async with backend.open() as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            await store.record(order("c-2", "filled", oid="b-2"))
        store.record_fill(fill("f-1"))
        store.record_fill(fill("f-1"))  # the stream repeated it after a reconnect
        store.record_fill(fill("f-2", coid="c-9", symbol="MSFT"))
    async with backend.open() as store:
        inputs = await store.cost_inputs(ReportQuery())

        def read() -> list[tuple[str, list[str], object, object]]:
            return [
                (o.client_order_id, [f.fill_id for f in fills],
                 inputs.last_trade("MSFT", 7), inputs.last_trade("MSFT", 6))
                for o, fills in inputs.orders()
            ]  # fmt: skip

        rows = await trio.to_thread.run_sync(read)
    # Each order with its own fills, once; a symbol's last trade at a moment, at any broker.
    assert rows == [
        ("c-1", ["f-1"], Decimal("10.5"), None),
        ("c-2", [], Decimal("10.5"), None),
    ]


async def test_a_client_order_id_used_before_a_restart_is_answered_idempotently(
    backend: Backend, tmp_path: Path
) -> None:
    def serving(sock: Path) -> Any:
        return paper_service(tmp_path, sock, backend.opener(cache_size=2))

    with short_socket_path() as sock:
        async with serving(sock), AsyncClient(sock, timeout=20) as client:
            first = await client.submit("AAPL", "buy", 1, client_order_id="long-ago")
            for i in range(5):
                await client.submit("AAPL", "buy", 1, client_order_id=f"later-{i}")
        # A new service: nothing of "long-ago" is in anyone's memory, only in storage.
        async with serving(sock), AsyncClient(sock, timeout=20) as client:
            with pytest.raises(DuplicateOrder):
                await client.submit("AAPL", "sell", 1, client_order_id="long-ago")
            again = await client.submit("AAPL", "buy", 1, client_order_id="long-ago")
            assert again.id == first.id and again.status == "filled"  # the same order
            assert len(await client.orders(limit=100)) == 6
