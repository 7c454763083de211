"""``ult paper reset``: start a paper account afresh (the account itself is ``brokers/paper``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ult_actors.brokers import paper
from ult_actors.brokers.paper.connector import reset_paper_state
from ult_actors.brokers.paper.kind import state_file
from ult_actors.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ult_actors.config import default_state_dir, load_config
from ult_actors.errors import ConfigError, UltError


def reset_main(argv: list[str]) -> int:
    """``ult paper reset [--config FILE] [--broker NAME]``: start the paper account afresh."""
    p = argparse.ArgumentParser(prog="ult paper reset", description=reset_main.__doc__)
    p.add_argument("--config")
    p.add_argument("--broker", default=None, help="paper connection name (default: all)")
    p.add_argument("--state-dir")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    state_dir = Path(args.state_dir or cfg.service.state_dir or default_state_dir(dict(os.environ)))
    done = 0
    for entry in cfg.brokers:
        if entry.kind != paper.KIND.name or (args.broker and entry.name != args.broker):
            continue
        path = state_file(entry.settings, state_dir, entry.name)
        try:
            reset_paper_state(path, entry.name)
        except UltError as exc:  # the account is open: a service is running on it
            print(f"ult paper reset: {exc.message}; stop the service first", file=sys.stderr)
            return EXIT_FAILED
        print(f"paper account {entry.name} reset ({path})")
        done += 1
    if not done:
        print(f"no paper broker named {args.broker!r}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
