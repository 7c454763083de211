"""Fixtures of the actor tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for a service's socket (a Unix socket path is at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ult-a", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
