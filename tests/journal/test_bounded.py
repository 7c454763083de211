"""The journal's memory is bounded however many orders it holds; the file answers the rest.

A journal whose in-memory window is tiny next to the orders it holds: every
collection it keeps stays within the window plus the open orders, while
lookups of long-final orders, the idempotency check of a client order id
used long ago and ``ult orders``-style listings stay correct (read from the
file).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from tests.journal.harness import paper_service, short_socket_path
from ult_actors.client import AsyncClient, DuplicateOrder
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store, sqlite_store_opener
from ult_actors.messages import Order
from ult_actors.service import Service

WINDOW = 8


def collections_of(store: SqliteStore) -> dict[str, int]:
    """The size of every growable collection the store holds."""
    kinds = (dict, set, list, collections.deque, collections.OrderedDict)
    # A compiled store (mypyc) has no ``__dict__``; its class names its attributes.
    names = getattr(store, "__mypyc_attrs__", None) or list(vars(store))
    values = {name: getattr(store, name, None) for name in names}
    return {name: len(value) for name, value in values.items() if isinstance(value, kinds)}


def order(coid: str, status: str = "pending_new", *, oid: str = "", qty: str = "1") -> Order:
    return Order(
        id=oid,
        client_order_id=coid,
        broker="paper",
        symbol="AAPL",
        side="buy",
        qty=Decimal(qty),
        type="market",
        time_in_force="day",
        status=status,  # type: ignore[arg-type]
    )


async def test_memory_stays_within_the_window_and_reads_fall_back_to_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, cache_size=WINDOW, seen_filter_bits=1 << 16) as store:
        open_ids = {f"open-{i}" for i in range(3)}
        for coid in sorted(open_ids):
            await store.record(order(coid, "accepted", oid=f"b-{coid}"), event="submit")
        for i in range(2_000):
            coid = f"done-{i}"
            await store.record(order(coid), event="submit")
            await store.record(order(coid, "filled", oid=f"b-{coid}"))
        await store.in_file()  # memory keeps what the log has and the file not yet
        sizes = collections_of(store)
        # Nothing grows with the number of orders: the window, the open ones, that is all.
        assert max(sizes.values()) <= WINDOW + len(open_ids), sizes
        assert sizes["_open"] == len(open_ids)

        # Long out of the window, read back from the file.
        assert await store.get("done-0") == order("done-0", "filled", oid="b-done-0")
        assert await store.get_by_order_id("b-done-1") == order("done-1", "filled", oid="b-done-1")
        assert await store.get("never-seen") is None
        newest = await store.list_orders(limit=3)
        assert [o.client_order_id for o in newest] == ["done-1999", "done-1998", "done-1997"]
        assert {o.client_order_id for o in await store.non_terminal()} == open_ids
        assert max(collections_of(store).values()) <= WINDOW + len(open_ids)


async def test_a_saturated_id_filter_still_answers_right_from_the_file(tmp_path: Path) -> None:
    # 64 bits for 500 ids: every "is it new?" is a "maybe" and goes to the file.
    async with open_sqlite_store(
        tmp_path / "journal.db", cache_size=WINDOW, seen_filter_bits=64
    ) as store:
        for i in range(500):
            await store.record(order(f"o-{i}", "filled"), event="submit")
        assert all([await store.get(f"new-{i}") is None for i in range(50)])
        assert (await store.get("o-3")) == order("o-3", "filled")


async def test_records_not_yet_in_the_file_are_found_even_out_of_the_window(
    tmp_path: Path, mock_clock: MockClock
) -> None:
    # 50 records, all out of a window of 8 and none folded into the file yet: the
    # fold's interval is an hour, and a batch the writer takes lingers (trio's clock
    # stands still until the test moves it). Whether a record is appended at once or
    # waits in the writer's batch depends on whether the writer was idle (trio's
    # scheduling order), so the test holds for both: it asked ``commits == 0`` before,
    # which failed whenever the writer was idle first (about 1 run in 12).
    async with open_sqlite_store(
        tmp_path / "journal.db", cache_size=WINDOW, linger_s=1.0, fold_interval_s=3600.0
    ) as store:
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(functools.partial(store.record, order(f"o-{i}"), event="submit"))
            await trio.testing.wait_all_tasks_blocked()
            assert collections_of(store)["_unwritten"] == 50  # recorded, not in the file
            found = [await store.get(f"o-{i}") for i in range(50)]
            mock_clock.jump(1.0)
        assert all(o is not None for o in found)
        await store.in_file()
        assert collections_of(store)["_unwritten"] == 0  # folded: only the file has them


# -- over the real socket ------------------------------------------------------


async def journal_sizes(svc: Service) -> dict[str, int]:
    store = await svc.journal.get()
    assert isinstance(store, SqliteStore)
    await store.in_file()  # memory keeps what the log has and the file not yet
    return collections_of(store)


@pytest.fixture
def sock() -> Iterator[Path]:
    with short_socket_path() as path:
        yield path


def serving(state_dir: Path, sock: Path) -> Any:
    """The service on ``sock`` with a journal whose window holds ``WINDOW`` orders."""
    opener = sqlite_store_opener(state_dir / "journal.db", cache_size=WINDOW)
    return paper_service(state_dir, sock, opener)


async def test_a_client_order_id_used_long_ago_is_still_refused_or_answered_idempotently(
    tmp_path: Path, sock: Path
) -> None:
    async with serving(tmp_path, sock) as svc, AsyncClient(sock, timeout=20) as client:
        first = await client.submit("AAPL", "buy", 1, client_order_id="long-ago")
        for i in range(120):
            await client.submit("AAPL", "buy", 1, client_order_id=f"later-{i}")
        sizes = await journal_sizes(svc)
        assert max(sizes.values()) <= WINDOW + sizes["_open"], sizes
    # A new process: nothing of "long-ago" is in anyone's memory, only in the file.
    async with serving(tmp_path, sock) as svc, AsyncClient(sock, timeout=20) as client:
        assert "long-ago" not in {o.client_order_id for o in await client.orders(limit=WINDOW)}
        with pytest.raises(DuplicateOrder):
            await client.submit("AAPL", "sell", 1, client_order_id="long-ago")
        again = await client.submit("AAPL", "buy", 1, client_order_id="long-ago")
        assert again == await client.order("long-ago")
        assert again.id == first.id and again.status == "filled"  # the same order, not a second
        listed = await client.orders(limit=200)
        assert len(listed) == 121
        assert [o.client_order_id for o in listed[:2]] == ["later-119", "later-118"]
        assert listed[-1] == again
