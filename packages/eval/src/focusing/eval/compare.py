"""`focusing compare`: train several setups under one budget, each in its own process, then
reconstruct and evaluate every mesh and write a report (report.py) with plots.

Fairness: every setup gets the budget's `[config]` overrides (same model sizes, resolutions,
steps, seed), so the data order and the camera seeds are equal (the trainer draws them from
`train.seed` and the step only). Each setup trains in a child process
(`python -m focusing.eval.compare --child JOB.json`), so its memory is measured from a clean
start: the child records the peak RSS of training above its level after data preparation
(sampled every 2 ms) and the parent records the child's whole max RSS through `os.wait4`.

Shared warm-up: the render-free warm-up reads no camera, selector or renderer, so setups that
differ only there train it identically. It is then trained once (RUN/runs/shared-warmup) and
each setup's child resumes from its checkpoint (shared_warmup_steps). With the small budget
this gives the warm-up 8 of the job's 14 minutes once, instead of a share per setup.
A budget's `minutes` stops each setup after that much optimisation (train.minutes).

Setup specs: `NAME[:key=value[:key=value...]]`, e.g. `focusing:decoder.depth=4`. Shorthands:
- `selector=X`: replaces the setup's selectors at the stage its selectors use
  (`selectors.latent=["X"]` when the setup has latent selectors, else `selectors.output=["X"]`);
- `upsampler=X` -> `upsampler.name=X`; `backend=X` -> `backend.sparse=X`;
  `renderer=X` -> `backend.renderer=X`.
The spec string is the setup's label in the report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from focusing.core.io import write_text_atomic

BUDGET_DIR = Path(__file__).with_name("budgets")
SHORTHANDS = {
    "upsampler": "upsampler.name",
    "backend": "backend.sparse",
    "renderer": "backend.renderer",
}
BUDGET_KEYS = {
    "name", "description", "steps", "minutes", "meshes", "eval_points", "tau", "render_views",
    "render_size", "threads",
}
# Tables the render-free warm-up never reads: setups that differ only here train it alike.
WARMUP_FREE_KEYS = ("name", "description", "selectors", "cameras")
WARMUP_DIR = "shared-warmup"
SCALING_KEYS = {"latent_resolutions", "extra_latent_resolutions", "steps", "mesh", "timeout_s",
                "memory_fraction", "config"}


class CompareError(ValueError):
    """A bad setup spec, budget or folder for `focusing compare` (message says which)."""


# --------------------------------------------------------------------------------------------
# setup specs
def split_specs(text: str) -> list[str]:
    """'a,b:k=[1,2]' -> ['a', 'b:k=[1,2]']: split on commas outside brackets and quotes."""
    out, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    specs = [s for s in out if s]
    if not specs:
        raise CompareError(f"--setups {text!r} names no setup")
    return specs


def _split_overrides(rest: str, spec: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in rest:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == ":" and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    parts = [p.strip() for p in parts]
    for p in parts:
        if "=" not in p or not p.split("=", 1)[0].strip():
            raise CompareError(
                f"setup spec {spec!r}: {p!r} is not of the form key=value "
                f"(e.g. focusing:upsampler=subdivide, focusing:decoder.depth=4)")
    return parts


@dataclass
class SetupSpec:
    """A setup of the comparison: its label, base setup, overrides and resolved config."""

    label: str
    base: str
    overrides: list[str]          # after shorthand expansion, without the budget's
    config: dict = field(repr=False, default_factory=dict)

    @property
    def slug(self) -> str:
        """A file-name-safe form of the label."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.label).strip("_") or "setup"


def parse_spec(spec: str, budget_overrides: list[str] = ()) -> SetupSpec:
    """Resolve 'NAME[:key=value...]' against the budget; raises CompareError naming the spec."""
    from focusing.core.plugins import PluginError
    from focusing.core.config import ConfigError, load_setup, resolve_setup

    base, _, rest = spec.partition(":")
    base = base.strip()
    if not base:
        raise CompareError(f"setup spec {spec!r} has no setup name before ':'")
    raw = _split_overrides(rest, spec) if rest.strip() else []
    try:
        budget_setup = resolve_setup(base, list(budget_overrides))
        overrides = []
        for item in raw:
            key, value = (s.strip() for s in item.split("=", 1))
            if key == "selector":
                stage = "latent" if budget_setup.selectors.latent else "output"
                value = value if value.startswith("[") else json.dumps([value])
                overrides.append(f"selectors.{stage}={value}")
            elif key in SHORTHANDS:
                overrides.append(f"{SHORTHANDS[key]}={value}")
            else:
                overrides.append(f"{key}={value}")
        config = load_setup(base, list(budget_overrides) + overrides)
    except (ConfigError, PluginError, FileNotFoundError) as exc:
        raise CompareError(f"setup spec {spec!r}: {exc}") from None
    return SetupSpec(spec, base, overrides, config)


