"""An fdatasync begun on the trio thread and finished by the kernel, while the loop runs on.

With ``synchronous = "full"`` an order's ``submit`` record must be fsynced
before its ack, not before it leaves: the append (a store into the page
cache) already survives a ``kill -9``, and an order that reached the
broker but not the disk in a machine crash is adopted on restart. So the
fsync can run while the order goes to the broker and its answer is
tracked; only the ack waits for it (``SqliteStore.durable``).

A Python thread cannot make that fsync meanwhile: it needs the GIL to
start it, and the trio thread holds the GIL while it works on the order.
Linux's io_uring can: an ``IORING_OP_FSYNC`` (``IORING_FSYNC_DATASYNC``)
submitted with one ``io_uring_enter`` (a few us) is run by one of the
kernel's io_uring workers for this process, on whichever core is free,
and its completion signals an ``eventfd`` the trio thread waits for like
for a socket: no thread of ours wakes, no GIL changes hands. (Linux's
older AIO ``IOCB_CMD_FDSYNC`` runs on a worker bound to the submitting
core, so it waits for the loop to sleep first: no overlap; tried, not
kept.) Where io_uring cannot be had (``open_fsync_ahead`` returns None:
another system or machine, a kernel or sandbox that disables it), a
record waits for its fsync before it returns, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import platform
import struct
import sys
import time
from typing import Protocol

import trio

_SETUP, _ENTER, _REGISTER = 425, 426, 427  # io_uring's system calls (x86_64)
_REGISTER_EVENTFD = 4
_OP_FSYNC = 3
_FSYNC_DATASYNC = 1
_OFF_SQES = 0x10000000  # mmap offset of the submission entries
_FEAT_SINGLE_MMAP = 1
_PARAMS = 120  # sizeof(struct io_uring_params)
_SQE = struct.Struct("=BBHiQQIIQ")  # opcode, flags, ioprio, fd, off, addr, len, fsync_flags, data
_SQE_BYTES = 64  # an entry: the fields above, then zeros
_CQE = struct.Struct("=QiI")  # user_data, res, flags
_U32 = struct.Struct("=I")

#: How long the trio thread, with nothing else to run, watches for an fdatasync begun
#: ahead to end before it sleeps (``SqliteStore.fsync_spin_ns``): a little more than a
#: usual one takes (docs/performance.md, "a `full` order's step begun plainly").
FSYNC_SPIN_NS = 500_000


class FsyncAhead(Protocol):
    """Begins an fdatasync without waiting for it; one at a time."""

    def start(self, fd: int) -> None:
        """Begin an fdatasync of ``fd`` (``OSError`` if it cannot begin); the descriptor
        may be closed meanwhile."""

    async def done(self) -> None:
        """Return once the fdatasync begun last is done; ``OSError`` if it failed."""

    def ended(self) -> bool:
        """Without a wait: True once the fdatasync begun last is done (``OSError`` if it
        failed; either is told once), False while it runs."""

    def spin(self, limit_ns: int) -> bool:
        """Watch, on this thread, for the fdatasync begun last to end, for at most
        ``limit_ns``: True once it has (``done`` then returns without a wait)."""

    def close(self) -> None:
        """Release what it holds."""


class UringFsync:
    """``FsyncAhead`` on an io_uring of its own, its completions signalled on an eventfd.

    One submission at a time, always the ring's first entry. On x86_64 only: its
    stores are seen in program order, so the rings need no barriers from Python.
    """

    def __init__(self, libc: ctypes.CDLL) -> None:
        """Use ``open_fsync_ahead``. ``OSError`` if the kernel refuses a ring."""
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        params = ctypes.create_string_buffer(_PARAMS)
        self._fd = self._check(self._syscall(_SETUP, 1, params))
        self._efd = -1
        try:
            sq_entries, cq_entries, _, _, _, features = struct.unpack_from("=6I", params, 0)
            # Offsets in the ring of: the submission head, tail, mask, ..., array; the
            # completion head, tail, mask, ..., entries.
            sq = struct.unpack_from("=7I", params, 40)
            cq = struct.unpack_from("=6I", params, 80)
            if not features & _FEAT_SINGLE_MMAP:
                raise OSError(errno.ENOSYS, "io_uring without one mapping for both rings")
            size = max(sq[6] + 4 * sq_entries, cq[5] + _CQE.size * cq_entries)
            self._ring = mmap.mmap(self._fd, size, offset=0)
            self._sqes = mmap.mmap(self._fd, _SQE_BYTES * sq_entries, offset=_OFF_SQES)
            self._sq_tail, self._sq_array = sq[1], sq[6]
            self._sq_mask = _U32.unpack_from(self._ring, sq[2])[0]
            self._cq_head, self._cq_tail, self._cqes = cq[0], cq[1], cq[5]
            self._cq_mask = _U32.unpack_from(self._ring, cq[2])[0]
            self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            efd = ctypes.c_int(self._efd)
            self._check(self._syscall(_REGISTER, self._fd, _REGISTER_EVENTFD, ctypes.byref(efd), 1))
        except BaseException:
            self.close()
            raise
        self._running = False

    def _check(self, result: int) -> int:
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result

    def start(self, fd: int) -> None:
        assert not self._running, "one fdatasync at a time"
        _SQE.pack_into(self._sqes, 0, _OP_FSYNC, 0, 0, fd, 0, 0, 0, _FSYNC_DATASYNC, 0)
        self._sqes[_SQE.size : _SQE_BYTES] = bytes(_SQE_BYTES - _SQE.size)
        tail = _U32.unpack_from(self._ring, self._sq_tail)[0]
        _U32.pack_into(self._ring, self._sq_array + 4 * (tail & self._sq_mask), 0)
        _U32.pack_into(self._ring, self._sq_tail, (tail + 1) & 0xFFFFFFFF)
        # The kernel takes its own reference to the file: it may be closed meanwhile.
        self._check(self._syscall(_ENTER, self._fd, 1, 0, 0, None, 0))
        self._running = True

    async def done(self) -> None:
        while not self.ended():
            await trio.lowlevel.wait_readable(self._efd)
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._efd)

    def ended(self) -> bool:
        if not self._running:
            return True
        head = _U32.unpack_from(self._ring, self._cq_head)[0]
        if head == _U32.unpack_from(self._ring, self._cq_tail)[0]:
            return False
        res = _CQE.unpack_from(self._ring, self._cqes + _CQE.size * (head & self._cq_mask))[1]
        _U32.pack_into(self._ring, self._cq_head, (head + 1) & 0xFFFFFFFF)
        self._running = False
        if res < 0:
            raise OSError(-res, os.strerror(-res))
        return True

    def spin(self, limit_ns: int) -> bool:
        # The completion entry is posted before the eventfd is signalled: once the tail
        # moved, the loop's next wait for I/O returns at once.
        ring, head, tail = self._ring, self._cq_head, self._cq_tail
        unpack = _U32.unpack_from
        end = time.perf_counter_ns() + limit_ns
        while self._running and unpack(ring, head)[0] == unpack(ring, tail)[0]:
            if time.perf_counter_ns() >= end:
                return False
        return True

    def close(self) -> None:
        # Closing the ring waits for nothing: a running fdatasync finishes in the kernel.
        for name in ("_sqes", "_ring"):
            mapping = getattr(self, name, None)
            if mapping is not None:
                mapping.close()
        for fd in (self._efd, self._fd):
            if fd >= 0:
                os.close(fd)
        self._efd = self._fd = -1


def open_fsync_ahead() -> FsyncAhead | None:
    """An io_uring fdatasync, or None where it cannot be had (another system or machine,
    a kernel or a sandbox that disables io_uring)."""
    if not sys.platform.startswith("linux") or platform.machine() != "x86_64":
        return None
    try:
        return UringFsync(ctypes.CDLL(None, use_errno=True))
    except (OSError, AttributeError):
        return None
