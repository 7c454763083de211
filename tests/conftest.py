"""Fixtures every test package may use: a real PostgreSQL server for the journal and cluster
tests (skipped, with the reason, only where PostgreSQL cannot be had)."""

from __future__ import annotations

import gc
import subprocess
from collections.abc import Iterator

import pytest

from ult_actors.testing.postgres import PgServer, find_bin_dir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL cluster for the whole run (see ``ult_actors.testing.postgres``)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[test]')")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it with apt where it can)")
    server = PgServer(bin_dir)
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        server.remove()
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    yield server
    server.stop("immediate")
    # A database per test makes tens of thousands of files: removing them took up to 26 s
    # of a loaded run's end, so a process of their own removes them after the run.
    subprocess.run(
        ["sh", "-c", 'rm -rf "$1" </dev/null >/dev/null 2>&1 &', "sh", str(server.root)],
        check=True,
    )


@pytest.fixture
def postgres_url(postgres_server: PgServer) -> str:
    """The URL of a fresh, empty database on the test PostgreSQL server."""
    return postgres_server.new_database()


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """A test that settles the process's garbage collector (``ult_actors.collector``, as
    ``run_service`` does once ready) gives the rest of the suite CPython's settings back."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
