"""`focusing compare`: train several setups under one budget, each in its own process and at
each of K seeds, then reconstruct and evaluate every mesh and write a report (focusing.eval.report).

Fairness: every setup gets the budget's `[config]` overrides (same model sizes, resolutions,
steps, seed), so the data order and the camera seeds are equal (the trainer draws them from
`train.seed` and the step only). Run-to-run noise is measured, not hoped away: `--seeds K`
trains every setup K times (plan.py says which seeds and folders) and the report gives each
figure as mean and spread over the seeds. A budget's `minutes` stops each setup after that
much optimisation (train.minutes), the shared warm-up included.

Resolution: a budget's `eval_resolution` reconstructs every model at that output resolution for
its quality figures (eval_output). Under a memory cap (`--memory-cap GB` or the budget's
`memory_cap_gb`) each setup first gets the highest output resolution whose probed training peak
fits under the cap (memory_cap.py), then trains there for the budget's `minutes`.

Interruptions: a comparison of 3 seeds at output 256 runs for hours. `--resume` goes on with
one that stopped (killed, out of time, a failed child): it must be the same comparison (same
data, setups, budget file contents, seeds and cap: plan.json), it keeps the probes
(memory-cap.json) and every training that finished (runner.finished_result), trains the rest
from their start (a setup forked from a warm-up that trains again trains again too), then
reconstructs, evaluates and reports everything anew.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from focusing.core.io import write_text_atomic
from focusing.eval.compare.budget import Budget, load_budget
from focusing.eval.compare.memory_cap import (
    cap_settings, check_specs, memory_cap_search, with_resolution,
)
from focusing.eval.compare.plan import TrainJob, fork_from_warmup, plan_jobs
from focusing.eval.compare.runner import (
    ChildResult, finished_result, launch_child, result_file, save_result,
)
from focusing.eval.compare.spec import CompareError, parse_specs


def log(msg: str) -> None:
    """Progress line on stderr (stdout stays clean for --json)."""
    print(msg, file=sys.stderr, flush=True)


def _select_meshes(folder: Path, limit: int, into: Path) -> tuple[Path, list[Path]]:
    """(training folder, mesh files): the folder itself, or a folder of links to the first N."""
    from focusing.core.data.dataset import mesh_files

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


PLAN_FILE = "plan.json"


def check_resume(out: Path, plan: dict) -> None:
    """CompareError unless `out` holds a comparison of exactly `plan` (its plan.json) to resume."""
    try:
        earlier = json.loads((out / PLAN_FILE).read_text())
    except FileNotFoundError:
        raise CompareError(f"--resume: {out} holds no comparison to resume (no {PLAN_FILE}); "
                           f"run without --resume") from None
    except ValueError as exc:
        raise CompareError(f"--resume: {out / PLAN_FILE} is unreadable ({exc})") from None
    changed = sorted(k for k in set(plan) | set(earlier) if plan.get(k) != earlier.get(k))
    if changed:
        raise CompareError(f"--resume: the comparison in {out} was run with other "
                           f"{', '.join(changed)}; give the same options, or --overwrite to "
                           f"start it again")


def prepare_out(out: Path, jobs: list[TrainJob], overwrite: bool, resume: bool = False) -> None:
    """Make the output folder; refuse to mix with an earlier comparison unless overwrite.
    resume (checked by check_resume): keep the runs, drop the reconstructions and plots."""
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        for sub in ("recon", "plots"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
        for sub in ("runs", "recon", "plots", "jobs"):
            (out / sub).mkdir(exist_ok=True)
        return
    runs = out / "runs"
    # this plan's folders, the same runs in the other seed layout, and any earlier seed folder
    candidates = ({j.run_dir for j in jobs} | {runs / j.run_dir.name for j in jobs}
                  | set(runs.glob("seed-*")))
    stale = sorted(p for p in candidates if p.exists())
    if stale and not overwrite:
        names = ", ".join(str(p.relative_to(runs)) for p in stale)
        raise CompareError(f"{out} already holds runs of {names}; pass --overwrite or choose "
                           f"another --out")
    for sub in ("runs", "recon", "plots", "jobs", "data"):
        if overwrite and (out / sub).exists():
            shutil.rmtree(out / sub)
    for sub in ("runs", "recon", "plots", "jobs"):
        (out / sub).mkdir(exist_ok=True)


@dataclass
class TrainedRun:
    """One setup's training at one seed: the job that ran and how its process ended."""

    job: TrainJob
    result: ChildResult


