"""The training fixtures that tests of this folder take as arguments (tiny_data, tiny_run,
surface_run, from _training_fixtures). Found here by pytest, they need no import in the test
modules, where an imported fixture taken as an argument reads to a linter as a redefinition
(ruff F811). The autouse _isolated_cache is not here: the modules that want it import it."""

from __future__ import annotations

from _training_fixtures import surface_run, tiny_data, tiny_run

__all__ = ["surface_run", "tiny_data", "tiny_run"]
