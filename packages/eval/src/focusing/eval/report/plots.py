"""The plots of a comparison report: loss curves, voxel counts, own-step cost bars with their
spread over seeds, quality against compute, quality against resolution and memory, and normal
renders of every mesh. Each seed's
curve is drawn in its setup's colour, so the spread between seeds is visible beside the
difference between setups."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from focusing.eval.report.files import save_figure

LOSS_PLOT_KEYS = ("total", "depth", "normal", "mask", "occupancy", "tsdf")


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


def _runs(setups: dict):
    """(colour index, label for the legend or None, run) for every run of every setup."""
    for i, (label, s) in enumerate(setups.items()):
        for j, run in enumerate(s["runs"]):
            yield i, (label if j == 0 else None), run


def plot_losses(setups: dict, path: Path) -> None:
    """Loss terms per step, one panel per term, one line (and its running mean) per run."""
    plt = _plt()
    keys = [k for k in LOSS_PLOT_KEYS
            if any(f"loss_{k}" in h for _, _, r in _runs(setups) for h in r["history"])]
    cols = 3
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False,
                             layout="constrained")
    for ax, key in zip(axes.flat, keys):
        for i, label, run in _runs(setups):
            pts = [(h["step"], h[f"loss_{key}"]) for h in run["history"] if f"loss_{key}" in h]
            if not pts:
                continue
            x, y = np.array(pts, dtype=float).T
            keep = np.isfinite(y)  # a NaN step (nothing kept) would break the running mean
            x, y = x[keep], y[keep]
            ax.plot(x, y, color=f"C{i}", alpha=0.3, lw=0.8)
            ax.plot(x, _smooth(y, max(1, len(y) // 8)), color=f"C{i}", lw=1.6, label=label)
        ax.set_title(f"loss: {key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("training losses (thin: per step; thick: running mean; one line per seed)")
    save_figure(fig, path)


def plot_voxels(setups: dict, path: Path) -> None:
    """Latent voxels (all vs kept) and output cubes (all vs kept) per step, log scale."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (a, b, title) in zip(axes, (("latent_all", "latent_kept", "latent voxels"),
                                        ("output_all", "output_kept", "output cubes"))):
        for i, label, run in _runs(setups):
            x = [h["step"] for h in run["history"]]
            kept = "decoded" if a == "latent_all" else "meshed"
            ax.plot(x, [h.get(a, np.nan) for h in run["history"]], color=f"C{i}", ls="--", lw=1,
                    label=f"{label}: all" if label else None)
            ax.plot(x, [h.get(b, np.nan) for h in run["history"]], color=f"C{i}", lw=1.8,
                    label=f"{label}: {kept}" if label else None)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{title} per step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    save_figure(fig, path)


COST_PANELS = (("peak_memory_mb", "peak memory, own steps (MiB above baseline)"),
               ("seconds_per_step", "time per own step (s, median)"),
               ("latents_decoded_per_step", "latents decoded per own step"),
               ("cubes_meshed_per_step", "output cubes meshed per own step"))


def plot_cost(setups: dict, path: Path) -> None:
    """Bars of each setup's own-step cost (mean over seeds; whiskers: min..max over seeds)."""
    plt = _plt()
    labels = list(setups)
    fig, axes = plt.subplots(1, len(COST_PANELS), figsize=(4.0 * len(COST_PANELS), 3.4))
    for ax, (key, title) in zip(axes, COST_PANELS):
        stats = [(setups[lb]["own_steps"] or {}).get(key) or {"n": 0} for lb in labels]
        vals = [st["mean"] if st["n"] else np.nan for st in stats]
        err = np.array([[st["mean"] - st["min"], st["max"] - st["mean"]] if st["n"] else [0, 0]
                        for st in stats], dtype=float).T
        bars = ax.bar(range(len(labels)), vals, yerr=err, capsize=4,
                      color=[f"C{i}" for i in range(len(labels))])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("each setup's own steps (after the warm-up): mean over seeds, whiskers min..max",
                 fontsize=10)
    save_figure(fig, path)


