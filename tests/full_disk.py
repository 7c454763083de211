"""A disk that fills under one store's change log, for the tests of what the store says then."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest


class FullLogDisk:
    """While ``full``, no room on the disk for the log segments whose path has ``marker``
    (``"journal.db.log."``): a new segment cannot be made whole (``os.posix_fallocate``),
    and a write fails where it would grow a segment (``os.write``); the room a segment
    was made with takes records still, as a real disk's does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
        self.full = False
        self._marker = marker
        self._fallocate = os.posix_fallocate
        self._write = os.write
        monkeypatch.setattr(os, "posix_fallocate", self.fallocate)
        monkeypatch.setattr(os, "write", self.write)

    def _no_room(self, fd: int) -> bool:
        return self.full and self._marker in os.readlink(f"/proc/self/fd/{fd}")

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        if self._no_room(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fallocate(fd, offset, length)

    def write(self, fd: int, data: Any) -> int:
        end = os.lseek(fd, 0, os.SEEK_CUR) + len(data)
        if self._no_room(fd) and end > os.fstat(fd).st_size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._write(fd, data)
