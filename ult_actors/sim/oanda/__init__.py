"""`ult sim oanda`: a loopback OANDA v20 REST and streaming simulator."""

from ult_actors.sim.oanda.server import main

__all__ = ["main"]