def parse_specs(text: str, budget_overrides: list[str] = ()) -> list[SetupSpec]:
    """Every spec of a --setups string, resolved; labels and folder names must be distinct."""
    specs = [parse_spec(s, budget_overrides) for s in split_specs(text)]
    seen: dict[str, str] = {}
    for s in specs:
        if s.slug in seen:
            raise CompareError(f"setups {seen[s.slug]!r} and {s.label!r} would share a run folder "
                               f"({s.slug}); name each setup once")
        seen[s.slug] = s.label
    return specs


# --------------------------------------------------------------------------------------------
# budgets
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
    overrides: list[str]          # applied to every setup
    scaling: dict
    source: Path

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
        raise CompareError(f"unknown budget {name_or_file!r}; shipped budgets: {', '.join(names)} "
                           f"(or give a .toml file)")
    return shipped


def load_budget(name_or_file: str) -> Budget:
    """Read and check a budget TOML file ([budget], [config], [scaling] tables)."""
    path = budget_path(name_or_file)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CompareError(f"budget file {path}: {exc}") from None
    unknown = set(data) - {"budget", "config", "scaling"}
    if unknown:
        raise CompareError(f"budget file {path}: unknown tables {sorted(unknown)}; "
                           f"valid: budget, config, scaling")
    b = data.get("budget", {})
    bad = set(b) - BUDGET_KEYS
    if bad:
        raise CompareError(f"budget file {path}: unknown [budget] keys {sorted(bad)}; "
                           f"valid: {', '.join(sorted(BUDGET_KEYS))}")
    sc = data.get("scaling", {})
    bad = set(sc) - SCALING_KEYS
    if bad:
        raise CompareError(f"budget file {path}: unknown [scaling] keys {sorted(bad)}; "
                           f"valid: {', '.join(sorted(SCALING_KEYS))}")
    budget = Budget(
        name=str(b.get("name", path.stem)), description=str(b.get("description", "")),
        steps=int(b.get("steps", 20)), minutes=float(b.get("minutes", 0.0)), meshes=int(b.get("meshes", 0)),
        eval_points=int(b.get("eval_points", 100_000)), tau=float(b.get("tau", 0.005)),
        render_views=int(b.get("render_views", 2)), render_size=int(b.get("render_size", 160)),
        threads=int(b.get("threads", 0)),
        overrides=flatten_overrides(data.get("config", {})), scaling=sc, source=path,
    )
    if (budget.steps < 1 or budget.eval_points < 1 or budget.render_views < 0 or budget.tau <= 0
            or budget.minutes < 0):
        raise CompareError(f"budget file {path}: steps and eval_points must be >= 1, "
                           f"render_views >= 0, tau > 0, minutes >= 0")
    return budget


# --------------------------------------------------------------------------------------------
# child processes
def _rss_mb() -> float:
    from focusing.core.engine.memory import current_rss_bytes

    return current_rss_bytes() / 2**20


def run_child_job(job: dict) -> dict:
    """Train one setup in this process and write its step history (JSON) to job['history']."""
    import resource

    rss_start = _rss_mb()
    import torch

    from focusing.core.config import resolve_setup
    from focusing.core.engine.memory import PeakMemory
    from focusing.core.train.trainer import Trainer

    if int(job.get("threads", 0)) > 0:
        torch.set_num_threads(int(job["threads"]))
    t0 = time.perf_counter()
    config = resolve_setup(job["setup"], job["overrides"])
    trainer = Trainer(config, Path(job["data"]), Path(job["run_dir"]),
                      progress=bool(job.get("progress", True)), resume=bool(job.get("resume")),
                      allow_changes=bool(job.get("resume")))
    prep_s = time.perf_counter() - t0
    rss_before = _rss_mb()
    t1 = time.perf_counter()
    try:
        with PeakMemory(trainer.device) as peak:
            history = trainer.fit(job.get("stop_at"))
    finally:
        trainer.close()
    fit_s = time.perf_counter() - t1
    steps = [{"step": r.step, "terms": r.terms, "counts": r.counts, "seconds": r.seconds,
              "peak_memory_mb": r.peak_memory_mb} for r in history]
    out = {
        "setup": job["setup"], "overrides": job["overrides"], "steps": steps,
        "prep_s": prep_s, "fit_s": fit_s, "rss_start_mb": rss_start,
        "rss_before_fit_mb": rss_before, "train_peak_mb": peak.peak_mb,
        # ru_maxrss is in KiB on Linux
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(), "device": str(trainer.device),
    }
    write_text_atomic(Path(job["history"]), json.dumps(out, indent=2))
    return out


