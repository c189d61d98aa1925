"""The report of `focusing compare`: report.json (every figure; each figure measured per seed
as {mean, std, min, max, n}) and report.md (headline under the spread rule, tables and the PNG
plots it embeds: loss curves, voxel counts, own-step cost bars, normal renders per mesh).

Modules: figures.py (what the runs measured, per run and over seeds), spread.py (aggregation
and the spread rule), plots.py, markdown.py, files.py (atomic JSON/PNG, machine information).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from focusing.core.io import write_bytes_atomic
from focusing.eval.report.figures import (
    COUNT_KEYS, PHASE_KEYS, QUALITY_KEYS, comparison, first_reached, phase_cost, quality_curve,
    split_phases, summarize_run, summarize_setup, summarize_warmups,
)
from focusing.eval.report.files import _clean, machine_info, save_figure, write_json
from focusing.eval.report.markdown import _f, _fs, _md_table, headline, render_markdown
from focusing.eval.report.plots import LOSS_PLOT_KEYS, _plt, draw_plots, normal_image
from focusing.eval.report.spread import SPREAD_RULE, aggregate, exceeds_spread, verdict

__all__ = [
    "COUNT_KEYS", "LOSS_PLOT_KEYS", "NOTES", "PHASE_KEYS", "QUALITY_KEYS", "SPREAD_RULE",
    "_clean", "_f", "_fs", "_md_table", "_plt", "aggregate", "build_report", "comparison",
    "exceeds_spread", "first_reached", "headline", "machine_info", "normal_image", "phase_cost",
    "quality_curve", "render_markdown", "save_figure", "split_phases", "summarize_run",
    "summarize_setup", "summarize_warmups", "verdict", "write_json", "write_report",
]


def _setup_runs(spec, runs: list, rows: list[dict]) -> list[dict]:
    """summarize_run of each seed's run of one setup, with its seed, folder and F curve."""
    out = []
    for tr, seed_rows in zip(runs, rows):
        res = tr.result
        run = summarize_run(res.history, res.max_rss_mb, res.wall_s, seed_rows,
                            spec.config["loss"]["tsdf_steps"])
        run.update(seed=tr.job.seed, run_dir=str(tr.job.run_dir),
                   quality_curve=quality_curve(tr.job.run_dir))
        run["first_reached_s"] = first_reached(run["quality_curve"])
        out.append(run)
    return out


def build_report(specs, budget, trained, rows: dict, meshes: dict, out: Path,
                 command: str = "", timings: dict | None = None,
                 memory_cap: dict | None = None) -> dict:
    """Collect every figure into one dict and draw the plots it references (under out/plots).

    trained: compare's Trained (per label, one TrainedRun per seed; per seed, its shared
    warm-up); rows: label -> [mesh -> evaluation row, one dict per seed]; memory_cap: the
    equal-memory search (compare.memory_cap), kept as report.json's `memory_cap`."""
    setups = {}
    for s in specs:
        entry = summarize_setup(_setup_runs(s, trained.runs[s.label], rows.get(s.label, [])))
        cfg = s.config
        output = 4 * cfg["model"]["latent_resolution"]
        entry.update(base=s.base, overrides=s.overrides,
                     # evaluated: the output grid its quality figures were reconstructed at
                     resolution={"latent": cfg["model"]["latent_resolution"], "output": output,
                                 "evaluated": max(output, budget.eval_resolution)},
                     selectors={"latent": cfg["selectors"]["latent"],
                                "output": cfg["selectors"]["output"]},
                     upsampler=cfg["upsampler"]["name"])
        setups[s.label] = entry
    plots = draw_plots(setups, meshes, budget.render_views, budget.render_size, out)
    cfg0 = specs[0].config
    return {
        "command": command,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "budget": {"name": budget.name, "description": budget.description,
                   "file": str(budget.source), "steps": budget.steps,
                   "overrides": budget.overrides, "eval_points": budget.eval_points,
                   "tau": budget.tau, "eval_resolution": budget.eval_resolution},
        "model": {k: cfg0[k] for k in ("model", "encoder", "decoder", "pointnet")},
        "meshes": {name: {"split": split, "file": str(src)}
                   for name, (split, src) in meshes.items()},
        "setups": setups,
        "shared_warmup": summarize_warmups(trained.warmups),
        "comparison": comparison(setups, specs[0].label),
        "plots": plots,
        "timings": dict(timings or {}),
        "notes": NOTES + (MEMORY_CAP_NOTES if memory_cap else []),
        **({"memory_cap": equal_memory(memory_cap, setups)} if memory_cap else {}),
    }


