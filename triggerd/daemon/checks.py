"""What ``triggerd check`` validates, and what a reload validates before it applies
anything: the secrets the config names, every rule, every workflow. One function, so a
reload refuses exactly what ``check`` reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from triggerd.config import Settings
from triggerd.engine.codec import Codec
from triggerd.errors import TriggerdError
from triggerd.flow.workflow import discover_workflows
from triggerd.private import check_private, read_secret

from .rules import RuleSet

__all__ = ["Checked", "check_everything"]


@dataclass
class Checked:
    """Each thing checked, as ``(subject, problem)`` (problem None: fine), and the rules
    when they loaded."""

    results: list[tuple[str, str | None]] = field(default_factory=list)
    rules: RuleSet | None = None

    @property
    def problems(self) -> list[str]:
        return [f"{subject}: {problem}" for subject, problem in self.results if problem is not None]


def check_everything(settings: Settings) -> Checked:
    from .service import load_rules_for  # service imports this module

    checked = Checked()
    checked.results += _secrets(settings)
    try:
        checked.rules = load_rules_for(settings)
        checked.results.append(("rules", None))
    except TriggerdError as exc:  # one result per problem, so that they are counted right
        checked.results += [("rules", str(problem)) for problem in getattr(exc, "problems", None) or [exc]]
    for name, item in discover_workflows(settings.paths.workflows):
        checked.results.append((f"workflow {name}", str(item) if isinstance(item, Exception) else None))
    return checked


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
            check_private(settings.hmac_key_path, settings.hmac_key_path.stat(), what="HMAC key", key="security.hmac_key_file")
        results.append(("HMAC key", None))
    except TriggerdError as exc:
        results.append(("HMAC key", str(exc)))
    except OSError as exc:
        results.append(("HMAC key", f"{settings.hmac_key_path}: {exc.strerror}"))
    return results
