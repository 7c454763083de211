"""The chaos run: the driver (``python -m bench.chaos``), the faulty service it kills, the simulators it breaks."""
