"""Turning a benchmark document into ratios and a table people can read (goals: ``bench.goals``)."""

from __future__ import annotations

from typing import Any


def dig(doc: Any, *path: str | int) -> Any:
    """``doc[p0][p1]...`` or ``None`` when any step is missing."""
    for key in path:
        if (isinstance(doc, dict) and key in doc) or (isinstance(doc, list) and isinstance(key, int) and -len(doc) <= key < len(doc)):
            doc = doc[key]
        else:
            return None
    return doc


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 3)
    return None


def _scale_row(doc: dict[str, Any], brokers: int) -> dict[str, Any] | None:
    for row in dig(doc, "scale", "sizes") or []:
        if row.get("brokers") == brokers:
            return dict(row)
    return None


def ratios(doc: dict[str, Any]) -> dict[str, Any]:
    """ult relative to the floor, and through-ult relative to alpaca-py direct."""
    out: dict[str, Any] = {
        "sequential_p50": _ratio(
            dig(doc, "ult", "sequential", "p50_us"), dig(doc, "floor", "sequential", "p50_us")
        ),
        "sequential_p99": _ratio(
            dig(doc, "ult", "sequential", "p99_us"), dig(doc, "floor", "sequential", "p99_us")
        ),
        "sequential_per_s": _ratio(
            dig(doc, "ult", "sequential", "per_s"), dig(doc, "floor", "sequential", "per_s")
        ),
    }
    for clients, row in (dig(doc, "ult", "pipelined") or {}).items():
        out[f"pipelined_{clients}_clients_per_s"] = _ratio(
            row.get("per_s"), dig(doc, "floor", "pipelined", "per_s")
        )
    out["server_cpu_per_msg_sequential"] = _ratio(
        dig(doc, "ult", "sequential", "server_cpu_us"),
        dig(doc, "floor", "sequential", "server_cpu_us"),
    )
    out["server_cpu_per_msg_pipelined"] = _ratio(
        dig(doc, "ult", "pipelined", "1", "server_cpu_us"),
        dig(doc, "floor", "pipelined", "server_cpu_us"),
    )
    out["peer_p50"] = _ratio(dig(doc, "peer", "via_ult", "p50_us"), dig(doc, "peer", "direct", "p50_us"))
    return out


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            text = f"{value:,.0f}"
        elif abs(value) >= 100:
            text = f"{value:.0f}"
        else:
            text = f"{value:.3g}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def _ms(us: Any) -> str:
    return _fmt(us / 1000 if isinstance(us, int | float) else None, "ms")


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def _status_line(doc: dict[str, Any], name: str) -> str | None:
    section = doc.get(name)
    if section is None:
        return "  (not run)"
    status = section.get("status", "ok")
    if status == "ok":
        return None
    why = section.get("reason") or section.get("error") or ""
    return f"  {status}: {why}"


def _interpreter_note(meta: dict[str, Any]) -> list[str]:
    """A line when the run is not on the interpreter the service is deployed on: its
    microseconds (the CPU row above all) are then another interpreter's, not comparable
    with a run on the deployed one (docs/performance.md, "the interpreter the bench
    measures")."""
    deployed, here = meta.get("deployed_python_prefix"), meta.get("python_prefix")
    if not deployed or not here or deployed == here:
        return []
    return [
        f"note: run on the Python in {here}, not the deployed one in {deployed}"
        " (scripts/install-systemd, scripts/bench): its times and CPU are not comparable"
        " with a run on that one"
    ]


