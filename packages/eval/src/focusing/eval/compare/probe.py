"""Probe steps: a few training steps of one setup at one resolution, in a fresh process, that
measure its peak memory and time per step. `compare --scaling` and `compare --memory-cap` both
measure with these (scaling.py, memory_cap.py), so a probe means the same thing in both.

A probe is a child job of runner.py (`python -m focusing.eval.compare --child`): the peak is the
child's training peak above its level before the first step (`train_peak_mb`, the figure the
report calls training peak), beside the whole process's max RSS (os.wait4). Before a probe, the
points already measured give a log-log prediction; a probe predicted to need more than a
fraction of the free memory, or more than the time limit, is not run (out_of_reach).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from focusing.eval.compare.runner import launch_child

# what every probe job sets: no checkpoints, images or evaluations inside the measured steps
PROBE_OVERRIDES = ("train.checkpoint_every=0", "evaluation.image_every=0")


def mem_available_mb() -> float:
    """MemAvailable of /proc/meminfo in MiB (inf where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.inf


def loglog_fit(x, y) -> dict | None:
    """Least-squares fit y = c * x^k in log-log space: {'exponent': k, 'coefficient': c}."""
    pts = [(a, b) for a, b in zip(x, y) if a and b and a > 0 and b > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log(np.array(pts, dtype=float)).T
    k, logc = np.polyfit(lx, ly, 1)
    return {"exponent": float(k), "coefficient": float(math.exp(logc)), "points": len(pts)}


def predict(fit: dict | None, x: float) -> float | None:
    """c * x^k of a log-log fit (None without a fit)."""
    return None if fit is None else fit["coefficient"] * x ** fit["exponent"]


def guess(points: list[dict], key: str, output: int, default_exponent: float) -> float | None:
    """Predicted value of `key` at `output`: fit of the points so far, else cubic growth from
    one."""
    ok = [p for p in points if p.get(key)]
    fit = loglog_fit([p["output"] for p in ok], [p[key] for p in ok])
    if fit is not None:
        return predict(fit, output)
    if ok:
        return ok[-1][key] * (output / ok[-1]["output"]) ** default_exponent
    return None


def out_of_reach(points: list[dict], output: int, steps: int, timeout_s: float,
                 memory_fraction: float) -> tuple[str, dict]:
    """(why a probe at `output` is not run, or '', and its predictions) from the points measured
    so far: predicted RSS above memory_fraction of the free memory, or time above timeout_s.
    A prediction only ever stops a probe; it never stands in for one."""
    if not points:
        return "", {}
    peak = guess(points, "peak_memory_mb", output, 3.0)
    before = guess(points, "rss_before_training_mb", output, 3.0)
    need_mb = (peak or 0) + (before or 0)
    need_s = ((guess(points, "time_per_step_s", output, 3.0) or 0) * steps
              + (guess(points, "prep_s", output, 3.0) or 0))
    predicted = {"predicted_rss_mb": need_mb, "predicted_s": need_s}
    avail = mem_available_mb()
    if need_mb > memory_fraction * avail:
        return (f"skipped: predicted {need_mb / 1024:.1f} GiB > {memory_fraction:.0%} of the "
                f"{avail / 1024:.1f} GiB free"), predicted
    if need_s > timeout_s:
        return f"skipped: predicted {need_s:.0f} s > the {timeout_s:.0f} s limit", predicted
    return "", predicted


def run_probe(setup: str, overrides: list[str], data: Path, work: Path, name: str,
              threads: int = 0, timeout_s: float | None = None) -> dict:
    """Train `setup` with `overrides` (train.steps among them) on the meshes of `data` in a
    fresh process; its figures, or {'error': why} when it failed or timed out.

    Figures: peak_memory_mb (training peak above the level before the first step),
    step_peak_mb (the highest of one step's own peaks),
    rss_before_training_mb, child_max_rss_mb, time_per_step_s (the fastest step),
    step_seconds and step_peaks_mb (per step), prep_s, wall_s, and the first step's voxel
    counts (COUNT_KEYS); step_counts holds every step's."""
    from focusing.eval.report.figures import COUNT_KEYS

    (work / "runs").mkdir(parents=True, exist_ok=True)
    (work / "jobs").mkdir(parents=True, exist_ok=True)
    job = {"mode": "train", "setup": setup, "overrides": list(overrides) + list(PROBE_OVERRIDES),
           "data": str(data), "run_dir": str(work / "runs" / name),
           "history": str(work / "runs" / f"{name}.history.json"), "progress": True,
           "threads": threads}
    res = launch_child(job, work / "jobs" / f"{name}.json", timeout_s=timeout_s)
    if res.history is None:
        return {"error": res.error}
    h = res.history
    first = h["steps"][0]
    return dict(
        peak_memory_mb=h["train_peak_mb"], rss_before_training_mb=h["rss_before_fit_mb"],
        child_max_rss_mb=res.max_rss_mb,
        time_per_step_s=min(x["seconds"] for x in h["steps"]),
        step_seconds=[x["seconds"] for x in h["steps"]],
        step_peaks_mb=[x["peak_memory_mb"] for x in h["steps"]],
        step_peak_mb=max(x["peak_memory_mb"] for x in h["steps"]),
        step_counts=[x["counts"] for x in h["steps"]], prep_s=h["prep_s"], wall_s=res.wall_s,
        **{k: first["counts"].get(k) for k in COUNT_KEYS})
