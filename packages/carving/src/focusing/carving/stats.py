"""carve-stats: what every selector keeps per view, against the lower bound, on real meshes.

For each mesh: active voxels at resolution R (surface voxels, 3x3x3-dilated as TripoSF does,
or the bare surface voxels), K random orbit views, the Embree ground truth per view, the
bound (voxels of the back-projected depth map) and, per selector: kept voxels, kept / bound
(cost), recall of the bound, kept / all, and milliseconds per view. `zoom` runs on the output
of depth-carving (as the Focusing setup chains them) and is measured at its own camera: the
ground truth and the bound are recomputed for the zoomed view.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from focusing.core.geometry.camera import orbit_cameras
from focusing.core.io import atomic_path
from focusing.core.sparse.tensor import SparseTensor

from focusing.carving.bound import cost_and_recall, lower_bound

# Selectors measured, in table order, with the parameters used (zoom is chained, see above).
DEFAULT_SELECTORS = ["all", "frustum", "far-plane", "depth-carving", "depth-carving-tight", "zoom"]


@dataclass
class ViewRecord:
    """One selector on one view: counts, ratios and time."""

    mesh: str
    view: int
    selector: str
    kept: int
    bound: int
    total: int
    cost: float
    recall: float
    ms: float


@dataclass
class CarveStats:
    """All records of a run and its settings."""

    resolution: int
    views: int
    image_size: int
    active: str
    records: list[ViewRecord] = field(default_factory=list)
    active_counts: dict = field(default_factory=dict)

    def summary(self) -> list[dict]:
        """Per selector over every mesh and view: kept mean/min/max, cost mean/min/max, recall
        mean/min, kept/all mean, ms mean and max."""
        rows = []
        names = list(dict.fromkeys(r.selector for r in self.records))
        for name in names:
            rs = [r for r in self.records if r.selector == name]
            kept = np.array([r.kept for r in rs], dtype=float)
            cost = np.array([r.cost for r in rs], dtype=float)
            rec = np.array([r.recall for r in rs], dtype=float)
            frac = np.array([r.kept / max(r.total, 1) for r in rs], dtype=float)
            ms = np.array([r.ms for r in rs], dtype=float)
            bound = np.array([r.bound for r in rs], dtype=float)
            rows.append(
                {
                    "selector": name,
                    "views": len(rs),
                    "kept_mean": float(kept.mean()),
                    "kept_min": int(kept.min()),
                    "kept_max": int(kept.max()),
                    "bound_mean": float(bound.mean()),
                    "cost_mean": _finite_stat(np.mean, cost),
                    "cost_min": _finite_stat(np.min, cost),
                    "cost_max": _finite_stat(np.max, cost),
                    "recall_mean": _finite_stat(np.mean, rec),
                    "recall_min": _finite_stat(np.min, rec),
                    "of_all_mean": float(frac.mean()),
                    "ms_mean": float(ms.mean()),
                    "ms_max": float(ms.max()),
                }
            )
        return rows

    def to_json(self) -> dict:
        """A strict-JSON dict: settings, the summary and every record; a ratio that has no value
        (a view whose lower bound is empty: nothing visible) is None, printed as null."""
        return _nan_to_none({
            "resolution": self.resolution,
            "views": self.views,
            "image_size": self.image_size,
            "active": self.active,
            "active_counts": self.active_counts,
            "summary": self.summary(),
            "records": [r.__dict__ for r in self.records],
        })


def _finite_stat(fn, values: np.ndarray) -> float:
    """fn over the finite entries of values [K] (NaN marks a view without a bound), else NaN."""
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else float("nan")


def _nan_to_none(obj):
    """obj with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def active_voxels(mesh, resolution: int, active: str = "dilated"):
    """The SparseTensor of a mesh's active voxels [N,4] (batch 0) at `resolution`: its surface
    voxels, 3x3x3-dilated when `active` is 'dilated' (TripoSF's active set), feats empty."""
    from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels

    if active not in ("dilated", "surface"):
        raise ValueError(f"active must be 'dilated' or 'surface', got {active!r}")
    xyz = surface_voxels(mesh, resolution)
    if active == "dilated":
        xyz = dilate_voxels(xyz, resolution)
    coords = torch.cat([torch.zeros(xyz.shape[0], 1, dtype=torch.long), xyz.long()], dim=1)
    return make_voxels(coords, resolution)


def make_voxels(coords: torch.Tensor, resolution: int):
    """A SparseTensor of coords [N,4] with empty feats [N,0] (selectors read coords only)."""
    return SparseTensor(coords, torch.zeros(coords.shape[0], 0), int(resolution))


def _build(name: str, params: dict):
    from focusing.core.plugin_system import get

    return get("voxel_selector", name)(**params.get(name, {}))


