"""Many rows per INSERT statement, for the threads that fold batches into SQLite files.

``executemany`` runs its statement once per row: SQLite opens the table's
and its indexes' cursors each time, and the sqlite3 module lets go of the
GIL and takes it back each time, so the trio thread waits for the folding
thread once per row. ``ManyRowInsert`` writes up to ``ROWS`` rows in one
statement (``head VALUES (?, ...), (?, ...) tail``), the rest in statements
of 32, 16, ... 1 rows: a few texts per table, each compiled once and kept
in the connection's statement cache. Rows are inserted in the order given,
so a later row with the same key wins as it would row by row.

A blob parameter should be a ``bytearray``: Python 3.11's sqlite3 binds
``int``, ``float``, ``str`` and ``bytearray`` directly, and looks for an
adapter for anything else (``bytes``, ``msgspec.Raw``), raising and
clearing an ``AttributeError`` each time (~2k instructions a parameter).
"""

from __future__ import annotations

import sqlite3
from typing import Any


class ManyRowInsert:
    """An INSERT of many rows at once: ``head VALUES (?, ...), (?, ...) tail``."""

    #: Rows in the longest statement (8 columns: 512 parameters, far below SQLite's limit).
    ROWS = 64

    def __init__(self, head: str, columns: int, tail: str = "", *, row: str = "") -> None:
        """``columns`` parameters a row, unless ``row`` spells one out (``"(?, '', ?)"``:
        a constant SQLite stores without a parameter bound for it)."""
        self._head = head
        self._row = row or "(" + ", ".join("?" * columns) + ")"
        self._tail = tail
        self._texts: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        """The statement inserting ``rows`` rows."""
        text = self._texts.get(rows)
        if text is None:
            values = ", ".join([self._row] * rows)
            text = self._texts[rows] = f"{self._head} VALUES {values}{self._tail}"
        return text

    def run(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (each in the columns' order), in order."""
        at, left, size = 0, len(rows), self.ROWS
        while left:
            while size > left:
                size //= 2
            # One list of every row's parameters: ``extend`` copies a row's at once, where a
            # chain of the rows made into a tuple steps through them one by one.
            params: list[Any] = []
            for row in rows[at : at + size]:
                params.extend(row)
            conn.execute(self.sql(size), params)
            at += size
            left -= size