@dataclass
class Trained:
    """Every training of a comparison: per setup label its runs in seed order, and per seed
    its shared warm-up (empty when the setups each trained their own)."""

    runs: dict[str, list[TrainedRun]] = field(default_factory=dict)
    warmups: dict[int, ChildResult] = field(default_factory=dict)
    kept: list[Path] = field(default_factory=list)  # run folders kept by --resume


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _launch(job: TrainJob, child: dict) -> ChildResult:
    """Train one job in its own process from its start; record it for --resume if it ends."""
    result_file(job.job_file).unlink(missing_ok=True)
    res = launch_child(child, job.job_file)
    if res.history is not None:
        save_result(child, job.job_file, res)
    return res


def _restart(job: TrainJob) -> None:
    """Empty the folder of a run that an interruption left unfinished (--resume)."""
    if job.run_dir.exists():
        shutil.rmtree(job.run_dir)
    job.run_dir.mkdir(parents=True)


def _train_warmup(job: TrainJob, budget: Budget, data: Path, n_seeds: int,
                  resume: bool) -> tuple[ChildResult, bool]:
    """(the seed's shared warm-up, whether it was kept from an earlier run under --resume)."""
    seed = f", seed {job.seed}" if n_seeds > 1 else ""
    child = job.child_job(budget, data)
    kept = finished_result(child, job.job_file) if resume else None
    if kept is not None:
        log(f"[warm-up{seed}] kept from the interrupted comparison ({job.run_dir})")
        return kept, True
    if resume:
        _restart(job)
    log(f"[warm-up{seed}] training the render-free warm-up shared by every setup "
        f"({job.stop_at} steps, own process)")
    warm = _launch(job, child)
    if warm.history is None:
        raise CompareError(f"training the shared warm-up{seed} failed: {warm.error} "
                           f"(its output is above)")
    spent = sum(x["seconds"] for x in warm.history["steps"])
    short = minutes_after_warmup(spent, budget.minutes)
    if short:
        log(f"    warning: {short}")
    return warm, False


def train_jobs(jobs: list[TrainJob], budget: Budget, data: Path, resume: bool = False
               ) -> Trained:
    """Run every job of plan_jobs in order, each in its own process; raises on a failure.

    A setup forked from its seed's warm-up gets the warm-up's steps put before its own
    (merge_warmup_history), so every history runs from step 1. resume: a job that finished in
    an earlier run of this comparison is kept (unless its warm-up trained again), the others
    train from their start (trained.kept lists the kept run folders)."""
    trained = Trained()
    retrained_warmups: set[Path] = set()
    own = [j for j in jobs if not j.is_warmup]
    n_seeds = sum(1 for j in own if j.spec is own[0].spec)
    for job in jobs:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        job.job_file.parent.mkdir(parents=True, exist_ok=True)
        if job.is_warmup:
            trained.warmups[job.seed], kept = _train_warmup(job, budget, data, n_seeds, resume)
            if kept:
                trained.kept.append(job.run_dir)
            else:
                retrained_warmups.add(job.run_dir)
            continue
        fork = job.fork_from is not None
        warm = trained.warmups[job.warmup_seed] if fork else None
        extra = own_time(warm.history, budget.own_minutes) if fork else []
        what = (f"steps {warm.history['steps'][-1]['step'] + 1} to {budget.steps}"
                + (f" or {budget.own_minutes:g} own min" if extra else "")
                + ", from the shared warm-up" if fork else f"{budget.steps} steps")
        seed = f", seed {job.seed}" if n_seeds > 1 else ""
        child = job.child_job(budget, data, extra)
        res = (finished_result(child, job.job_file)
               if resume and job.fork_from not in retrained_warmups else None)
        if res is not None:
            log(f"[{own.index(job) + 1}/{len(own)}] {job.spec.label}{seed}: kept from the "
                f"interrupted comparison ({job.run_dir})")
            trained.kept.append(job.run_dir)
        else:
            log(f"[{own.index(job) + 1}/{len(own)}] training {job.spec.label} ({what}{seed}, "
                f"own process)")
            if resume:
                _restart(job)
            if fork:
                fork_from_warmup(job.fork_from, job.run_dir)
            res = _launch(job, child)
        if res.history is None:
            raise CompareError(f"training {job.spec.label}{seed} failed: {res.error} "
                               f"(its output is above)")
        if fork:
            res.history = merge_warmup_history(warm.history, res.history)
        steps = res.history["steps"]
        log(f"    {job.spec.label}: {len(steps)} steps, "
            f"{_median([x['seconds'] for x in steps]):.2f} s/step (median), training peak "
            f"{res.history['train_peak_mb']:.0f} MiB above baseline, child max RSS "
            f"{res.max_rss_mb:.0f} MiB, {res.wall_s:.0f} s in all")
        trained.runs.setdefault(job.spec.label, []).append(TrainedRun(job, res))
    return trained


