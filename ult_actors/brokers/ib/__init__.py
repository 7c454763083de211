"""Interactive Brokers: the TWS / IB Gateway socket protocol, natively on trio.

Modules: ``protocol`` (framing, handshake), ``fields`` (typed fields),
``wire`` (message records), ``encode`` / ``decode`` (one function per
message), ``mapping`` (our orders to IB's), ``orders`` (tracking what TWS
reports), ``errors`` (TWS codes), ``settings`` and ``connector``. Supported
server versions: 157 to 178, the fields-only protocol.
"""

from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.settings import IbSettings, ib_settings_from_env

__all__ = ["IbConnector", "IbSettings", "ib_settings_from_env"]
