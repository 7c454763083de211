"""What only the PostgreSQL journal does: ride out a database restart, refuse a newer schema,
refuse every write once its cluster lease was taken over (fencing).

What every journal store does is in ``test_store_contract.py``; the SQLite journal hands
its news to its fold instead (``test_news.py``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec
import psycopg
import pytest
import trio
import trio.testing

from tests.journal.harness import PostgresBackend, order, paper_service, short_socket_path
from ult_actors.client import AsyncClient
from ult_actors.config import load_config
from ult_actors.errors import ConfigError, JournalUnavailable
from ult_actors.ipc.paths import SocketLocation
from ult_actors.ipc.server import IpcSettings, serve_ipc
from ult_actors.journal.postgres import Fence, open_postgres_store
from ult_actors.journal.postgres_schema import SCHEMA_VERSION, migrate
from ult_actors.service import build_service
from ult_actors.testing.postgres import PgServer


async def test_a_database_restart_refuses_new_orders_holds_the_news_then_resumes(
    postgres_server: PgServer, postgres_url: str
) -> None:
    backend = PostgresBackend(postgres_url)
    async with open_postgres_store(postgres_url, probe_interval_s=0.05) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        await trio.to_thread.run_sync(postgres_server.stop)
        try:
            store.record_soon(order("c-1", "filled", oid="b-1"))  # news about an order sent
            with trio.fail_after(20), pytest.raises(JournalUnavailable, match="was not sent"):
                await store.record(order("c-2"), event="submit")
            assert store.unavailable is not None
            assert store.unavailable.startswith("database unreachable")
            got = await store.get("c-1")  # still answered, from memory
            assert got is not None and got.status == "filled"
        finally:
            await trio.to_thread.run_sync(postgres_server.start)
        with trio.fail_after(30):
            while store.unavailable is not None:
                await store.availability_changed()
            await store.record(order("c-3"), event="submit")
        assert backend.rows() == {"c-1": "filled", "c-3": "pending_new"}  # c-2 never was


async def test_the_news_shares_the_next_submits_commit(postgres_url: str) -> None:
    backend = PostgresBackend(postgres_url)
    async with backend.open(sync_interval_s=60.0) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_soon(order("c-1", "filled", oid="b-1"))
            await trio.testing.wait_all_tasks_blocked()  # the writer had its chance
            assert backend.rows() == {"c-1": "pending_new"}  # waiting for company
            await store.record(order("c-2"), event="submit")
        assert backend.rows() == {"c-1": "filled", "c-2": "pending_new"}
        assert store.commits == 2  # one commit per submit; the fill rode along


async def test_a_journal_from_a_newer_ult_is_refused_not_guessed_at(postgres_url: str) -> None:
    async with open_postgres_store(postgres_url):
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE ult_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match="newer than this ult understands"):
        async with open_postgres_store(postgres_url):
            pass  # pragma: no cover


async def test_two_stores_opening_one_new_database_at_once_migrate_it_once(
    postgres_url: str,
) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(_open_and_close, postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM ult_schema").fetchall() == [(SCHEMA_VERSION,)]


async def test_a_version_2_database_keeps_its_open_orders_and_an_earlier_ult_can_still_write(
    postgres_url: str,
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        migrate(conn, target=2)
        for seq, (coid, status) in enumerate([("o-1", "accepted"), ("o-2", "filled")], start=1):
            body = msgspec.msgpack.encode(order(coid, status, oid=f"b-{seq}"))
            conn.execute(
                "INSERT INTO orders VALUES (%s, %s, 'paper', %s, 'definitive', 0, %s, %s)",
                (coid, f"b-{seq}", status, seq, body),
            )
            conn.execute(
                "INSERT INTO events VALUES (%s, %s, 'update', %s, 0, %s)", (seq, coid, status, body)
            )
    async with open_postgres_store(postgres_url) as store:
        assert [o.client_order_id for o in await store.non_terminal()] == ["o-1"]
        with trio.fail_after(10):
            await store.record(order("o-3"), event="submit")  # no status or outcome copied
        assert [e.seq for e in await store.history("o-3")] == [3]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
        assert "orders_open" not in indexes  # nothing reads by it
        # An instance of the earlier version, still running, writes its columns as before.
        body = msgspec.msgpack.encode(order("o-4"))
        conn.execute(
            "INSERT INTO events (seq, client_order_id, event, status, ts, body)"
            " VALUES (4, 'o-4', 'submit', 'pending_new', 0, %s)",
            (body,),
        )
        conn.execute(
            "INSERT INTO orders (client_order_id, order_id, broker, status, outcome,"
            " updated_at, seq, body) VALUES ('o-4', '', 'paper', 'pending_new', 'unknown', 0, 4, %s)",
            (body,),
        )
    assert PostgresBackend(postgres_url).rows() == {
        "o-1": "accepted", "o-2": "filled", "o-3": "pending_new", "o-4": "pending_new",
    }  # fmt: skip


async def _open_and_close(url: str) -> None:
    with trio.fail_after(20):
        async with open_postgres_store(url):
            pass


async def test_a_write_under_a_lease_taken_over_is_refused_by_the_database(
    postgres_url: str,
) -> None:
    backend = PostgresBackend(postgres_url)
    async with open_postgres_store(postgres_url):
        pass  # creates the tables
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO ult_lease VALUES ('c', 1, 'old', now() + interval '5 s')")
    async with open_postgres_store(postgres_url, fence=Fence("c", 1, "a")) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        with psycopg.connect(postgres_url, autocommit=True) as conn:  # another instance won it
            conn.execute("UPDATE ult_lease SET epoch = 2, holder = 'new' WHERE cluster = 'c'")
        store.record_soon(order("c-1", "filled", oid="b-1"))
        with trio.fail_after(10), pytest.raises(JournalUnavailable, match="fenced"):
            await store.record(order("c-2"), event="submit")
        assert store.unavailable is not None and "new at epoch 2" in store.unavailable
        with pytest.raises(JournalUnavailable):
            await store.record(order("c-3"), event="submit")
    assert backend.rows() == {"c-1": "pending_new"}  # nothing of the old epoch after takeover


async def test_journal_url_puts_a_services_orders_in_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    toml = tmp_path / "ult.toml"
    toml.write_text(f'[journal]\nurl = "{postgres_url}"\n')
    cfg = load_config(toml, env={})
    cfg.service.state_dir = str(tmp_path)
    svc = build_service(cfg, env={})
    with short_socket_path() as sock:
        settings = IpcSettings(location=SocketLocation(sock, dedicated=False, source="test"))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(svc.run)
                await nursery.start(serve_ipc, svc.gateway, settings)
                async with AsyncClient(sock, timeout=20) as client:
                    placed = await client.submit("AAPL", "buy", 1, client_order_id="via-url")
                    report = await client.report()  # ult report reads it from PostgreSQL
            nursery.cancel_scope.cancel()
    assert PostgresBackend(postgres_url).rows() == {"via-url": placed.status}
    assert report.total_orders == 1
    assert not (tmp_path / "journal.db").exists()  # no SQLite file beside it


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://ult:hunter2@db/ult", "holds a password"),
        ("mysql://db/ult", "not a PostgreSQL URL"),
    ],
)
def test_a_journal_url_with_a_password_or_another_engine_is_refused(
    tmp_path: Path, url: str, why: str
) -> None:
    toml = tmp_path / "ult.toml"
    toml.write_text(f'[journal]\nurl = "{url}"\n')
    with pytest.raises(ConfigError, match=why) as refused:
        load_config(toml, env={})
    assert "hunter2" not in str(refused.value)


async def test_the_password_comes_from_the_pgpassword_credential(
    postgres_server: PgServer, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_server.password_role(postgres_url, "s3cret-pw")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="cannot be opened") as refused:
        async with open_postgres_store(url):
            pass  # pragma: no cover
    assert "s3cret" not in str(refused.value)
    (tmp_path / "PGPASSWORD").write_text("s3cret-pw\n")
    async with open_postgres_store(url) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        assert "s3cret" not in store.name


async def test_a_service_rides_out_a_database_restart_refusing_then_taking_orders(
    postgres_server: PgServer, postgres_url: str, tmp_path: Path
) -> None:
    opener = PostgresBackend(postgres_url).opener(probe_interval_s=0.05)
    with short_socket_path() as sock:
        async with (
            paper_service(tmp_path, sock, opener) as svc,
            AsyncClient(sock, timeout=20) as client,
        ):
            await client.submit("AAPL", "buy", 1, client_order_id="before")
            await trio.to_thread.run_sync(postgres_server.stop)
            try:
                with trio.fail_after(20):  # the journal finds out at its next write
                    while svc.journal.unavailable is None:
                        with contextlib.suppress(JournalUnavailable):
                            await client.submit("AAPL", "buy", 1, client_order_id="probe")
                with pytest.raises(JournalUnavailable, match="database unreachable"):
                    await client.submit("AAPL", "buy", 1, client_order_id="during")
                health = await client.health()  # ult health says why
                (journal,) = [a for a in health.actors if a.name == "journal"]
                assert journal.state == "failed" and journal.last_error is not None
                assert "database unreachable" in journal.last_error.message
            finally:
                await trio.to_thread.run_sync(postgres_server.start)
            with trio.fail_after(30):  # reconnects by itself: no restart of the service
                while svc.journal.unavailable is not None:
                    await trio.sleep(0.05)
            # Its first read after the restart finds the dropped connection and reconnects.
            listed = [o.client_order_id for o in await client.orders()]
            assert "before" in listed and "during" not in listed
            after = await client.submit("AAPL", "buy", 1, client_order_id="after")
            assert after.status == "filled"
    rows = PostgresBackend(postgres_url).rows()
    assert rows.get("before") == rows.get("after") == "filled"
    assert "during" not in rows


async def test_after_a_restart_while_idle_the_first_order_is_journaled_at_once(
    postgres_server: PgServer, postgres_url: str
) -> None:
    async with open_postgres_store(postgres_url, probe_interval_s=60.0) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        await trio.to_thread.run_sync(postgres_server.stop)
        await trio.to_thread.run_sync(postgres_server.start)
        # The writer finds its connection dropped when it begins, before it sent anything
        # of the batch: it connects again then, instead of refusing the order.
        with trio.fail_after(10):
            await store.record(order("c-2"), event="submit")
            assert store.unavailable is None
    assert PostgresBackend(postgres_url).rows() == {"c-1": "pending_new", "c-2": "pending_new"}
