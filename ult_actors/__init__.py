"""ult-actors: a supervised actor tree between local trading programs and their brokers."""

__version__ = "0.1.0"
