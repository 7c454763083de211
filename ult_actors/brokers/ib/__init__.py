"""Interactive Brokers: the TWS / IB Gateway socket protocol, natively on trio.

Modules: ``protocol`` (framing, handshake), ``fields`` (typed fields),
``wire`` (message records), ``encode`` / ``decode`` (one function per
message), ``mapping`` (our orders to IB's), ``orders`` (tracking what TWS
reports), ``order_ids`` (the id sequence reconnects share), ``errors`` (TWS codes),
``settings``, ``session`` (the socket: handshake, paced sending, reading,
requests answered by lists), ``connector`` (what the messages mean for our
orders) and ``kind`` (what the registry lists).
Supported server versions: 157 to 178, the fields-only protocol.
"""

from __future__ import annotations

from ult_actors.brokers.ib.kind import KIND

__all__ = ["KIND"]
