"""The ``ult`` command: one entry point, one sub-command per job.

Service-side commands (``serve``, ``config check``, ``paper reset``) live in
``ult_actors.cli.serve``; ``sim NAME`` runs ``ult_actors.sim.NAME.main``; client
commands talk to a running service over its socket.

Exit codes: 0 ok, 1 order rejected or failed, 2 usage error, 3 service
unreachable.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from ult_actors.cli.exit_codes import EXIT_OK, EXIT_USAGE

SIMULATORS = ("alpaca", "oanda", "ib")

_USAGE = """\
usage: ult COMMAND [ARGS...]

service:
  serve                 run the gateway in the foreground
  config check          validate the configuration (secrets masked)
  paper reset           start the paper account afresh
  sim alpaca|oanda|ib   run a loopback simulator of a broker API

client (talk to a running service; all take --socket and --json, or --url nats://HOST:PORT
with --cluster NAME and --creds FILE to reach it over NATS; these may come first:
`ult --url nats://gw:4222 orders`):
  submit SYMBOL SIDE QTY  place an order (--type, --limit-price, --tif, --wait, ...);
                        with --take-profit P --stop-loss P a bracket: the order and its exits
  oco SYMBOL SIDE QTY   two exits, one fill cancels the other (--take-profit, --stop-loss)
  oto SYMBOL SIDE QTY [terms] --then SIDE QTY [terms]
                        a child order sent once its parent fills
  replace ID            change a working order (--qty, --limit-price, --stop-price, --tif)
  cancel ID             cancel by order id or client order id
  close SYMBOL          close one position (its open orders canceled first; --broker B)
  flatten               cancel every open order and close every position (--broker B)
  order ID              show one order (a leg: with every leg of its list)
  orders [--open]       list orders
  positions             list positions
  account [--broker]    account balances
  health [--watch]      the actor tree: state, restarts, last error, mailbox, uptime
  events                follow order updates, fills, health and risk events
  kill-switch on|off    halt trading and cancel open orders, or resume
  trading-state STATE   active | reducing | halted, for all brokers or --broker B
  report                what orders cost: fees, slippage, shortfall (--by, --csv, --html FILE)
  socket                print the socket path clients use

Exit codes: 0 ok, 1 rejected or failed, 2 usage error, 3 service unreachable.

Run `ult COMMAND --help` for a command's options; `ult --version`: the version, and
whether the order's hot path runs compiled or as pure Python.
"""


def _service_commands() -> dict[str, Callable[[list[str]], int]]:
    from ult_actors.cli import paper
    from ult_actors.cli import serve as app

    return {
        "serve": app.serve_main,
        "config check": app.config_check_main,
        "paper reset": paper.reset_main,
    }


def _client_commands() -> dict[str, Callable[[list[str]], int]]:
    try:
        module = importlib.import_module("ult_actors.cli.client")
    except ModuleNotFoundError as exc:
        if exc.name != "ult_actors.cli.client":
            raise
        return {}
    commands: dict[str, Callable[[list[str]], int]] = dict(module.COMMANDS)
    commands["report"] = importlib.import_module("ult_actors.cli.report").report_main
    return commands


def sim_main(argv: list[str]) -> int:
    """``ult sim NAME [ARGS]``: run one broker simulator in the foreground."""
    if not argv or argv[0] not in SIMULATORS:
        print(f"usage: ult sim {{{','.join(SIMULATORS)}}} [--port PORT] ...", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(f"ult_actors.sim.{argv[0]}")
    code: int = module.main(argv[1:])
    return code


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``ult ...`` to its sub-command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # The reader went away (`ult orders | head`): what it wanted is printed, so
        # this is success, not a traceback. Point stdout at /dev/null so the
        # interpreter's own flush at exit does not fail on the dead pipe again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK


#: Connection options a client command also takes before its name.
_LEADING_OPTIONS = ("--url", "--cluster", "--creds", "--socket")


def _hoist_connection_options(args: list[str]) -> list[str]:
    """``ult --url U orders`` as ``ult orders --url U``: leading connection options go
    after the command's name, where its parser reads them."""
    leading: list[str] = []
    while args and args[0].split("=", 1)[0] in _LEADING_OPTIONS:
        take = 1 if "=" in args[0] else 2
        leading += args[:take]
        args = args[take:]
    return [*args[:1], *leading, *args[1:]] if leading and args else leading + args


def _dispatch(args: list[str]) -> int:
    args = _hoist_connection_options(args)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_USAGE, end="")
        return EXIT_OK if args else EXIT_USAGE
    if args[0] == "--version":
        from ult_actors import __version__
        from ult_actors.compiled import describe

        print(f"ult-actors {__version__} ({describe()})")
        return EXIT_OK
    if args[0] == "sim":
        return sim_main(args[1:])
    client_commands = _client_commands()
    if args[0] in client_commands:
        # Without importing the service side: client commands start quicker.
        return client_commands[args[0]](args[1:])
    commands = {**_service_commands(), **client_commands}
    two = " ".join(args[:2])
    if two in commands:
        return commands[two](args[2:])
    if args[0] in commands:
        return commands[args[0]](args[1:])
    subcommands = [name for name in commands if name.startswith(f"{args[0]} ")]
    if subcommands:  # `ult paper`, `ult config --help`: the first word of a command
        asked = args[1:2] in (["-h"], ["--help"])
        print(f"usage: {' | '.join(f'ult {name}' for name in subcommands)}",
              file=sys.stdout if asked else sys.stderr)
        return EXIT_OK if asked else EXIT_USAGE
    print(f"ult: unknown command {args[0]!r}\n\n{_USAGE}", end="", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
