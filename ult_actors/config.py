"""Service configuration: ``config/ult.toml`` decoded strictly, then environment overrides.

Every key has a default, so no file at all is a valid configuration (the
paper broker only). An unknown key or a wrong type is a ``ConfigError`` that
names the key and the file. Secrets are never read from the file: they come
from ``$CREDENTIALS_DIRECTORY`` or the environment (see ``secrets.py``), and
are never printed by ``ult config check``.

Environment overrides keep the names users already know: ``DEFAULT_BROKER``,
``ENABLE_PAPER_TRADING``, ``ORDER_RETRY_ENABLED``, ``ORDER_MAX_RETRIES``,
``ORDER_RETRY_DELAY`` (ms), ``ULT_SOCKET``, ``ULT_STATE_DIR``, ``ULT_LOG_LEVEL``,
``ULT_NATS_URL``,
and each broker kind's own (``PAPER_*``, ``ALPACA_*``, ``OANDA_*``, ``IB_*``).
A remote broker kind is added automatically, named after its kind, when its
credentials are present in the environment (``ALPACA_API_KEY``,
``OANDA_API_TOKEN``) or ``IB_PORT`` is set, and the file configures none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from ult_actors.bounds import (
    Count,
    FrameBytes,
    Millis,
    Multiplier,
    NonEmpty,
    PerSecond,
    PosixId,
    Seconds,
    SyncIntervalMs,
    Times,
    check_decimal_setting,
    key_error,
)
from ult_actors.brokers.registry import BROKER_KINDS, broker_kind
from ult_actors.brokers.settings_env import env_bool, env_int
from ult_actors.errors import ConfigError
from ult_actors.messages import TradingState


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class ServiceSection(_Section):
    """[service]"""

    default_broker: str = "paper"
    state_dir: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_timeout_s: Seconds = 10.0
    submit_timeout_s: Seconds = 30.0
    #: Microseconds the loop watches its I/O before it sleeps, while that pays (0: never;
    #: ``runtime.busy_poll``).
    busy_poll_us: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 200


class IpcSection(_Section):
    """[ipc]"""

    socket: str = ""
    group: str = ""
    allowed_uids: list[PosixId] = msgspec.field(default_factory=list)
    allowed_gids: list[PosixId] = msgspec.field(default_factory=list)
    max_frame_bytes: FrameBytes = 1 << 20
    subscriber_queue: Count = 1024
    #: Clients connected at once; one more is refused with ``busy``.
    max_connections: Count = 256
    #: Unsent reply bytes one connection may hold before it is closed for not reading.
    max_queued_bytes_per_connection: Annotated[int, msgspec.Meta(ge=1 << 20, le=1 << 40)] = (
        16 << 20
    )
    #: Unsent reply bytes of all connections together; above it no request is read.
    max_queued_bytes_total: Annotated[int, msgspec.Meta(ge=1 << 20, le=1 << 42)] = 256 << 20


class RiskSection(_Section):
    """[risk] — a limit set to null/absent is not checked."""

    max_order_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position_per_symbol: Decimal | None = None
    max_open_orders: Count | None = None
    #: Above 0: to stop all orders use the trading state (halted), not a rate of 0.
    max_orders_per_second: PerSecond | None = None
    daily_loss_limit: Decimal | None = None
    allowed_symbols: list[str] = msgspec.field(default_factory=list)
    initial_state: TradingState = "active"


class RetrySection(_Section):
    """[retry] — retries of transient broker errors, always with the same client order id."""

    enabled: bool = True
    max_retries: Times = 3
    delay_ms: Millis = 200
    max_delay_ms: Millis = 5000


class SupervisionSection(_Section):
    """[supervision] — restart intensity and backoff of broker connections."""

    max_restarts: Times = 5
    period_s: Seconds = 30.0
    #: A broker connection over its intensity waits this long before it is tried again.
    park_s: Seconds = 60.0
    #: Most seconds between tries of a broker connection that cannot connect.
    connect_backoff_cap_s: Seconds = 30.0
    #: 0: restart at once (the intensity still bounds a crash loop).
    backoff_initial_ms: Millis = 100
    backoff_cap_ms: Millis = 10_000
    backoff_multiplier: Multiplier = 2.0
    stable_after_s: Seconds = 30.0
    root_max_restarts: Times = 3
    root_period_s: Seconds = 60.0


class PositionsSection(_Section):
    """[positions]"""

    sync_interval_s: Seconds = 30.0


class JournalSection(_Section):
    """[journal]"""

    enabled: bool = True
    path: str = ""
    #: normal: a record's append to the journal's change log is not fsynced (a ``kill -9``
    #: loses nothing recorded) and the log is fsynced ``sync_interval_ms`` later, off the
    #: order's path; full: every append is, before the order leaves.
    synchronous: Literal["full", "normal"] = "normal"
    #: Also how long the brokers' news waits, at most, to share a new order's commit.
    sync_interval_ms: SyncIntervalMs = 50
    #: ``postgresql://user@host/db``: the journal on PostgreSQL instead of the SQLite file
    #: at ``path`` (``ult-actors[postgres]``). No password here: it is the ``PGPASSWORD``
    #: credential (systemd's credentials directory, else the environment) or libpq's own.
    url: str = ""


#: A name that is one NATS subject token and one PostgreSQL-friendly word.
ClusterName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class ClusterSection(_Section):
    """[cluster]"""

    #: The NATS subjects are ``ult.<name>.cmd`` and ``ult.<name>.events.<topic>``; with the
    #: journal on PostgreSQL (``journal.url``), the instances of one name share one lease:
    #: one is active, the others standby.
    name: ClusterName = "default"
    #: This instance's name in health and logs; empty: host:pid.
    instance: str = ""
    #: Seconds the active's lease lasts unrenewed: a standby takes over this long after
    #: the active died, and an active that could not renew it for this long stops.
    lease_s: Seconds = 5.0


class NatsSection(_Section):
    """[nats]: remote clients and events over NATS, off while ``url`` is empty.

    The user and password, if any, come from the ``NATS_USER`` and
    ``NATS_PASSWORD`` credentials (``secrets.py``), never from the file.
    """

    url: str = ""
    #: A NATS credentials file (user JWT and NKey seed), instead of user/password.
    creds_file: str = ""
    #: PEM files: the CA that signed the server's certificate; a client certificate and key.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    #: Commands being answered at once; one more is answered ``busy`` at once.
    max_in_flight: Count = 1024
    #: Events waiting for JetStream; past it the publisher falls behind and loses events.
    event_queue: Count = 10_000
    #: How long, and up to how many bytes, the events stream keeps events for replay.
    events_max_age_s: Annotated[float, msgspec.Meta(gt=0.0, le=366 * 86_400.0)] = 7 * 86_400.0
    events_max_bytes: Annotated[int, msgspec.Meta(ge=1 << 20, le=1 << 44)] = 1 << 30


class RoutingRule(_Section):
    """[[routing]] — first rule whose fnmatch ``pattern`` matches the symbol wins."""

    pattern: NonEmpty
    broker: str


class BrokerEntry(msgspec.Struct, kw_only=True):
    """One configured broker connection; ``settings`` is the kind's own Struct."""

    name: str
    kind: str
    enabled: bool
    settings: Any
    #: New orders and replaces while the connection is not ``ready``: ``hold`` (up to
    #: their deadline) or ``refuse`` (``broker_unavailable`` at once).
    on_unavailable: Literal["hold", "refuse"] = "hold"
    #: The account's request budget (tokens per second, and at once); ``None``: the
    #: kind's default (``ult_actors.brokers.budget.DEFAULT_BUDGETS``), 0: unlimited.
    requests_per_s: float | None = None
    request_burst: int | None = None


