"""IB order ids: one increasing sequence per configured connection, across reconnects.

TWS wants every new order id of an API client to be greater than any id
that client used before, and answers a reused one with error 103. Its
nextValidId says so only "at the time received": an order sent on a socket
that then dropped may be read by TWS after the new socket's handshake, or be
held while TWS is cut off from IB, so a new connection can be told an id its
predecessor already handed out. The sequence therefore outlives the
connector: ``connector_factory`` gives every incarnation of one configured
connection the same ``OrderIdSequence``, and each new id is the larger of
TWS's latest nextValidId and one more than the last id used or seen.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass


@dataclass
class OrderIdSequence:
    """The next order id to hand out; only ever grows."""

    next_id: int = 0

    def offer(self, next_valid_id: int) -> None:
        """TWS's nextValidId: a floor, never a step back."""
        self.next_id = max(self.next_id, next_valid_id)

    def advance_past(self, used_id: int) -> None:
        """An id this client used (ours, or reported by TWS for our client id)."""
        self.next_id = max(self.next_id, used_id + 1)

    def take(self, in_use: Container[int] = ()) -> int:
        """A fresh id, skipping any still in ``in_use`` (ids the connection tracks)."""
        order_id = max(self.next_id, 1)
        while order_id in in_use:
            order_id += 1
        self.next_id = order_id + 1
        return order_id
