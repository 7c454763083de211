"""Fault control of a running TWS simulator from another process.

``ult sim ib --admin-port P`` also listens on 127.0.0.1:P for one-line text
commands, answered with one line starting ``ok`` or ``error``::

    drop                      close every API connection (clients see EOF)
    lost                      send 1100 to every client; orders are held
    restored [data-lost]      send 1102 (or 1101) and release held orders
    reject N [TEXT]           reject the next N orders with error 201
    slow-ack SECONDS          delay every order acknowledgement
    slow-replies SECONDS      delay every other answer
    drop-on-order N           drop the sender of the next N orders before answering
    silent on|off             stop answering (sockets stay open, nothing is sent)
    drop-executions on|off    do not push fills (reqExecutions still lists them)
    max-messages N|off        messages a client may send per second (error 100 above)
    client-id-in-use ID|none  answer connects with that client id with 326
    price SYMBOL PRICE        move a price (fills what it triggers)
    status                    sessions, orders, faults, clients cut off for their rate
    orders                    every order TWS holds, as one JSON list after ``ok``
                              (client id, order id, order ref, status, filled,
                              parent id, OCA group): a chaos run counts order refs
                              and checks linked orders from the broker's side here

``ult sim ib ctl --admin-port P COMMAND...`` sends one command and prints
the answer, e.g. from a chaos script: ``ult sim ib ctl --admin-port 7498 lost``.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

import trio

from ult_actors.sim.ib.server import TwsSimulator

MAX_LINE = 4096


async def run_command(sim: TwsSimulator, line: str) -> str:
    """Apply one admin command; returns the one-line answer."""
    words = line.split()
    if not words:
        return "error empty command"
    cmd, args = words[0].lower(), words[1:]
    try:
        if cmd == "drop":
            return f"ok dropped {await sim.drop_connections()} connections"
        if cmd == "lost":
            await sim.connectivity_lost()
            return "ok sent 1100"
        if cmd == "restored":
            lost = bool(args) and args[0] == "data-lost"
            await sim.connectivity_restored(data_lost=lost)
            return f"ok sent {1101 if lost else 1102}"
        if cmd == "reject":
            sim.faults.reject_next = int(args[0])
            if len(args) > 1:
                sim.faults.reject_text = "Order rejected - reason:" + " ".join(args[1:])
            return f"ok rejecting the next {sim.faults.reject_next} orders"
        if cmd == "slow-ack":
            sim.faults.ack_delay_s = float(args[0])
            return f"ok acknowledgements delayed {sim.faults.ack_delay_s}s"
        if cmd == "slow-replies":
            sim.faults.reply_delay_s = float(args[0])
            return f"ok replies delayed {sim.faults.reply_delay_s}s"
        if cmd == "drop-on-order":
            sim.faults.drop_on_order = int(args[0])
            return f"ok dropping the sender of the next {sim.faults.drop_on_order} orders"
        if cmd in ("silent", "drop-executions"):
            on = _switch(args[0])
            if cmd == "silent":
                sim.faults.silent = on
            else:
                sim.faults.drop_executions = on
            return f"ok {cmd} {'on' if on else 'off'}"
        if cmd == "max-messages":
            sim.max_messages_per_s = None if args[0] == "off" else int(args[0])
            return f"ok max messages per second {sim.max_messages_per_s or 'off'}"
        if cmd == "client-id-in-use":
            if args[0] == "none":
                sim.faults.client_ids_in_use.clear()
                return "ok no client id blocked"
            sim.faults.client_ids_in_use.add(int(args[0]))
            return f"ok client id {args[0]} answered with 326"
        if cmd == "price":
            await sim.set_price(args[0].upper(), Decimal(args[1]))
            return f"ok {args[0].upper()} at {sim.exchange.price(args[0].upper())}"
        if cmd == "orders":
            listed = [
                {
                    "client_id": o.client_id,
                    "order_id": o.order_id,
                    "order_ref": o.order.order_ref,
                    "status": o.status,
                    "filled": str(o.filled),
                    "parent_id": o.order.parent_id,
                    "oca_group": o.order.oca_group,
                }
                for o in sim.exchange.orders.values()
            ]
            return "ok " + json.dumps(listed, separators=(",", ":"))
        if cmd == "status":
            open_orders = sum(1 for o in sim.exchange.orders.values() if o.is_open)
            return (
                f"ok sessions={sorted(sim.sessions)} open_orders={open_orders}"
                f" connected_to_ib={sim.connected_to_ib} rate_violations={sim.rate_violations}"
                f" faults={sim.faults}"
            )
    except (IndexError, ValueError, InvalidOperation):
        return f"error bad arguments for {cmd!r}"
    return f"error unknown command {cmd!r}"


def _switch(word: str) -> bool:
    if word not in ("on", "off"):
        raise ValueError(word)
    return word == "on"


async def serve_admin(
    sim: TwsSimulator,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer admin commands on 127.0.0.1:port until cancelled."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    bound = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        buf = b""
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(MAX_LINE)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    answer = await run_command(sim, line.decode(errors="replace"))
                    try:
                        await stream.send_all(answer.encode() + b"\n")
                    except trio.BrokenResourceError:
                        return
                if len(buf) > MAX_LINE:
                    return

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(bound)


async def send_command(port: int, command: str, *, timeout_s: float = 5.0) -> str:
    """Send one admin command to a simulator on 127.0.0.1:port; returns its answer."""
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(command.encode() + b"\n")
            buf = b""
            while b"\n" not in buf:
                data = await stream.receive_some(MAX_LINE)
                if not data:
                    break
                buf += data
    return buf.decode(errors="replace").strip()