def render_table(doc: dict[str, Any]) -> str:
    """The whole document as aligned text."""
    meta = doc.get("meta", {})
    out = [
        f"ult benchmark  {meta.get('started_at', '')}  commit {meta.get('commit', '?')}"
        f"  python {meta.get('python', '?')} ({meta.get('python_prefix', '?')})  trio {meta.get('trio', '?')}"
        f"  {meta.get('cpus', '?')} cpus  {'quick' if meta.get('quick') else 'full'} run"
        f"  {meta.get('seconds', '?')} s",
        f"service build: {meta.get('build', '?')}"
        + (f" ({', '.join(meta['compiled_modules'])})" if meta.get("compiled_modules") else ""),
        *_interpreter_note(meta),
        "",
        "round trips over a Unix socket",
    ]
    rows = [["", "n", "per s", "p50", "p99", "p99.9", "server CPU/msg", "client CPU/msg"]]
    for label, path in (
        ("floor sequential", ("floor", "sequential")),
        ("ult sequential (submit->ack)", ("ult", "sequential")),
    ):
        s = dig(doc, *path) or {}
        rows.append(
            [label, _fmt(s.get("n")), _fmt(s.get("per_s")), _fmt(s.get("p50_us"), "us"),
             _fmt(s.get("p99_us"), "us"), _fmt(s.get("p99_9_us"), "us"),
             _fmt(s.get("server_cpu_us"), "us"), _fmt(s.get("client_cpu_us"), "us")]
        )
    s = dig(doc, "floor", "pipelined") or {}
    rows.append([f"floor pipelined (window {s.get('window', '?')})", _fmt(s.get("n")),
                 _fmt(s.get("per_s")), "", "", "", _fmt(s.get("server_cpu_us"), "us"),
                 _fmt(s.get("client_cpu_us"), "us")])
    for clients, s in (dig(doc, "ult", "pipelined") or {}).items():
        rows.append(
            [f"ult pipelined, {clients} client(s) (window {s.get('window', '?')} each)",
             _fmt(s.get("n")), _fmt(s.get("per_s")), _fmt(s.get("p50_us"), "us"),
             _fmt(s.get("p99_us"), "us"), "", _fmt(s.get("server_cpu_us"), "us"),
             _fmt(s.get("client_cpu_us"), "us")]
        )
    out += _grid(rows)
    variants = dig(doc, "ult", "variants") or {}
    if variants:
        out += ["", "what each layer costs (ult, 1 client; the default keeps every layer)"]
        rows = [["configuration", "seq p50", "seq p99", "pipelined per s",
                 "CPU/order seq", "CPU/order pipelined"]]
        configs = [("default", doc.get("ult") or {}), *variants.items()]
        for label, v in configs:
            pipe = dig(v, "pipelined", "1") or {}
            rows.append(
                [label, _fmt(dig(v, "sequential", "p50_us"), "us"),
                 _fmt(dig(v, "sequential", "p99_us"), "us"), _fmt(pipe.get("per_s")),
                 _fmt(dig(v, "sequential", "server_cpu_us"), "us"),
                 _fmt(pipe.get("server_cpu_us"), "us")]
            )
        out += _grid(rows)
    for name in ("floor", "ult"):
        line = _status_line(doc, name)
        if line:
            out.append(f"  {name}:{line}")
    note = dig(doc, "ult", "setup")
    if note:
        out.append(f"  ult setup: {note}")

    a = doc.get("actors") or {}
    if a:
        out += ["", "actor path alone, in process (no socket, nothing durable)"]
        rows = [["", "n", "per s", "p50", "p99", "CPU/order"]]
        for broker, part in (("paper", a), ("instant broker", a.get("instant_broker") or {})):
            s = part.get("sequential") or {}
            rows.append([f"{broker}: sequential", _fmt(s.get("n")), _fmt(s.get("per_s")),
                         _fmt(s.get("p50_us"), "us"), _fmt(s.get("p99_us"), "us"),
                         _fmt(s.get("cpu_us"), "us")])
            s = part.get("pipelined") or {}
            rows.append([f"{broker}: window {s.get('window', '?')}", _fmt(s.get("n")),
                         _fmt(s.get("per_s")), _fmt(s.get("p50_us"), "us"),
                         _fmt(s.get("p99_us"), "us"), _fmt(s.get("cpu_us"), "us")])
        out += _grid(rows)
        line = _status_line(doc, "actors")
        if line:
            out.append(line)

    out += ["", "ratios ult / floor"]
    rows = [["", "ratio"]]
    for key, value in (doc.get("ratios") or {}).items():
        rows.append([key, _fmt(value)])
    out += _grid(rows)

    out += ["", "restart"]
    rows = [["", "samples", "p50", "max"]]
    for label, key in (("default backoff", "default_backoff"), ("zero backoff", "zero_backoff")):
        for what, sub in (("running again", "to_running"), ("next order answered", "to_first_order")):
            s = dig(doc, "restart", "crash", key, sub) or {}
            rows.append([f"broker crash -> {what} ({label})", _fmt(s.get("n")), _ms(s.get("p50_us")), _ms(s.get("p99_9_us"))])
    for what, sub in (("answered (internal)", "to_answer"), ("settled by reconciliation", "to_settled")):
        s = dig(doc, "restart", "crash", "mid_submit", sub) or {}
        rows.append([f"broker crash mid-submit -> that order {what}", _fmt(s.get("n")), _ms(s.get("p50_us")), _ms(s.get("p99_9_us"))])
    for label, key in (
        ("alpaca sim drops order connection -> order acked", "to_order"),
        ("alpaca sim cuts trade_updates -> order filled", "stream_cut_to_fill"),
        ("  (no fault: order submitted -> filled)", "no_fault_submit_to_fill"),
    ):
        s = dig(doc, "restart", "drop", key) or {}
        rows.append([label, _fmt(s.get("n")), _ms(s.get("p50_us")), _ms(s.get("p99_9_us"))])
    out += _grid(rows)
    line = _status_line(doc, "restart")
    if line:
        out.append(line)
    drop = dig(doc, "restart", "drop") or {}
    if drop.get("status") not in (None, "ok"):
        out.append(f"  drop: {drop.get('status')}: {drop.get('reason') or drop.get('error')}")
    connector = dig(doc, "restart", "crash", "connector")
    if connector and connector != "paper":
        out.append(f"  (crash measured on the {connector} connector: paper broker not available)")

    out += ["", "scale (one process per size)"]
    rows = [["brokers", "connector", "running", "RSS", "build->ready", "process->ready", "idle CPU"]]
    scale_rows = [(row, "") for row in dig(doc, "scale", "sizes") or []]
    scale_rows += [(row, " (restart)") for row in dig(doc, "scale", "restart_sizes") or []]
    instant = dig(doc, "scale", "instant_broker")
    if instant:
        scale_rows.append((instant, ""))
    for row, note in scale_rows:
        rows.append(
            [_fmt(row.get("brokers")) + note, str(row.get("connector")),
             f"{row.get('brokers_running')}/{row.get('brokers_configured')}",
             _fmt(row.get("rss_mb"), "MB"), _fmt(row.get("ready_s"), "s"),
             _fmt(row.get("process_ready_s"), "s"), _fmt(row.get("idle_cpu_percent"), "%")]
        )
    out += _grid(rows) if len(rows) > 1 else []
    line = _status_line(doc, "scale")
    if line:
        out.append(line)

    out += ["", "peer: an order to the Alpaca simulator"]
    rows = [["", "n", "p50", "p99", "ult CPU/order", "simulator CPU/order"]]
    for label, key in (
        ("alpaca-py direct", "direct"),
        ("through ult", "via_ult"),
        ("through ult, journal off", "via_ult_journal_off"),
    ):
        if key not in (doc.get("peer") or {}) and key == "via_ult_journal_off":
            continue
        s = dig(doc, "peer", key) or {}
        rows.append([label, _fmt(s.get("n")), _fmt(s.get("p50_us"), "us"), _fmt(s.get("p99_us"), "us"),
                     _fmt(s.get("server_cpu_us"), "us"), _fmt(s.get("sim_cpu_us"), "us")])  # fmt: skip
    out += _grid(rows)
    line = _status_line(doc, "peer")
    if line:
        out.append(line)

    out += ["", "http: the REST brokers' HTTP engine, one order at a time to the Alpaca simulator"]
    rows = [["", "rounds", "n", "p50", "p99", "client CPU/order"]]
    for engine in ("httpx", "httpcore", "httptools"):
        for level in ("engine", "connector"):
            s = dig(doc, "http", engine, level) or {}
            where = "alone" if level == "engine" else "through the Alpaca connector"
            rows.append([f"{engine} {where}", _fmt(dig(doc, "http", "rounds")), _fmt(s.get("n")),
                         _fmt(s.get("p50_us"), "us"), _fmt(s.get("p99_us"), "us"),
                         _fmt(s.get("cpu_us"), "us")])
    out += _grid(rows)
    line = _status_line(doc, "http")
    if line:
        out.append(line)

    if "nats" in doc:
        out += ["", "nats: the same service, a remote client over NATS against the local socket"]
        rows = [["", "seq n", "seq p50", "seq p99", "CPU/order seq", "pipelined per s",
                 "pipelined p50", "CPU/order pipelined"]]  # fmt: skip
        for path in ("socket", "nats"):
            seq = dig(doc, "nats", path, "sequential") or {}
            pipe = dig(doc, "nats", path, "pipelined") or {}
            rows.append(
                [f"over the {'Unix socket' if path == 'socket' else 'NATS'}", _fmt(seq.get("n")),
                 _fmt(seq.get("p50_us"), "us"), _fmt(seq.get("p99_us"), "us"),
                 _fmt(seq.get("server_cpu_us"), "us"), _fmt(pipe.get("per_s")),
                 _fmt(pipe.get("p50_us"), "us"), _fmt(pipe.get("server_cpu_us"), "us")]
            )  # fmt: skip
        out += _grid(rows)
        line = _status_line(doc, "nats")
        if line:
            out.append(line)

    out += ["", "goals (issue 16; ratios from this run)"]
    rows = [["figure", "now", "must", "aim", "verdict"]]
    for g in doc.get("goals") or []:
        units = g.get("unit") or {}
        rows.append(
            [g["figure"], _goal_cell(g["now"], units), _goal_cell(g["must"], units),
             _goal_cell(g["aim"], units), g["verdict"]]
        )
    out += _grid(rows)
    out += [f"  {g['note']}" for g in doc.get("goals") or [] if g.get("note")]
    return "\n".join(out)


def _goal_cell(parts: dict[str, Any], units: dict[str, str]) -> str:
    """One cell of the goals table: each figure with its unit, ``" / "`` between figures."""
    cells = []
    for name, value in parts.items():
        unit = "" if value is None else units.get(name, "")
        text = value if isinstance(value, str) else _fmt(value)
        cells.append(f"{text}{unit}" if unit == "x" else f"{text} {unit}".rstrip())
    return " / ".join(cells)
