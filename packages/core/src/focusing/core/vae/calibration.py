"""The occupancy threshold of a trained VAE, measured on its training meshes, not guessed.

The upsamplers' heads are trained by class-balanced BCE, so logit 0 is not where they best
separate kept from pruned children, and the best logit moves as training goes (after 100 steps
the old trainer needed a hand-set -1). At the end of training and at each evaluation the
trainer decodes the training mesh as inference does (pruned, chunked as configured) at a grid
of thresholds and keeps the one whose final active set at 4R best reproduces the ground truth
(intersection over union, pooled over meshes). `reconstruct` and `compare` use it by default
(run/calibration.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from focusing.core.io import write_text_atomic
from focusing.core.sparse.hashing import CoordIndex
from focusing.core.sparse.tensor import SparseTensor

CALIBRATION_FILE = "calibration.json"
SEARCH_RANGE = (-6.0, 6.0)  # logits; a threshold outside keeps everything or nothing


def active_set_iou(pred: torch.Tensor, truth: torch.Tensor) -> tuple[int, int]:
    """(intersection, union) of two voxel sets [N,3] and [K,3] (long, one shape)."""
    pad = lambda c: torch.cat([c.new_zeros(len(c), 1), c], 1)  # noqa: E731
    if len(pred) == 0:
        return 0, int(len(truth))
    inter = int((CoordIndex(pad(truth)).lookup(pad(pred)) >= 0).sum())
    return inter, int(len(pred) + len(truth) - inter)


@torch.no_grad()
def calibrate_threshold(model, latent_sets, points, truths, decode, start: float = 0.0) -> dict:
    """Best occupancy logit for a model over shapes; decode(z, threshold) -> features at 4R.

    latent_sets: per shape the active latent voxels [K,3]; points: per shape (points, normals)
    [P,3] each; truths: per shape the ground-truth active voxels at 4R [M,3]. A hill climb in
    steps of 1 from `start` (the previous checkpoint's threshold), then one refinement of 0.5
    on each side: 4 to 7 pruned decodes per shape instead of a full grid.
    Returns {"threshold", "iou", "table": {threshold: iou}}."""
    was_training = model.training
    model.eval()
    r = model.latent_resolution
    means = []
    for active, (pts, nrm) in zip(latent_sets, points):
        dev = next(model.parameters()).device
        vox = SparseTensor(torch.cat([active.new_zeros(len(active), 1), active], 1).to(dev),
                           torch.zeros(len(active), 0, device=dev), r)
        mean, _ = model.encode(pts.to(dev), nrm.to(dev), vox)
        means.append(vox.replace(mean))
    table: dict[float, float] = {}

    def score(thr: float) -> float:
        if thr not in table:
            inter = union = 0
            for z, truth in zip(means, truths):
                kept = decode(z, thr).coords[:, 1:].cpu()
                i, u = active_set_iou(kept, truth)
                inter, union = inter + i, union + u
            table[thr] = inter / max(union, 1)
        return table[thr]

    lo, hi = SEARCH_RANGE
    best = float(min(max(round(start * 2) / 2, lo), hi))
    for step in (1.0, 0.5):
        while True:
            here = score(best)
            side = {t: score(t) for t in (best - step, best + step) if lo <= t <= hi}
            move = max(side, key=side.get, default=None)
            if move is None or side[move] <= here:
                break
            best = move
    best = max(table, key=table.get)
    model.train(was_training)
    return {"threshold": best, "iou": table[best],
            "table": {f"{k:g}": v for k, v in sorted(table.items())}}


def save_calibration(run_dir: Path, step: int, result: dict) -> None:
    """Write run_dir/calibration.json (atomically) for `step`."""
    write_text_atomic(Path(run_dir) / CALIBRATION_FILE,
                      json.dumps({"step": step, **result}, indent=2), make_parents=True)


def load_calibrated_threshold(run_dir: Path) -> float | None:
    """The run's calibrated occupancy logit, or None when it has none."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.exists():
        return None
    try:
        return float(json.loads(path.read_text())["threshold"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a calibration file ({exc})") from None
