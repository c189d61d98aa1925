"""docs/architecture.md's package map and import tables are generated from the tree and current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_generated_half_of_the_architecture_doc_is_current():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "architecture_map.py"),
                          "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_package_readme_says_what_it_holds_and_how_to_extend_it():
    for readme in sorted((ROOT / "packages").glob("*/README.md")):
        text = readme.read_text()
        assert len(text.splitlines()) > 10, f"{readme}: a stub"
        assert "## Extending" in text, f"{readme}: no 'Extending' section"