def run_carve_stats(
    mesh_paths: list[Path],
    resolution: int,
    views: int,
    image_size: int = 256,
    selectors: list[str] | None = None,
    params: dict | None = None,
    active: str = "dilated",
    seed: int = 0,
    progress: bool = True,
) -> CarveStats:
    """Measure every selector on `views` random orbit views of each mesh (see module doc)."""
    from tqdm import tqdm

    from focusing.core.geometry.meshio import load_mesh
    from focusing.core.geometry.raycast import raycast

    if resolution <= 0 or views <= 0 or image_size <= 0:
        raise ValueError(f"need positive --res, --views, --image-size, got {resolution}, {views}, "
                         f"{image_size}")
    if not mesh_paths:
        raise ValueError("carve-stats needs at least one mesh")
    names = list(selectors or DEFAULT_SELECTORS)
    params = {"far-plane": {"alpha": 0.5}, **(params or {})}
    built = {n: _build(n, params) for n in names}
    carve_for_zoom = built.get("depth-carving") or _build("depth-carving", params)
    stats = CarveStats(resolution, views, image_size, active)
    meshes = [load_mesh(p) for p in mesh_paths]  # load all first: a bad file fails up front
    bar = tqdm(total=len(meshes) * views, desc=f"carve-stats {resolution}^3", unit="view",
               disable=not progress)
    for mi, mesh in enumerate(meshes):
        label = Path(mesh_paths[mi]).stem
        vox = active_voxels(mesh, resolution, active)
        total = int(vox.coords.shape[0])
        stats.active_counts[label] = total
        cams = orbit_cameras(views, width=image_size, height=image_size, rng=seed + mi)
        for vi, cam in enumerate(cams):
            rng = np.random.default_rng([seed, mi, vi])
            gt = raycast(mesh.vertices, mesh.faces, cam)
            bound = lower_bound(vox, cam, gt)
            for name, sel in built.items():
                if name == "zoom":
                    rec = _zoom_record(sel, carve_for_zoom, vox, cam, gt, mesh, rng, raycast)
                else:
                    t0 = time.perf_counter()
                    out = sel.select(vox, cam, gt, rng)
                    ms = (time.perf_counter() - t0) * 1e3
                    cost, recall = cost_and_recall(out.index, bound)
                    rec = (int(out.index.numel()), bound.size, cost, recall, ms)
                kept, b, cost, recall, ms = rec
                stats.records.append(ViewRecord(label, vi, name, kept, b, total, cost, recall, ms))
            bar.update(1)
    bar.close()
    return stats


def _zoom_record(zoom, carve, vox, cam, gt, mesh, rng, raycast):
    # Zoom picks from the carved voxels; its own time excludes the carving (measured above).
    carved = carve.select(vox, cam, gt, rng).index
    sub = make_voxels(vox.coords[carved], vox.resolution)
    t0 = time.perf_counter()
    out = zoom.select(sub, cam, gt, rng)
    ms = (time.perf_counter() - t0) * 1e3
    rows = carved[out.index]
    zgt = raycast(mesh.vertices, mesh.faces, out.camera) if out.camera_changed else gt
    zbound = lower_bound(vox, out.camera, zgt)
    cost, recall = cost_and_recall(rows, zbound)
    return int(rows.numel()), zbound.size, cost, recall, ms


def format_table(stats: CarveStats) -> str:
    """A Markdown table of the summary (one row per selector)."""
    head = (
        "| selector | kept mean | kept min | kept max | bound mean | kept/bound mean [min, max] "
        "| recall mean (min) | kept/all | ms/view |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in stats.summary():
        lines.append(
            f"| {r['selector']} | {r['kept_mean']:.0f} | {r['kept_min']} | {r['kept_max']} "
            f"| {r['bound_mean']:.0f} "
            f"| {r['cost_mean']:.2f} [{r['cost_min']:.2f}, {r['cost_max']:.2f}] "
            f"| {r['recall_mean']:.4f} ({r['recall_min']:.4f}) | {r['of_all_mean']:.3f} "
            f"| {r['ms_mean']:.1f} |"
        )
    return head + "\n".join(lines) + "\n"


def write_plot(stats: CarveStats, path: Path) -> Path:
    """Box plots of kept/bound and recall per selector to a PNG at `path`, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    names = list(dict.fromkeys(r.selector for r in stats.records))
    cost = [[r.cost for r in stats.records if r.selector == n and np.isfinite(r.cost)]
            for n in names]
    rec = [[r.recall for r in stats.records if r.selector == n and np.isfinite(r.recall)]
           for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    axes[0].boxplot(cost, showfliers=True)
    axes[0].set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    axes[0].axhline(1.0, color="k", lw=0.8, ls=":")
    axes[0].set_ylabel("kept / lower bound")
    axes[0].set_yscale("log")
    axes[1].boxplot(rec, showfliers=True)
    axes[1].set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    axes[1].set_ylabel("recall of the lower bound")
    fig.suptitle(
        f"voxel selectors at {stats.resolution}^3, {stats.image_size}^2 images, "
        f"{stats.views} views x {len(stats.active_counts)} meshes ({stats.active} active set)"
    )
    fig.tight_layout()
    try:
        with atomic_path(path, make_parents=True) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path
