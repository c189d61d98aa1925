"""Evaluation of image-to-3D on held-out views: structure IoU against the true latent occupancy,
Chamfer and F-score at 0.005 and 0.01 against the source mesh (focusing.eval's protocol: both
meshes in the ground truth's unit box, area-weighted samples), and seconds per shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from focusing.flow.structure_vae import iou, occupancy_grid


def evaluate_flow(structure_run: Path, latent_run: Path, data_dir: Path, steps: int | None = None,
                  cfg: float | None = None, seed: int = 0, points: int = 100_000,
                  threshold: float | None = None, allow_vae_change: bool = False) -> dict:
    """Per (mesh, held-out view) metrics and their means, as a JSON-ready dict (a changed
    shape VAE is refused unless allow_vae_change: see ImageTo3D)."""
    from focusing.core.geometry.mesh import Mesh
    from focusing.core.metrics import evaluate
    from focusing.core.data.dataset import ShapeDataset
    from focusing.flow.generate import ImageTo3D
    from focusing.flow.views import held_out_views

    pipe = ImageTo3D(structure_run, latent_run, allow_vae_change)
    dataset = ShapeDataset(data_dir, pipe.vae_setup, progress=False)
    r = pipe.latent.resolution
    held_out = held_out_views(pipe.structure_setup.views)
    rows = []
    for path, rec in zip(dataset.files, dataset.records):
        gt = Mesh(rec.vertices.double().numpy(), rec.faces.numpy(), None)
        truth = occupancy_grid(rec.active[r], r)
        for k in held_out:
            row = {"mesh": rec.name, "view": k}
            try:
                res = pipe.generate(pipe.render_view(path, k), steps, cfg, cfg, seed, threshold)
            except RuntimeError as exc:
                rows.append({**row, "error": str(exc), "iou": 0.0, "f_0.005": 0.0, "f_0.01": 0.0})
                continue
            row["iou"] = iou(occupancy_grid(res.structure, r), truth)
            row["seconds"] = res.seconds
            row["faces"] = int(len(res.mesh.faces))
            if len(res.mesh.faces):
                m5 = evaluate(res.mesh, gt, n_points=points, tau=0.005, seed=seed)
                m10 = evaluate(res.mesh, gt, n_points=points, tau=0.01, seed=seed)
                row.update({"chamfer_l2": m5["chamfer_l2"], "f_0.005": m5["fscore"],
                            "f_0.01": m10["fscore"]})
            else:
                row.update({"f_0.005": 0.0, "f_0.01": 0.0})
            rows.append(row)
    keys = ("iou", "chamfer_l2", "f_0.005", "f_0.01", "seconds")
    means = {k: float(np.mean([r[k] for r in rows if k in r]))
             for k in keys if any(k in r for r in rows)}
    return {"convention": "both meshes in the gt's unit box; "
                          "CD L2 = sum of the two mean squared NN distances",
            "held_out_views": list(held_out), "rows": rows, "mean": means}


def format_table(report: dict) -> str:
    """A plain-text table of an evaluate_flow report."""
    head = f"{'mesh':<24}{'view':>5}{'IoU':>8}{'CD L2':>12}{'F@.005':>8}{'F@.01':>8}{'s':>8}"
    lines = [head]
    for r in report["rows"]:
        cd = f"{r['chamfer_l2']:.3e}" if "chamfer_l2" in r else "-"
        lines.append(f"{r['mesh']:<24}{r['view']:>5}{r['iou']:>8.3f}{cd:>12}{r['f_0.005']:>8.3f}"
                     f"{r['f_0.01']:>8.3f}{r.get('seconds', float('nan')):>8.2f}")
    m = report["mean"]
    lines.append(f"{'mean':<29}{m.get('iou', 0):>8.3f}{m.get('chamfer_l2', float('nan')):>12.3e}"
                 f"{m.get('f_0.005', 0):>8.3f}{m.get('f_0.01', 0):>8.3f}"
                 f"{m.get('seconds', float('nan')):>8.2f}")
    return "\n".join(lines)
