"""``triggerctl test-trigger PATH | explain PATH``: rules and files, side by side."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import click

from triggerd.text import shown

from .common import daemon_command, open_client, print_json

__all__ = ["explain", "test_trigger"]


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _show_rules(data: dict) -> None:
    if not data["rules"]:
        click.echo("  no file rules")
    for r in data["rules"]:
        mark = (
            click.style("match", fg="green")
            if r["matches"]
            else click.style("no", fg="bright_black")
        )
        click.echo(f"  {r['rule']:<24} {mark:<5}  {shown(r['why'])}")
        if r["params"] is not None:  # ASCII JSON: every odd character of a name as an escape
            click.echo(f"  {'':<24} -> {r['workflow']} {json.dumps(r['params'], default=str)}")
        if r["paused"] and r["matches"]:
            click.secho(f"  {'':<24} (rule is paused: it would not fire now)", fg="yellow")


@click.command("test-trigger")
@click.argument("path", type=click.Path(path_type=Path))
@daemon_command
def test_trigger(path: Path, config_path: Path | None, as_json: bool) -> None:
    """Dry run: which rules match PATH and the parameters they would render. Starts nothing."""
    with open_client(config_path) as client:
        data = client.post("/test-trigger", {"path": str(path.absolute())})
    if as_json:
        print_json(data)
        return
    click.echo(shown(data["path"]) + ("" if data["exists"] else "  (does not exist)"))
    _show_rules(data)


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@daemon_command
def explain(path: Path, config_path: Path | None, as_json: bool) -> None:
    """Why PATH did or did not trigger: rules, what the watcher saw, the ledger, the runs."""
    with open_client(config_path) as client:
        data = client.post("/explain", {"path": str(path.absolute())})
    if as_json:
        print_json(data)
        return
    click.echo(shown(data["path"]) + ("" if data["exists"] else "  (does not exist now)"))
    click.echo("rules:")
    _show_rules(data)
    click.echo(
        "seen by the watcher:"
        if data["observed"]
        else "seen by the watcher: nothing since the daemon started"
    )
    for o in data["observed"]:
        extra = (
            f" run {o['run']}" if "run" in o else f" size {o.get('size')}" if "size" in o else ""
        )
        click.echo(f"  {_when(o['at'])}  {shown(o['what'])}{extra}")
    for s in data["skipped"]:
        click.echo(f"  {_when(s['at'])}  skipped by {s['rule']}: {shown(s['reason'])}")
    click.echo("ledger (dispatched versions):" if data["ledger"] else "ledger: never dispatched")
    for e in data["ledger"]:
        current = "current version" if e["current_version"] else "older version"
        click.echo(
            f"  {_when(e['at'])}  {e['rule']}: run {e['run']} ({e['run_state']}), "
            f"{current}, size {e['size']}"
        )
