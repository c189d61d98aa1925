"""The figures of a comparison: what one run measured (summarize_run), what a setup measured
over its seeds (summarize_setup, every figure as mean and spread), and each setup against the
reference (comparison), with the spread rule's verdict on every headline figure.

Cost is given per training phase. The render-free warm-up (steps 1..loss.tsdf_steps) is often
shared by every setup and dominates a mean over all steps, hiding what each setup's own steps
cost; so seconds per step, peak memory, latents decoded and cubes meshed are given for each
setup's own steps (after the warm-up), and for the warm-up apart.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np

from focusing.eval.report.spread import SPREAD_RULE, aggregate, verdict

QUALITY_KEYS = ("chamfer_l2", "chamfer_l1", "fscore", "precision", "recall",
                "normal_consistency", "floor_chamfer_l2", "floor_fscore")
COUNT_KEYS = ("latent_all", "latent_kept", "output_all", "output_kept", "triangles")
# the figures of one training phase (phase_cost); the last five are means of a per-step count
PHASE_KEYS = ("steps", "seconds_per_step", "seconds", "peak_memory_mb",
              "latents_decoded_per_step", "latents_active_per_step", "cubes_decoded_per_step",
              "cubes_meshed_per_step", "triangles_per_step")
# phase figure -> the per-step count it is the mean of
PHASE_COUNTS = {"latents_decoded_per_step": "latent_kept", "latents_active_per_step": "latent_all",
                "cubes_decoded_per_step": "output_all", "cubes_meshed_per_step": "output_kept",
                "triangles_per_step": "triangles"}
# headline figures: (group, key, name in the report, higher is better)
HEADLINE_COST = (("peak_memory_mb", "peak memory of its own steps", False),
                 ("seconds_per_step", "time per own step", False))
HEADLINE_QUALITY = (("fscore", "F-score", True),
                    ("fscore_all", "F-score, a lost mesh counted as 0", True),
                    ("chamfer_l2", "Chamfer L2", False),
                    ("normal_consistency", "normal consistency", True))
FIRST_REACHED_LEVELS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(sum(vals) / len(vals)) if vals else None


def phase_cost(steps: list[dict]) -> dict | None:
    """Cost of a run of steps: count, median s/step, s in all, highest per-step peak (MiB),
    mean latents decoded / active, output cubes decoded / meshed, triangles per step."""
    if not steps:
        return None
    out = {"steps": len(steps), "seconds_per_step": statistics.median(s["seconds"] for s in steps),
           "seconds": sum(s["seconds"] for s in steps),
           "peak_memory_mb": max(s["peak_memory_mb"] for s in steps)}
    out.update({k: _mean([s["counts"].get(c) for s in steps]) for k, c in PHASE_COUNTS.items()})
    return out


def split_phases(steps: list[dict], warmup_steps: int) -> tuple[list[dict], list[dict]]:
    """(warm-up steps: step <= warmup_steps, own steps: the rest) of one run's history."""
    return ([s for s in steps if s["step"] <= warmup_steps],
            [s for s in steps if s["step"] > warmup_steps])


def mesh_quality(rows: dict) -> dict:
    """Per split: meshes, meshes reconstructed, each QUALITY_KEYS mean over the latter, and
    fscore_all: F-score over every mesh of the split, a mesh with no surface counted as 0.

    The means over reconstructed meshes alone rise when a hard mesh is lost; fscore_all is
    the figure that cannot."""
    quality = {}
    for split in sorted({r["split"] for r in rows.values()}):
        sel = [r for r in rows.values() if r["split"] == split]
        ok = [r for r in sel if r.get("reconstruction") and "chamfer_l2" in r]
        quality[split] = {"meshes": len(sel), "reconstructed": len(ok),
                          **{q: _mean([r[q] for r in ok]) for q in QUALITY_KEYS},
                          "fscore_all": (sum(r["fscore"] for r in ok) / len(sel)
                                         if sel and all(r.get("fscore") is not None for r in ok)
                                         else None)}
    return quality


