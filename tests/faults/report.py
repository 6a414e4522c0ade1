"""The rows of docs/reliability.md, as the fault scenarios produce them.

Each scenario calls :func:`record`; with ``TRIGGERD_FAULTS_REPORT`` set (``make faults``
sets it) the row is appended to that file as one JSON line, and
``python tests/faults/report.py ROWS.jsonl docs/reliability.md`` puts them, as a table,
between the markers of that page.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["record", "render"]


def record(
    scenario: str,
    *,
    load: str,
    injected: str,
    audit: Any,
    recovery: float | None,
    api_slowest: float | None = None,
    reproduce: str = "",
    expected: str = "",
) -> None:
    """Keep one scenario's outcome (a no-op unless TRIGGERD_FAULTS_REPORT names a file)."""
    target = os.environ.get("TRIGGERD_FAULTS_REPORT")
    if not target:
        return
    row = {
        "scenario": scenario,
        "load": load,
        "injected": injected,
        "expected": expected or "one run per file, each task once, every event once",
        "observed": audit.summary(),
        "lost": len(audit.lost),
        "duplicated": len(audit.duplicated),
        "falsely_succeeded": len(audit.falsely_succeeded),
        "reexecuted": len(audit.reexecuted),
        "recovery": recovery,
        "api_slowest": api_slowest,
        "reproduce": reproduce,
        "at": time.time(),
    }
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def render(rows: list[dict[str, Any]]) -> str:
    columns = (
        "scenario | load | injected | expected | observed | lost | duplicated | "
        "falsely succeeded | recovery | API slowest | reproduce"
    )
    head = f"| {columns} |\n|{'---|' * (columns.count('|') + 1)}\n"
    lines = []
    for r in rows:
        recovery = "-" if r["recovery"] is None else f"{r['recovery']:.1f} s"
        api = "-" if r["api_slowest"] is None else f"{r['api_slowest'] * 1000:.0f} ms"
        lines.append(
            f"| {r['scenario']} | {r['load']} | {r['injected']} | {r['expected']} "
            f"| {r['observed']} | {r['lost']} | {r['duplicated']} | {r['falsely_succeeded']} "
            f"| {recovery} | {api} | `{r['reproduce']}` |"
        )
    return head + "\n".join(lines) + "\n"


BEGIN, END = "<!-- fault suite table: begin -->", "<!-- fault suite table: end -->"


def update(page: Path, rows: list[dict[str, Any]], command: str) -> None:
    """Replace the table between the markers of ``page`` with ``rows``."""
    text = page.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    when = time.strftime("%Y-%m-%d", time.gmtime(max((r["at"] for r in rows), default=time.time())))
    table = (
        f"{BEGIN}\nMeasured {when} by `{command}` on this project's CI machine (2 cores).\n\n"
        f"{render(rows)}{END}"
    )
    page.write_text(head + table + tail)


if __name__ == "__main__":
    rows_read = [
        json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()
    ]
    # the latest of each scenario
    found = list({row["scenario"]: row for row in rows_read}.values())
    if len(sys.argv) > 2:
        update(Path(sys.argv[2]), found, "make faults")
    else:
        sys.stdout.write(render(found))
