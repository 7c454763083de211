"""A thread's time runnable but not running: the kernel's ``run_delay`` (Linux's schedstat).

It grows only while the thread could run and another task had its core: not
while it sleeps, in a system call or waiting for the GIL. So it tells a busy
machine apart from a thread that merely waited (``idle_spin``,
``journal.fsync_route``).
"""

from __future__ import annotations

import contextlib
import os
import threading


class RunDelay:
    """The run delay so far (ns) of the thread that opened it (``open_run_delay``)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __call__(self) -> int:
        # "<time on the CPU> <time runnable, waiting for it> <time slices>", in ns.
        return int(os.pread(self._fd, 64, 0).split()[1])

    def close(self) -> None:
        """Release its file (reading it after is an ``OSError``)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_run_delay() -> RunDelay | None:
    """The calling thread's run delay, or None where the kernel does not tell it (not
    Linux, or a kernel without scheduler statistics)."""
    path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    read = RunDelay(fd)
    try:
        read()
    except (OSError, ValueError, IndexError):
        with contextlib.suppress(OSError):
            read.close()
        return None
    return read
