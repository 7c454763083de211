"""Interactive Brokers: the TWS / IB Gateway socket protocol, natively on trio.

Modules: ``protocol`` (framing, handshake), ``fields`` (typed fields),
``wire`` (message records), ``encode`` / ``decode`` (one function per
message), ``settings`` and ``connector``. Supported server versions: 157
to 178, the fields-only protocol.
"""