NOTES = [
    "seeds and spread: with `--seeds K` every setup trains K times (train.seed B..B+K-1); "
    "every figure measured per seed is given as mean, sample standard deviation and min..max "
    "over the seeds (report.json: {mean, std, min, max, n}). Spread rule: " + SPREAD_RULE + ".",
    "own steps: the steps after the warm-up (steps 1..loss.tsdf_steps), where the setups "
    "differ; cost figures (time per step, peak memory, latents decoded, cubes meshed) are "
    "given for them, and for the warm-up apart.",
    "peak memory (own steps): the highest per-step peak of the resident set above the "
    "process's level before its first step (sampled every 2 ms; CUDA max_memory_allocated on a "
    "GPU); child max RSS: the whole process's peak (os.wait4), including Python, torch and the "
    "data.",
    "shared warm-up: when the setups differ only in what the render-free warm-up never reads "
    "(selectors, cameras, renderer), compare trains the warm-up once per seed and every setup "
    "of that seed resumes from it; each setup's history and quality curve include it, its cost "
    "is reported apart.",
    "time per step: median wall time of one optimisation step (forward, backward, update).",
    "final losses: mean over the last 10% of steps. Setups render different views "
    "(near-surface crops vs zoomed orbit views), so their losses are not directly comparable; "
    "the metrics are.",
    "metrics: both meshes in the ground truth's unit box; Chamfer L2 = sum of the two mean "
    "squared nearest-neighbour distances; F-score at tau; floor = ground truth against an "
    "independent resample of itself (the best any reconstruction can score at this sample "
    "count).",
]


MEMORY_CAP_NOTES = [
    "equal memory: each setup trained at the highest candidate output resolution whose "
    "training peak, measured by probe steps in a fresh process (a render-free warm-up step, "
    "then the setup's own steps, then one evaluation as train.eval_every runs them, unless "
    "[memory_cap] probe_evaluates is false; on the probe mesh), fits under the cap; a "
    "far-plane setup that did not fit was probed at smaller alphas and kept the largest that "
    "fits. Nothing was "
    "extrapolated: an output above the first that did not fit was not probed. Every setup then "
    "trained for the budget's minutes, and every model is scored against the same ground truth "
    "(the metrics sample the input meshes, so they do not depend on a model's grid).",
]


def _capped_in_training(run: dict, peak: str) -> float:
    """One run's figure of the kind the cap was put on (compare.memory_cap.PEAKS)."""
    if peak == "step":
        return run["step_peak_memory_mb"]
    if peak == "process":
        return run["child_max_rss_mb"]
    shared = run.get("shared_warmup") or {}
    return max(run["process_peak_memory_mb"], shared.get("train_peak_mb") or 0.0)


def equal_memory(cap: dict, setups: dict) -> dict:
    """The memory-cap search with, per setup trained, its table row: the chosen resolution and
    alpha, the probe's peak, the peak of its training steps, own steps, and quality."""
    out = dict(cap)
    rows = {}
    for label, search in cap["setups"].items():
        chosen, entry = search["chosen"], setups.get(label)
        row = {"verdict": search["verdict"], "fits": chosen is not None,
               "does_not_fit_at": search["does_not_fit_at"]}
        if chosen is not None:
            row.update(output=chosen["output"], alpha=chosen["alpha"],
                       probe_peak_mb=chosen["peak_mb"])
        if entry is not None:
            runs = entry["runs"]
            row.update(
                evaluated_at=entry["resolution"]["evaluated"],
                # the highest per-step peak of each seed's training, its warm-up included, and
                # of each phase apart (a shared warm-up's steps are the same for every setup)
                training_step_peak_mb=aggregate([r["step_peak_memory_mb"] for r in runs]),
                own_step_peak_mb=(entry["own_steps"] or {}).get("peak_memory_mb",
                                                                  aggregate([])),
                warmup_step_peak_mb=(entry["warmup"] or {}).get("peak_memory_mb", aggregate([])),
                steps=aggregate([r["steps"] for r in runs]),
                own_steps=(entry["own_steps"] or {}).get("steps", aggregate([])),
                quality={sp: {k: q[k] for k in ("fscore", "chamfer_l2", "normal_consistency",
                                                "floor_fscore")}
                         for sp, q in entry["quality"].items()})
            # the capped figure as its training measured it (a forked setup: the larger of its
            # own process and the shared warm-up's), against the cap the probe was held to
            row["peak_in_training_mb"] = aggregate([_capped_in_training(r, cap["peak"])
                                                    for r in runs])
            top = row["peak_in_training_mb"]["max"]
            row["training_within_cap"] = None if top is None else top <= cap["cap_gb"] * 1024.0
        rows[label] = row
    out["table"] = rows
    return out


def write_report(rep: dict, out: Path) -> None:
    """Write report.json then report.md (both atomically)."""
    write_json(out / "report.json", rep)
    write_bytes_atomic(out / "report.md", render_markdown(rep).encode(), make_parents=True)
