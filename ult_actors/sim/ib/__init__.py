"""A loopback TWS / IB Gateway simulator: ``ult sim ib [--port PORT] [--admin-port PORT]``.

Speaks the TWS API socket protocol (server versions 157 to 178) on
127.0.0.1 so that any standard TWS API client, and the ``ib`` connector,
can rehearse against it without an IB login. ``TwsSimulator`` is the
importable server (tests start it with ``nursery.start(sim.serve)`` and get
the bound port back); ``admin`` lets another process inject faults.
"""

from __future__ import annotations

import argparse
import sys

import trio

from ult_actors.sim.ib.admin import run_command, send_command, serve_admin
from ult_actors.sim.ib.server import Faults, TwsSimulator

__all__ = ["Faults", "TwsSimulator", "main", "run_command", "send_command", "serve_admin"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ult sim ib",
        description="Run a TWS / IB Gateway simulator on 127.0.0.1 (TWS API server versions 157..178).",
        epilog="Fault control from another process: ult sim ib ctl --admin-port PORT COMMAND "
        "(drop, lost, restored [data-lost], reject N [TEXT], slow-ack S, slow-replies S, "
        "silent on|off, drop-executions on|off, client-id-in-use ID|none, "
        "price SYMBOL PRICE, status).",
    )
    p.add_argument(
        "--port", type=int, default=7497, help="TWS API port (default 7497, 0 = any free)"
    )
    p.add_argument("--admin-port", type=int, default=None, help="fault-control port (default: off)")
    p.add_argument("--account", default="DU1234567", help="the simulated paper account id")
    p.add_argument("--seed", type=int, default=7, help="seed of the price feed")
    p.add_argument(
        "--tick", type=float, default=1.0, help="seconds between price ticks (0: frozen)"
    )
    p.add_argument(
        "--max-messages",
        type=int,
        default=50,
        help="messages a client may send per second before error 100 (default 50, 0: no limit)",
    )
    return p


def _ctl_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ult sim ib ctl", description="Send one fault-control command."
    )
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str]) -> int:
    """Run the simulator in the foreground (Ctrl-C stops it), or ``ctl`` one command."""
    if argv and argv[0] == "ctl":
        ctl = _ctl_parser().parse_args(argv[1:])
        if not ctl.command:
            print("ult sim ib ctl: a command is required", file=sys.stderr)
            return 2
        try:
            answer = trio.run(send_command, ctl.admin_port, " ".join(ctl.command))
        except (OSError, trio.TooSlowError) as exc:
            print(f"ult sim ib ctl: cannot reach the simulator: {exc}", file=sys.stderr)
            return 3
        print(answer)
        return 0 if answer.startswith("ok") else 1
    args = _parser().parse_args(argv)
    sim = TwsSimulator(
        seed=args.seed,
        account=args.account,
        tick_interval_s=args.tick or None,
        max_messages_per_s=args.max_messages or None,
    )

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", args.port)
            line = f"TWS simulator on 127.0.0.1:{port} (server versions 157..178, account {args.account})"
            if args.admin_port is not None:
                admin = await nursery.start(serve_admin, sim, args.admin_port)
                line += f"; fault control on 127.0.0.1:{admin}"
            print(line, flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"ult sim ib: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0
