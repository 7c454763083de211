"""Human output of the ``ult`` client commands: aligned tables, the health tree, event lines.

Colour is used only when asked for (the CLI asks when stdout is a terminal
and ``NO_COLOR`` is unset), so piped output stays plain text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from ult_actors.cli.numbers import money, plain, price
from ult_actors.messages import (
    Account,
    AccountReset,
    ActorHealth,
    ActorHealthChanged,
    ClusterHealth,
    ConnectionHealth,
    ConnectionStateChanged,
    Event,
    HealthSnapshot,
    NatsHealth,
    Order,
    OrderUpdate,
    Position,
    PositionDrift,
    TradingSetting,
    TradingStateChanged,
)

_COLOURS = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold": "1"}
_STATE_COLOUR = {
    "running": "green",
    "starting": "yellow",
    "restarting": "yellow",
    "connecting": "yellow",
    "connected": "green",
    "reconnecting": "yellow",
    "failed": "red",
    "stopped": "dim",
    "filled": "green",
    "partially_filled": "yellow",
    "rejected": "red",
    "expired": "dim",
    "lost": "red",
    "degraded": "red",
    "canceled": "dim",
    "replaced": "dim",
    "pending_replace": "yellow",
    "held": "dim",
    "active": "green",
    "reducing": "yellow",
    "halted": "red",
}


class Style:
    """Optional ANSI colour."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def paint(self, text: str, colour: str | None) -> str:
        if not self.colour or colour is None or not text:
            return text
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"

    def state(self, text: str) -> str:
        return self.paint(text, _STATE_COLOUR.get(text))


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    style: Style,
    *,
    right: frozenset[int] = frozenset(),
    colour_column: int | None = None,
) -> str:
    """Rows under headers, columns padded to their widest cell (``right``: right-aligned)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str], colour: bool) -> str:
        out = []
        for i, cell in enumerate(cells):
            padded = cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            if colour and i == colour_column:
                padded = padded.replace(cell, style.state(cell), 1)
            out.append(padded)
        return "  ".join(out).rstrip()

    lines = [style.paint(line(headers, False), "bold")]
    lines += [line(row, True) for row in rows]
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """``3d04h``, ``2h05m``, ``4m07s``, ``12s``."""
    s = int(max(0, seconds))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def orders_table(orders: Sequence[Order], style: Style) -> str:
    """Orders, one per row; the legs of an order list together, a triggered leg drawn under
    the leg that triggers it. A LINKS column (only when some order has one) names each
    leg's list and role and each replace's other side."""
    headers = ["ID", "CLIENT ORDER ID", "BROKER", "SYMBOL", "SIDE", "QTY", "TYPE", "PRICE",
               "TIF", "STATUS", "FILLED", "AVG PRICE"]  # fmt: skip
    rows = [
        [prefix + o.ref, o.client_order_id, o.broker, o.symbol, o.side, plain(o.qty), o.type,
         _price(o), o.time_in_force, _status(o), plain(o.filled_qty),
         price(o.avg_fill_price, o.symbol), links(o)]
        for o, prefix in grouped(orders)
    ]  # fmt: skip
    if not rows:
        return "no orders"
    if any(row[-1] for row in rows):
        headers.append("LINKS")
    else:
        rows = [row[:-1] for row in rows]
    return table(headers, rows, style, right=frozenset({5, 7, 10, 11}), colour_column=9)


#: Where each role stands among its list's legs: the triggering leg first.
_ROLE_RANK = {"entry": 0, "parent": 0, "take_profit": 1, "child": 1, "stop_loss": 2}


def grouped(orders: Sequence[Order]) -> list[tuple[Order, str]]:
    """``orders`` in their order, but each list's legs together where its first leg is, in
    role order; with the tree prefix of a leg triggered by another leg of the listing."""
    lists: dict[str, list[Order]] = {}
    for o in orders:
        if o.leg is not None:
            lists.setdefault(o.leg.list_id, []).append(o)
    out: list[tuple[Order, str]] = []
    for o in orders:
        if o.leg is None:
            out.append((o, ""))
            continue
        legs = lists.pop(o.leg.list_id, [])  # empty: shown already, with its first leg
        legs.sort(key=lambda leg: _ROLE_RANK[leg.leg.role] if leg.leg else 0)
        ids = {leg.client_order_id for leg in legs}
        triggered = [leg for leg in legs if leg.leg and leg.leg.parent_id in ids]
        for leg in legs:
            if leg in triggered:
                out.append((leg, "└─ " if leg is triggered[-1] else "├─ "))
            else:
                out.append((leg, ""))
    return out


def links(o: Order) -> str:
    """``bracket L-1 take_profit after c-3``, ``replaces c-1``, ``replaced by c-2``."""
    parts = []
    if o.leg is not None:
        after = f" after {o.leg.parent_id}" if o.leg.parent_id else ""
        parts.append(f"{o.leg.contingency} {o.leg.list_id} {o.leg.role}{after}")
    if o.replaces:
        parts.append(f"replaces {o.replaces}")
    if o.replaced_by:
        parts.append(f"replaced by {o.replaced_by}")
    return "; ".join(parts)


def _status(o: Order) -> str:
    # An unsettled submit must stand out until reconciliation settles it; so must an
    # order no client of this service placed (found at the broker, adopted).
    status = f"{o.status}?" if o.outcome == "unknown" else o.status
    return f"{status} (adopted)" if o.origin == "adopted" else status


def _price(o: Order) -> str:
    # Prices a person set are shown exactly (they are at the venue's tick already).
    if o.type == "stop_limit":
        return f"{plain(o.stop_price)}/{plain(o.limit_price)}"
    return plain(o.limit_price if o.type == "limit" else o.stop_price)


def order_detail(o: Order, style: Style) -> str:
    """One order, one field per line."""
    fields: list[tuple[str, str]] = [
        ("id", o.ref),
        ("client order id", o.client_order_id),
        ("broker", o.broker),
        ("symbol", o.symbol),
        ("side", o.side),
        ("qty", plain(o.qty)),
        ("type", o.type),
        ("time in force", o.time_in_force),
        ("status", style.state(o.status)),
        ("filled", plain(o.filled_qty)),
    ]
    if o.limit_price is not None:
        fields.insert(7, ("limit price", plain(o.limit_price)))
    if o.stop_price is not None:
        fields.insert(7, ("stop price", plain(o.stop_price)))
    if o.avg_fill_price is not None:
        fields.append(("avg fill price", price(o.avg_fill_price, o.symbol)))
    if o.reject_reason:
        fields.append(("reason", o.reject_reason))
    if o.outcome != "definitive":
        fields.append(("outcome", o.outcome))
    if o.origin != "client":
        fields.append(("origin", f"{o.origin} (found at the broker, not placed through ult)"))
    if o.leg is not None:
        fields.append(("list", f"{o.leg.contingency} {o.leg.list_id}"))
        after = f" (after {o.leg.parent_id} fills)" if o.leg.parent_id else ""
        fields.append(("role", o.leg.role + after))
    if o.replaces:
        fields.append(("replaces", o.replaces))
    if o.replaced_by:
        fields.append(("replaced by", o.replaced_by))
    width = max(len(k) for k, _ in fields)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields)


def positions_table(positions: Sequence[Position], style: Style) -> str:
    if not positions:
        return "no positions"
    headers = ["BROKER", "SYMBOL", "QTY", "AVG ENTRY", "MARKET VALUE", "UNREALIZED P/L",
               "REALIZED P/L"]  # fmt: skip
    rows = [
        [p.broker, p.symbol, plain(p.qty), price(p.avg_entry_price, p.symbol),
         money(p.market_value), money(p.unrealized_pl), money(p.realized_pl)]
        for p in positions
    ]  # fmt: skip
    return table(headers, rows, style, right=frozenset({2, 3, 4, 5, 6}))


def accounts_table(accounts: Sequence[Account], style: Style) -> str:
    if not accounts:
        return "no accounts"
    headers = ["BROKER", "CURRENCY", "CASH", "BUYING POWER", "EQUITY"]
    rows = [
        [a.broker, a.currency, money(a.cash), money(a.buying_power), money(a.equity)]
        for a in accounts
    ]
    return table(headers, rows, style, right=frozenset({2, 3, 4}))


def _tree_order(actors: Sequence[ActorHealth]) -> list[tuple[ActorHealth, str]]:
    """Actors depth first in start order, each with its tree-drawing prefix."""
    children: dict[str | None, list[ActorHealth]] = {}
    names = {a.name for a in actors}
    for a in actors:
        parent = a.parent if a.parent in names else None
        children.setdefault(parent, []).append(a)
    out: list[tuple[ActorHealth, str]] = []

    def walk(node: ActorHealth, lead: str, last: bool, root: bool) -> None:
        out.append((node, "" if root else lead + ("└─ " if last else "├─ ")))
        kids = children.get(node.name, [])
        below = "" if root else lead + ("   " if last else "│  ")
        for i, kid in enumerate(kids):
            walk(kid, below, i == len(kids) - 1, False)

    for top in children.get(None, []):
        walk(top, "", True, True)
    return out


def health_tree(snapshot: HealthSnapshot, style: Style) -> str:
    """The actor tree, indented, with state, restarts, mailbox, uptime and last error."""
    now = snapshot.taken_at or time.time_ns()
    up = duration((now - snapshot.started_at) / 1e9) if snapshot.started_at else "?"
    head = (
        f"ult {snapshot.version}  pid {snapshot.pid}  up {up}  trading "
        + style.state(snapshot.trading_state)
        + _stricter_brokers(snapshot, style)
    )
    if snapshot.cluster is not None:
        head += "\n" + _cluster_line(snapshot.cluster, style, now)
    if snapshot.nats is not None:
        head += "\n" + _nats_line(snapshot.nats, style, now)
    for reason in snapshot.degraded:
        head += f"\n{style.state('degraded')}: {reason}"
    if snapshot.emulated_legs:
        held = ", ".join(f"{b} {n}" for b, n in sorted(snapshot.emulated_legs.items()))
        head += f"\nopen legs of order lists the service emulates: {held}"
    headers = ["ACTOR", "STATE", "RESTARTS", "MAILBOX", "HANDLED", "UPTIME", "LAST ERROR"]
    rows = []
    for actor, prefix in _tree_order(snapshot.actors):
        row = health_row(actor, now)
        rows.append(
            [prefix + actor.name, actor.state, str(actor.restarts), str(actor.mailbox_depth),
             str(actor.handled), duration(row["uptime_s"]) if row["uptime_s"] is not None else "",
             _retry(row, now) + _last_error(row)]
        )  # fmt: skip
    tree = table(headers, rows, style, right=frozenset({2, 3, 4, 5}), colour_column=1)
    if snapshot.broker_trading:
        tree += "\n\n" + trading_table(snapshot, style)
    for broker, conn in sorted(snapshot.connections.items()):
        tree += f"\nconnection {broker}: {style.state(conn.state)}" + _connection_facts(conn, now)
    return head + "\n" + tree


def _cluster_line(cluster: ClusterHealth, style: Style, now: int) -> str:
    """``cluster prod: standby (b); active: a (epoch 3)``, then the problem, if any, on a
    line of its own: ``  database unreachable: OperationalError: ... (for 12s)``."""
    line = f"cluster {cluster.name}: {style.state(cluster.role)} ({cluster.instance})"
    if cluster.role == "standby":
        line += f"; active: {cluster.active or 'none'}"
    line += f" (epoch {cluster.epoch})" if cluster.epoch else ""
    if cluster.problem:
        lasted = duration(max(0, now - cluster.problem_since) / 1e9)
        line += f"\n  {_clip(cluster.problem, 160)} (for {lasted})"
    return line


def _nats_line(nats: NatsHealth, style: Style, now: int) -> str:
    """``nats nats://host:4222: reconnecting for 12s; last error ... (3s ago); 40 events
    not yet in JetStream``."""
    line = f"nats {nats.url}: {style.state(nats.state)} for {duration((now - nats.since) / 1e9)}"
    if nats.last_error:
        ago = duration(max(0, now - nats.last_error_at) / 1e9)
        line += f"; last error {_clip(nats.last_error, 100)} ({ago} ago)"
    if nats.publish_backlog:
        line += f"; {nats.publish_backlog} events not yet in JetStream"
    if nats.fell_behind:
        line += f"; fell behind {nats.fell_behind}x (events lost to the stream)"
    return line


def _connection_facts(conn: ConnectionHealth, now: int) -> str:
    """``  since 3s  stream 0.4s ago  budget 12/20 used, 3 waiting``."""
    facts = f"  since {duration((now - conn.since) / 1e9)}" if conn.since else ""
    if conn.last_message_age_s is not None:
        facts += f"  stream {conn.last_message_age_s:g}s ago"
    if conn.budget is not None:
        waiting = sum(conn.budget.waiting.values())
        facts += f"  budget {conn.budget.used}/{conn.budget.burst} used, {waiting} waiting"
        if conn.budget.paused_for_s:
            facts += f", paused {conn.budget.paused_for_s:g}s"
    return facts


def _stricter_brokers(snapshot: HealthSnapshot, style: Style) -> str:
    """``  (reducing: alpaca)``: the brokers whose state in force is not the global one."""
    by_state: dict[str, list[str]] = {}
    for name, setting in sorted(snapshot.broker_trading.items()):
        if setting.state != snapshot.trading_state:
            by_state.setdefault(setting.state, []).append(name)
    parts = [f"{style.state(state)}: {', '.join(names)}" for state, names in by_state.items()]
    return f"  ({'; '.join(parts)})" if parts else ""


def _trading_rows(snapshot: HealthSnapshot) -> list[tuple[str, TradingSetting]]:
    """The global setting (as ``*``), then every broker's in force."""
    glob = snapshot.trading or TradingSetting(state=snapshot.trading_state)
    return [("*", glob), *sorted(snapshot.broker_trading.items())]