@dataclass
class ChildResult:
    """How a child process ended: its history (None on failure) and its own rusage."""

    history: dict | None
    returncode: int
    wall_s: float
    max_rss_mb: float
    error: str = ""


def launch_child(job: dict, job_file: Path, log_file: Path | None = None,
                 timeout_s: float | None = None) -> ChildResult:
    """Run `python -m focusing.eval.compare --child job_file`; the child's progress bars pass
    through to our stderr (and are kept in log_file when given); max RSS by os.wait4."""
    write_text_atomic(job_file, json.dumps(job, indent=2))
    history_file = Path(job["history"])
    history_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "focusing.eval.compare", "--child", str(job_file)]
    t0 = time.perf_counter()
    try:  # the child's output (progress bars) joins ours on stderr; stdout stays for --json
        sink = sys.stderr if sys.stderr.fileno() >= 0 else sys.__stderr__
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests) has no file
        sink = sys.__stderr__
    proc = subprocess.Popen(cmd, stdout=sink, stderr=sink)
    error = ""
    deadline = None if timeout_s is None else t0 + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            error = f"timed out after {timeout_s:.0f} s"
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    rc = proc.returncode
    if not error and rc != 0:
        error = (f"killed by signal {-rc} (out of memory?)" if rc < 0 else f"exited with status {rc}")
    history = json.loads(history_file.read_text()) if (rc == 0 and history_file.exists()) else None
    if history is None and not error:
        error = "wrote no history"
    return ChildResult(history, rc, wall, usage.ru_maxrss / 1024, error)


# --------------------------------------------------------------------------------------------
# the comparison
def log(msg: str) -> None:
    """Progress line on stderr (stdout stays clean for --json)."""
    print(msg, file=sys.stderr, flush=True)


def _select_meshes(folder: Path, limit: int, into: Path) -> tuple[Path, list[Path]]:
    """(training folder, mesh files): the folder itself, or a folder of links to the first N."""
    from focusing.core.train.data import mesh_files

    files = mesh_files(folder)
    if limit <= 0 or limit >= len(files):
        return folder, files
    files = files[:limit]
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    for f in files:
        (into / f.name).symlink_to(f.resolve())
    return into, [into / f.name for f in files]


def prepare_out(out: Path, specs: list[SetupSpec], overwrite: bool) -> None:
    """Make the output folder; refuse to mix with an earlier comparison unless overwrite."""
    out.mkdir(parents=True, exist_ok=True)
    stale = [out / "runs" / name for name in [s.slug for s in specs] + [WARMUP_DIR]
             if (out / "runs" / name).exists()]
    if stale and not overwrite:
        raise CompareError(f"{out} already holds runs of {', '.join(p.name for p in stale)}; "
                           f"pass --overwrite or choose another --out")
    for sub in ("runs", "recon", "plots", "jobs", "data"):
        if overwrite and (out / sub).exists():
            shutil.rmtree(out / sub)
    for sub in ("runs", "recon", "plots", "jobs"):
        (out / sub).mkdir(exist_ok=True)


def shared_warmup_steps(specs: list[SetupSpec], steps: int) -> int:
    """Steps of render-free warm-up every setup would train identically (0: none to share).

    The render-free warm-up (loss.warmup_render = false) draws no camera and runs no selector
    or renderer; its randomness comes from (train.seed, step, slot) alone. Setups whose
    resolved configs differ only in WARMUP_FREE_KEYS and backend.renderer therefore train
    the same weights through it (tests/compare/test_compare.py checks it bit for bit), so `compare`
    trains it once and every setup resumes from its last checkpoint."""
    def warmup_view(cfg: dict) -> dict:
        view = {k: v for k, v in cfg.items() if k not in WARMUP_FREE_KEYS}
        view["backend"] = {k: v for k, v in cfg["backend"].items() if k != "renderer"}
        return view

    loss = specs[0].config["loss"]
    if len(specs) < 2 or loss["warmup_render"] or not 0 < loss["tsdf_steps"] < steps:
        return 0
    first = warmup_view(specs[0].config)
    return loss["tsdf_steps"] if all(warmup_view(s.config) == first for s in specs[1:]) else 0


