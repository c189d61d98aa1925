"""The report of `focusing compare`: report.json (every figure), report.md (tables and the PNG
plots it embeds: loss curves, voxel counts, memory/time bars, normal renders per mesh).

Every file is written atomically (temp file in the same folder, then os.replace).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import platform
import statistics
from pathlib import Path

import numpy as np

from focusing.core.io import write_bytes_atomic

QUALITY_KEYS = ("chamfer_l2", "chamfer_l1", "fscore", "precision", "recall",
                "normal_consistency", "floor_chamfer_l2", "floor_fscore")
COUNT_KEYS = ("latent_all", "latent_kept", "output_all", "output_kept", "triangles")
LOSS_PLOT_KEYS = ("total", "depth", "normal", "mask", "occupancy", "tsdf")


# --------------------------------------------------------------------------------------------
# files
def write_json(path: Path, obj) -> None:
    """JSON (NaN/inf as null) written atomically."""
    write_bytes_atomic(path, (json.dumps(_clean(obj), indent=2) + "\n").encode(), make_parents=True)


def _clean(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _clean(obj.item())
    return obj


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue(), make_parents=True)


def machine_info() -> dict:
    """CPU model, core count, memory, OS, Python and torch versions, load average."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb,
        "os": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --------------------------------------------------------------------------------------------
# figures of the table
def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(sum(vals) / len(vals)) if vals else None


def summarize_setup(history: dict, child_max_rss_mb: float, child_wall_s: float,
                    rows: dict) -> dict:
    """Per-setup figures: voxel counts, memory, time, final losses, mean quality per split."""
    steps = history["steps"]
    secs = [s["seconds"] for s in steps]
    k = max(1, math.ceil(len(steps) / 10))
    terms = sorted({t for s in steps for t in s["terms"]})
    final = {t: _mean([s["terms"].get(t) for s in steps[-k:]]) for t in terms}
    counts = {c: _mean([s["counts"].get(c) for s in steps]) for c in COUNT_KEYS}
    quality = {}
    for split in sorted({r["split"] for r in rows.values()}):
        sel = [r for r in rows.values() if r["split"] == split]
        ok = [r for r in sel if r.get("reconstruction") and "chamfer_l2" in r]
        quality[split] = {"meshes": len(sel), "reconstructed": len(ok),
                          **{q: _mean([r[q] for r in ok]) for q in QUALITY_KEYS}}
    return {
        "steps": len(steps),
        "voxels_mean": counts,
        "peak_memory_mb": history["train_peak_mb"],
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
        "final_losses": final,
        "final_losses_over_steps": k,
        # steps whose total loss was NaN/inf (left out of the means), with their kept voxels
        "nonfinite_loss_steps": [
            {"step": s["step"], "latent_kept": s["counts"].get("latent_kept"),
             "output_kept": s["counts"].get("output_kept")}
            for s in steps if not math.isfinite(s["terms"].get("total", math.nan))],
        "quality": quality,
        "meshes": rows,
        "history": [{"step": s["step"], "seconds": s["seconds"],
                     "peak_memory_mb": s["peak_memory_mb"], **s["counts"],
                     **{f"loss_{t}": v for t, v in s["terms"].items()}} for s in steps],
    }


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def comparison(setups: dict, reference: str) -> dict:
    """Each setup against the reference (the first): cost ratios and quality differences."""
    ref = setups[reference]
    out = {}
    for label, s in setups.items():
        if label == reference:
            continue
        q, rq = s["quality"].get("train", {}), ref["quality"].get("train", {})
        out[label] = {
            "memory_ratio": _ratio(s["peak_memory_mb"], ref["peak_memory_mb"]),
            "child_rss_ratio": _ratio(s["child_max_rss_mb"], ref["child_max_rss_mb"]),
            "time_per_step_ratio": _ratio(s["time_per_step_s"], ref["time_per_step_s"]),
            "chamfer_l2_ratio": _ratio(q.get("chamfer_l2"), rq.get("chamfer_l2")),
            "fscore_difference": (None if q.get("fscore") is None or rq.get("fscore") is None
                                  else q["fscore"] - rq["fscore"]),
            "normal_consistency_difference": (
                None if q.get("normal_consistency") is None or rq.get("normal_consistency") is None
                else q["normal_consistency"] - rq["normal_consistency"]),
        }
    return {"reference": reference, "against_reference": out}


