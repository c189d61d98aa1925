"""Budgets of `focusing compare`: one TOML file says how long every setup trains, at what size,
and how it is evaluated, so that setups differ only in what their specs change.

Tables: `[budget]` (BUDGET_KEYS; `own_minutes` gives each setup that many optimisation minutes
of its own after the shared warm-up, i.e. equal wall time for the part where setups differ,
and `one_warmup` makes every seed of `--seeds` fork from one warm-up, so that the spread
measures the setups' own steps alone; `eval_resolution` reconstructs every trained model at
that output resolution for its quality figures instead of the trained one; `memory_cap_gb`
turns on the equal-memory mode, as `--memory-cap` does), `[config]` (overrides applied to every
setup), `[scaling]` (the `--scaling` study's settings, SCALING_KEYS), `[memory_cap]` (the
equal-memory mode's search, MEMORY_CAP_KEYS; memory_cap.py). Shipped budgets live in
`eval/budgets/`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from focusing.eval.compare.spec import CompareError

BUDGET_DIR = Path(__file__).resolve().parent.parent / "budgets"
BUDGET_KEYS = {
    "name", "description", "steps", "minutes", "meshes", "eval_points", "tau", "render_views",
    "render_size", "threads", "own_minutes", "one_warmup", "eval_resolution", "memory_cap_gb",
}
SCALING_KEYS = {"latent_resolutions", "extra_latent_resolutions", "steps", "mesh", "timeout_s",
                "memory_fraction", "config"}
MEMORY_CAP_KEYS = {"outputs", "alphas", "probe_steps", "warmup_probe_steps", "mesh", "timeout_s",
                   "memory_fraction", "peak", "probe_evaluates", "config"}


def _toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    raise CompareError(f"budget value {value!r} has an unsupported type")


def flatten_overrides(table: dict, prefix: str = "") -> list[str]:
    """A nested config table -> ['a.b=value', ...] overrides (values as TOML literals)."""
    out = []
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out += flatten_overrides(value, path)
        else:
            out.append(f"{path}={_toml_literal(value)}")
    return out


@dataclass
class Budget:
    """A budget file: how long to train, at what size, how to evaluate and render."""

    name: str
    description: str
    steps: int
    minutes: float                # > 0: also stop each setup after this many optimisation minutes
    meshes: int                   # 0: every mesh of --data; else the first N (sorted by name)
    eval_points: int
    tau: float
    render_views: int
    render_size: int
    threads: int                  # torch intra-op threads of each child; 0: torch's default
    own_minutes: float            # > 0: each forked setup trains this long after the warm-up
    one_warmup: bool              # with --seeds: every seed forks from the first seed's warm-up
    overrides: list[str]          # applied to every setup
    scaling: dict
    source: Path
    eval_resolution: int = 0      # > 0: reconstruct at this output resolution to evaluate
    memory_cap_gb: float = 0.0    # > 0: the equal-memory mode under this cap (memory_cap.py)
    memory_cap: dict = field(default_factory=dict)  # its [memory_cap] table

    @property
    def schedule(self) -> list[str]:
        """The overrides that set each setup's length: steps, and minutes where given."""
        return [f"train.steps={self.steps}"] + ([f"train.minutes={self.minutes}"]
                                                 if self.minutes > 0 else [])


def budget_path(name_or_file: str) -> Path:
    """Path of a shipped budget (small, medium) or of a TOML file."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise CompareError(f"budget file {path} does not exist")
        return path
    shipped = BUDGET_DIR / f"{name_or_file}.toml"
    if not shipped.is_file():
        names = sorted(p.stem for p in BUDGET_DIR.glob("*.toml"))
        raise CompareError(f"unknown budget {name_or_file!r}; shipped budgets: "
                           f"{', '.join(names)} (or give a .toml file)")
    return shipped


def _check_keys(path: Path, table: str, given: dict, valid: set[str]) -> None:
    bad = set(given) - valid
    if bad:
        raise CompareError(f"budget file {path}: unknown [{table}] keys {sorted(bad)}; "
                           f"valid: {', '.join(sorted(valid))}")


def load_budget(name_or_file: str) -> Budget:
    """Read and check a budget TOML file ([budget], [config], [scaling] tables)."""
    path = budget_path(name_or_file)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CompareError(f"budget file {path}: {exc}") from None
    unknown = set(data) - {"budget", "config", "scaling", "memory_cap"}
    if unknown:
        raise CompareError(f"budget file {path}: unknown tables {sorted(unknown)}; "
                           f"valid: budget, config, scaling, memory_cap")
    b = data.get("budget", {})
    _check_keys(path, "budget", b, BUDGET_KEYS)
    sc = data.get("scaling", {})
    _check_keys(path, "scaling", sc, SCALING_KEYS)
    cap = data.get("memory_cap", {})
    _check_keys(path, "memory_cap", cap, MEMORY_CAP_KEYS)
    budget = Budget(
        name=str(b.get("name", path.stem)), description=str(b.get("description", "")),
        steps=int(b.get("steps", 20)), minutes=float(b.get("minutes", 0.0)),
        meshes=int(b.get("meshes", 0)), eval_points=int(b.get("eval_points", 100_000)),
        tau=float(b.get("tau", 0.005)), render_views=int(b.get("render_views", 2)),
        render_size=int(b.get("render_size", 160)), threads=int(b.get("threads", 0)),
        own_minutes=float(b.get("own_minutes", 0.0)), one_warmup=bool(b.get("one_warmup", False)),
        overrides=flatten_overrides(data.get("config", {})), scaling=sc, source=path,
        eval_resolution=int(b.get("eval_resolution", 0)),
        memory_cap_gb=float(b.get("memory_cap_gb", 0.0)), memory_cap=cap,
    )
    if (budget.steps < 1 or budget.eval_points < 1 or budget.render_views < 0 or budget.tau <= 0
            or budget.minutes < 0 or budget.own_minutes < 0):
        raise CompareError(f"budget file {path}: steps and eval_points must be >= 1, "
                           f"render_views >= 0, tau > 0, minutes and own_minutes >= 0")
    if budget.eval_resolution < 0 or budget.eval_resolution % 4 or budget.memory_cap_gb < 0:
        raise CompareError(f"budget file {path}: eval_resolution must be 0 (the trained "
                           f"resolution) or an output resolution (a multiple of 4), "
                           f"memory_cap_gb >= 0")
    if budget.own_minutes > 0 and budget.minutes > 0:
        raise CompareError(f"budget file {path}: give minutes (the warm-up included) or "
                           f"own_minutes (after the shared warm-up), not both")
    return budget