def summarize_run(history: dict, child_max_rss_mb: float, child_wall_s: float, rows: dict,
                  warmup_steps: int = 0) -> dict:
    """One run's figures: phase costs, voxel counts, memory, time, final losses, quality."""
    steps = history["steps"]
    secs = [s["seconds"] for s in steps]
    k = max(1, math.ceil(len(steps) / 10))
    terms = sorted({t for s in steps for t in s["terms"]})
    shared = history.get("shared_warmup")
    # a forked run's own steps start at the fork; a render-free arm's loss.tsdf_steps lies
    # beyond its end, so its own steps would otherwise count as warm-up
    warm, own = split_phases(steps, shared["steps"] if shared else warmup_steps)
    return {
        "steps": len(steps),
        "own_steps": phase_cost(own),
        "warmup": phase_cost(warm),
        "voxels_mean": {c: _mean([s["counts"].get(c) for s in steps]) for c in COUNT_KEYS},
        # the child's whole training: its own steps after a fork, and its evaluations
        "process_peak_memory_mb": history["train_peak_mb"],
        "step_peak_memory_mb": max(s["peak_memory_mb"] for s in steps),
        "first_step_peak_memory_mb": steps[0]["peak_memory_mb"],
        "rss_before_training_mb": history["rss_before_fit_mb"],
        "child_max_rss_mb": child_max_rss_mb,
        "time_per_step_s": statistics.median(secs),
        "time_per_step_mean_s": statistics.fmean(secs),
        "train_time_s": sum(secs),
        "prep_time_s": history["prep_s"],
        "child_wall_s": child_wall_s,
        # the render-free warm-up compare trained once for every setup (None: each its own)
        "shared_warmup": history.get("shared_warmup"),
        "torch_threads": history.get("torch_threads"),
        "device": history.get("device"),
        "final_losses": {t: _mean([s["terms"].get(t) for s in steps[-k:]]) for t in terms},
        "final_losses_over_steps": k,
        # steps whose total loss was NaN/inf (left out of the means), with their kept voxels
        "nonfinite_loss_steps": [
            {"step": s["step"], "latent_kept": s["counts"].get("latent_kept"),
             "output_kept": s["counts"].get("output_kept")}
            for s in steps if not math.isfinite(s["terms"].get("total", math.nan))],
        "quality": mesh_quality(rows),
        "meshes": rows,
        "history": [{"step": s["step"], "seconds": s["seconds"],
                     "peak_memory_mb": s["peak_memory_mb"], **s["counts"],
                     **{f"loss_{t}": v for t, v in s["terms"].items()}} for s in steps],
    }


def _over_runs(dicts: list[dict | None], keys) -> dict | None:
    """{key: aggregate of d[key] over the dicts}, None when every dict is None."""
    present = [d for d in dicts if d is not None]
    if not present:
        return None
    return {k: aggregate([d.get(k) for d in present]) for k in keys}


def summarize_setup(runs: list[dict]) -> dict:
    """A setup's figures over its runs (one per seed), each as {mean, std, min, max, n}."""
    splits = sorted({sp for r in runs for sp in r["quality"]})
    names = list(dict.fromkeys(n for r in runs for n in r["meshes"]))
    meshes = {}
    for n in names:
        rows = [r["meshes"].get(n, {}) for r in runs]
        ok = [row for row in rows if row.get("reconstruction") and "chamfer_l2" in row]
        meshes[n] = {"split": next(row["split"] for row in rows if row),
                     "reconstructed": len(ok),
                     **{q: aggregate([row[q] for row in ok]) for q in QUALITY_KEYS}}
    quality = {}
    for sp in splits:
        qs = [r["quality"][sp] for r in runs if sp in r["quality"]]
        quality[sp] = {"meshes": qs[0]["meshes"],
                       "reconstructed": aggregate([q["reconstructed"] for q in qs]),
                       **{q: aggregate([x.get(q) for x in qs])
                          for q in QUALITY_KEYS + ("fscore_all",)}}
    terms = sorted({t for r in runs for t in r["final_losses"]})
    levels = list(runs[0].get("first_reached_s", {}))
    return {
        "seeds": [r.get("seed") for r in runs],
        "own_steps": _over_runs([r["own_steps"] for r in runs], PHASE_KEYS),
        "warmup": _over_runs([r["warmup"] for r in runs], PHASE_KEYS),
        "warmup_shared": all(r["shared_warmup"] is not None for r in runs),
        "child_max_rss_mb": aggregate([r["child_max_rss_mb"] for r in runs]),
        "train_time_s": aggregate([r["train_time_s"] for r in runs]),
        "final_losses": {t: aggregate([r["final_losses"].get(t) for r in runs]) for t in terms},
        "first_reached_s": {lv: aggregate([r["first_reached_s"][lv] for r in runs])
                            for lv in levels},
        "quality": quality,
        "meshes": meshes,
        "runs": runs,
    }


