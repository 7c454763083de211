"""Many rows per INSERT statement, for the threads that fold batches into SQLite files.

``executemany`` runs its statement once per row: SQLite opens the table's
and its indexes' cursors each time, and the sqlite3 module lets go of the
GIL and takes it back each time, so the trio thread waits for the folding
thread once per row. ``ManyRowInsert`` writes up to ``ROWS`` rows in one
statement (``head VALUES (?, ...), (?, ...) tail``), the rest in statements
of 32, 16, ... 1 rows: a few texts per table, each compiled once and kept
in the connection's statement cache. Rows are inserted in the order given,
so a later row with the same key wins as it would row by row.

A row's last ``shared`` columns may be bound once for a whole statement: when
every row of a statement has the same value in each of them (the same
event, broker, status or symbol, as a fold's rows mostly do), the statement
numbers its parameters (``?1``, ``?2`` ...) and each row names that one
parameter (``?N``) instead of a parameter of its own. SQLite copies a bound
text (or blob) into memory it allocates, ~800 instructions a parameter
(Debian builds it without lookaside memory), where a parameter named again
is read in place; the rows stored are the same.

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

    def __init__(
        self, head: str, columns: int, tail: str = "", *, row: str = "", shared: int = 0
    ) -> None:
        """``columns`` parameters a row, unless ``row`` spells one out (``"(?, '', ?)"``:
        a constant SQLite stores without a parameter bound for it). ``shared``: how many of
        a row's last parameters are bound once a statement when every row has the same
        values there (text: each is compared by ``==`` and type)."""
        self._head = head
        self._row = row or "(" + ", ".join("?" * columns) + ")"
        self._tail = tail
        self._texts: dict[int, str] = {}
        self._shared = shared
        #: A row's own parameters when its last ``shared`` are bound once a statement.
        self._own = self._row.count("?") - shared
        self._shared_texts: dict[int, str] = {}
        self._split_texts: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        """The statement inserting ``rows`` rows."""
        text = self._texts.get(rows)
        if text is None:
            values = ", ".join([self._row] * rows)
            text = self._texts[rows] = f"{self._head} VALUES {values}{self._tail}"
        return text

    def shared_sql(self, rows: int) -> str:
        """The statement inserting ``rows`` rows whose last ``shared`` parameters are the
        same in every row: each row's own parameters first (``?1`` ... ``?own``, then the
        next row's), the shared ones after all of them, once."""
        text = self._shared_texts.get(rows)
        if text is None:
            text = self._shared_texts[rows] = self._numbered(rows, shared_per_row=False)
        return text

    def _numbered(self, rows: int, *, shared_per_row: bool) -> str:
        """The statement inserting ``rows`` rows with numbered parameters: every row's own
        ones first, then the shared ones, once (``shared_sql``) or row after row
        (``split_sql``)."""
        pieces = self._row.split("?")
        own, shared = self._own, self._shared
        values = []
        for r in range(rows):
            first_shared = rows * own + (r * shared if shared_per_row else 0)
            numbers = [r * own + k + 1 for k in range(own)]
            numbers += [first_shared + k + 1 for k in range(shared)]
            row = pieces[0]
            for number, piece in zip(numbers, pieces[1:], strict=True):
                row += f"?{number}{piece}"
            values.append(row)
        return f"{self._head} VALUES {', '.join(values)}{self._tail}"

    def run(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (each in the columns' order), in order."""
        at, left, size = 0, len(rows), self.ROWS
        shared = self._shared
        while left:
            while size > left:
                size //= 2
            # One list of every row's parameters: ``extend`` copies a row's at once, where a
            # chain of the rows made into a tuple steps through them one by one.
            params: list[Any] = []
            if shared and size > 1 and self._same_last(rows, at, at + size):
                own = self._own
                for row in rows[at : at + size]:
                    params.extend(row[:own])
                params.extend(rows[at][own:])
                conn.execute(self.shared_sql(size), params)
            else:
                for row in rows[at : at + size]:
                    params.extend(row)
                conn.execute(self.sql(size), params)
            at += size
            left -= size

    def split_sql(self, rows: int) -> str:
        """The statement inserting ``rows`` rows whose parameters come in two blocks: every
        row's own parameters first (``?1`` ... ``?own``, then the next row's), then every
        row's last ``shared`` ones, row after row (``run_columns``'s ``last``)."""
        text = self._split_texts.get(rows)
        if text is None:
            text = self._split_texts[rows] = self._numbered(rows, shared_per_row=True)
        return text

    def run_columns(self, conn: sqlite3.Connection, own: list[Any], last: list[Any]) -> None:
        """Insert the rows whose own parameters (each row's first, all but its last
        ``shared``) are ``own``, row after row, and whose last ``shared`` are ``last``, row
        after row: the rows ``run`` inserts, made by their maker straight into the two
        lists (no tuple a row, no copy of it into a statement's list). When every row has
        the same last values (equal, of one type) they are bound once a statement."""
        shared = self._shared
        count = len(last) // shared
        if not count:
            return  # no rows (a fold round whose orders are all newer in a later round)
        width = self._own
        same = self._all_same(last)
        at, left, size = 0, count, self.ROWS
        while left:
            while size > left:
                size //= 2
            mine = own if size == count else own[at * width : (at + size) * width]
            if same and size > 1:
                conn.execute(self.shared_sql(size), mine + last[:shared])
            else:
                conn.execute(self.split_sql(size), mine + last[at * shared : (at + size) * shared])
            at += size
            left -= size

    def _all_same(self, last: list[Any]) -> bool:
        """Whether every row's values in ``last`` (``shared`` a row) are the first row's
        (equal, of one type)."""
        shared = self._shared
        for column in range(shared):
            value = last[column]
            kind = type(value)
            for i in range(column + shared, len(last), shared):
                other = last[i]
                if other is not value and (type(other) is not kind or other != value):
                    return False
        return True

    def _same_last(self, rows: list[tuple[Any, ...]], start: int, stop: int) -> bool:
        """Whether the rows ``start`` to ``stop`` have the same values (equal, of one type)
        in their last ``shared`` columns."""
        first = rows[start]
        for column in range(self._own, self._own + self._shared):
            value = first[column]
            kind = type(value)
            for i in range(start + 1, stop):
                other = rows[i][column]
                if other is not value and (type(other) is not kind or other != value):
                    return False
        return True