def trading_table(snapshot: HealthSnapshot, style: Style) -> str:
    """The global trading state and every broker's, with who set it, why and since when."""
    headers = ["BROKER", "TRADING", "SET BY", "SINCE", "REASON"]
    rows = [
        [name, s.state, s.set_by, clock(s.at) if s.at else "", _clip(s.reason, 80)]
        for name, s in _trading_rows(snapshot)
    ]
    return table(headers, rows, style, colour_column=1)


def trading_document(snapshot: HealthSnapshot) -> dict[str, Any]:
    """The trading states as JSON: ``{"trading": {...}, "broker_trading": {name: {...}}}``."""
    rows = _trading_rows(snapshot)
    return {
        "trading": msgspec.to_builtins(rows[0][1]),
        "broker_trading": {name: msgspec.to_builtins(s) for name, s in rows[1:]},
    }


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _retry(row: dict[str, Any], now_ns: int) -> str:
    """For a connection that cannot connect: how many tries failed and when the next is."""
    at = row["next_retry_at"]
    if row["state"] != "connecting" or at is None:
        return ""
    return f"{row['connect_failures']} failed, next try in {duration(max(0, at - now_ns) / 1e9)}; "


def _last_error(row: dict[str, Any]) -> str:
    err = row["last_error"]
    if err is None:
        return ""
    text = _clip(f"{err['type']}: {err['message']}", 60)
    return f"{text} ({duration(err['age_s'])} ago)"


