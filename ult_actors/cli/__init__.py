"""The `ult` command line: `main` dispatches to serve, client, sim and paper commands."""

from ult_actors.cli.main import main

__all__ = ["main"]
