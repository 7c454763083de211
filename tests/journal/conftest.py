"""The journal tests' backends: each store contract test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.journal.harness import Backend, PostgresBackend, SqliteBackend


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A journal store's storage, empty: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return PostgresBackend(request.getfixturevalue("postgres_url"))
    return SqliteBackend(tmp_path / "journal.db")
