"""The ``ult`` commands that talk to a running service over its socket.

Every command takes ``--socket`` (default: as for the server) and ``--json``
(one JSON document; JSON lines for ``events`` and ``health --watch``), or
``--url nats://HOST:PORT`` (default ``$ULT_URL``) with ``--cluster`` and
``--creds`` to reach a service over NATS instead, with the same output.
Exit codes: 0 ok, 1 the order was rejected or the request failed, 2 usage
error, 3 the service is unreachable (the message names the socket tried).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TextIO, TypeVar

import msgspec

from ult_actors.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from ult_actors.cli.numbers import plain_json
from ult_actors.cli.tables import (
    Style,
    accounts_table,
    event_line,
    health_document,
    health_tree,
    order_detail,
    orders_table,
    positions_table,
    trading_document,
    trading_table,
)
from ult_actors.client import (
    Client,
    OutcomeUnknown,
    ServiceUnreachable,
    SubscriptionLost,
    order_request,
)
from ult_actors.errors import ConfigError, NotFound, UltError
from ult_actors.ipc.paths import resolve_socket
from ult_actors.messages import Order, OrderRequest
from ult_actors.validation import PLAIN_DECIMAL

TIFS = ["day", "gtc", "ioc", "fok", "opg", "cls"]
Command = Callable[[Client, argparse.Namespace, "Output"], int]
Row = TypeVar("Row")


class Output:
    """Where and how a command prints: JSON or human, colour only on a terminal."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.json = as_json
        tty = self.stream.isatty()
        self.style = Style(tty and not as_json and not os.environ.get("NO_COLOR"))
        self.tty = tty

    def document(self, value: Any) -> None:
        """One JSON document (as on the wire, decimals in plain notation at full precision)."""
        encoded = msgspec.json.encode(plain_json(value))
        self.stream.write(msgspec.json.format(encoded, indent=2).decode())
        self.stream.write("\n")
        self.stream.flush()

    def json_line(self, value: Any) -> None:
        self.stream.write(msgspec.json.encode(plain_json(value)).decode() + "\n")
        self.stream.flush()

    def text(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def show(self, document: Any, render: Callable[[Style], str]) -> None:
        """``document`` as JSON, or for people the text ``render`` makes in this style."""
        if self.json:
            self.document(document)
        else:
            self.text(render(self.style))


def _count(text: str) -> int:
    """An argparse type: a count written as plain digits (``1_0``, ``1e3``, `` 5`` refused)."""
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (digits only)")
    return int(text)


def _seconds(text: str) -> float:
    """An argparse type: seconds above 0 written as a plain decimal (no exponent, nan, inf)."""
    if not PLAIN_DECIMAL.fullmatch(text) or float(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return float(text)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"ult {prog}", description=description)
    p.add_argument("--socket", help="service socket (default: $ULT_SOCKET, then the usual places)")
    p.add_argument(
        "--url",
        default=os.environ.get("ULT_URL") or None,
        help="reach the service over NATS instead: nats://HOST:PORT or tls://HOST:PORT"
        " (default: $ULT_URL)",
    )
    p.add_argument(
        "--cluster",
        default=os.environ.get("ULT_CLUSTER") or "default",
        help="with --url: the service's [cluster] name (default: $ULT_CLUSTER, else default)",
    )
    p.add_argument(
        "--creds",
        default=os.environ.get("ULT_NATS_CREDS") or None,
        help="with --url: a NATS credentials file (default: $ULT_NATS_CREDS); a user and"
        " password may instead be in the URL",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds to wait for a reply (default 60)"
    )
    return p


def _run(args: argparse.Namespace, command: Command) -> int:
    out = Output(args.json)
    try:
        client = Client(
            args.socket, url=args.url, cluster=args.cluster, creds=args.creds, timeout=args.timeout
        )
    except ConfigError as exc:
        print(f"ult: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with client:
            return command(client, args, out)
    except ServiceUnreachable as exc:
        _report(out, exc, code="service_unreachable", socket=str(exc.socket_path))
        if not out.json:
            where = "--url / --cluster" if args.url else "--socket / $ULT_SOCKET"
            print(f"is `ult serve` running, and is {where} right?", file=sys.stderr)
        return EXIT_UNREACHABLE
    except OutcomeUnknown as exc:
        _report(out, exc, code=exc.code, client_order_id=exc.client_order_id)
        return EXIT_FAILED
    except UltError as exc:
        _report(out, exc, code=exc.code)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


def _report(out: Output, exc: UltError, *, code: str, **extra: Any) -> None:
    if out.json:
        info = {k: v for k, v in msgspec.to_builtins(exc.to_info()).items() if v is not None}
        out.document({"error": {**info, "code": code, **extra}})
    else:
        print(f"ult: {code}: {exc.message}", file=sys.stderr)


def _order_exit(order: Order, waited: bool) -> int:
    if order.status in ("rejected", "lost"):
        return EXIT_FAILED
    if waited and order.status in ("canceled", "expired"):
        return EXIT_FAILED
    return EXIT_OK


def _show_order(order: Order, out: Output) -> None:
    out.show(order, partial(order_detail, order))


def _show_rows(
    out: Output, key: str, rows: Sequence[Row], table: Callable[[Sequence[Row], Style], str]
) -> int:
    """A listing: ``{key: rows}`` as JSON, else ``table``; always exit 0."""
    out.show({key: rows}, partial(table, rows))
    return EXIT_OK


# -- submit ----------------------------------------------------------------------


def _add_terms(p: argparse.ArgumentParser) -> None:
    """An order's own terms (type, prices, time in force, client order id)."""
    p.add_argument("--type", default="market", choices=["market", "limit", "stop", "stop_limit"])
    p.add_argument("--limit-price")
    p.add_argument("--stop-price")
    p.add_argument("--tif", default="day", choices=TIFS)
    p.add_argument("--client-order-id", help="idempotency key (default: made by the client)")


def _add_order(p: argparse.ArgumentParser) -> None:
    """An order's side, quantity and terms."""
    p.add_argument("side", choices=["buy", "sell"])
    p.add_argument("qty")
    _add_terms(p)


def _add_exits(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--take-profit", required=required, metavar="P", help="the take-profit's limit price"
    )
    p.add_argument("--stop-loss", required=required, metavar="P", help="the stop-loss's stop price")
    p.add_argument(
        "--stop-limit", metavar="P", help="make the stop-loss a stop-limit with this limit price"
    )


def _add_list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="broker connection (default: by routing rules)")
    p.add_argument(
        "--list-id", help="the list's id and idempotency key (default: made by the client)"
    )


def _show_list(legs: Sequence[Order], out: Output) -> int:
    """Every leg of a list; exit 1 if the list was refused (a leg rejected or lost)."""
    _show_rows(out, "orders", legs, orders_table)
    return EXIT_FAILED if any(_order_exit(leg, False) for leg in legs) else EXIT_OK


def submit_main(argv: list[str]) -> int:
    """``ult submit SYMBOL SIDE QTY [...]``: place an order, or a bracket."""
    p = _parser(
        "submit",
        "Place an order. Prints the order; exit 1 if it was rejected. Without --wait,"
        " --timeout is also the order's deadline: the service does not send it later, and"
        " a timeout names the client order id to look up (`ult order ID`). With"
        " --take-profit and --stop-loss it places a bracket: the order (market or limit)"
        " with a take-profit limit and a stop-loss on the other side, working once it"
        " fills; the fill of one exit cancels the other. Every leg is printed.",
    )
    p.add_argument("symbol")
    _add_order(p)
    p.add_argument("--extended-hours", action="store_true")
    p.add_argument("--broker", help="broker connection (default: by routing rules)")
    p.add_argument("--wait", action="store_true", help="wait until the order is terminal")
    _add_exits(p, required=False)
    p.add_argument("--list-id", help="a bracket's id and idempotency key")
    args = p.parse_args(argv)
    if args.take_profit or args.stop_loss or args.stop_limit or args.list_id:
        _check_bracket(p, args)
        return _run(args, _submit_bracket)

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        order = c.submit(
            a.symbol,
            a.side,
            a.qty,
            type=a.type,
            limit_price=a.limit_price,
            stop_price=a.stop_price,
            time_in_force=a.tif,
            extended_hours=a.extended_hours,
            broker=a.broker,
            client_order_id=a.client_order_id,
            wait=a.wait,
            timeout=None if a.wait else a.timeout,
        )
        _show_order(order, out)
        return _order_exit(order, a.wait)

    return _run(args, run)


def _check_bracket(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors of a bracket: both exits, a market or limit entry, no single-order options."""
    if not (args.take_profit and args.stop_loss):
        p.error("a bracket needs both --take-profit and --stop-loss")
    if args.type not in ("market", "limit") or args.stop_price:
        p.error("a bracket's entry is a market or limit order (--stop-loss sets the exit's stop)")
    single = {"--wait": args.wait, "--extended-hours": args.extended_hours,
              "--client-order-id": args.client_order_id}  # fmt: skip
    if given := [name for name, value in single.items() if value]:
        p.error(
            f"{', '.join(given)}: not for a bracket (each leg gets its own client order id;"
            " --list-id names the list)"
        )


def _submit_bracket(c: Client, a: argparse.Namespace, out: Output) -> int:
    legs = c.bracket(
        a.symbol, a.side, a.qty, take_profit=a.take_profit, stop_loss=a.stop_loss,
        stop_limit=a.stop_limit, type=a.type, limit_price=a.limit_price, time_in_force=a.tif,
        broker=a.broker, list_id=a.list_id, timeout=a.timeout,
    )  # fmt: skip
    return _show_list(legs, out)


def oco_main(argv: list[str]) -> int:
    """``ult oco SYMBOL SIDE QTY --take-profit P --stop-loss P``: two exits, one cancels the other."""
    p = _parser(
        "oco",
        "Place two exits on SIDE (sell leaves a long, buy covers a short): a take-profit"
        " limit and a stop-loss (stop, or stop-limit with --stop-limit); the fill of one"
        " cancels the other. Both legs are printed; exit 1 if the list was rejected.",
    )
    p.add_argument("symbol")
    p.add_argument("side", choices=["buy", "sell"])
    p.add_argument("qty")
    _add_exits(p, required=True)
    p.add_argument("--tif", default="gtc", choices=TIFS, help="both legs' (default gtc)")
    _add_list_options(p)

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        legs = c.oco(
            a.symbol, a.side, a.qty, take_profit=a.take_profit, stop_loss=a.stop_loss,
            stop_limit=a.stop_limit, time_in_force=a.tif, broker=a.broker, list_id=a.list_id,
            timeout=a.timeout,
        )  # fmt: skip
        return _show_list(legs, out)

    return _run(p.parse_args(argv), run)


_OTO_USAGE = (
    "ult oto SYMBOL SIDE QTY [--type T] [--limit-price P] [--stop-price P] [--tif T]"
    " --then SIDE QTY [--type T] [--limit-price P] [--stop-price P] [--tif T] [options]"
)
#: Options of the whole ``ult oto`` command, which may also come after the child's terms.
_OTO_WHOLE = ("socket", "url", "cluster", "creds", "json", "timeout", "broker", "list_id")


def _oto_parser() -> argparse.ArgumentParser:
    p = _parser(
        "oto",
        "Place a parent order and a child order in SYMBOL that is sent once the parent"
        " fills (sized to what filled). The parent's terms come before --then, the"
        " child's after it; the child's --tif defaults to the parent's. Example: ult oto AAPL"
        " buy 10 --type limit --limit-price 180 --tif gtc --then sell 10 --type limit"
        " --limit-price 195. Both legs are printed; exit 1 if the list was rejected.",
    )
    p.usage = _OTO_USAGE
    _add_list_options(p)
    return p


def oto_main(argv: list[str]) -> int:
    """``ult oto SYMBOL SIDE QTY [terms] --then SIDE QTY [terms]``: a child sent once its parent fills."""
    p = _oto_parser()
    p.add_argument("symbol")
    _add_order(p)
    if "--then" not in argv:
        p.parse_args(argv)  # --help, or what is wrong before the missing --then
        p.error("--then SIDE QTY [terms] is required: the child order")
    at = argv.index("--then")
    args = p.parse_args(argv[:at])
    child_p = _oto_parser()
    _add_order(child_p)
    # Venues work both legs on one time in force (Alpaca refuses others): the parent's.
    child_p.set_defaults(tif=args.tif)
    # Parsed into what the parent's part gave, so those options keep their values unless
    # the child's part gives them again.
    given = argparse.Namespace(**{name: getattr(args, name) for name in _OTO_WHOLE})
    child = child_p.parse_args(argv[at + 1 :], namespace=given)
    for name in _OTO_WHOLE:
        setattr(args, name, getattr(child, name))

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        parent = _terms(a.symbol, a)
        legs = c.oto(parent, _terms(a.symbol, child), broker=a.broker, list_id=a.list_id,
                     timeout=a.timeout)  # fmt: skip
        return _show_list(legs, out)

    return _run(args, run)


def _terms(symbol: str, a: argparse.Namespace) -> OrderRequest:
    return order_request(
        symbol, a.side, a.qty, type=a.type, limit_price=a.limit_price, stop_price=a.stop_price,
        time_in_force=a.tif, client_order_id=a.client_order_id,
    )  # fmt: skip


def replace_main(argv: list[str]) -> int:
    """``ult replace ID [--qty N] [--limit-price P] [--stop-price P] [--tif T]``: change an order."""
    p = _parser(
        "replace",
        "Change a working order's terms. Prints the replacement, a new order that"
        " `replaces` the old one (which ends `replaced`); fields not given keep their"
        " value. Exit 1 if refused: an order that filled, is being canceled or is a leg"
        " not yet working cannot be replaced (the message names its state).",
    )
    p.add_argument("order_id", metavar="ID", help="broker:id, client order id or the broker's id")
    p.add_argument("--qty", help="the new total quantity, counting what has filled already")
    p.add_argument("--limit-price")
    p.add_argument("--stop-price")
    p.add_argument("--tif", choices=TIFS)
    p.add_argument(
        "--client-order-id",
        help="the replacement's client order id, the replace's idempotency key"
        " (default: made by the client)",
    )
    args = p.parse_args(argv)
    if args.qty is None and args.limit_price is None and args.stop_price is None and not args.tif:
        p.error("nothing to change: give --qty, --limit-price, --stop-price or --tif")

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        order = c.replace(
            a.order_id, qty=a.qty, limit_price=a.limit_price, stop_price=a.stop_price,
            time_in_force=a.tif, client_order_id=a.client_order_id, timeout=a.timeout,
        )  # fmt: skip
        _show_order(order, out)
        return _order_exit(order, False)

    return _run(args, run)


def _order_main(
    argv: list[str], name: str, description: str, action: Callable[[Client, str], Order]
) -> int:
    """A command given one order id (or client order id) that prints the order ``action`` returns."""
    p = _parser(name, description)
    p.add_argument("order_id")

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        _show_order(action(c, a.order_id), out)
        return EXIT_OK

    return _run(p.parse_args(argv), run)


def cancel_main(argv: list[str]) -> int:
    """``ult cancel ID``: cancel by order id or client order id."""
    description = (
        "Cancel an order, by broker:id (as shown), client order id, or the broker's own id"
        " when only one broker has it (several: refused as ambiguous, listing them)."
    )
    return _order_main(argv, "cancel", description, Client.cancel)


def order_main(argv: list[str]) -> int:
    """``ult order ID``: show one order (by order id or client order id), and its list."""
    p = _parser(
        "order",
        "Show one order, by broker:id (as shown), client order id, or the broker's own id"
        " when only one broker has it (several: refused as ambiguous, listing them). A leg"
        " of a bracket, OCO or OTO is shown with every leg of its list; replace links"
        " (replaces, replaced by) name the client order ids. --json: the order alone.",
    )
    p.add_argument("order_id")

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        order = c.order(a.order_id)
        if out.json or order.leg is None:
            _show_order(order, out)
            return EXIT_OK
        list_id = order.leg.list_id
        legs = [o for o in c.orders(broker=order.broker) if o.leg and o.leg.list_id == list_id]
        out.text(order_detail(order, out.style) + "\n\n" + orders_table(legs or [order], out.style))
        return EXIT_OK

    return _run(p.parse_args(argv), run)


def orders_main(argv: list[str]) -> int:
    """``ult orders [--open]``: list orders."""
    p = _parser("orders", "List the orders the service knows.")
    p.add_argument("--open", action="store_true", help="only open orders")
    p.add_argument("--broker")
    p.add_argument("--limit", type=_count, default=1000)

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        orders = c.orders(open=a.open, broker=a.broker, limit=a.limit)
        return _show_rows(out, "orders", orders, orders_table)

    return _run(p.parse_args(argv), run)


def close_main(argv: list[str]) -> int:
    """``ult close SYMBOL [--broker NAME]``: close one position."""
    p = _parser(
        "close",
        "Close the position in SYMBOL: cancel its open orders, then close it (the broker's"
        " own close where it has one, else a market order). Passes in every trading state.",
    )
    p.add_argument("symbol")
    p.add_argument("--broker", help="broker connection (default: the one holding SYMBOL)")

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        orders = c.close_position(a.symbol, broker=a.broker)
        return _show_rows(out, "orders", orders, orders_table)

    return _run(p.parse_args(argv), run)


def flatten_main(argv: list[str]) -> int:
    """``ult flatten [--broker NAME]``: cancel every open order and close every position."""
    description = (
        "Cancel every open order and close every position, at one broker (--broker) or at all."
        " Passes in every trading state (halted included): it only reduces exposure."
    )
    return _per_broker_main(argv, "flatten", description, "orders", Client.flatten, orders_table)


def _per_broker_main(
    argv: list[str],
    name: str,
    description: str,
    key: str,
    fetch: Callable[[Client, str | None], Sequence[Row]],
    table: Callable[[Sequence[Row], Style], str],
) -> int:
    """A listing of what ``fetch`` returns, for one broker (``--broker``) or all."""
    p = _parser(name, description)
    p.add_argument("--broker")

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        return _show_rows(out, key, fetch(c, a.broker), table)

    return _run(p.parse_args(argv), run)


def positions_main(argv: list[str]) -> int:
    """``ult positions [--broker NAME]``: list positions."""
    description = "List positions."
    return _per_broker_main(
        argv, "positions", description, "positions", Client.positions, positions_table
    )


def account_main(argv: list[str]) -> int:
    """``ult account [--broker NAME]``: balances per broker."""
    description = "Show account balances, one row per broker."
    return _per_broker_main(
        argv, "account", description, "accounts", Client.account, accounts_table
    )


def health_main(argv: list[str]) -> int:
    """``ult health [--watch] [--json]``: the actor tree."""
    p = _parser("health", "Show the actor tree: state, restarts, last error, mailbox, uptime.")
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=_seconds, default=2.0, help="seconds between refreshes")
    p.add_argument("--count", type=_count, default=0, help="with --watch: stop after N refreshes")
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error("--interval must be positive")

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        shown = 0
        while True:
            snapshot = c.health()
            if out.json:
                (out.json_line if a.watch else out.document)(health_document(snapshot))
            else:
                if a.watch and out.tty:
                    out.stream.write("\x1b[H\x1b[2J")  # home + clear: redraw in place
                out.text(health_tree(snapshot, out.style))
            shown += 1
            if not a.watch or (a.count and shown >= a.count):
                return EXIT_OK
            if not out.tty and not out.json:
                out.text("")
            time.sleep(a.interval)

    return _run(args, run)


def events_main(argv: list[str]) -> int:
    """``ult events``: follow order updates, fills, health and risk events."""
    p = _parser("events", "Follow the event stream (JSON lines with --json).")
    p.add_argument(
        "--topics",
        default="orders,fills,health,positions,risk",
        help="comma-separated: orders, fills, health, positions, risk",
    )
    p.add_argument("--count", type=_count, default=0, help="stop after N events")
    args = p.parse_args(argv)
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    known = {"orders", "fills", "health", "positions", "risk"}
    if not topics or not set(topics) <= known:
        p.error(f"--topics: choose from {', '.join(sorted(known))}")

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        seen = 0
        try:
            events = c.subscribe(topics)
            print(f"following events on {c.address} (Ctrl-C to stop)", file=sys.stderr)
            sys.stderr.flush()
            for event in events:
                if out.json:
                    out.json_line(event)
                else:
                    out.text(event_line(event, out.style))
                seen += 1
                if a.count and seen >= a.count:
                    return EXIT_OK
        except SubscriptionLost as exc:
            if out.json:
                out.json_line({"dropped": exc.reason})
            print(f"ult: {exc.message}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK

    # --timeout bounds the subscribe; the wait for each event is unbounded.
    return _run(args, run)


def kill_switch_main(argv: list[str]) -> int:
    """``ult kill-switch on|off``: halt trading and cancel open orders, or resume."""
    p = _parser("kill-switch", "on: halt trading and cancel every open order; off: resume.")
    p.add_argument("state", choices=["on", "off"])
    args = p.parse_args(argv)

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        detail = c.kill_switch(a.state == "on")
        document = {"ok": True, "kill_switch": a.state, "detail": detail}
        out.show(document, lambda _style: detail or f"kill switch {a.state}")
        return EXIT_OK

    return _run(args, run)


def trading_state_main(argv: list[str]) -> int:
    """``ult trading-state [active|reducing|halted] [--broker B]``: show or set the trading state."""
    p = _parser(
        "trading-state",
        "With no state: show the global trading state and every broker's, with who set it"
        " and why. With one: set trading to active, reducing (only orders that shrink a"
        " position) or halted, for every broker or one. The service lifts a restriction it"
        " set itself (no position report) once positions reconcile; one a person set waits"
        " for a person.",
    )
    p.add_argument("state", nargs="?", choices=["active", "reducing", "halted"])
    p.add_argument("--broker", help="only this broker connection (default: all)")
    args = p.parse_args(argv)

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        if a.state is None:
            snapshot = c.health()
            if a.broker is not None and a.broker not in snapshot.broker_trading:
                raise NotFound(f"unknown broker {a.broker!r}")
            if a.broker is not None:
                snapshot = msgspec.structs.replace(
                    snapshot, broker_trading={a.broker: snapshot.broker_trading[a.broker]}
                )
            out.show(trading_document(snapshot), lambda style: trading_table(snapshot, style))
            return EXIT_OK
        detail = c.trading_state(a.state, broker=a.broker)
        document = {"ok": True, "trading_state": a.state, "broker": a.broker, "detail": detail}
        out.show(document, lambda _style: detail or f"trading {a.state}")
        return EXIT_OK

    return _run(args, run)


def socket_main(argv: list[str]) -> int:
    """``ult socket``: print the socket path clients would use, and why."""
    p = argparse.ArgumentParser(prog="ult socket", description=socket_main.__doc__)
    p.add_argument("--socket")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        loc = resolve_socket(args.socket)
    except ConfigError as exc:
        print(f"ult: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"socket": str(loc.path), "source": loc.source}))
    else:
        print(f"{loc.path}  (from {loc.source})")
    return EXIT_OK


#: Read by ``ult_actors.cli``: command name (one or two words) to its entry point.
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "submit": submit_main,
    "oco": oco_main,
    "oto": oto_main,
    "replace": replace_main,
    "cancel": cancel_main,
    "close": close_main,
    "flatten": flatten_main,
    "order": order_main,
    "orders": orders_main,
    "positions": positions_main,
    "account": account_main,
    "health": health_main,
    "events": events_main,
    "kill-switch": kill_switch_main,
    "trading-state": trading_state_main,
    "socket": socket_main,
}
