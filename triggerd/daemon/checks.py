"""What ``triggerd check`` validates, and what a reload validates before it applies
anything: the secrets the config names, every rule, every workflow. One function, so a
reload refuses exactly what ``check`` reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from triggerd.config import BUILTIN_SOURCE, Settings
from triggerd.engine.codec import Codec
from triggerd.errors import TriggerdError
from triggerd.flow.workflow import discover_workflows
from triggerd.private import check_private, read_secret

from .rules import RuleSet, load_rules_for

__all__ = ["Checked", "check_everything", "setup_warnings"]


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


def _secrets(settings: Settings) -> list[tuple[str, str | None]]:
    results: list[tuple[str, str | None]] = []
    if settings.daemon.tcp and settings.daemon.token_file is not None:
        try:
            read_secret(settings.daemon.token_file, what="API token", key="daemon.token_file")
            results.append(("API token", None))
        except TriggerdError as exc:
            results.append(("API token", str(exc)))
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