def plot_quality_over_time(setups: dict, path: Path) -> bool:
    """F-score of the training meshes against optimisation seconds, one line per run."""
    curves = [(i, label, run["quality_curve"]) for i, label, run in _runs(setups)
              if run.get("quality_curve")]
    if not curves:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, label, curve in curves:
        ax.plot([c["train_seconds"] for c in curve], [c["fscore"] for c in curve], "o-",
                color=f"C{i}", label=label)
    ax.set_xlabel("training seconds (optimisation only)")
    ax.set_ylabel("mean F-score, training meshes (eval subset)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return True


def _span(stat: dict) -> list[list[float]]:
    """Error-bar lengths [[below], [above]] of an aggregate: mean to min, mean to max."""
    return [[stat["mean"] - stat["min"]], [stat["max"] - stat["mean"]]]


def plot_quality_resolution(setups: dict, path: Path) -> bool:
    """F-score (mean over seeds of the mean over every mesh, a lost mesh counted as 0; whiskers
    min..max over seeds) against the output resolution it was reconstructed at, and against
    the peak memory of the setup's own steps (MiB): one point per setup and split."""
    points = []
    for i, (label, s) in enumerate(setups.items()):
        phase = s["own_steps"] or s["warmup"] or {}
        mem = phase.get("peak_memory_mb") or {"n": 0}
        for split, marker in (("train", "o"), ("eval", "s")):
            f = (s["quality"].get(split) or {}).get("fscore_all") or {"n": 0}
            if f["n"] and mem["n"]:
                points.append((i, label, split, marker, s["resolution"]["evaluated"], mem, f))
    if not points:
        return False
    plt = _plt()
    fig, (by_res, by_mem) = plt.subplots(1, 2, figsize=(11, 4))
    for i, label, split, marker, res, mem, f in points:
        name = f"{label} ({'training' if split == 'train' else 'held-out'} meshes)"
        style = dict(fmt=marker, color=f"C{i}", capsize=4, label=name,
                     mfc=f"C{i}" if split == "train" else "none")
        by_res.errorbar([res], [f["mean"]], yerr=_span(f), **style)
        by_mem.errorbar([mem["mean"]], [f["mean"]], xerr=_span(mem), yerr=_span(f), **style)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    by_res.set_xscale("log", base=2)
    resolutions = sorted({p[4] for p in points})
    by_res.set_xticks(resolutions, [str(r) for r in resolutions])  # 128, not 2^7
    by_res.set_xlim(resolutions[0] / 1.5, resolutions[-1] * 1.5)
    by_res.set_xlabel("output resolution reconstructed at")
    peaks = [p[5]["mean"] for p in points]
    if max(peaks) > 8 * min(peaks):  # a log axis where setups differ by an order of magnitude
        by_mem.set_xscale("log")
        # plain MiB on the major ticks, none on the minor ones (they overlap)
        by_mem.xaxis.set_major_formatter(ScalarFormatter())
        by_mem.xaxis.set_minor_formatter(NullFormatter())
    by_mem.set_xlabel("peak memory of the setup's own training steps (MiB)")
    for ax in (by_res, by_mem):
        ax.set_ylabel("mean F-score (a lost mesh counts 0)")
        ax.grid(alpha=0.3)
    by_mem.legend(fontsize=7)
    fig.suptitle("quality against resolution and memory: mean over seeds, whiskers min..max",
                 fontsize=10)
    save_figure(fig, path)
    return True


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
                 path: Path, title: str = "normals") -> None:
    """Grid for one mesh: rows = views, columns = ground truth then each setup's reconstruction
    (all in the ground truth's unit box, so sizes compare)."""
    from focusing.core.geometry.camera import orbit_cameras
    from focusing.core.geometry.mesh import apply_normalization, normalize_mesh
    from focusing.core.geometry.meshio import load_mesh

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
    fig.suptitle(f"{name}: {title}", fontsize=10)
    save_figure(fig, path)


def draw_plots(setups: dict, meshes: dict, render_views: int, render_size: int,
               out: Path) -> dict:
    """Every plot of the report under out/plots; returns their paths relative to out."""
    from tqdm.auto import tqdm

    plots = {"losses": "plots/loss_curves.png", "voxels": "plots/voxels.png",
             "cost": "plots/cost.png", "renders": {}}
    plot_losses(setups, out / plots["losses"])
    plot_voxels(setups, out / plots["voxels"])
    plot_cost(setups, out / plots["cost"])
    if plot_quality_over_time(setups, out / "plots/quality_time.png"):
        plots["quality_time"] = "plots/quality_time.png"
    if plot_quality_resolution(setups, out / "plots/quality_resolution.png"):
        plots["quality_resolution"] = "plots/quality_resolution.png"
    if render_views <= 0:
        return plots
    first = {label: s["runs"][0] for label, s in setups.items()}
    seeds = {run.get("seed") for run in first.values()}
    several = any(len(s["runs"]) > 1 for s in setups.values())
    title = f"normals (seed {seeds.pop()})" if several and len(seeds) == 1 else "normals"
    for name, (_, src) in tqdm(meshes.items(), desc="normal renders", unit="mesh",
                               file=sys.stderr):
        recons = {label: run["meshes"][name].get("reconstruction") for label, run in first.items()}
        rel = f"plots/renders_{name}.png"
        plot_renders(name, src, recons, render_views, render_size, out / rel, title)
        plots["renders"][name] = rel
    return plots
