"""Typed settings of triggerd, loaded from TOML and validated with errors that blame.

The CLI loads one frozen :class:`Settings` with :func:`load_settings` and passes it down;
nothing reads configuration at import time. Relative paths are relative to the directory
of the config file (without a file: to where triggerd is started), so a config means the
same from any directory, and every path of a loaded ``Settings`` is absolute.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from triggerd.errors import ConfigError

__all__ = [
    "BUILTIN_SOURCE",
    "CONFIG_ENV_VAR",
    "CelerySettings",
    "mask_url_password",
    "DaemonSettings",
    "EventLogSettings",
    "SEARCH_PATHS",
    "ExecutorSettings",
    "LogSettings",
    "PathsSettings",
    "SecuritySettings",
    "Settings",
    "StatusPvSettings",
    "StoreSettings",
    "describe_toml_value",
    "dotted_key",
    "find_config_file",
    "load_settings",
]

CONFIG_ENV_VAR = "TRIGGERD_CONFIG"
BUILTIN_SOURCE = "built-in defaults"
OVERRIDE_SOURCE = "command line"
# Looked at in order when neither --config nor $TRIGGERD_CONFIG names a file; relative
# entries are relative to the current working directory.
SEARCH_PATHS: tuple[Path, ...] = (
    Path("triggerd.toml"),
    Path("config/triggerd.toml"),
    Path("/etc/triggerd/triggerd.toml"),
)
_MASK = "***"
# What MongoDB refuses in a database and a collection name, in characters and in words.
_MONGODB_NAMES = {
    "database": ('/\\. "$\x00', 'any of / \\ . " $, spaces or NUL'),
    "collection": ("$\x00", "$ or NUL"),
}


def _absolute(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    if value.is_absolute():
        return value
    base = (info.context or {}).get("base") or Path.cwd()
    return Path(os.path.normpath(Path(base) / value))  # textual: "config/../var" is "var"


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]


class _Section(BaseModel):
    # validate_default: the default relative paths are made absolute like the given ones.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _file_mode(value: Any) -> int:
    """A mode as TOML writes it: 0o750 (an integer) or "0750" (octal text)."""
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise PydanticCustomError(
                "triggerd_mode", "expected an octal mode such as \"0750\""
            ) from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        raise PydanticCustomError("triggerd_mode", "expected an octal mode such as \"0750\"")
    return value


class PathsSettings(_Section):
    """Where triggerd keeps its state and finds workflows and trigger rules."""

    state_dir: AbsolutePath = Path("var")
    workflows: list[AbsolutePath] = [Path("workflows")]
    triggers: list[AbsolutePath] = [Path("triggers")]
    state_dir_mode: Annotated[int, BeforeValidator(_file_mode)] = 0o700
    """The mode of the state directory when triggerd creates it ("0750" lets the group
    reach the control socket); an existing directory keeps its mode. Files in it are 0600."""


class ExecutorSettings(_Section):
    """How workflow runs are executed."""

    kind: Literal["local", "celery"] = "local"
    # strict: a TOML `true` must not quietly become one worker.
    workers: Annotated[int, Field(ge=0, strict=True)] = 0
    """Local worker processes; 0 means one per CPU."""
    start_method: Literal["forkserver", "spawn", "fork"] = "forkserver"
    stop_grace: Annotated[float, Field(ge=0)] = 10.0
    """Seconds a stopped run's tasks may go on before their processes are terminated."""
    give_up_after: Annotated[float, Field(gt=0)] = 43_200.0
    """Seconds a run waits for an unreachable service (the broker, the data store) before
    it fails. An outage shorter than this (12 h by default) delays runs, never fails them."""