class _FileConfig(_Section):
    service: ServiceSection = msgspec.field(default_factory=ServiceSection)
    ipc: IpcSection = msgspec.field(default_factory=IpcSection)
    risk: RiskSection = msgspec.field(default_factory=RiskSection)
    retry: RetrySection = msgspec.field(default_factory=RetrySection)
    supervision: SupervisionSection = msgspec.field(default_factory=SupervisionSection)
    positions: PositionsSection = msgspec.field(default_factory=PositionsSection)
    journal: JournalSection = msgspec.field(default_factory=JournalSection)
    cluster: ClusterSection = msgspec.field(default_factory=ClusterSection)
    nats: NatsSection = msgspec.field(default_factory=NatsSection)
    routing: list[RoutingRule] = msgspec.field(default_factory=list)
    brokers: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class ServiceConfig(msgspec.Struct, kw_only=True):
    """The whole, resolved configuration of one service instance."""

    service: ServiceSection = msgspec.field(default_factory=ServiceSection)
    ipc: IpcSection = msgspec.field(default_factory=IpcSection)
    risk: RiskSection = msgspec.field(default_factory=RiskSection)
    retry: RetrySection = msgspec.field(default_factory=RetrySection)
    supervision: SupervisionSection = msgspec.field(default_factory=SupervisionSection)
    positions: PositionsSection = msgspec.field(default_factory=PositionsSection)
    journal: JournalSection = msgspec.field(default_factory=JournalSection)
    cluster: ClusterSection = msgspec.field(default_factory=ClusterSection)
    nats: NatsSection = msgspec.field(default_factory=NatsSection)
    routing: list[RoutingRule] = msgspec.field(default_factory=list)
    brokers: list[BrokerEntry] = msgspec.field(default_factory=list)
    source: str = "<defaults>"

    @property
    def enabled_brokers(self) -> list[BrokerEntry]:
        return [b for b in self.brokers if b.enabled]


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$STATE_DIRECTORY`` under systemd, else ``$XDG_STATE_HOME/ult``, else ``~/.local/state/ult``."""
    if env.get("ULT_STATE_DIR"):
        return Path(env["ULT_STATE_DIR"])
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME", "~")).expanduser() / ".local/state"
    )
    return Path(base) / "ult"


def _decode_broker(name: str, raw: dict[str, Any], source: str) -> BrokerEntry:
    table = dict(raw)
    kind = table.pop("kind", name)
    enabled = table.pop("enabled", True)
    on_unavailable = table.pop("on_unavailable", "hold")
    requests_per_s = table.pop("requests_per_s", None)
    request_burst = table.pop("request_burst", None)
    if on_unavailable not in ("hold", "refuse"):
        raise ConfigError(
            f"{source}: brokers.{name}.on_unavailable: expected \"hold\" or \"refuse\""
        )
    if requests_per_s is not None and (
        not isinstance(requests_per_s, int | float) or isinstance(requests_per_s, bool)
        or requests_per_s < 0
    ):
        raise ConfigError(f"{source}: brokers.{name}.requests_per_s: expected a number >= 0")
    if request_burst is not None and (
        not isinstance(request_burst, int) or isinstance(request_burst, bool) or request_burst < 1
    ):
        raise ConfigError(f"{source}: brokers.{name}.request_burst: expected an integer >= 1")
    if kind not in BROKER_KINDS:
        known = ", ".join(sorted(BROKER_KINDS))
        raise ConfigError(f"{source}: brokers.{name}.kind: unknown kind {kind!r} (known: {known})")
    if not isinstance(enabled, bool):
        raise ConfigError(f"{source}: brokers.{name}.enabled: expected true or false")
    settings_type = broker_kind(kind).settings_type()
    try:
        settings = msgspec.convert(table, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {key_error(exc, f'brokers.{name}')}") from None
    return BrokerEntry(
        name=name,
        kind=kind,
        enabled=enabled,
        settings=settings,
        on_unavailable=on_unavailable,
        requests_per_s=None if requests_per_s is None else float(requests_per_s),
        request_burst=request_burst,
    )


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> ServiceConfig:
    """Read the TOML file (if any), apply environment overrides, check references.

    ``path=None`` uses ``$ULT_CONFIG`` if set, else no file.
    """
    env = os.environ if env is None else env
    path = path if path is not None else (env.get("ULT_CONFIG") or None)
    source = str(path) if path else "<defaults>"
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            file_cfg = msgspec.toml.decode(data, type=_FileConfig)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: {key_error(exc)}") from None
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    else:
        file_cfg = _FileConfig()

    brokers = [_decode_broker(n, raw, source) for n, raw in file_cfg.brokers.items()]
    if not any(b.kind == "paper" for b in brokers):
        brokers.insert(
            0,
            BrokerEntry(
                name="paper",
                kind="paper",
                enabled=True,
                settings=broker_kind("paper").settings_type()(),
            ),
        )
    cfg = ServiceConfig(
        service=file_cfg.service,
        ipc=file_cfg.ipc,
        risk=file_cfg.risk,
        retry=file_cfg.retry,
        supervision=file_cfg.supervision,
        positions=file_cfg.positions,
        journal=file_cfg.journal,
        cluster=file_cfg.cluster,
        nats=file_cfg.nats,
        routing=file_cfg.routing,
        brokers=brokers,
        source=source,
    )
    _apply_env(cfg, env)
    check_ranges(cfg)
    _check(cfg)
    return cfg


_SECTIONS = (
    "service",
    "ipc",
    "risk",
    "retry",
    "supervision",
    "positions",
    "journal",
    "cluster",
    "nats",
)
#: The risk limits held as decimals (msgspec cannot bound those), and whether 0 is allowed.
_RISK_DECIMALS = {
    "max_order_qty": False,
    "max_order_notional": False,
    "max_position_per_symbol": True,  # 0: no position may be opened, only closed
    "daily_loss_limit": False,
}


def check_ranges(cfg: ServiceConfig) -> None:
    """``ConfigError`` naming the first key whose value is out of its declared range.

    Decoding the file checks the same ranges; this catches what came from the
    environment, and a configuration built in code (``build_service`` calls it).
    """
    for name in _SECTIONS:
        section = getattr(cfg, name)
        _revalidate(section, name, cfg.source)
    for i, rule in enumerate(cfg.routing):
        _revalidate(rule, f"routing[{i}]", cfg.source)
    for key, allow_zero in _RISK_DECIMALS.items():
        value = getattr(cfg.risk, key)
        problem = None if value is None else check_decimal_setting(value, allow_zero=allow_zero)
        if problem:
            raise ConfigError(f"{cfg.source}: risk.{key}: {problem}")


def _revalidate(section: msgspec.Struct, where: str, source: str) -> None:
    try:
        msgspec.convert(msgspec.structs.asdict(section), type(section))
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {key_error(exc, where)}") from None


def _apply_env(cfg: ServiceConfig, env: Mapping[str, str]) -> None:
    if env.get("DEFAULT_BROKER"):
        cfg.service.default_broker = env["DEFAULT_BROKER"]
    if env.get("ULT_SOCKET"):
        cfg.ipc.socket = env["ULT_SOCKET"]
    if env.get("ULT_NATS_URL"):
        cfg.nats.url = env["ULT_NATS_URL"]
    if env.get("ULT_LOG_LEVEL"):
        level = env["ULT_LOG_LEVEL"].lower()
        if level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"environment variable ULT_LOG_LEVEL: unknown level {level!r}")
        cfg.service.log_level = level  # type: ignore[assignment]
    if "ORDER_RETRY_ENABLED" in env:
        cfg.retry.enabled = env_bool("ORDER_RETRY_ENABLED", env["ORDER_RETRY_ENABLED"])
    if "ORDER_MAX_RETRIES" in env:
        cfg.retry.max_retries = env_int("ORDER_MAX_RETRIES", env["ORDER_MAX_RETRIES"])
    if "ORDER_RETRY_DELAY" in env:
        cfg.retry.delay_ms = env_int("ORDER_RETRY_DELAY", env["ORDER_RETRY_DELAY"])
    for kind_name, kind in BROKER_KINDS.items():
        entries = [b for b in cfg.brokers if b.kind == kind_name]
        if not entries and kind.auto_enable(env):
            entries = [
                BrokerEntry(
                    name=kind_name, kind=kind_name, enabled=True, settings=kind.settings_type()()
                )
            ]
            cfg.brokers.append(entries[0])
        for entry in entries:
            entry.settings = kind.from_env(env, entry.settings)
    if "ENABLE_PAPER_TRADING" in env:
        on = env_bool("ENABLE_PAPER_TRADING", env["ENABLE_PAPER_TRADING"])
        for entry in cfg.brokers:
            if entry.kind == "paper":
                entry.enabled = on


def _check(cfg: ServiceConfig) -> None:
    names = [b.name for b in cfg.enabled_brokers]
    if not names:
        raise ConfigError(f"{cfg.source}: no broker is enabled")
    if cfg.service.default_broker not in names:
        raise ConfigError(
            f"{cfg.source}: service.default_broker: {cfg.service.default_broker!r} is not an"
            f" enabled broker (enabled: {', '.join(names)})"
        )
    for i, rule in enumerate(cfg.routing):
        if rule.broker not in names:
            raise ConfigError(
                f"{cfg.source}: routing[{i}].broker: {rule.broker!r} is not an enabled broker"
            )
    _check_journal_url(cfg)


def _check_journal_url(cfg: ServiceConfig) -> None:
    url = cfg.journal.url
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"{cfg.source}: journal.url: {parts.scheme or url!r} is not a PostgreSQL URL"
            " (postgresql://user@host:port/database)"
        )
    if parts.password is not None:
        raise ConfigError(
            f"{cfg.source}: journal.url holds a password; secrets stay out of the file:"
            " give it as the PGPASSWORD credential (or a libpq password file) instead"
        )


def describe(cfg: ServiceConfig) -> dict[str, Any]:
    """The configuration as plain data for ``ult config check``, secrets masked."""
    from ult_actors.logsetup import redact_secrets

    data: dict[str, Any] = msgspec.to_builtins(
        {
            k: getattr(cfg, k)
            for k in (
                "service",
                "ipc",
                "risk",
                "retry",
                "supervision",
                "positions",
                "journal",
                "cluster",
                "nats",
                "routing",
            )
        }
    )
    data["brokers"] = [
        {
            "name": b.name,
            "kind": b.kind,
            "enabled": b.enabled,
            "settings": _settings_dict(b.settings),
        }
        for b in cfg.brokers
    ]
    data["source"] = cfg.source
    return dict(redact_secrets(None, "", data))


def _settings_dict(settings: Any) -> dict[str, Any]:
    from ult_actors.secrets import MASK, Secret

    out: dict[str, Any] = {}
    for field in msgspec.structs.fields(settings):
        value = getattr(settings, field.name)
        if isinstance(value, Secret):
            out[field.name] = MASK if value else "(not set)"
        else:
            out[field.name] = msgspec.to_builtins(value)
    return out
