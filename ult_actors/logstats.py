"""What a ``LogWriter`` has done so far: a ``msgspec.Struct`` declared with class keywords,
so in a module of its own that is not compiled (``compiled.py``), as mypyc would drop them."""

from __future__ import annotations

import msgspec


class LogStats(msgspec.Struct, frozen=True, kw_only=True):
    """What a ``LogWriter`` has done so far."""

    #: Records handed over (written inline included).
    handed_over: int
    #: Lines written to the stream.
    written: int
    #: Records dropped because the queue was full.
    dropped: int
    #: Lines lost because the stream refused them (closed, broken pipe).
    write_failed: int
    #: Records waiting for the writer thread.
    pending: int