def _ratio(a: dict, b: dict) -> float | None:
    return None if not a["n"] or not b["n"] or not b["mean"] else a["mean"] / b["mean"]


def verdicts(setup: dict, ref: dict, label: str, reference: str) -> list[dict]:
    """The spread rule on every headline figure of `setup` against `ref`: own-step cost, then
    quality on each split both have; each verdict tagged with its group and report name."""
    none = aggregate([])
    groups = [("own_steps", setup["own_steps"] or {}, ref["own_steps"] or {}, HEADLINE_COST)]
    groups += [(sp, setup["quality"][sp], ref["quality"][sp], HEADLINE_QUALITY)
               for sp in ("train", "eval") if sp in setup["quality"] and sp in ref["quality"]]
    return [dict(verdict(key, reference, r.get(key, none), label, s.get(key, none), hib),
                 group=group, name=name)
            for group, s, r, figures in groups for key, name, hib in figures]


def comparison(setups: dict, reference: str) -> dict:
    """Each setup against the reference (the first): ratios and differences of the means over
    seeds, and the spread rule's verdict on every headline figure (own-step cost, quality)."""
    ref = setups[reference]
    out = {}
    for label, s in setups.items():
        if label == reference:
            continue
        vs = verdicts(s, ref, label, reference)
        by = {(v["group"], v["figure"]): v for v in vs}
        none = {"ratio": None, "difference": None}
        own, rown = s["own_steps"] or {}, ref["own_steps"] or {}
        out[label] = {
            "memory_ratio": by[("own_steps", "peak_memory_mb")]["ratio"],
            "time_per_step_ratio": by[("own_steps", "seconds_per_step")]["ratio"],
            "latents_decoded_ratio": (_ratio(own["latents_decoded_per_step"],
                                             rown["latents_decoded_per_step"])
                                      if own and rown else None),
            "chamfer_l2_ratio": by.get(("train", "chamfer_l2"), none)["ratio"],
            "fscore_difference": by.get(("train", "fscore"), none)["difference"],
            "normal_consistency_difference":
                by.get(("train", "normal_consistency"), none)["difference"],
            "verdicts": vs,
        }
    seeds = min(len(s["seeds"]) for s in setups.values())
    return {"reference": reference, "seeds": seeds, "rule": SPREAD_RULE,
            "against_reference": out}


def quality_curve(run_dir: Path) -> list[dict]:
    """Mean F-score of the training meshes per evaluation of a run (RUN/quality.jsonl, written
    every train.eval_every steps): [{"step", "train_seconds", "fscore"}], in step order."""
    path = Path(run_dir) / "quality.jsonl"
    if not path.exists():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("split") != "train":
            continue
        e = by_step.setdefault(row["step"], {"step": row["step"],
                                             "train_seconds": row["train_seconds"], "f": []})
        e["f"].append(row["fscore"])
    return [{"step": e["step"], "train_seconds": e["train_seconds"],
             "fscore": float(np.mean(e["f"]))} for _, e in sorted(by_step.items())]


def first_reached(curve: list[dict], levels=FIRST_REACHED_LEVELS) -> dict:
    """{F level: training seconds of the first evaluation at or above it, or None}."""
    out = {}
    for level in levels:
        hit = next((c for c in curve if c["fscore"] >= level), None)
        out[f"{level:g}"] = None if hit is None else hit["train_seconds"]
    return out


def summarize_warmups(warmups: dict) -> dict | None:
    """The shared warm-up's cost over seeds ({seed: ChildResult}); None when none was shared."""
    if not warmups:
        return None
    out = _over_runs([phase_cost(w.history["steps"]) for w in warmups.values()], PHASE_KEYS)
    out["child_max_rss_mb"] = aggregate([w.max_rss_mb for w in warmups.values()])
    out["seeds"] = list(warmups)
    return out
