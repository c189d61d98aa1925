"""The training losses of paper eq. 7, each returned on its own so it can be logged.

L = l1 L_render + l2 L_occ + l3 L_KL + l4 L_flex + l5 L_tv + l6 L_tsdf, with
L_render = ld L_depth + ln L_normal + lm L_mask + lss L_ssim(normals) [+ llp L_perceptual].

`LOSS_TERMS` declares every term once: its name (the key a step's terms dict uses, and the
TensorBoard tag loss/<name>), its weight key in the setup's [loss] table, its stage (warm-up
only, or always) and whether it is a render term (weighted again by loss.render). `total_loss`,
the trainer's logging and the report iterate it: a new loss is one function plus one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from focusing.core.plugins.types import RenderOutput


def render_losses(pred: RenderOutput, gt: RenderOutput) -> dict[str, torch.Tensor]:
    """L1 depth, L1 normal, L1 mask and (1 - SSIM) of normal maps; maps [H,W(,3)] or [B,H,W(,3)].

    Depth and normals are compared where both renders see a surface (elsewhere the mask term
    does the work: a missing surface has no depth to move)."""
    both = (gt.mask > 0.5) & (pred.triangle_id >= 0)
    n_both = both.sum().clamp_min(1)
    depth = (pred.depth - gt.depth).abs()[both].sum() / n_both
    normal = (pred.normal - gt.normal).abs().sum(-1)[both].sum() / n_both
    mask = (pred.mask - gt.mask).abs().mean()
    # SSIM of normal maps mapped to [0, 1], background 0.5 (the "no normal" colour).
    def as_image(out: RenderOutput) -> torch.Tensor:
        img = out.normal * 0.5 + 0.5
        img = torch.where(out.mask[..., None] > 0, img, torch.full_like(img, 0.5))
        img = img.reshape(-1, *img.shape[-3:])
        return img.permute(0, 3, 1, 2)
    p_img, g_img = as_image(pred), as_image(gt)
    win = min(11, min(p_img.shape[-2:]) // 2 * 2 - 1)
    ssim_loss = 1.0 - ssim(p_img, g_img.to(p_img), data_range=1.0, size_average=True, win_size=win)
    return {"depth": depth, "normal": normal, "mask": mask, "ssim": ssim_loss}


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over channels, averaged over voxels; [N,C]."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()


def occupancy_loss(logits: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Class-balanced BCE of every occupancy head against ground-truth occupancy [M] (0/1).

    Positives are weighted by negatives / positives per head: among the children of the
    dilated latent voxels only about a quarter are active at 4R (fandisk at latent 32: 124k of
    489k), so plain BCE settles on the prior and predicts "empty" almost everywhere. The
    threshold that reproduces the active sets is then measured on the training meshes
    (vae.calibration), not assumed to be 0."""
    if not logits:
        return torch.zeros(())
    terms = []
    for l, t in zip(logits, targets):
        t = t.to(l)
        pos = t.sum().clamp_min(1.0)
        weight = ((t.numel() - pos) / pos).clamp(min=1.0).detach()
        terms.append(F.binary_cross_entropy_with_logits(l, t, pos_weight=weight))
    return torch.stack(terms).mean()


@torch.no_grad()
def occupancy_precision_recall(logits: list[torch.Tensor], targets: list[torch.Tensor],
                               threshold: float = 0.0) -> dict[str, float]:
    """Precision and recall of each head's `logit > threshold` against its 0/1 targets [M]."""
    out = {}
    for i, (l, t) in enumerate(zip(logits, targets)):
        pred, t = l > threshold, t > 0.5
        tp = float((pred & t).sum())
        out[f"occ{i + 1}_precision"] = tp / max(float(pred.sum()), 1.0)
        out[f"occ{i + 1}_recall"] = tp / max(float(t.sum()), 1.0)
    return out


