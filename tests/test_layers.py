"""The package keeps DESIGN.md's dependency direction and has no import cycles.

The rules are import-linter contracts in pyproject.toml ([tool.importlinter]); this runs
them as `make lint` does, so every checkout checks them.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_contracts_are_kept():
    """Every contract of pyproject.toml holds (lint-imports prints the broken ones)."""
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