def health_row(actor: ActorHealth, now_ns: int) -> dict[str, Any]:
    """One actor as the JSON form of ``ult health --json`` has it."""
    running = actor.state == "running" and actor.started_at
    last = actor.last_error
    return {
        "name": actor.name,
        "parent": actor.parent,
        "kind": actor.kind,
        "state": actor.state,
        "restart": actor.restart,
        "restarts": actor.restarts,
        "last_error": None
        if last is None
        else {
            "type": last.type,
            "message": last.message,
            "at": last.at,
            "age_s": round(max(0, now_ns - last.at) / 1e9, 3),
        },
        "mailbox_depth": actor.mailbox_depth,
        "handled": actor.handled,
        "uptime_s": round((now_ns - actor.started_at) / 1e9, 3) if running and actor.started_at else None,
        "started_at": actor.started_at,
        "strategy": actor.strategy,
        "restarts_in_window": actor.restarts_in_window,
        "connect_failures": actor.connect_failures,
        "next_retry_at": actor.next_retry_at,
    }


def health_document(snapshot: HealthSnapshot) -> dict[str, Any]:
    """``ult health --json``: ``{"actors": [...]}`` plus process facts."""
    now = snapshot.taken_at or time.time_ns()
    return {
        "actors": [health_row(a, now) for a in snapshot.actors],
        "pid": snapshot.pid,
        "version": snapshot.version,
        "uptime_s": round((now - snapshot.started_at) / 1e9, 3) if snapshot.started_at else None,
        "trading_state": snapshot.trading_state,
        **trading_document(snapshot),
        "degraded": list(snapshot.degraded),
        "log_lines_dropped": snapshot.log_lines_dropped,
        "emulated_legs": dict(snapshot.emulated_legs),
        "connections": {b: msgspec.to_builtins(c) for b, c in snapshot.connections.items()},
        "cluster": msgspec.to_builtins(snapshot.cluster),
        "nats": msgspec.to_builtins(snapshot.nats),
        "taken_at": snapshot.taken_at,
    }