def tsdf_loss(corner_sdf: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
              truncation: float, balanced: bool = False, saturate: bool = False) -> torch.Tensor:
    """Eq. 5: mean L1 between predicted corner SDFs [Nc] and the truncated target [Nc], in
    units of the truncation. The target is truncated, the prediction is not: clamping the
    prediction gave no gradient to the 37% of corners beyond the truncation at initialisation.

    balanced (loss.tsdf_balanced): average the inside (target < 0) and the outside corners'
    means instead, so that "outside everywhere" is no longer the L1 median. On the nine example
    meshes it lifted F@0.005 after 500 warm-up steps from 0.001 to 0.058, but the `small`
    budget's job ended lower with it (0.24 after 1,650 steps, against 0.38 without it after
    1,000; BENCHMARKS.md "VAE learning, session 2"), so it is off by default."""
    keep = valid.to(torch.bool)
    if keep.sum() == 0:
        return corner_sdf.sum() * 0.0
    target = target.to(corner_sdf).clamp(-truncation, truncation)[keep]
    pred = corner_sdf[keep]
    err = (pred - target).abs() / truncation
    if saturate:
        # a corner at the truncation is satisfied anywhere beyond it on its own side
        beyond = (target.abs() >= truncation) & (pred * target.sign() >= truncation)
        err = torch.where(beyond, torch.zeros_like(err), err)
    inside = target < 0
    if not balanced or inside.all() or not inside.any():
        return err.mean()
    return 0.5 * (err[inside].mean() + err[~inside].mean())


@dataclass(frozen=True)
class LossTerm:
    """One term of eq. 7: its name, its weight key in [loss], its stage, render group or not."""

    name: str
    weight: str
    stage: Literal["always", "warmup"] = "always"
    render: bool = False
    after: str | None = None  # a warm-up term's weight key after the warm-up (None: off then)


# In summation order (render terms first, their sum weighted by loss.render).
LOSS_TERMS: tuple[LossTerm, ...] = (
    LossTerm("depth", "depth", render=True),
    LossTerm("normal", "normal", render=True),
    LossTerm("mask", "mask", render=True),
    LossTerm("ssim", "ssim", render=True),
    LossTerm("occupancy", "occupancy"),
    LossTerm("kl", "kl"),
    LossTerm("flex", "flex"),
    LossTerm("tv", "tv"),
    LossTerm("consistency", "consistency"),
    LossTerm("tsdf", "tsdf", stage="warmup", after="tsdf_after"),
)
RENDER_WEIGHT = "render"  # the weight key of the render group (lambda_1)


def _weight(weights, key: str) -> float:
    return weights[key] if isinstance(weights, dict) else getattr(weights, key)


def total_loss(terms: dict[str, torch.Tensor], weights, warmup_on: bool) -> torch.Tensor:
    """Weighted sum of the present terms of LOSS_TERMS (eq. 7); weights: the [loss] table (dict
    or LossConfig); warm-up terms count only while warmup_on."""
    def on(t: LossTerm) -> bool:
        return t.name in terms and (t.stage == "always" or warmup_on or t.after is not None)

    def weight(t: LossTerm) -> float:
        late = t.stage == "warmup" and not warmup_on
        return _weight(weights, t.after if late else t.weight)

    render = None
    for t in filter(on, (t for t in LOSS_TERMS if t.render)):
        x = weight(t) * terms[t.name]
        render = x if render is None else render + x
    total = None if render is None else _weight(weights, RENDER_WEIGHT) * render
    for t in filter(on, (t for t in LOSS_TERMS if not t.render)):
        x = weight(t) * terms[t.name]
        total = x if total is None else total + x
    if total is None:
        raise ValueError(f"total_loss: none of the declared terms in {sorted(terms)}")
    return total


def sparse_tv_loss(corner_coords: torch.Tensor, corner_sdf: torch.Tensor) -> torch.Tensor:
    """Eq. 6: mean over corners of sqrt(dx^2 + dy^2 + dz^2) of the SDF differences to the +x, +y,
    +z neighbour corners (a missing neighbour contributes 0); coords [M,4], sdf [M]."""
    from focusing.core.sparse.hashing import CoordIndex

    if len(corner_sdf) == 0:
        return corner_sdf.sum() * 0.0
    index = CoordIndex(corner_coords)
    sq = torch.zeros_like(corner_sdf)
    for axis in (1, 2, 3):
        step = torch.zeros(4, dtype=torch.long, device=corner_coords.device)
        step[axis] = 1
        nb = index.lookup(corner_coords + step)
        has = nb >= 0
        diff = torch.where(has, corner_sdf[nb.clamp_min(0)] - corner_sdf, torch.zeros_like(corner_sdf))
        sq = sq + diff.square()
    return torch.sqrt(sq + 1e-12).mean()
