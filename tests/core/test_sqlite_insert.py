"""Many rows per INSERT statement: every row once, in order, whatever the statements' sizes."""

from __future__ import annotations

import sqlite3

import pytest

from ult_actors.sqlite_insert import ManyRowInsert

UPSERT = ManyRowInsert(
    "INSERT INTO kv (k, v, body)",
    3,
    " ON CONFLICT (k) DO UPDATE SET v = excluded.v, body = excluded.body",
)
IGNORE = ManyRowInsert("INSERT OR IGNORE INTO kv (k, v, body)", 3)


@pytest.fixture
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER, body BLOB)")
    return conn


@pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 100, 200])
def test_every_row_is_written_once_across_statements_of_every_size(
    db: sqlite3.Connection, count: int
) -> None:
    UPSERT.run(db, [(f"k{i}", i, bytearray(b"x%d" % i)) for i in range(count)])
    assert db.execute("SELECT k, v, body FROM kv ORDER BY v").fetchall() == [
        (f"k{i}", i, b"x%d" % i) for i in range(count)
    ]


def test_a_later_row_of_a_key_wins_even_in_another_statement(db: sqlite3.Connection) -> None:
    # 100 rows: statements of 64, 32 and 4; key 'a' at rows 0, 63 (first statement),
    # 70 (second) and 99 (last): the last one written is the one kept.
    rows = [(f"k{i}", i, bytearray()) for i in range(100)]
    for at in (0, 63, 70, 99):
        rows[at] = ("a", at, bytearray(b"%d" % at))
    UPSERT.run(db, rows)
    assert db.execute("SELECT v, body FROM kv WHERE k = 'a'").fetchall() == [(99, b"99")]
    assert db.execute("SELECT count(*) FROM kv").fetchone() == (97,)


def test_or_ignore_keeps_the_first_row_of_a_key(db: sqlite3.Connection) -> None:
    IGNORE.run(
        db,
        [
            ("a", 1, bytearray(b"first")),
            *((f"k{i}", i, bytearray()) for i in range(70)),
            ("a", 2, bytearray(b"again")),
        ],
    )
    assert db.execute("SELECT v, body FROM kv WHERE k = 'a'").fetchall() == [(1, b"first")]


SHARED = ManyRowInsert(
    "INSERT INTO kv2 (k, body, v, tag)",
    4,
    " ON CONFLICT (k) DO UPDATE SET v = excluded.v, tag = excluded.tag",
    row="(?, ?, ?, ?)",
    shared=2,
)


@pytest.fixture
def db2() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE kv2 (k TEXT PRIMARY KEY, body BLOB, v TEXT, tag TEXT)")
    return conn


@pytest.mark.parametrize("count", [0, 1, 2, 63, 64, 65, 100])
@pytest.mark.parametrize("mixed", [None, 0, 50, 99])
def test_shared_last_columns_store_the_same_rows_whether_bound_once_or_per_row(
    db2: sqlite3.Connection, count: int, mixed: int | None
) -> None:
    # Every row's last two columns the same, or one row (``mixed``) different: its
    # statement binds each row's own, the others each shared value once.
    rows = [(f"k{i}", bytearray(b"x%d" % i), "filled", "paper") for i in range(count)]
    if mixed is not None and mixed < count:
        rows[mixed] = (f"k{mixed}", bytearray(), "accepted", "paper")
    SHARED.run(db2, rows)
    assert db2.execute("SELECT k, body, v, tag FROM kv2 ORDER BY rowid").fetchall() == [
        (k, bytes(body), v, tag) for k, body, v, tag in rows
    ]


def test_a_shared_statement_binds_each_shared_value_once_after_every_rows_own() -> None:
    text = SHARED.shared_sql(3)
    assert text.startswith(
        "INSERT INTO kv2 (k, body, v, tag) VALUES (?1, ?2, ?7, ?8), (?3, ?4, ?7, ?8),"
        " (?5, ?6, ?7, ?8) ON CONFLICT"
    )
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE kv2 (k TEXT PRIMARY KEY, body BLOB, v TEXT, tag TEXT)")
    # Eight parameters: six of the rows' own, the two shared.
    conn.execute(text, ["a", b"", "b", b"", "c", b"", "v", "t"])
    assert conn.execute("SELECT k, v, tag FROM kv2 ORDER BY k").fetchall() == [
        ("a", "v", "t"), ("b", "v", "t"), ("c", "v", "t"),
    ]  # fmt: skip


def test_equal_values_of_another_type_are_not_shared(db2: sqlite3.Connection) -> None:
    # 1 == True, but they are bound (and stored) as they are: each row's own.
    mixed = ManyRowInsert("INSERT INTO kv2 (k, v)", 2, shared=1)
    mixed.run(db2, [("a", 1), ("b", True), ("c", 1.0)])
    assert db2.execute("SELECT k, typeof(v), v FROM kv2 ORDER BY k").fetchall() == [
        ("a", "text", "1"), ("b", "text", "1"), ("c", "text", "1.0"),
    ]  # fmt: skip


@pytest.mark.parametrize("count", [1, 2, 26, 32, 63, 64, 65, 100])
@pytest.mark.parametrize("mixed", [None, 0, 31, 99])
def test_rows_given_as_their_columns_store_what_rows_given_whole_store(
    db2: sqlite3.Connection, count: int, mixed: int | None
) -> None:
    # ``run_columns``: each row's own parameters in one list, its last two in another; every
    # row's last the same (bound once a statement) or one row's different (every row's
    # bound, the statement's parameters in two blocks).
    rows = [(f"k{i}", bytearray(b"x%d" % i), "filled", "paper") for i in range(count)]
    if mixed is not None and mixed < count:
        rows[mixed] = (f"k{mixed}", bytearray(), "accepted", "paper")
    own = [value for row in rows for value in row[:2]]
    last = [value for row in rows for value in row[2:]]
    SHARED.run_columns(db2, own, last)
    assert db2.execute("SELECT k, body, v, tag FROM kv2 ORDER BY rowid").fetchall() == [
        (k, bytes(body), v, tag) for k, body, v, tag in rows
    ]


def test_a_split_statement_takes_every_rows_own_then_every_rows_last() -> None:
    assert SHARED.split_sql(3).startswith(
        "INSERT INTO kv2 (k, body, v, tag) VALUES (?1, ?2, ?7, ?8), (?3, ?4, ?9, ?10),"
        " (?5, ?6, ?11, ?12) ON CONFLICT"
    )


def test_rows_given_as_columns_share_no_equal_values_of_another_type(
    db2: sqlite3.Connection,
) -> None:
    mixed = ManyRowInsert("INSERT INTO kv2 (k, v)", 2, shared=1)
    mixed.run_columns(db2, ["a", "b", "c"], [1, True, 1.0])
    assert db2.execute("SELECT k, typeof(v), v FROM kv2 ORDER BY k").fetchall() == [
        ("a", "text", "1"), ("b", "text", "1"), ("c", "text", "1.0"),
    ]  # fmt: skip


def test_no_rows_given_as_columns_insert_nothing(db2: sqlite3.Connection) -> None:
    SHARED.run_columns(db2, [], [])
    assert db2.execute("SELECT count(*) FROM kv2").fetchone() == (0,)