def own_time(warm_history: dict, own_minutes: float) -> list[str]:
    """The override that gives a forked setup `own_minutes` (> 0) of optimisation after the
    shared warm-up: train.minutes counts the warm-up's seconds too, so they are added; [] when
    own_minutes is 0. Equal own minutes are equal wall time where the setups differ."""
    if own_minutes <= 0:
        return []
    spent = sum(x["seconds"] for x in warm_history["steps"])
    return [f"train.minutes={spent / 60.0 + own_minutes!r}"]


def minutes_after_warmup(warm_seconds: float, minutes: float) -> str | None:
    """Why a budget of `minutes` (> 0) per setup leaves its setups too little of their own
    training after a shared warm-up that took `warm_seconds` of optimisation (the engine counts
    both against train.minutes); None when a minute or more is left, or without a time budget.

    Raises CompareError when nothing is left: every setup would be the warm-up's model."""
    if minutes <= 0:
        return None
    left = 60.0 * minutes - warm_seconds
    if left <= 0:
        raise CompareError(f"the shared warm-up took {warm_seconds / 60:.1f} optimisation "
                           f"minutes, all of the budget's {minutes:g}: the setups would train "
                           f"no steps of their own. Raise the budget's minutes or lower "
                           f"loss.tsdf_steps")
    if left < 60.0:
        return (f"the shared warm-up took {warm_seconds / 60:.1f} of the budget's {minutes:g} "
                f"optimisation minutes: each setup has {left / 60:.1f} min of its own steps, so "
                f"the comparison says little about them (this machine is slower than the one "
                f"the budget was sized on?)")
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


def eval_output(trained_output: int, eval_resolution: int) -> int:
    """The output resolution a model trained at `trained_output` is reconstructed at for its
    quality figures: the budget's eval_resolution (0: the trained one), or the trained one where
    that is finer (a model decodes at its own grid or a power-of-two multiple of it)."""
    return max(int(trained_output), int(eval_resolution or 0))


def check_eval_resolution(specs, eval_resolution: int, coarser_ok: bool = False) -> None:
    """CompareError unless every setup can reconstruct at eval_resolution (0: nothing to check):
    its trained output or a power-of-two multiple of it (reconstruct.output_to_latent_resolution).
    coarser_ok (a memory cap, where setups train at different resolutions): a setup trained
    finer than eval_resolution is evaluated at its own (eval_output)."""
    from focusing.core.config import ConfigError, Setup
    from focusing.core.vae.reconstruct import output_to_latent_resolution

    for s in specs:
        setup = Setup.from_dict(s.config)
        trained = 4 * setup.model.latent_resolution
        try:
            output_to_latent_resolution(
                setup, eval_output(trained, eval_resolution) if coarser_ok else
                (eval_resolution or None))
        except ConfigError as exc:
            raise CompareError(f"the budget's eval_resolution {eval_resolution} for setup "
                               f"{s.label!r}: {exc}") from None