class CelerySettings(_Section):
    """The Celery executor (``executor.kind = "celery"``): broker, redelivery, timeouts.

    Redis is both the broker and the channel that carries completions, signals and stop
    flags between the runner and the workers, so ``broker_url`` must be a Redis URL.
    """

    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str | None = None
    """Celery's result backend; None: none (completions reach the runner through Redis)."""
    visibility_timeout: Annotated[float, Field(gt=0)] = 300.0
    """Seconds before an unacknowledged job (its worker was lost) is delivered again.
    A copy of a job that is still running (a task longer than this) is dropped by the
    worker that receives it, which recognises the running one's heartbeat."""
    task_timeout: Annotated[float, Field(gt=0)] | None = None
    """Hard time limit of one task on a worker (prefork pool); None: no limit."""
    signal_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds a task waits for the runner to answer a signal before SignalTimeout."""

    @field_validator("broker_url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://")):
            raise PydanticCustomError(
                "triggerd_url_scheme",
                "expected a Redis URL starting with redis:// or rediss:// (e.g. \"redis://host:6379/0\")",
            )
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise PydanticCustomError(
                "triggerd_url_port", "the port is not a number (e.g. \"redis://host:6379/0\")"
            ) from None
        if any(name.lower() == "password" for name, _ in parse_qsl(parts.query)):
            # kombu (Celery's transport) fails on it:
            # "got multiple values for keyword argument 'password'"
            raise PydanticCustomError(
                "triggerd_url_password",
                "a password in the query (?password=...) is not understood by "
                "Celery's Redis transport: "
                "write it in the URL, as redis://:PASSWORD@host:6379/0",
            )
        return url


class StoreSettings(_Section):
    """The workflow data store backend."""

    backend: Literal["sqlite", "mongodb"] = "sqlite"
    path: AbsolutePath | None = None
    """SQLite file; None means ``<state_dir>/store.sqlite`` (see ``Settings.store_path``)."""
    url: str | None = None
    """MongoDB URL, required when ``backend = "mongodb"``; given to pymongo unchanged, so it
    may carry credentials and options (tls, replicaSet, authSource, serverSelectionTimeoutMS)."""
    database: str | None = None
    """MongoDB database; None means the one the URL names, else "triggerd"."""
    collection: str = "runs"
    """MongoDB collection of run documents; blobs go to the GridFS bucket ``<collection>_blobs``."""
    keep_data: bool = False

    @field_validator("database", "collection")
    @classmethod
    def _mongodb_name(cls, name: str | None, info: ValidationInfo) -> str | None:
        forbidden, words = _MONGODB_NAMES[str(info.field_name)]
        if name is not None and (not name or any(c in forbidden for c in name)):
            raise PydanticCustomError(
                "triggerd_mongodb_name", f"expected a non-empty name without {words}"
            )
        return name

    @field_validator("url")
    @classmethod
    def _url_for_mongodb(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None and info.data.get("backend") == "mongodb":
            raise PydanticCustomError(
                "triggerd_url_required",
                "required when backend = 'mongodb' (e.g. \"mongodb://host:27017/triggerd\")",
            )
        if url is not None and not url.startswith(("mongodb://", "mongodb+srv://")):
            raise PydanticCustomError(
                "triggerd_url_scheme", "expected a URL starting with mongodb:// or mongodb+srv://"
            )
        return url


def _mongodb_url_or_none(url: str | None) -> str | None:
    if url is not None and not url.startswith(("mongodb://", "mongodb+srv://")):
        raise PydanticCustomError(
            "triggerd_url_scheme",
            'expected a MongoDB URL starting with mongodb:// (e.g. "mongodb://host:27017/triggerd")',
        )
    return url


class MongoSettings(_Section):
    """One MongoDB for the data store and the event log: their ``url`` and ``database``
    default to these, and with ``url`` set the data store's backend defaults to MongoDB.
    Either may still name its own (``store.url``, ``eventlog.url``), or stay on SQLite
    (``store.backend = "sqlite"``, ``eventlog.backend = "sqlite"``)."""

    url: Annotated[str | None, AfterValidator(_mongodb_url_or_none)] = None
    """Given to pymongo unchanged: credentials and options (tls, replicaSet, authSource)."""
    database: str | None = None
    """MongoDB database; None means the one the URL names, else "triggerd"."""


class SecuritySettings(_Section):
    """The HMAC key that signs task data travelling between daemon and workers."""

    hmac_key_file: AbsolutePath | None = None
    hmac_key: SecretStr | None = None


class EventLogSettings(_Section):
    """Where the event log is kept: SQLite under the state directory, or MongoDB."""

    backend: Literal["sqlite", "mongodb"] | None = None
    """None: MongoDB when a URL is known (``eventlog.url`` or ``mongodb.url``), else SQLite."""
    url: str | None = None
    """MongoDB URL of the event log; None: ``<state_dir>/events.sqlite``. It goes to pymongo
    unchanged (credentials, TLS, replicaSet); a standalone server will do."""
    database: str | None = None
    """MongoDB database; None means the one the URL names, else "triggerd"."""
    retention_days: Annotated[float, Field(gt=0)] | None = None
    """Events older than this are deleted (MongoDB: a TTL index); None keeps them all."""
    backlog_bound: Annotated[int, Field(gt=0)] = 100_000
    """On Celery, events the Redis stream may hold while the store is down; beyond, the
    daemon moves them to a spool file under the state directory (forwarded later)."""

    @field_validator("url")
    @classmethod
    def _mongodb_url(cls, url: str | None) -> str | None:
        return _mongodb_url_or_none(url)

    @model_validator(mode="after")
    def _url_for_mongodb(self) -> EventLogSettings:
        if self.backend == "mongodb" and self.url is None:
            raise PydanticCustomError(
                "triggerd_url_required",
                "backend = 'mongodb' needs a URL: set eventlog.url or [mongodb] url",
            )
        return self


class StatusPvSettings(_Section):
    """The daemon's own status as EPICS PVs (Channel Access, served by caproto); off unless a
    prefix is set."""

    prefix: str | None = None
    """PV name prefix, e.g. "BL13:TRIGGERD:"; None: no status PVs."""
    port: Annotated[int, Field(ge=1, le=65535)] = 5069
    """Channel Access server port (TCP and UDP) of the status PVs. Not 5064: IOCs on the
    same host hold that one, and a unicast search reaches only one of the servers sharing
    a UDP port. Clients add "<host>:5069" to EPICS_CA_ADDR_LIST (``triggerctl status``
    shows the entry). Interfaces and beacons follow EPICS_CAS_INTF_ADDR_LIST and
    EPICS_CAS_BEACON_ADDR_LIST."""
    interval: Annotated[float, Field(gt=0)] = 1.0
    """Seconds between two updates of the counters (triggers update at once)."""
    writers: list[str] = []
    """Who may write the ``<rule>:PAUSE`` PVs: "user@host", "host" (anyone there),
    "user@*" (that user anywhere); empty: anyone who reaches the port. The names are
    those the Channel Access client asserts (see triggerd/daemon/status_pvs.py)."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and (not prefix or any(c.isspace() or c in "\"'$" for c in prefix)):
            raise PydanticCustomError(
                "triggerd_pv_prefix",
                'expected a PV name prefix without spaces or quotes, e.g. "BL13:TRIGGERD:"',
            )
        return prefix

    @field_validator("writers")
    @classmethod
    def _writers(cls, writers: list[str]) -> list[str]:
        for entry in writers:
            user, at, host = entry.rpartition("@")
            if not host or (at and not user) or "@" in user or any(c.isspace() for c in entry):
                raise PydanticCustomError(
                    "triggerd_pv_writer",
                    'expected "user@host", "host" or "user@*" without spaces, not "{entry}"',
                    {"entry": entry},
                )
        return writers