# --------------------------------------------------------------------------------------------
# plots
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _smooth(y: np.ndarray, w: int) -> np.ndarray:
    if w <= 1 or len(y) < w:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    head = c[1:w] / np.arange(1, w)
    return np.concatenate([head, (c[w:] - c[:-w]) / w])


def plot_losses(setups: dict, path: Path) -> None:
    """Loss terms per step, one panel per term, one line (and its running mean) per setup."""
    plt = _plt()
    keys = [k for k in LOSS_PLOT_KEYS
            if any(f"loss_{k}" in h for s in setups.values() for h in s["history"])]
    cols = 3
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False,
                             layout="constrained")
    for ax, key in zip(axes.flat, keys):
        for i, (label, s) in enumerate(setups.items()):
            pts = [(h["step"], h[f"loss_{key}"]) for h in s["history"] if f"loss_{key}" in h]
            if not pts:
                continue
            x, y = np.array(pts, dtype=float).T
            keep = np.isfinite(y)  # a NaN step (nothing kept) would break the running mean
            x, y = x[keep], y[keep]
            color = f"C{i}"
            ax.plot(x, y, color=color, alpha=0.3, lw=0.8)
            ax.plot(x, _smooth(y, max(1, len(y) // 8)), color=color, lw=1.6, label=label)
        ax.set_title(f"loss: {key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("training losses (thin: per step; thick: running mean)")
    save_figure(fig, path)


def plot_voxels(setups: dict, path: Path) -> None:
    """Latent voxels (all vs kept) and output cubes (all vs kept) per step, log scale."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (a, b, title) in zip(axes, (("latent_all", "latent_kept", "latent voxels"),
                                        ("output_all", "output_kept", "output cubes"))):
        for i, (label, s) in enumerate(setups.items()):
            x = [h["step"] for h in s["history"]]
            ax.plot(x, [h.get(a, np.nan) for h in s["history"]], color=f"C{i}", ls="--", lw=1,
                    label=f"{label}: all")
            ax.plot(x, [h.get(b, np.nan) for h in s["history"]], color=f"C{i}", lw=1.8,
                    label=f"{label}: decoded" if a == "latent_all" else f"{label}: meshed")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{title} per step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_cost(setups: dict, path: Path) -> None:
    """Bar charts: training peak memory, median time per step, total training time."""
    plt = _plt()
    labels = list(setups)
    panels = (("peak_memory_mb", "training peak memory (MiB above baseline)"),
              ("time_per_step_s", "time per step (s, median)"),
              ("train_time_s", "training time (s, all steps)"))
    fig, axes = plt.subplots(1, 3, figsize=(4.2 * 3, 3.4))
    for ax, (key, title) in zip(axes, panels):
        vals = [setups[l][key] for l in labels]
        bars = ax.bar(range(len(labels)), vals, color=[f"C{i}" for i in range(len(labels))])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def normal_image(mesh, camera) -> np.ndarray:
    """[H,W,3] normal render in [0,1] (white background) by the Embree ray caster."""
    import torch

    from focusing.core.geometry.raycast import raycast

    out = raycast(torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces), camera)
    normal = out.normal.double()
    # face orientation is arbitrary in real meshes: show every normal facing the camera
    _, dirs = camera.pixel_rays()
    flip = torch.where((normal * dirs).sum(-1, keepdim=True) > 0, -1.0, 1.0)
    img = (normal * flip).numpy() * 0.5 + 0.5
    img[out.mask.numpy() < 0.5] = 1.0
    return img.clip(0, 1)


def plot_renders(name: str, gt_path: Path, recons: dict[str, str | None], views: int, size: int,
                 path: Path) -> None:
    """Grid for one mesh: rows = views, columns = ground truth then each setup's reconstruction
    (all in the ground truth's unit box, so sizes compare)."""
    from focusing.core.geometry.camera import orbit_cameras
    from focusing.core.geometry.mesh import apply_normalization, load_mesh, normalize_mesh

    plt = _plt()
    gt, center, scale = normalize_mesh(load_mesh(gt_path, normalize=False))
    cams = orbit_cameras(views, radius=1.8, fov_y_deg=40.0, width=size, height=size)
    columns = [("ground truth", gt)]
    for label, rec in recons.items():
        mesh = apply_normalization(load_mesh(rec, normalize=False), center, scale) if rec else None
        columns.append((label, mesh))
    fig, axes = plt.subplots(views, len(columns), figsize=(2.3 * len(columns), 2.3 * views),
                             squeeze=False)
    for j, (label, mesh) in enumerate(columns):
        for i, cam in enumerate(cams):
            ax = axes[i, j]
            if mesh is None:
                ax.text(0.5, 0.5, "no surface", ha="center", va="center")
            else:
                ax.imshow(normal_image(mesh, cam))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
    fig.suptitle(f"{name}: normals", fontsize=10)
    save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# the report
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


def first_reached(curve: list[dict], levels=(0.3, 0.5, 0.6, 0.7, 0.8, 0.9)) -> dict:
    """{F level: training seconds of the first evaluation at or above it, or None}."""
    out = {}
    for level in levels:
        hit = next((c for c in curve if c["fscore"] >= level), None)
        out[f"{level:g}"] = None if hit is None else hit["train_seconds"]
    return out


def plot_quality_over_time(setups: dict, path: Path) -> bool:
    """F-score of the training meshes against optimisation seconds, one line per setup."""
    curves = {label: e["quality_curve"] for label, e in setups.items() if e.get("quality_curve")}
    if not curves:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot([c["train_seconds"] for c in curve], [c["fscore"] for c in curve], "o-", label=label)
    ax.set_xlabel("training seconds (optimisation only)")
    ax.set_ylabel("mean F-score, training meshes (eval subset)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return True


def build_report(specs, budget, trained: dict, rows: dict, meshes: dict, out: Path,
                 command: str = "", timings: dict | None = None) -> dict:
    """Collect every figure into one dict and draw the plots it references (under out/plots)."""
    from tqdm.auto import tqdm

    setups = {}
    for s in specs:
        res = trained[s.label]
        entry = summarize_setup(res.history, res.max_rss_mb, res.wall_s, rows.get(s.label, {}))
        entry.update(base=s.base, overrides=s.overrides, run_dir=str(out / "runs" / s.slug))
        cfg = s.config
        entry["resolution"] = {"latent": cfg["model"]["latent_resolution"],
                               "output": 4 * cfg["model"]["latent_resolution"]}
        entry["selectors"] = {"latent": cfg["selectors"]["latent"],
                              "output": cfg["selectors"]["output"]}
        entry["upsampler"] = cfg["upsampler"]["name"]
        entry["quality_curve"] = quality_curve(out / "runs" / s.slug)
        entry["first_reached_s"] = first_reached(entry["quality_curve"])
        setups[s.label] = entry
    plots = {"losses": "plots/loss_curves.png", "voxels": "plots/voxels.png",
             "cost": "plots/cost.png", "renders": {}}
    plot_losses(setups, out / plots["losses"])
    plot_voxels(setups, out / plots["voxels"])
    plot_cost(setups, out / plots["cost"])
    if plot_quality_over_time(setups, out / "plots/quality_time.png"):
        plots["quality_time"] = "plots/quality_time.png"
    if budget.render_views > 0:
        for name, (split, src) in tqdm(meshes.items(), desc="normal renders", unit="mesh",
                                       file=__import__("sys").stderr):
            recons = {s.label: rows[s.label][name].get("reconstruction") for s in specs}
            rel = f"plots/renders_{name}.png"
            plot_renders(name, src, recons, budget.render_views, budget.render_size, out / rel)
            plots["renders"][name] = rel
    cfg0 = specs[0].config
    return {
        "command": command,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "budget": {"name": budget.name, "description": budget.description, "file": str(budget.source),
                   "steps": budget.steps, "overrides": budget.overrides,
                   "eval_points": budget.eval_points, "tau": budget.tau},
        "model": {k: cfg0[k] for k in ("model", "encoder", "decoder", "pointnet")},
        "meshes": {name: {"split": split, "file": str(src)} for name, (split, src) in meshes.items()},
        "setups": setups,
        "comparison": comparison(setups, specs[0].label),
        "plots": plots,
        "timings": dict(timings or {}),
        "notes": NOTES,
    }


NOTES = [
    "peak memory: the training's peak resident set above the child's level once the data and "
    "model are loaded (sampled every 2 ms; CUDA max_memory_allocated on a GPU); child max RSS: "
    "the whole process's peak (os.wait4), including Python, torch and the data.",
    "shared warm-up: when the setups differ only in what the render-free warm-up never reads "
    "(selectors, cameras, renderer), compare trains the warm-up once and every setup resumes "
    "from it; each setup's steps, times and quality curve include it, and its peak memory is "
    "that of its own steps after the fork (the warm-up's is the same for all).",
    "time per step: median wall time of one optimisation step (forward, backward, update).",
    "final losses: mean over the last 10% of steps. Setups render different views (near-surface "
    "crops vs zoomed orbit views), so their losses are not directly comparable; the metrics are.",
    "metrics: both meshes in the ground truth's unit box; Chamfer L2 = sum of the two mean "
    "squared nearest-neighbour distances; F-score at tau; floor = ground truth against an "
    "independent resample of itself (the best any reconstruction can score at this sample count).",
]


def _f(v, fmt="{:.4g}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(rep: dict) -> str:
    """report.md: summary, cost and quality tables, per-mesh tables, embedded plots."""
    setups = rep["setups"]
    labels = list(setups)
    ref = rep["comparison"]["reference"]
    b = rep["budget"]
    m = rep["machine"]
    first = setups[labels[0]]
    res = first["resolution"]
    md = [f"# focusing compare: {', '.join(labels)}", ""]
    md += [f"- command: `{rep['command']}`" if rep["command"] else "",
           f"- date: {rep['date']}",
           f"- machine: {m['cpu']}, {m['cores']} cores, "
           f"{_f(m['memory_gb'], '{:.0f}')} GB, torch {m['torch']} (training processes: "
           f"{first.get('torch_threads')} threads, {first.get('device')})"
           + (f", load average at the end {m['load_average'][0]:.1f}" if m.get("load_average") else ""),
           f"- budget: `{b['name']}` ({b['steps']} steps per setup; latent {res['latent']}^3, "
           f"output {res['output']}^3" + (f"; {b['description']})" if b["description"] else ")"),
           f"- meshes: {sum(1 for v in rep['meshes'].values() if v['split'] == 'train')} trained on"
           + (f", {sum(1 for v in rep['meshes'].values() if v['split'] == 'eval')} held out"
              if any(v["split"] == "eval" for v in rep["meshes"].values()) else ""),
           f"- total time: {_f(rep['timings'].get('total_s'), '{:.0f}')} s", ""]
    md += ["## At a glance", ""]
    for label, c in rep["comparison"]["against_reference"].items():
        md.append(f"- **{label}** vs **{ref}**: training peak memory x{_f(c['memory_ratio'], '{:.2f}')}, "
                  f"time per step x{_f(c['time_per_step_ratio'], '{:.2f}')}, "
                  f"Chamfer L2 x{_f(c['chamfer_l2_ratio'], '{:.2f}')} (lower is better), "
                  f"F-score {_f(c['fscore_difference'], '{:+.3f}')}, "
                  f"normal consistency {_f(c['normal_consistency_difference'], '{:+.3f}')}")
    if rep["plots"].get("quality_time"):
        levels = list(next(iter(setups.values()))["first_reached_s"])
        md += ["", "## Quality against compute", "",
               "Mean F-score of the evaluated training meshes at each `train.eval_every` "
               "evaluation, against the optimisation seconds spent so far (evaluation and "
               "checkpoint time excluded). First training second at which each F-score was reached:", ""]
        md.append(_md_table(["setup"] + [f"F >= {lv}" for lv in levels],
                            [[l] + [_f(setups[l]["first_reached_s"][lv], "{:.0f} s") for lv in levels]
                             for l in labels]))
        md += ["", f"![F-score against training seconds]({rep['plots']['quality_time']})"]
    md += ["", "## Cost per setup", ""]
    rows = []
    for l in labels:
        s = setups[l]
        v = s["voxels_mean"]
        rows.append([f"`{l}`", f"{_f(v['latent_kept'], '{:.0f}')} / {_f(v['latent_all'], '{:.0f}')}",
                     f"{_f(v['output_kept'], '{:.0f}')} / {_f(v['output_all'], '{:.0f}')}",
                     _f(v["triangles"], "{:.0f}"), _f(s["peak_memory_mb"], "{:.0f}"),
                     _f(s["child_max_rss_mb"], "{:.0f}"), _f(s["time_per_step_s"], "{:.2f}"),
                     _f(s["train_time_s"], "{:.0f}"), _f(s["final_losses"].get("total"), "{:.4f}")])
    md.append(_md_table(["setup", "latent voxels decoded / all (mean)", "output cubes meshed / decoded (mean)",
                         "triangles", "training peak MiB", "child max RSS MiB", "s / step",
                         "training s", "final loss"], rows))
    for l in labels:
        bad = setups[l]["nonfinite_loss_steps"]
        if bad:
            empty = sum(1 for b_ in bad if b_["latent_kept"] == 0 or b_["output_kept"] == 0)
            md += ["", f"Note: `{l}` had a non-finite loss at {len(bad)} of {setups[l]['steps']} "
                   f"steps (steps {', '.join(str(b_['step']) for b_ in bad)}; {empty} of them kept "
                   f"no voxel); they are left out of the means."]
    md += ["", "Final loss terms (mean over the last 10% of steps):", ""]
    terms = sorted({t for l in labels for t in setups[l]["final_losses"]})
    md.append(_md_table(["setup"] + terms,
                        [[f"`{l}`"] + [_f(setups[l]["final_losses"].get(t)) for t in terms]
                         for l in labels]))
    for split, title in (("train", "Quality on the training meshes"),
                         ("eval", "Quality on held-out meshes")):
        if not any(split in setups[l]["quality"] for l in labels):
            continue
        md += ["", f"## {title} (mean over meshes; tau = {b['tau']:g}, {b['eval_points']} points)", ""]
        rows = []
        for l in labels:
            q = setups[l]["quality"].get(split, {})
            rows.append([f"`{l}`", f"{q.get('reconstructed', 0)} / {q.get('meshes', 0)}",
                         _f(q.get("chamfer_l2"), "{:.3e}"), _f(q.get("floor_chamfer_l2"), "{:.3e}"),
                         _f(q.get("fscore"), "{:.3f}"), _f(q.get("floor_fscore"), "{:.3f}"),
                         _f(q.get("normal_consistency"), "{:.3f}")])
        md.append(_md_table(["setup", "reconstructed", "Chamfer L2", "(floor)", "F-score",
                             "(floor)", "normal consistency"], rows))
    md += ["", "## Per mesh", ""]
    names = list(rep["meshes"])
    for key, title, fmt, floor in (("chamfer_l2", "Chamfer L2", "{:.3e}", "floor_chamfer_l2"),
                                   ("fscore", f"F-score at {b['tau']:g}", "{:.3f}", "floor_fscore"),
                                   ("normal_consistency", "Normal consistency", "{:.3f}", None)):
        md += [f"**{title}**", ""]
        rows = []
        for n in names:
            row = [n, rep["meshes"][n]["split"]]
            fl = None
            for l in labels:
                r = setups[l]["meshes"].get(n, {})
                row.append(_f(r.get(key), fmt) if "error" not in r else "no surface")
                fl = r.get(floor) if floor and r.get(floor) is not None else fl
            if floor:
                row.append(_f(fl, fmt))
            rows.append(row)
        md.append(_md_table(["mesh", "split"] + [f"`{l}`" for l in labels]
                            + (["sampling floor"] if floor else []), rows))
        md.append("")
    p = rep["plots"]
    md += ["## Plots", "", f"![memory and time]({p['cost']})", "", f"![voxels per step]({p['voxels']})",
           "", f"![loss curves]({p['losses']})", ""]
    if p["renders"]:
        md += ["## Normal renders (ground truth, then each setup)", ""]
        md += [f"![{n}]({path})" for n, path in p["renders"].items()]
        md.append("")
    md += ["## How to read it", ""] + [f"- {n}" for n in rep["notes"]] + [""]
    return "\n".join(x for x in md if x is not None)


def write_report(rep: dict, out: Path) -> None:
    """Write report.json then report.md (both atomically)."""
    write_json(out / "report.json", rep)
    write_bytes_atomic(out / "report.md", render_markdown(rep).encode(), make_parents=True)