def comparison_plan(data: Path, eval_dir: Path | None, setups: str, budget: Budget, seeds: int,
                    settings) -> dict:
    """What makes two runs of `compare` the same comparison (plan.json; --resume checks it):
    the data folders, the setup specs, the budget file's contents, the seeds and the cap."""
    import hashlib

    return {"data": str(Path(data).resolve()),
            "eval": str(Path(eval_dir).resolve()) if eval_dir is not None else None,
            "setups": setups,
            "budget": hashlib.sha256(Path(budget.source).read_bytes()).hexdigest(),
            "seeds": int(seeds), "memory_cap_gb": settings.cap_gb if settings else None}


def memory_cap_plan(budget: Budget, specs, memory_cap_gb: float | None = None):
    """The equal-memory search's settings (None: no cap), checked before anything runs: the cap
    (memory_cap_gb, else the budget's), the budget's `minutes` (equal wall time for setups at
    different resolutions), every candidate resolving, and eval_resolution reachable from it."""
    cap_gb = budget.memory_cap_gb if memory_cap_gb is None else float(memory_cap_gb)
    if not cap_gb:
        check_eval_resolution(specs, budget.eval_resolution)
        return None
    check_specs(specs)
    settings = cap_settings(budget, cap_gb, specs[0].config["model"]["latent_resolution"])
    if budget.minutes <= 0:
        raise CompareError(
            f"a memory cap trains each setup at its own resolution for equal wall time, "
            f"which the budget's `minutes` gives (optimisation minutes per setup, warm-up "
            f"included); budget {budget.name} gives "
            + ("own_minutes, which count from a warm-up that setups at different "
               "resolutions cannot share" if budget.own_minutes else "steps alone"))
    # every candidate resolves (a bad [memory_cap.config] key fails now, not after probes)
    check_eval_resolution([with_resolution(s, budget, {"latent": o // 4, "alpha": None},
                                           settings)
                           for s in specs for o in settings.outputs], budget.eval_resolution,
                          coarser_ok=True)
    return settings


def evaluate_runs(runs: dict[str, list[TrainedRun]], meshes: dict[str, tuple[str, Path]],
                  budget: Budget) -> dict[str, list[dict]]:
    """Reconstruct and evaluate every mesh with every run: label -> [mesh -> row per seed].
    Each row records the output resolution it was reconstructed at (eval_output)."""
    from tqdm.auto import tqdm

    from focusing.core.metrics import evaluate
    from focusing.core.vae.reconstruct import reconstruct_file

    rows: dict[str, list[dict]] = {label: [{} for _ in rs] for label, rs in runs.items()}
    work = [(label, i, r.job, name) for label, rs in runs.items() for i, r in enumerate(rs)
            for name in meshes]
    bar = tqdm(work, desc="reconstruct + evaluate", unit="mesh", file=sys.stderr)
    for label, i, job, name in bar:
        bar.set_postfix_str(f"{label} {name}" + (f" seed {job.seed}" if len(runs[label]) > 1
                                                 else ""))
        split, src = meshes[name]
        dest = job.recon_dir / f"{name}.ply"
        dest.parent.mkdir(parents=True, exist_ok=True)
        output = eval_output(4 * job.spec.config["model"]["latent_resolution"],
                             budget.eval_resolution)
        row = {"split": split, "source": str(src), "reconstruction": None,
               "output_resolution": output}
        t0 = time.perf_counter()
        try:
            info = reconstruct_file(job.run_dir, src, dest,
                                    resolution=output if budget.eval_resolution else None)
            row["reconstruct_s"] = time.perf_counter() - t0
            row.update(reconstruction=str(dest), faces=info["faces"], vertices=info["vertices"])
            t1 = time.perf_counter()
            metrics = evaluate(dest, src, n_points=budget.eval_points, tau=budget.tau, seed=0)
            row["evaluate_s"] = time.perf_counter() - t1
            row.update({k: v for k, v in metrics.items() if k != "convention"})
        except RuntimeError as exc:  # an empty reconstruction is a result, not a crash
            row["error"] = str(exc)
            row["reconstruct_s"] = time.perf_counter() - t0
        rows[label][i][name] = row
    bar.close()
    return rows


def compare(data: Path, setups: str, budget_name: str, out: Path, eval_dir: Path | None = None,
            overwrite: bool = False, command: str = "", seeds: int = 1,
            memory_cap_gb: float | None = None, resume: bool = False) -> dict:
    """The whole comparison at `seeds` seeds; returns the report dict (also out/report.json).
    memory_cap_gb (or the budget's memory_cap_gb): the equal-memory mode (memory_cap.py).
    resume: go on with the interrupted comparison of the same plan in `out` (module doc)."""
    from focusing.core.data.dataset import mesh_files
    from focusing.core.geometry.meshio import mesh_names
    from focusing.eval import report as report_mod

    t_start = time.perf_counter()
    budget = load_budget(budget_name)
    specs = parse_specs(setups, budget.overrides)
    if not Path(data).is_dir():
        raise CompareError(f"--data {data} is not a folder")
    if resume and overwrite:
        raise CompareError("--resume keeps an interrupted comparison and --overwrite replaces "
                           "it: give one of them")
    settings = memory_cap_plan(budget, specs, memory_cap_gb)
    out = Path(out)
    jobs = plan_jobs(specs, budget, out, seeds)
    plan = comparison_plan(data, eval_dir, setups, budget, seeds, settings)
    if resume:
        check_resume(out, plan)
    prepare_out(out, jobs, overwrite, resume)
    write_text_atomic(out / PLAN_FILE, json.dumps(plan, indent=2))
    train_dir, train_files = _select_meshes(Path(data), budget.meshes, out / "data")
    cap = None
    if settings is not None:
        if resume and (out / "memory-cap.json").exists():
            cap = json.loads((out / "memory-cap.json").read_text())
            log(f"memory cap {settings.cap_gb:g} GB: kept the probes of the interrupted "
                f"comparison ({out / 'memory-cap.json'})")
        else:
            cap = memory_cap_search(specs, budget, settings, train_files, out / "memory-cap",
                                    log)
            report_mod.write_json(out / "memory-cap.json", cap)
        fitting = [s for s in specs if cap["setups"][s.label]["chosen"] is not None]
        if not fitting:
            raise CompareError(f"no setup fits under the {settings.cap_gb:g} GB cap: "
                               + "; ".join(f"{lb}: {r['verdict']}"
                                           for lb, r in cap["setups"].items())
                               + f" (probes in {out / 'memory-cap.json'})")
        specs = [with_resolution(s, budget, cap["setups"][s.label]["chosen"], settings)
                 for s in fitting]
        jobs = plan_jobs(specs, budget, out, seeds)
    # named as the runs' records and quality.jsonl name them: stems, file names where they clash
    meshes = {name: ("train", f) for name, f in zip(mesh_names(train_files), train_files)}
    if eval_dir is not None:
        held_out = mesh_files(Path(eval_dir))
        for name, f in zip(mesh_names(held_out), held_out):
            meshes[name if name not in meshes else f"eval-{name}"] = ("eval", f)
    length = (f"{budget.own_minutes:g} own min after the shared warm-up" if budget.own_minutes
              else f"{budget.steps} steps" + (f" or {budget.minutes:g} min"
                                              if budget.minutes else ""))
    log(f"focusing compare: {len(specs)} setups ({', '.join(s.label for s in specs)}), "
        f"budget {budget.name} ({length}), {seeds} seed{'s' if seeds > 1 else ''}, "
        f"{len(train_files)} training meshes"
        + (f", {sum(1 for v in meshes.values() if v[0] == 'eval')} held-out" if eval_dir else ""))
    trained = train_jobs(jobs, budget, train_dir, resume)
    t_train = time.perf_counter() - t_start
    rows = evaluate_runs(trained.runs, meshes, budget)
    log("writing the report (plots, normal renders)")
    rep = report_mod.build_report(specs, budget, trained, rows, meshes, out, command=command,
                                  timings={"train_s": t_train}, memory_cap=cap)
    rep["timings"]["total_s"] = time.perf_counter() - t_start
    rep["resumed_runs"] = [str(p.relative_to(out)) for p in trained.kept]
    report_mod.write_report(rep, out)
    log(f"wrote {out / 'report.md'} and {out / 'report.json'} "
        f"({rep['timings']['total_s']:.0f} s in all)")
    return rep
