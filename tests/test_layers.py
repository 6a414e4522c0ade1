"""The package keeps DESIGN.md's dependency direction."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECKER = REPO.parent / "shared" / "tools" / "check_layers.py"

# Mirrors ../shared/tools/check_layers.py so the rule holds in a checkout without shared/.
NEVER = {
    "flow": {"engine", "daemon", "sources", "store", "eventlog", "cli"},
    "sources": {"engine", "daemon", "cli"},
    "engine": {"daemon", "cli"},
    "eventlog": {"daemon", "engine", "cli"},
    "store": {"engine", "daemon", "cli"},
    "tasks": {"engine", "daemon", "cli"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    here = path.relative_to(REPO).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - node.level + 1])
                names.add(".".join([*base, *(node.module or "").split(".")]).rstrip("."))
            elif node.module:
                names.add(node.module)
    return names


def test_no_import_runs_against_the_dependency_direction():
    """No module of a lower layer imports a higher one (flow imports nothing of ours but errors)."""
    bad = []
    for path in sorted((REPO / "triggerd").rglob("*.py")):
        layer = path.relative_to(REPO / "triggerd").parts[0]
        for name in _imports(path):
            bits = name.split(".")
            if bits[0] == "triggerd" and len(bits) > 1 and bits[1] in NEVER.get(layer, ()):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert bad == []


def test_shared_layer_checker_agrees():
    """The team's own checker (when shared/ is beside the checkout) reports nothing."""
    if not CHECKER.exists():
        pytest.skip("../shared/tools/check_layers.py is not beside this checkout")
    done = subprocess.run(
        [sys.executable, str(CHECKER), str(REPO / "triggerd")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout
