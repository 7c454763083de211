"""Fixtures of the IPC tests: a short private directory for the socket (the service tree is in ``harness.py``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short private directory under /tmp (sun_path holds only 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ult-t", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
