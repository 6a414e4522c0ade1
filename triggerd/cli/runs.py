"""``triggerctl runs | start WORKFLOW k=v | stop RUN | replay RUN``."""

from __future__ import annotations

from pathlib import Path

import click

from triggerd.durations import parse_since

from .common import ago, daemon_command, open_client, print_json, print_table, since_option
from .run import parse_assignments

__all__ = ["replay", "runs", "start", "stop"]


def _timestamp(since: str | None) -> float | None:
    moment = parse_since(since)
    return moment.timestamp() if moment else None


def _took(row: dict) -> str:
    if row.get("started_at") and row.get("ended_at"):
        return f"{row['ended_at'] - row['started_at']:.1f}s"
    return ""


@click.command()
@click.option("--failed", is_flag=True, help="Only failed runs.")
@click.option(
    "--state", help="Only runs in these states (comma-separated: queued,running,succeeded,...)."
)
@click.option("--rule", help="Only runs of this rule.")
@since_option("runs queued")
@click.option("--limit", default=30, show_default=True)
@daemon_command
def runs(
    failed: bool,
    state: str | None,
    rule: str | None,
    since: str | None,
    limit: int,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Recent runs, newest first: state, workflow, rule, what triggered them."""
    with open_client(config_path) as client:
        data = client.get(
            "/runs",
            state="failed" if failed else state,
            rule=rule,
            since=_timestamp(since),
            limit=limit,
        )
    if as_json:
        print_json(data)
        return
    if not data:
        filtered = failed or state or rule or since
        click.echo("no runs match" if filtered else "no runs yet")
        return
    rows = []
    for r in data:
        trigger = r["trigger"][0] if r["trigger"] else {}
        what = trigger.get("path") or (
            "replay of " + r["replay_of"] if r.get("replay_of") else trigger.get("type", "")
        )
        if trigger.get("type") == "pv" and not r.get("replay_of"):
            what = f"{trigger.get('pv')} = {trigger.get('value')!r}"
        if len(r["trigger"]) > 1:
            what = f"{len(r['trigger'])} files"
        rows.append(
            [
                r["run_id"],
                r["state"],
                r["workflow"],
                r["rule"] or "-",
                ago(r["queued_at"]),
                _took(r),
                what,
            ]
        )
    print_table(["run", "state", "workflow", "rule", "queued", "took", "trigger"], rows)


@click.command()
@click.argument("workflow")
@click.argument("args", nargs=-1)
@daemon_command
def start(workflow: str, args: tuple[str, ...], config_path: Path | None, as_json: bool) -> None:
    """Start WORKFLOW on the daemon with ARGS (key=value ...); prints the run id."""
    with open_client(config_path) as client:
        data = client.post("/runs", {"workflow": workflow, "params": parse_assignments(args)})
    print_json(data) if as_json else click.echo(data["run_id"])


@click.command()
@click.argument("run_id")
@daemon_command
def stop(run_id: str, config_path: Path | None, as_json: bool) -> None:
    """Stop a run: queued ones never start, running ones stop (Bash tasks are terminated)."""
    with open_client(config_path) as client:
        data = client.post(f"/runs/{run_id}/stop")
    print_json(data) if as_json else click.echo(f"run {run_id}: {data['state']}")


@click.command()
@click.argument("run_id")
@daemon_command
def replay(run_id: str, config_path: Path | None, as_json: bool) -> None:
    """Fire a past trigger again: a new run with the same workflow, parameters and trigger."""
    with open_client(config_path) as client:
        data = client.post(f"/runs/{run_id}/replay")
    print_json(data) if as_json else click.echo(f"{data['run_id']} (replay of {run_id})")
