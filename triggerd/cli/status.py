"""``triggerctl status``: is the daemon well, what does it watch, what is it doing."""

from __future__ import annotations

from pathlib import Path

import click

from triggerd.text import shown

from .common import ago, daemon_command, open_client, print_json, print_table
from .rules import skipped_text

__all__ = ["status"]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (
        f"{days}d {hours}h {minutes}m"
        if days
        else f"{hours}h {minutes}m {secs}s"
        if hours
        else f"{minutes}m {secs}s"
    )


def _short(value: object, width: int = 40) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command()
@daemon_command
def status(config_path: Path | None, as_json: bool) -> None:
    """Daemon uptime and config, sources and their health, rules, runs and the outbox, and
    the triggers skipped (that did not become a run) since the daemon started, by reason."""
    with open_client(config_path) as client:
        data = client.get("/status")
    if as_json:
        print_json(data)
        return
    _print_daemon(data)
    _print_dependencies(data.get("dependencies") or [])
    if data.get("state_writes_waiting"):
        click.secho(
            f"{data['state_writes_waiting']} triggers and run states wait to be written "
            "to the state file",
            fg="red",
        )
    if data["sources"]:
        _print_sources(data["sources"])
    if data.get("pvs"):
        _print_pvs(data["pvs"])
    if data.get("waiting_for_files"):
        click.echo(f"{data['waiting_for_files']} PV triggers waiting for their file to be complete")
    _print_status_pvs(data.get("status_pvs"))
    _print_rules(data["rules"])


def _print_daemon(data: dict) -> None:
    """The daemon's pid, uptime and config, a refused reload, its runs and skipped triggers."""
    runs = data["runs"]
    click.echo(
        f"triggerd pid {data['pid']}, up {_duration(data['uptime'])}, "
        f"config {shown(data['config'])}"
    )
    if data.get("executor_waiting"):
        click.secho(
            f"executor ({data['executor']}) not started yet, "
            f"runs wait in the outbox: {data['executor_waiting']}",
            fg="yellow",
        )
    last_reload = data.get("last_reload")
    if last_reload and not last_reload["ok"]:
        click.secho(
            f"the last reload ({ago(last_reload['at'])}) was refused, "
            f"the rules from before run on: {shown(last_reload['error'])}",
            fg="red",
        )
    state = "DRAINING (no new triggers)" if data["draining"] else "taking triggers"
    click.echo(
        f"{state}; runs: {runs['running']} running, "
        f"{runs.get('submitted', 0)} waiting for a worker, {runs['queued']} queued (outbox), "
        f"{runs['held']} files held (debounce/batch), {runs['failed']} failed, "
        f"{runs['succeeded']} succeeded"
    )
    click.echo(f"triggers skipped since the daemon started: {skipped_text(data['skipped'])}")


def _print_dependencies(dependencies: list[dict]) -> None:
    if dependencies:
        print_table(
            ["dependency", "state", "since", "where"],
            [[d["name"], d["state"], ago(d["since"]), d["target"]] for d in dependencies],
        )
        for d in dependencies:
            if d["state"] == "down":
                click.secho(f"  {d['name']}: {d['error']} (work that needs it waits)", fg="red")


def _print_sources(sources: list[dict]) -> None:
    print_table(
        ["source", "mode", "state", "dirs", "events", "last event"],
        [
            [
                s["root"],
                s["complete"],
                s["state"],
                s.get("watched_dirs", ""),
                s.get("events", ""),
                ago(s.get("last_event")),
            ]
            for s in sources
        ],
        wrap=("source",),
    )
    for s in sources:
        if s["state"] != "watching" and s.get("message"):
            click.secho(
                f"  {s['root']}: {s['message']}",
                fg="yellow" if s["state"] == "waiting" else "red",
            )


def _print_pvs(pvs: list[dict]) -> None:
    print_table(
        ["pv", "state", "since", "value", "updates", "rules"],
        [
            [
                p["name"],
                p["state"],
                ago(p["since"]),
                _short(p["last_value"]),
                p["updates"],
                ", ".join(p["rules"] + [f"{r} (snapshot)" for r in p.get("snapshot_of", [])]),
            ]
            for p in pvs
        ],
        wrap=("value", "rules"),
    )
    for p in pvs:
        if p["state"] != "connected" and p.get("message"):
            click.secho(
                f"  {p['name']}: {shown(p['message'])}",
                fg="red" if p["state"] == "never connected" else "yellow",
            )
        # a rule that cannot work on this PV (a state name it lacks)
        for warning in p.get("warnings", ()):
            click.secho(f"  {p['name']}: {shown(warning)}", fg="red")


def _print_status_pvs(status_pvs: dict | None) -> None:
    if status_pvs and status_pvs.get("error"):
        click.secho(
            f"status PVs {status_pvs['prefix']}*: not served: {status_pvs['error']}", fg="red"
        )
    elif status_pvs:
        click.echo(
            f"status PVs {status_pvs['prefix']}*: "
            f"clients add {status_pvs['ca_addr_list']} to EPICS_CA_ADDR_LIST; "
            f"PAUSE writable by {', '.join(status_pvs['writers']) or 'anyone'}"
        )


def _print_rules(rules: list[dict]) -> None:
    print_table(
        ["rule", "workflow", "source", "state", "fired", "skipped", "last fired"],
        [
            [
                r["name"],
                r["workflow"],
                r["source"],
                "paused" if r["paused"] else "active",
                r["fired"],
                skipped_text(r["skipped"]),
                ago(r["last_fired"]),
            ]
            for r in rules
        ],
        wrap=("source", "skipped"),
    )
