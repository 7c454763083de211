"""A thread's name given to the OS, so ``top -H`` and ``/proc/<pid>/task/*/comm`` tell the
service's threads apart (the loop, the log writer, the journal's fold and fsync, the paper
file's writer); Python 3.11 names only its own ``Thread`` object."""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading


def name_os_thread(thread: threading.Thread) -> None:
    """Give a started ``thread`` its name for the OS as well (its first 15 bytes: the OS keeps
    no more). Elsewhere than Linux, or if the call fails, the name is only Python's."""
    if sys.platform != "linux" or thread.ident is None:
        return  # elsewhere the call takes other arguments; the name is only a convenience
    with contextlib.suppress(OSError, AttributeError):
        # On Linux a thread's ident is its pthread_t.
        ctypes.CDLL(None).pthread_setname_np(
            ctypes.c_ulong(thread.ident), thread.name.encode()[:15]
        )