class DaemonSettings(_Section):
    """The daemon's control API and shutdown behaviour."""

    socket: AbsolutePath | None = None
    """Unix socket of the control API; None means ``<state_dir>/triggerd.sock``."""
    socket_mode: Annotated[int, Field(ge=0, le=0o777, strict=True)] = 0o660
    """Permissions of the socket: who may control the daemon (owner and group by default)."""
    token_file: AbsolutePath | None = None
    """File holding the bearer token TCP clients must send: the operator's, who may do
    everything (pause, stop, replay, start, drain, reload)."""
    viewer_token_file: AbsolutePath | None = None
    """File holding a second bearer token for TCP that may only read (GET and HEAD): the
    console's pages and the API's answers, no buttons. None: no viewer token."""
    tcp: str | None = None
    """Also serve the API on TCP, e.g. "127.0.0.1:8765"; requires ``token_file``."""
    drain_timeout: Annotated[float, Field(ge=0)] = 30.0
    """On SIGTERM, seconds to let running runs finish; unfinished ones run again at the next
    start."""

    @field_validator("tcp")
    @classmethod
    def _tcp_address(cls, tcp: str | None, info: ValidationInfo) -> str | None:
        if tcp is None:
            return None
        host, sep, port = tcp.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise PydanticCustomError("triggerd_tcp", 'expected "host:port", e.g. "127.0.0.1:8765"')
        if info.data.get("token_file") is None:
            raise PydanticCustomError(
                "triggerd_tcp_token", "a TCP control API needs daemon.token_file (a bearer token)"
            )
        return tcp

    @field_validator("viewer_token_file")
    @classmethod
    def _viewer_token_apart(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is not None and path == info.data.get("token_file"):
            raise PydanticCustomError(
                "triggerd_viewer_token",
                "the viewer token must be a file of its own, not daemon.token_file "
                "(the viewer would be an operator)",
            )
        return path


class LogSettings(_Section):
    """Log level and format (console on a TTY, JSON otherwise, when ``auto``)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class Settings(_Section):
    """All settings of triggerd; frozen, loaded once by the CLI and passed down.

    Relative paths are relative to :attr:`base_dir` (the config file's directory), and
    are absolute once loaded. ``source`` tells where the settings came from: a file path
    or ``"built-in defaults"``.
    """

    # Factories, not instances: default paths resolve at load time, not at import time.
    paths: PathsSettings = Field(default_factory=PathsSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    celery: CelerySettings = Field(default_factory=CelerySettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    eventlog: EventLogSettings = Field(default_factory=EventLogSettings)
    status_pvs: StatusPvSettings = Field(default_factory=StatusPvSettings)
    mongodb: MongoSettings = Field(default_factory=MongoSettings)

    _source: str = PrivateAttr(default=BUILTIN_SOURCE)
    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _one_mongodb(cls, data: Any) -> Any:
        """``[mongodb]``: the address the data store and the event log default to."""
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("mongodb"), dict)
            or not data["mongodb"].get("url")
        ):
            return data
        mongodb = data["mongodb"]
        data = dict(data)
        for section, backend_default in (("store", "mongodb"), ("eventlog", None)):
            given = data.get(section)
            if given is not None and not isinstance(given, dict):
                continue  # wrong shape: the section's own validation says so
            values = dict(given or {})
            if values.get("backend", backend_default) in ("mongodb", None):
                if backend_default is not None:
                    values.setdefault("backend", backend_default)
                values.setdefault("url", mongodb["url"])
                if mongodb.get("database") is not None:
                    values.setdefault("database", mongodb["database"])
            data[section] = values
        return data

    @property
    def source(self) -> str:
        """The file these settings were loaded from, or ``"built-in defaults"``."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """What relative paths here, and relative roots in rule files, are relative to:
        the config file's directory (without one, where triggerd was started)."""
        return self._base_dir if self._base_dir is not None else Path.cwd()

    @property
    def store_path(self) -> Path:
        """The SQLite data store file: ``store.path`` or ``<state_dir>/store.sqlite``."""
        return self.store.path or self.paths.state_dir / "store.sqlite"

    @property
    def hmac_key_path(self) -> Path:
        """The HMAC key file: ``security.hmac_key_file`` or ``<state_dir>/hmac.key``."""
        return self.security.hmac_key_file or self.paths.state_dir / "hmac.key"

    @property
    def socket_path(self) -> Path:
        """The control API's unix socket: ``daemon.socket`` or ``<state_dir>/triggerd.sock``."""
        return self.daemon.socket or self.paths.state_dir / "triggerd.sock"

    @property
    def eventlog_on_mongodb(self) -> bool:
        return self.eventlog.backend != "sqlite" and self.eventlog.url is not None

    @property
    def eventlog_target(self) -> str:
        """The event log: its MongoDB URL, or the SQLite file ``<state_dir>/events.sqlite``."""
        return (
            self.eventlog.url
            if self.eventlog_on_mongodb and self.eventlog.url
            else str(self.paths.state_dir / "events.sqlite")
        )

    def own_files(self) -> tuple[list[Path], list[Path]]:
        """What is the daemon's own and must never trigger a rule: directories whose
        entries are all its own (the state directory; not its subdirectories, where a
        watched directory may live, as var/incoming does), and its files kept elsewhere
        (a key file, a data store, a socket set to another path), SQLite's companions too."""
        files = [self.hmac_key_path, self.socket_path, self.store_path]
        if not self.eventlog_on_mongodb:
            files.append(Path(self.eventlog_target))
        companions = [
            f.with_name(f.name + suffix)
            for f in files
            if f.suffix == ".sqlite"
            for suffix in ("-wal", "-shm", "-journal")
        ]
        return [self.paths.state_dir], files + companions

    @property
    def state_db_path(self) -> Path:
        """The daemon's own state (outbox, ledger): ``<state_dir>/state.sqlite``."""
        return self.paths.state_dir / "state.sqlite"

    def to_toml_dict(self) -> dict[str, Any]:
        """The effective settings as plain TOML-able data, for ``triggerd config show``:
        only what applies to the chosen backends and executor (no [celery] for the local
        executor, no MongoDB keys for SQLite), defaults of optional paths filled in,
        unset values left out (TOML has no null), secrets and URL passwords as ``***``.
        """
        data = self.model_dump(mode="json", exclude_none=True)
        data["paths"]["state_dir_mode"] = f"{self.paths.state_dir_mode:04o}"
        if self.store.backend == "sqlite":
            data["store"] = {
                "backend": "sqlite",
                "path": str(self.store_path),
                "keep_data": self.store.keep_data,
            }
        else:
            data["store"] = {k: v for k, v in data["store"].items() if k != "path"}
            data["store"]["url"] = mask_url_password(self.store.url or "")
        security = {"hmac_key_file": str(self.hmac_key_path)}
        if self.security.hmac_key is not None:
            security = {"hmac_key": _MASK}
        data["security"] = security
        if self.executor.kind == "celery":
            celery = data["celery"]
            for key in ("broker_url", "result_backend"):
                if celery.get(key) is not None:
                    celery[key] = mask_url_password(celery[key])
        else:
            del data["celery"]
            data["executor"].pop("kind", None)
            data["executor"] = {"kind": "local", **data["executor"]}
        eventlog = data["eventlog"]
        if self.eventlog_on_mongodb:
            eventlog = {
                "backend": "mongodb",
                **eventlog,
                "url": mask_url_password(self.eventlog.url or ""),
            }
        else:
            eventlog = {
                "backend": "sqlite",
                "path": self.eventlog_target,
                **{k: v for k, v in eventlog.items() if k in ("retention_days",)},
            }
        data["eventlog"] = eventlog
        if self.mongodb.url is not None:
            data["mongodb"]["url"] = mask_url_password(self.mongodb.url)
        else:
            data.pop("mongodb", None)
        if self.status_pvs.prefix is None:
            data.pop("status_pvs", None)
        daemon = {**data["daemon"], "socket": str(self.socket_path)}
        data["daemon"] = {key: daemon[key] for key in DaemonSettings.model_fields if key in daemon}
        return data


_SECRET_PARAMS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "token", "sslpassword", "ssl_password"}
)


