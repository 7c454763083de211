"""Whether the service reads new requests now: a gate its journal closes while its fold
falls behind.

The journal's fold writes what the change log holds into the file on a thread of its own,
and that thread needs the interpreter's lock the trio thread holds while it has work. A
loop that never runs out of work (a pipelining client keeping it busy) can outpace it:
what is appended and not yet folded then grows without bound, and with it the memory and
the collector's passes over it. So past ``max_unfolded`` pieces not yet folded the journal
closes this gate, and the IPC connections stop reading requests (the clients' writes wait
in their sockets) until the fold has caught up by a tenth of that: the loop runs out of
work, sleeps, and the fold has the lock. Nothing is refused or lost; new requests wait, in
pauses of tens of milliseconds.

Only the trio thread opens and closes it.
"""

from __future__ import annotations

import trio


class IntakeGate:
    """Open while new requests are read; closed while what they would add must wait."""

    def __init__(self) -> None:
        #: True while requests are not read.
        self.closed = False
        #: How many times it has closed (health, tests).
        self.closings = 0
        self._open = trio.Event()
        self._open.set()

    def close(self) -> None:
        """Stop the reading of new requests (until ``open``)."""
        if not self.closed:
            self.closed = True
            self.closings += 1
            self._open = trio.Event()

    def open(self) -> None:
        """Let new requests be read again."""
        if self.closed:
            self.closed = False
            self._open.set()

    async def wait_open(self) -> None:
        """Return once the gate is open (at once if it is)."""
        await self._open.wait()
