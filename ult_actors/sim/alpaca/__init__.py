"""`ult sim alpaca`: a loopback Alpaca Trading API v2 + trade_updates server."""

from ult_actors.sim.alpaca.server import main

__all__ = ["main"]
