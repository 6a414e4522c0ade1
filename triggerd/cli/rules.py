"""``triggerctl rules | pause RULE | resume RULE``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import ago, daemon_command, open_client, print_json, print_table

__all__ = ["pause", "resume", "rules", "skipped_text"]


@click.command()
@daemon_command
def rules(config_path: Path | None, as_json: bool) -> None:
    """The loaded trigger rules: what each watches, the workflow it starts, how often it
    fired, and how many of its triggers were skipped (did not become a run: paused,
    duplicate, debounce, ...) since the daemon started, by reason."""
    with open_client(config_path) as client:
        data = client.get("/rules")
    if as_json:
        print_json(data)
        return
    print_table(
        ["rule", "workflow", "watches", "state", "fired", "skipped", "last fired"],
        [
            [
                r["name"],
                r["workflow"],
                _watches(r),
                "paused" if r["paused"] else "active",
                r["fired"],
                skipped_text(r["skipped"]),
                ago(r["last_fired"]),
            ]
            for r in data
        ],
        wrap=("watches", "skipped"),
    )


def skipped_text(skipped: dict) -> str:
    """'0', or the total and each reason, most first: '12 (paused 10, duplicate 2)'."""
    by_reason = sorted(skipped["by_reason"].items(), key=lambda item: (-item[1], item[0]))
    if not by_reason:
        return "0"
    return f"{skipped['total']} (" + ", ".join(f"{reason} {n}" for reason, n in by_reason) + ")"


def _watches(rule: dict) -> str:
    if rule.get("pv"):
        return f"{rule['pv']} ({rule['condition']})"
    return ", ".join(rule["roots"]) or rule["source"]


_TOGGLE_HELP = {
    "pause": (
        "Stop RULE from firing: its triggers meanwhile are skipped "
        "(trigger.skipped, reason paused) and counted."
    ),
    "resume": "Let a paused RULE fire again.",
}


def _toggle(action: str):
    # help= rather than a docstring set afterwards: click reads the help when it builds the command.
    @click.command(name=action, help=_TOGGLE_HELP[action])
    @click.argument("rule")
    @daemon_command
    def command(rule: str, config_path: Path | None, as_json: bool) -> None:
        with open_client(config_path) as client:
            data = client.post(f"/rules/{rule}/{action}")
        if as_json:
            print_json(data)
        else:
            click.echo(f"rule {rule}: {'paused' if data['paused'] else 'active'}")

    return command


pause = _toggle("pause")
resume = _toggle("resume")