def _fork_from_warmup(warm_dir: Path, run_dir: Path) -> None:
    """A setup's run folder that starts where the shared warm-up ended (its checkpoints,
    config and quality rows); the setup's own config is then recorded as a change."""
    if (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")
    shutil.copytree(warm_dir / "checkpoints", run_dir / "checkpoints")
    for name in ("config.json", "quality.jsonl"):
        if (warm_dir / name).exists():
            shutil.copy2(warm_dir / name, run_dir / name)


def _train_job(spec: SetupSpec, budget: Budget, data: Path, run_dir: Path, **extra) -> dict:
    return {"mode": "train", "setup": spec.base,
            "overrides": budget.overrides + budget.schedule + spec.overrides,
            "data": str(data), "run_dir": str(run_dir), "history": str(run_dir / "history.json"),
            "progress": True, "threads": budget.threads, **extra}


def train_setups(specs: list[SetupSpec], budget: Budget, data: Path, out: Path) -> dict:
    """Train each setup in its own process; returns label -> ChildResult.

    When the setups share their render-free warm-up (shared_warmup_steps), it is trained
    once, in its own process, and each setup's process resumes from it: the same results,
    with the warm-up's time spent once instead of once per setup."""
    results = {}
    fork = shared_warmup_steps(specs, budget.steps)
    warm = None
    if fork:
        warm_dir = out / "runs" / WARMUP_DIR
        warm_dir.mkdir(parents=True, exist_ok=True)
        log(f"[warm-up] training the render-free warm-up shared by every setup ({fork} steps, "
            f"own process)")
        warm = launch_child(_train_job(specs[0], budget, data, warm_dir, stop_at=fork),
                            out / "jobs" / f"{WARMUP_DIR}.json")
        if warm.history is None:
            raise CompareError(f"training the shared warm-up failed: {warm.error} "
                               f"(its output is above)")
        short = minutes_after_warmup(sum(x["seconds"] for x in warm.history["steps"]), budget.minutes)
        if short:
            log(f"    warning: {short}")
    for i, s in enumerate(specs, 1):
        run_dir = out / "runs" / s.slug
        run_dir.mkdir(parents=True, exist_ok=True)
        what = (f"steps {fork + 1} to {budget.steps}, from the shared warm-up" if fork
                else f"{budget.steps} steps")
        log(f"[{i}/{len(specs)}] training {s.label} ({what}, own process)")
        if fork:
            _fork_from_warmup(out / "runs" / WARMUP_DIR, run_dir)
        res = launch_child(_train_job(s, budget, data, run_dir, resume=bool(fork)),
                           out / "jobs" / f"{s.slug}.json")
        if res.history is None:
            raise CompareError(f"training {s.label} failed: {res.error} (its output is above)")
        if warm is not None:
            res.history = merge_warmup_history(warm.history, res.history)
        steps = res.history["steps"]
        med = sorted(x["seconds"] for x in steps)[len(steps) // 2]
        log(f"    {s.label}: {len(steps)} steps, {med:.2f} s/step (median), training peak "
            f"{res.history['train_peak_mb']:.0f} MiB above baseline, child max RSS "
            f"{res.max_rss_mb:.0f} MiB, {res.wall_s:.0f} s in all")
        results[s.label] = res
    return results


def minutes_after_warmup(warm_seconds: float, minutes: float) -> str | None:
    """Why a budget of `minutes` (> 0) per setup leaves its setups too little of their own
    training after a shared warm-up that took `warm_seconds` of optimisation (the engine counts
    both against train.minutes); None when a minute or more is left, or without a time budget.

    Raises CompareError when nothing is left: every setup would be the warm-up's model."""
    if minutes <= 0:
        return None
    left = 60.0 * minutes - warm_seconds
    if left <= 0:
        raise CompareError(f"the shared warm-up took {warm_seconds / 60:.1f} optimisation minutes, all of the "
                           f"budget's {minutes:g}: the setups would train no steps of their own. Raise the "
                           f"budget's minutes or lower loss.tsdf_steps")
    if left < 60.0:
        return (f"the shared warm-up took {warm_seconds / 60:.1f} of the budget's {minutes:g} optimisation "
                f"minutes: each setup has {left / 60:.1f} min of its own steps, so the comparison says "
                f"little about them (this machine is slower than the one the budget was sized on?)")
    return None


def merge_warmup_history(warm: dict, own: dict) -> dict:
    """A setup's whole history: the shared warm-up's steps, then its own. Memory figures stay
    the setup's own (its process after the fork), the part where setups differ."""
    merged = dict(own)
    merged["steps"] = warm["steps"] + own["steps"]
    merged["prep_s"] = warm["prep_s"] + own["prep_s"]
    merged["shared_warmup"] = {"steps": len(warm["steps"]), "fit_s": warm["fit_s"],
                               "train_peak_mb": warm["train_peak_mb"]}
    return merged


def evaluate_setups(specs: list[SetupSpec], meshes: dict[str, tuple[str, Path]], out: Path,
                    budget: Budget) -> dict:
    """Reconstruct and evaluate every mesh with every setup: label -> mesh -> row."""
    from tqdm.auto import tqdm

    from focusing.core.vae.reconstruct import reconstruct_file
    from focusing.core.metrics import evaluate

    rows: dict[str, dict] = {}
    jobs = [(s, name) for s in specs for name in meshes]
    bar = tqdm(jobs, desc="reconstruct + evaluate", unit="mesh", file=sys.stderr)
    for s, name in bar:
        bar.set_postfix_str(f"{s.label} {name}")
        split, src = meshes[name]
        dest = out / "recon" / s.slug / f"{name}.ply"
        dest.parent.mkdir(parents=True, exist_ok=True)
        row = {"split": split, "source": str(src), "reconstruction": None}
        t0 = time.perf_counter()
        try:
            info = reconstruct_file(out / "runs" / s.slug, src, dest)
            row["reconstruct_s"] = time.perf_counter() - t0
            row.update(reconstruction=str(dest), faces=info["faces"], vertices=info["vertices"])
            t1 = time.perf_counter()
            metrics = evaluate(dest, src, n_points=budget.eval_points, tau=budget.tau, seed=0)
            row["evaluate_s"] = time.perf_counter() - t1
            row.update({k: v for k, v in metrics.items() if k != "convention"})
        except RuntimeError as exc:  # an empty reconstruction is a result, not a crash
            row["error"] = str(exc)
            row["reconstruct_s"] = time.perf_counter() - t0
        rows.setdefault(s.label, {})[name] = row
    bar.close()
    return rows


def compare(data: Path, setups: str, budget_name: str, out: Path, eval_dir: Path | None = None,
            overwrite: bool = False, command: str = "") -> dict:
    """The whole comparison; returns the report dict (also written to out/report.json)."""
    from focusing.core.train.data import mesh_files
    from focusing.eval import report as report_mod

    t_start = time.perf_counter()
    budget = load_budget(budget_name)
    specs = parse_specs(setups, budget.overrides)
    if not Path(data).is_dir():
        raise CompareError(f"--data {data} is not a folder")
    out = Path(out)
    prepare_out(out, specs, overwrite)
    train_dir, train_files = _select_meshes(Path(data), budget.meshes, out / "data")
    meshes = {f.stem: ("train", f) for f in train_files}
    if eval_dir is not None:
        for f in mesh_files(Path(eval_dir)):
            key = f.stem if f.stem not in meshes else f"eval-{f.stem}"
            meshes[key] = ("eval", f)
    length = f"{budget.steps} steps" + (f" or {budget.minutes:g} min" if budget.minutes else "")
    log(f"focusing compare: {len(specs)} setups ({', '.join(s.label for s in specs)}), "
        f"budget {budget.name} ({length}), {len(train_files)} training meshes"
        + (f", {sum(1 for v in meshes.values() if v[0] == 'eval')} held-out" if eval_dir else ""))
    trained = train_setups(specs, budget, train_dir, out)
    t_train = time.perf_counter() - t_start
    rows = evaluate_setups(specs, meshes, out, budget)
    log("writing the report (plots, normal renders)")
    rep = report_mod.build_report(specs, budget, trained, rows, meshes, out, command=command,
                                  timings={"train_s": t_train})
    rep["timings"]["total_s"] = time.perf_counter() - t_start
    report_mod.write_report(rep, out)
    log(f"wrote {out / 'report.md'} and {out / 'report.json'} "
        f"({rep['timings']['total_s']:.0f} s in all)")
    return rep


def _child_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--child":
        print("usage: python -m focusing.eval.compare --child JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    run_child_job(job)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
