"""Process entry points behind ``ult serve`` and ``ult config check``.

``serve`` runs the tree in the foreground until SIGTERM or SIGINT, then
shuts it down in reverse start order and exits 0; SIGHUP is logged and
ignored. If the root supervisor gives up, it logs one line naming the failed
child and its last error and exits 1, so systemd's ``Restart=on-failure``
starts a fresh process; when the cause is one a restart cannot fix (a
``ConfigError``: corrupt or locked journal, read-only state directory, a
non-socket file at the socket path) it exits 2, which the unit's
``RestartPreventExitStatus=2`` does not retry.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, TypeVar

import structlog
import trio

from ult_actors.cli.exit_codes import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ult_actors.collector import settle_after_start
from ult_actors.config import ServiceConfig, describe, load_config
from ult_actors.errors import ConfigError
from ult_actors.ipc.socketfile import AlreadyRunning
from ult_actors.logsetup import configure_logging
from ult_actors.logwriter import LogWriter
from ult_actors.nats import nats_children
from ult_actors.runtime.actor import ActorContext
from ult_actors.runtime.supervisor import ChildSpec, SupervisorGaveUp
from ult_actors.service import Service, build_service

E = TypeVar("E", bound=BaseException)

#: How long a stopping process waits for its queued log lines to be written.
LOG_DRAIN_S = 2.0


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ult serve", description="Run the gateway in the foreground.")
    p.add_argument("--config", help="TOML config file (default: $ULT_CONFIG, else none)")
    p.add_argument("--socket", help="IPC socket path (overrides config and $ULT_SOCKET)")
    p.add_argument("--state-dir", help="where the journal and paper account live")
    p.add_argument("--log-format", choices=["auto", "json", "console"])
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return p


def load_for_serve(args: argparse.Namespace) -> ServiceConfig:
    """The configuration with command-line overrides applied."""
    cfg = load_config(args.config)
    if args.socket:
        cfg.ipc.socket = args.socket
    if args.state_dir:
        cfg.service.state_dir = args.state_dir
    if args.log_format:
        cfg.service.log_format = args.log_format
    if args.log_level:
        cfg.service.log_level = args.log_level
    return cfg


def ipc_child(service: Service) -> ChildSpec:
    """The IPC server as the last child of the root: the socket opens once all is up."""
    from ult_actors.ipc.server import claim_socket_path, serve_ipc, settings_from_config

    settings = settings_from_config(service.config)
    # Taken now, before any actor runs: a second instance on this socket fails
    # at once ("already running, pid N") instead of opening the journal too.
    lock = claim_socket_path(settings)

    async def start(ctx: ActorContext[Any]) -> None:
        async with trio.open_nursery() as nursery:
            serve = partial(serve_ipc, lock=lock, log=ctx.log)
            await nursery.start(serve, service.gateway, settings)
            ctx.log.info("ipc listening", socket=str(settings.socket_path))
            ctx.started()

    return ChildSpec(id="ipc", start=start)


#: What ``ult serve`` listens for: SIGTERM and SIGINT stop it, SIGHUP is ignored.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def stop_on_signal(
    signals: AsyncIterator[int], scope: trio.CancelScope, log: Any
) -> None:
    """Cancel ``scope`` at the first SIGTERM or SIGINT from ``signals``; log and ignore SIGHUP."""
    async for signum in signals:
        if signum == signal.SIGHUP:
            # A closed terminal or a reload request: logs go to stderr, so
            # there is nothing to reopen, and dying would strand the socket.
            log.info("SIGHUP ignored; the service keeps running")
            continue
        log.info("stopping", signal=signal.Signals(signum).name)
        scope.cancel()
        return


async def run_service(service: Service) -> None:
    """Run until SIGTERM/SIGINT, then stop the tree in order; tell systemd how it goes."""
    import faulthandler
    import os

    from ult_actors.systemd.notify import notifier_from_env, watchdog_interval
    from ult_actors.systemd.watchdog import report_to_systemd

    # systemd's watchdog kills with SIGABRT: leave every thread's stack in the journal.
    if not faulthandler.is_enabled():
        faulthandler.enable()
    log: Any = structlog.get_logger().bind(actor="ult")
    # Read (and remove from our environment) what systemd handed us.
    notifier = notifier_from_env(os.environ)
    watchdog_s = watchdog_interval(os.environ, log=log)
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal, signals, nursery.cancel_scope, log)
            await nursery.start(service.run)
            up, total = service.brokers_up()
            log.info(
                "service ready",
                actors=[h.name for h in service.health().actors],
                brokers_up=f"{up}/{total}",
                state_dir=str(service.state_dir),
            )
            # Before systemd hears "ready": what start-up built is frozen once (a few ms).
            settle_after_start()
            nursery.start_soon(report_to_systemd, service, notifier, watchdog_s)


def serve_main(argv: list[str]) -> int:
    """``ult serve``: run in the foreground.

    Exits 0 on SIGTERM/SIGINT, 1 if the tree gives up, 2 if the configuration
    or the environment (journal, state directory, socket path) is unusable.
    """
    args = _serve_parser().parse_args(argv)
    try:
        cfg = load_for_serve(args)
    except ConfigError as exc:
        print(f"ult serve: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    fmt = cfg.service.log_format
    writer = configure_logging(
        json=None if fmt == "auto" else fmt == "json", level=cfg.service.log_level
    )
    try:
        return _serve(cfg, writer)
    finally:
        # What is still queued reaches the journal before the process exits, within a bound.
        writer.close(timeout=LOG_DRAIN_S)


def _serve(cfg: ServiceConfig, writer: LogWriter) -> int:
    log: Any = structlog.get_logger().bind(actor="ult")
    # Until run_service listens for it, a SIGHUP (terminal closed) must not kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        if cfg.journal.enabled and cfg.journal.url:
            # The journal on PostgreSQL: one active instance per cluster, the others standby.
            from ult_actors.cluster.serve import run_cluster_instance

            trio.run(
                partial(run_cluster_instance, cfg, log_lines_dropped=lambda: writer.stats().dropped)
            )
        else:
            service = build_service(cfg, extra_children=[ipc_child, *nats_children(cfg)])
            service.log_lines_dropped = lambda: writer.stats().dropped
            trio.run(run_service, service)
    except ConfigError as exc:
        log.error("configuration error", error=str(exc))
        return EXIT_CONFIG
    except AlreadyRunning as exc:
        log.error("cannot start", error=str(exc))
        return EXIT_FAILED
    except BaseExceptionGroup as group:
        gave_up = _find(group, SupervisorGaveUp)
        if gave_up is None:
            # A cluster instance finds its configuration wrong while running (a journal
            # database from a newer ult): exit 2 as at start.
            config_error = _find(group, ConfigError)
            if config_error is None:
                raise
            log.error("configuration error", error=str(config_error))
            return EXIT_CONFIG
        unfixable = isinstance(gave_up.cause, ConfigError)
        log.critical(
            "cannot run: fix the configuration or environment; exiting"
            if unfixable
            else "root supervisor gave up; exiting",
            child=gave_up.child,
            error=f"{type(gave_up.cause).__name__}: {gave_up.cause}" if gave_up.cause else None,
        )
        # A restart cannot fix a configuration or environment problem: exit 2, which
        # systemd's RestartPreventExitStatus=2 does not retry.
        return EXIT_CONFIG if unfixable else EXIT_FAILED
    except KeyboardInterrupt:
        pass
    log.info("stopped")
    return EXIT_OK


def _find(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in ``exc`` or the groups it holds."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def config_check_main(argv: list[str]) -> int:
    """``ult config check [--config FILE] [--json]``: load, validate, print (secrets masked)."""
    p = argparse.ArgumentParser(prog="ult config check", description=config_check_main.__doc__)
    p.add_argument("--config", help="TOML config file (default: $ULT_CONFIG, else none)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        else:
            print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    data = describe(cfg)
    if args.json:
        print(json.dumps({"ok": True, "config": data}, indent=2, default=str))
        return EXIT_OK
    print(f"configuration OK ({cfg.source})")
    print(f"  default broker: {cfg.service.default_broker}")
    for broker in data["brokers"]:
        state = "enabled" if broker["enabled"] else "disabled"
        print(f"  broker {broker['name']} ({broker['kind']}, {state})")
        for key, value in broker["settings"].items():
            print(f"      {key} = {value}")
    limits = {k: v for k, v in data["risk"].items() if v not in (None, [])}
    print(f"  risk: {limits or 'no limits'}")
    return EXIT_OK