def clock(ts_ns: int) -> str:
    """A UTC wall-clock time with milliseconds."""
    if not ts_ns:
        ts_ns = time.time_ns()
    return time.strftime("%H:%M:%S", time.gmtime(ts_ns // 1_000_000_000)) + (
        f".{ts_ns // 1_000_000 % 1000:03d}Z"
    )


def event_line(event: Event, style: Style) -> str:
    """One event as a line for ``ult events``."""
    if isinstance(event, OrderUpdate):
        o = event.order
        if event.fill_only and event.fill is not None and event.fill.fee_of is not None:
            f = event.fill  # fees the venue charged after the execution
            named = ", ".join(f"{name} {plain(amount)}" for name, amount in sorted(f.fees.items()))
            return (
                f"{clock(event.ts)}  fees    {o.client_order_id} {o.symbol} {plain(f.total_fees)}"
                f" {f.fee_currency or ''} ({named}) for execution {f.fee_of}"
            )
        if event.fill_only and event.fill is not None:
            # The order's new state had its own line already: this is only its execution.
            f = event.fill
            return (
                f"{clock(event.ts)}  fill    {o.client_order_id} {o.symbol} {f.side}"
                f" {plain(f.qty)} @ {price(f.price, o.symbol)}  ({plain(o.filled_qty)}/{plain(o.qty)})"
            )
        text = (
            f"order   {o.client_order_id} {o.symbol} {o.side} {plain(o.qty)} {o.type} "
            f"{style.state(o.status)} {plain(o.filled_qty)}/{plain(o.qty)}"
        )
        if event.fill is not None:
            text += f"  fill {plain(event.fill.qty)} @ {price(event.fill.price, o.symbol)}"
        if linked := links(o):
            text += f"  ({linked})"
        return f"{clock(event.ts)}  {text}"
    if isinstance(event, ActorHealthChanged):
        text = f"actor   {event.name} {style.state(event.state)} restarts {event.restarts}"
        if event.error:
            text += f"  error: {event.error}"
        return f"{clock(event.ts)}  {text}"
    if isinstance(event, ConnectionStateChanged):
        why = f": {event.reason}" if event.reason else ""
        return f"{clock(event.ts)}  broker  {event.broker} {style.state(event.state)}{why}"
    if isinstance(event, PositionDrift):
        return (
            f"{clock(event.ts)}  drift   {event.broker} {event.symbol} book"
            f" {plain(event.book_qty)} broker {plain(event.broker_qty) or 'gave no report'}"
        )
    if isinstance(event, AccountReset):
        return (
            f"{clock(event.ts)}  reset   {event.broker}: {event.reason};"
            f" books now its {len(event.positions)} position(s)"
        )
    if isinstance(event, TradingStateChanged):
        where = f" ({event.broker})" if event.broker else ""
        by = " [by the service]" if event.set_by == "service" else ""
        return f"{clock(event.ts)}  trading {style.state(event.state)}{where}: {event.reason}{by}"
    return f"{clock(0)}  {type(event).__name__}"
