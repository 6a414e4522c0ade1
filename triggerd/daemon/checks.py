"""What ``triggerd check`` validates, and what a reload validates before it applies
anything: the secrets the config names, every rule, every workflow. One function, so a
reload refuses exactly what ``check`` reports; the daemon reads its API tokens with
:func:`read_api_tokens`, so it refuses exactly what ``check`` reports too."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from triggerd.config import BUILTIN_SOURCE, DaemonSettings, Settings
from triggerd.engine.codec import Codec
from triggerd.errors import ConfigError, TriggerdError
from triggerd.flow.workflow import discover_workflows
from triggerd.private import check_private, read_secret

from .rules import RuleSet, load_rules_for

__all__ = ["Checked", "check_everything", "read_api_tokens", "setup_warnings"]


@dataclass
class Checked:
    """Each thing checked, as ``(subject, problem)`` (problem None: fine), and the rules
    when they loaded."""

    results: list[tuple[str, str | None]] = field(default_factory=list)
    rules: RuleSet | None = None
    warnings: list[str] = field(default_factory=list)  # not wrong, but likely not meant

    @property
    def problems(self) -> list[str]:
        return [f"{subject}: {problem}" for subject, problem in self.results if problem is not None]


def check_everything(settings: Settings) -> Checked:
    checked = Checked()
    checked.results += _secrets(settings)
    try:
        checked.rules = load_rules_for(settings)
        checked.results.append(("rules", None))
    except TriggerdError as exc:  # one result per problem, so that they are counted right
        checked.results += [
            ("rules", str(problem)) for problem in getattr(exc, "problems", None) or [exc]
        ]
    for name, item in discover_workflows(settings.paths.workflows):
        checked.results.append(
            (f"workflow {name}", str(item) if isinstance(item, Exception) else None)
        )
    checked.warnings = setup_warnings(settings, checked.rules)
    return checked


def setup_warnings(settings: Settings, rules: RuleSet | None) -> list[str]:
    """What is valid but most likely a mistake of the setup: no config file, a configured
    directory that is not there, no rules (the daemon would run and trigger nothing).
    ``triggerd check`` prints them; ``triggerd run`` logs them and records them."""
    warnings = []
    if settings.source == BUILTIN_SOURCE:
        warnings.append(
            "no config file found (--config, $TRIGGERD_CONFIG, ./triggerd.toml, "
            "./config/triggerd.toml, /etc/triggerd/triggerd.toml): built-in defaults, "
            f"paths relative to {settings.base_dir}"
        )
    for key, dirs in (
        ("paths.workflows", settings.paths.workflows),
        ("paths.triggers", settings.paths.triggers),
    ):
        for directory in dirs:
            if not directory.is_dir():
                warnings.append(
                    f"{key}: {directory} does not exist"
                    + (" (no rules are read from it)" if key == "paths.triggers" else "")
                )
    if rules is not None and not rules.rules:
        where = ", ".join(str(d / "*.toml") for d in settings.paths.triggers)
        warnings.append(
            f"no trigger rules ({where}): the daemon would watch nothing and start no run by itself"
        )
    return warnings


def read_api_tokens(daemon: DaemonSettings) -> tuple[str, str | None]:
    """The TCP API's operator token (``daemon.token_file``) and its viewer token
    (``daemon.viewer_token_file``, None if not set). :class:`ConfigError` naming the key
    when a file is missing, unreadable, empty or not private, or both tokens are one."""
    if daemon.token_file is None:
        raise ConfigError("a TCP control API needs daemon.token_file", key="daemon.token_file")
    operator = read_secret(daemon.token_file, what="API token", key="daemon.token_file")
    if daemon.viewer_token_file is None:
        return operator, None
    key = "daemon.viewer_token_file"
    viewer = read_secret(daemon.viewer_token_file, what="viewer token", key=key)
    if hmac.compare_digest(viewer.encode(), operator.encode()):
        raise ConfigError(
            "the viewer token is the operator token (daemon.token_file): "
            "a viewer could do all an operator does; give it a token of its own",
            source=str(daemon.viewer_token_file),
            key=key,
        )
    return operator, viewer


def _secrets(settings: Settings) -> list[tuple[str, str | None]]:
    results: list[tuple[str, str | None]] = []
    if settings.daemon.tcp and settings.daemon.token_file is not None:
        subject = "API tokens" if settings.daemon.viewer_token_file else "API token"
        try:
            read_api_tokens(settings.daemon)
            results.append((subject, None))
        except TriggerdError as exc:
            results.append((subject, str(exc)))
    try:
        if settings.security.hmac_key is not None:
            Codec(settings.security.hmac_key.get_secret_value().encode())
        elif settings.hmac_key_path.exists():
            check_private(
                settings.hmac_key_path,
                settings.hmac_key_path.stat(),
                what="HMAC key",
                key="security.hmac_key_file",
            )
        results.append(("HMAC key", None))
    except TriggerdError as exc:
        results.append(("HMAC key", str(exc)))
    except OSError as exc:
        results.append(("HMAC key", f"{settings.hmac_key_path}: {exc.strerror}"))
    return results