def mask_url_password(url: str) -> str:
    """``url`` with every credential masked, for output and errors: the password of
    ``user:password@`` and the values of query parameters such as ``password=``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show none of it
        return _MASK
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:{_MASK}@{netloc.rpartition('@')[2]}"
    query = (
        "&".join(
            f"{name}={_MASK}" if name.lower() in _SECRET_PARAMS else pair
            for pair in parts.query.split("&")
            for name in [pair.partition("=")[0]]
        )
        if parts.query
        else ""
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def find_config_file(explicit: Path | None) -> Path | None:
    """The config file to load, or None to run on the built-in defaults.

    Order: the explicit ``--config`` path, ``$TRIGGERD_CONFIG``, then :data:`SEARCH_PATHS`
    (``./triggerd.toml``, ``./config/triggerd.toml``, ``/etc/triggerd/triggerd.toml``).
    A file named explicitly or by the variable must exist.
    """
    if explicit is not None:
        return _must_exist(Path(explicit), "given with --config")
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return _must_exist(Path(from_env), f"{CONFIG_ENV_VAR} points to it")
    for candidate in SEARCH_PATHS:
        if candidate.is_file():
            return candidate.absolute()
    return None


def _must_exist(path: Path, how: str) -> Path:
    path = path.expanduser().absolute()
    if not path.exists():
        raise ConfigError(f"config file not found ({how})", source=str(path))
    if not path.is_file():
        raise ConfigError(f"config path is not a file ({how})", source=str(path))
    return path


def load_settings(
    path: Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Load and validate settings from the file :func:`find_config_file` picks.

    ``overrides`` is nested like the file (``{"log": {"level": "debug"}}``) and wins over
    it; None values are ignored, so unset CLI options can be passed straight through.
    Raises :class:`ConfigError` naming the file, the key and what was expected; all
    validation problems are reported together.
    """
    config_file = find_config_file(path)
    source = str(config_file) if config_file else BUILTIN_SOURCE
    data = _read_toml(config_file) if config_file else {}
    if overrides:
        data = _merge(data, overrides)
    try:
        # Relative to the config file, not to the caller: `triggerctl --config X` from any
        # directory (or systemd's WorkingDirectory) finds the daemon X describes.
        base = config_file.parent if config_file else Path.cwd()
        settings = Settings.model_validate(data, context={"base": base})
    except ValidationError as exc:
        raise _config_error(exc, source, overrides or {}) from None
    settings._source = source
    settings._base_dir = base
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fp:
            return tomllib.load(fp)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason}", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(path)) from None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            below = merged.get(key)
            merged[key] = _merge(below if isinstance(below, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


# -- turning pydantic's errors into ones a beamline scientist can act on ------------------

_EXPECTED = {
    **dict.fromkeys(("int_type", "int_parsing"), "an integer"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    **dict.fromkeys(("model_type", "model_attributes_type", "dict_type"), "a table"),
    "int_from_float": "a whole number",
    "string_type": "a string",
    "path_type": "a path (a string)",
    "list_type": "a list",
}


def _config_error(exc: ValidationError, source: str, overrides: Mapping[str, Any]) -> ConfigError:
    problems = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        origin = OVERRIDE_SOURCE if _given_in(overrides, loc) else source
        problems.append((origin, dotted_key(loc), _explain(err)))
    if len(problems) == 1:
        origin, key, message = problems[0]
        return ConfigError(message, source=origin, key=key)
    lines = "\n".join(f"  {origin}: key '{key}': {message}" for origin, key, message in problems)
    return ConfigError(f"{len(problems)} problems:\n{lines}", source=source)


def dotted_key(loc: tuple[int | str, ...]) -> str:
    """The key a validation location names, as a TOML user writes it: ``a.b[0].c``."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _given_in(overrides: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    node: Any = overrides
    for part in loc:
        if isinstance(node, list):
            return True  # the override gave the whole list
        if not isinstance(node, Mapping) or node.get(part) is None:
            return False
        node = node[part]
    return True


def _explain(err: Any) -> str:
    kind, ctx, loc = err["type"], err.get("ctx") or {}, err["loc"]
    section = _section_at(loc[:-1])
    if kind == "extra_forbidden":
        allowed = ", ".join(section.model_fields) if section else ""
        return f"unknown key (allowed: {allowed})" if allowed else "unknown key"
    if kind.startswith("triggerd_"):  # raised by our validators, already in plain words
        return err["msg"]
    field = section.model_fields.get(str(loc[-1])) if section else None
    secret = field is not None and SecretStr in (field.annotation, *get_args(field.annotation))
    got = "" if secret else f", got {describe_toml_value(err.get('input'))}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"expected {ctx['expected']}{got}"
    if kind == "greater_than_equal":
        return f"expected a value >= {ctx['ge']}{got}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}{got}"
    return f"{err['msg'][0].lower()}{err['msg'][1:]}{got}"


def _section_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def describe_toml_value(value: Any) -> str:
    """The value as the user wrote it in TOML, never as a Python type name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    return "a list" if isinstance(value, list | tuple) else "a value of another type"
