"""``triggerctl workflows``: which workflows exist, what they do, what they take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import config_option, json_option, obtain_settings, reports_errors

__all__ = ["workflows"]


def _describe(name: str, item: Any) -> dict:
    if isinstance(item, Exception):
        return {"name": name, "ok": False, "error": str(item)}
    return {
        "name": name,
        "ok": True,
        "path": str(item.path),
        "summary": item.summary,
        "doc": item.docstring or "",
        "dags": {
            n: {"autostart": d.autostart, "tasks": list(d.shape().tasks)}
            for n, d in item.dags.items()
        },
        "parameters": [opt.to_dict() for opt in item.parameters],
    }


@click.command()
@click.option(
    "--workflows",
    "workflow_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Look here instead of the configured directories.",
)
@config_option
@json_option
@reports_errors
def workflows(workflow_dirs: tuple[Path, ...], config_path: Path | None, as_json: bool) -> None:
    """List the workflows with their description and parameters.

    A workflow file that does not load is listed with its error; the others still are.
    """
    from triggerd.flow.workflow import discover_workflows  # networkx: only when needed

    settings = obtain_settings(config_path)
    dirs = list(workflow_dirs) or list(settings.paths.workflows)
    found = [_describe(name, item) for name, item in discover_workflows(dirs)]
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    if not found:
        click.echo(f"no workflows in {', '.join(map(str, dirs))}")
        return
    for item in found:
        if not item["ok"]:
            click.secho(f"{item['name']}  (does not load)", fg="red", bold=True)
            click.secho(f"    {item['error']}", fg="red")
            continue
        click.secho(item["name"], bold=True, nl=False)
        click.echo(f"  {item['summary']}" if item["summary"] else "")
        for opt in item["parameters"]:
            need = "required" if opt["required"] else f"default {opt['default']!r}"
            text = f"    {opt['name']} ({opt['type']}, {need})"
            click.echo(text + (f": {opt['help']}" if opt["help"] else ""))
