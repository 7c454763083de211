"""What the journal tests share: orders, what the file holds, and the service in-process with
the real paper broker, its journal opened as a test says, on a real socket."""

from __future__ import annotations

import random
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from ult_actors import segment_log
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.ipc.paths import SocketLocation
from ult_actors.ipc.server import IpcSettings, serve_ipc
from ult_actors.journal.bodies import decode_order
from ult_actors.journal.changelog import LogRow, decode_record
from ult_actors.journal.sqlite import open_sqlite_store, sqlite_store_opener
from ult_actors.messages import Fill, Order
from ult_actors.service import Service, build_service


def order(coid: str, status: str = "pending_new", *, oid: str = "", broker: str = "paper") -> Order:
    return Order(
        id=oid,
        client_order_id=coid,
        broker=broker,
        symbol="AAPL",
        side="buy",
        qty=Decimal("1.5"),
        type="market",
        time_in_force="day",
        status=status,  # type: ignore[arg-type]
        outcome="unknown" if status == "pending_new" else "definitive",
    )


def fill(fill_id: str, coid: str = "c-1", symbol: str = "AAPL") -> Fill:
    """One execution of ``coid`` with a commission and a fee."""
    return Fill(
        fill_id=fill_id,
        order_id="b-1",
        client_order_id=coid,
        broker="paper",
        symbol=symbol,
        side="buy",
        qty=Decimal("1"),
        price=Decimal("10.5"),
        commission=Decimal("0.005"),
        fees={"regulatory": Decimal("0.0001")},
        fee_currency="USD",
        ts=7,
    )


def rows_on_disk(path: Path) -> dict[str, str]:
    """What a process opening the journal after a ``kill -9`` finds: client order id ->
    status, of the file's orders and, over them, the newer records of its change log."""
    logged = records_in_log(path)  # first: a segment folded meanwhile is in the file then
    conn = sqlite3.connect(path)
    try:
        found = {coid: (seq, status) for coid, seq, status in conn.execute(
            "SELECT client_order_id, seq, status FROM orders"
        )}  # fmt: skip
    finally:
        conn.close()
    for seq, coid, _, status, *_ in logged:
        if seq > found.get(coid, (0, ""))[0]:
            found[coid] = (seq, status)
    return {coid: status for coid, (_, status) in found.items()}


def rows_in_file(path: Path) -> dict[str, str]:
    """What another process reading the SQLite file alone sees: client order id -> status."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT client_order_id, status FROM orders"))
    finally:
        conn.close()


def records_in_log(path: Path) -> list[LogRow]:
    """The records the journal's change log holds (not yet folded into the file)."""
    rows: list[LogRow] = []
    for segment in segment_log.segments(path):
        try:
            payloads = list(segment_log.read_segment(segment))
        except FileNotFoundError:
            continue  # folded into the file and deleted meanwhile
        for payload in payloads:
            rows += decode_record(payload).rows
    return rows


@contextmanager
def short_socket_path() -> Iterator[Path]:
    """A socket path under a fresh /tmp directory (sun_path holds only 108 bytes)."""
    short = Path(tempfile.mkdtemp(prefix="ultj", dir="/tmp"))
    try:
        yield short / "s"
    finally:
        shutil.rmtree(short, ignore_errors=True)


@asynccontextmanager
async def paper_service(
    state_dir: Path, sock: Path, store_opener: Callable[[], Any]
) -> AsyncIterator[Service]:
    """The whole tree with one paper broker (matching inside ``submit``), served on ``sock``."""
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(state_dir)),
        brokers=[
            BrokerEntry(
                name="paper", kind="paper", enabled=True, settings=PaperSettings(tick_interval_s=0)
            )
        ],
    )
    svc = build_service(cfg, env={}, rng=random.Random(3), store_opener=store_opener)
    settings = IpcSettings(location=SocketLocation(sock, dedicated=False, source="test"))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(svc.run)
            await nursery.start(serve_ipc, svc.gateway, settings)
        yield svc
        nursery.cancel_scope.cancel()


class SqliteBackend:
    """The SQLite journal at one file, for the store contract battery."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self, **options: Any) -> Any:
        return open_sqlite_store(self.path, **options)

    def opener(self, **options: Any) -> Callable[[], Any]:
        return sqlite_store_opener(self.path, **options)

    def rows(self) -> dict[str, str]:
        return rows_on_disk(self.path)

    async def transactions(self, store: Any) -> int:
        """``store``'s SQLite transactions so far, once the file holds every record (a record
        is an append to the change log; the fold's thread writes many in one transaction)."""
        await store.in_file()
        return int(store.folds)

    def events(self, coid: str) -> list[tuple[str, str]]:
        conn = sqlite3.connect(self.path)
        try:
            # Since schema 12 an event's row names no order: its body does.
            query = "SELECT event, body FROM events ORDER BY seq"
            return [
                (e, _status(b)) for e, b in conn.execute(query)
                if decode_order(b).client_order_id == coid
            ]  # fmt: skip
        finally:
            conn.close()


class PostgresBackend:
    """The PostgreSQL journal in one database, for the store contract battery."""

    name = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url

    def open(self, **options: Any) -> Any:
        from ult_actors.journal.postgres import open_postgres_store

        return open_postgres_store(self.url, **options)

    def opener(self, **options: Any) -> Callable[[], Any]:
        from ult_actors.journal.postgres import postgres_store_opener

        return postgres_store_opener(self.url, **options)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return list(conn.execute(sql, params).fetchall())

    async def transactions(self, store: Any) -> int:
        """``store``'s transactions so far (one per batch of records)."""
        return int(store.commits)

    def rows(self) -> dict[str, str]:
        """What another process reading the database sees: client order id -> status."""
        return dict(self._query("SELECT client_order_id, status FROM orders"))  # type: ignore[arg-type]

    def events(self, coid: str) -> list[tuple[str, str]]:
        query = "SELECT event, body FROM events WHERE client_order_id = %s ORDER BY seq"
        return [(e, _status(b)) for e, b in self._query(query, (coid,))]


Backend = SqliteBackend | PostgresBackend


def _status(body: bytes) -> str:
    """The status of the order an ``events`` row's body holds (the row has no copy of it)."""
    return decode_order(body).status
