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
