"""The training losses of paper eq. 7, each returned on its own so it can be logged.

L = l1 L_render + l2 L_occ + l3 L_KL + l4 L_flex + l5 L_tv + l6 L_tsdf, with
L_render = ld L_depth + ln L_normal + lm L_mask + lss L_ssim(normals) [+ llp L_perceptual].

`LOSS_TERMS` declares every term once: its name (the key a step's terms dict uses, and the
TensorBoard tag loss/<name>), its weight key in the setup's [loss] table, its stage (warm-up
only, or always), whether it is a render term (weighted again by loss.render), which steps it
runs in (the render-free warm-up step, the rendered step) and the function that computes it
from a `LossInputs`. The trainer computes the terms by walking the rows (`compute_terms`);
`total_loss`, the logging, the report and the config's [loss] weight keys iterate them too.

A new loss is therefore one function of `LossInputs`, one row here, and one default weight in
`config/defaults.toml` (the [loss] table's checked weight fields are built from the rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from focusing.core.plugin_system.types import RenderOutput

if TYPE_CHECKING:
    from focusing.core.sparseflex.field import SparseFlexField


def _both(pred: RenderOutput, gt: RenderOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels where both renders see a surface [H,W] (bool) and their count (at least 1)."""
    both = (gt.mask > 0.5) & (pred.triangle_id >= 0)
    return both, both.sum().clamp_min(1)


def depth_loss(pred: RenderOutput, gt: RenderOutput) -> torch.Tensor:
    """L1 of view depth where both renders see a surface (elsewhere the mask term does the
    work: a missing surface has no depth to move); maps [H,W] or [B,H,W]."""
    both, n_both = _both(pred, gt)
    return (pred.depth - gt.depth).abs()[both].sum() / n_both


def normal_loss(pred: RenderOutput, gt: RenderOutput) -> torch.Tensor:
    """L1 of world normals [H,W,3] (summed over xyz) where both renders see a surface."""
    both, n_both = _both(pred, gt)
    return (pred.normal - gt.normal).abs().sum(-1)[both].sum() / n_both


def mask_loss(pred: RenderOutput, gt: RenderOutput) -> torch.Tensor:
    """L1 of coverage masks [H,W], averaged over every pixel."""
    return (pred.mask - gt.mask).abs().mean()


def _normal_image(out: RenderOutput) -> torch.Tensor:
    """Normal map as an image [B,3,H,W] in [0, 1], background 0.5 (the "no normal" colour)."""
    img = out.normal * 0.5 + 0.5
    img = torch.where(out.mask[..., None] > 0, img, torch.full_like(img, 0.5))
    img = img.reshape(-1, *img.shape[-3:])
    return img.permute(0, 3, 1, 2)


def ssim_loss(pred: RenderOutput, gt: RenderOutput) -> torch.Tensor:
    """1 - SSIM of the normal maps as images (window 11, smaller on tiny images)."""
    p_img, g_img = _normal_image(pred), _normal_image(gt)
    win = min(11, min(p_img.shape[-2:]) // 2 * 2 - 1)
    return 1.0 - ssim(p_img, g_img.to(p_img), data_range=1.0, size_average=True, win_size=win)


def render_losses(pred: RenderOutput, gt: RenderOutput) -> dict[str, torch.Tensor]:
    """L1 depth, L1 normal, L1 mask and (1 - SSIM) of normal maps; maps [H,W(,3)] or [B,H,W(,3)]."""
    return {"depth": depth_loss(pred, gt), "normal": normal_loss(pred, gt),
            "mask": mask_loss(pred, gt), "ssim": ssim_loss(pred, gt)}


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
    for logit, t in zip(logits, targets):
        t = t.to(logit)
        pos = t.sum().clamp_min(1.0)
        weight = ((t.numel() - pos) / pos).clamp(min=1.0).detach()
        terms.append(F.binary_cross_entropy_with_logits(logit, t, pos_weight=weight))
    return torch.stack(terms).mean()


@torch.no_grad()
def occupancy_precision_recall(logits: list[torch.Tensor], targets: list[torch.Tensor],
                               threshold: float = 0.0) -> dict[str, float]:
    """Precision and recall of each head's `logit > threshold` against its 0/1 targets [M]."""
    out = {}
    for i, (logit, t) in enumerate(zip(logits, targets)):
        pred, t = logit > threshold, t > 0.5
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


Step = Literal["render_free", "rendered"]
BOTH_STEPS: frozenset = frozenset({"render_free", "rendered"})


@dataclass
class LossInputs:
    """What one shape's step hands its loss terms. A render-free warm-up step has no mesh and
    no renders (mesh, pred, gt are None); `tsdf_target(corner_coords [M,4])` gives the cached
    TSDF target [M] at decoded corners, in world units, truncated at `truncation`."""

    step: Step
    loss: Any                      # the setup's [loss] table (LossConfig)
    mean: torch.Tensor             # posterior means [N,C]
    logvar: torch.Tensor           # posterior log-variances [N,C]
    decoded: Any                   # the decoder's output (features, occupancy logits/targets)
    field: "SparseFlexField"       # the SparseFlex field of the supervised output voxels
    truncation: float
    tsdf_target: Callable[[torch.Tensor], torch.Tensor]
    mesh: Any = None               # the extracted training mesh (vertices, faces, l_dev)
    pred: RenderOutput | None = None
    gt: RenderOutput | None = None
    warmup: bool = True            # step < loss.tsdf_steps


def _tsdf_term(x: LossInputs) -> torch.Tensor:
    target = x.tsdf_target(x.field.corner_coords)
    return tsdf_loss(x.field.corner_sdf, target, torch.ones_like(target, dtype=torch.bool),
                     x.truncation, x.loss.tsdf_balanced, x.loss.tsdf_saturate)


@dataclass(frozen=True)
class LossTerm:
    """One term of eq. 7: its name, its weight key in [loss], its stage, render group or not,
    the steps it runs in and the function of LossInputs that computes it."""

    name: str
    weight: str
    compute: Callable[[LossInputs], torch.Tensor] = field(compare=False)
    stage: Literal["always", "warmup"] = "always"
    render: bool = False
    after: str | None = None  # a warm-up term's weight key after the warm-up (None: off then)
    steps: frozenset = BOTH_STEPS

    def wanted(self, x: LossInputs) -> bool:
        """Whether this term is computed in the step x describes."""
        if x.step not in self.steps:
            return False
        if self.stage == "warmup" and not x.warmup:
            return self.after is not None and _weight(x.loss, self.after) > 0
        return True


_RENDERED = frozenset({"rendered"})

# In summation order (render terms first, their sum weighted by loss.render).
LOSS_TERMS: tuple[LossTerm, ...] = (
    LossTerm("depth", "depth", lambda x: depth_loss(x.pred, x.gt), render=True, steps=_RENDERED),
    LossTerm("normal", "normal", lambda x: normal_loss(x.pred, x.gt), render=True,
             steps=_RENDERED),
    LossTerm("mask", "mask", lambda x: mask_loss(x.pred, x.gt), render=True, steps=_RENDERED),
    LossTerm("ssim", "ssim", lambda x: ssim_loss(x.pred, x.gt), render=True, steps=_RENDERED),
    LossTerm("occupancy", "occupancy",
             lambda x: occupancy_loss(x.decoded.occupancy_logits, x.decoded.occupancy_targets)),
    LossTerm("kl", "kl", lambda x: kl_loss(x.mean, x.logvar)),
    LossTerm("flex", "flex", lambda x: x.mesh.l_dev, steps=_RENDERED),
    LossTerm("tv", "tv", lambda x: sparse_tv_loss(x.field.corner_coords, x.field.corner_sdf),
             steps=_RENDERED),
    LossTerm("consistency", "consistency", lambda x: x.field.consistency_loss()),
    LossTerm("tsdf", "tsdf", _tsdf_term, stage="warmup", after="tsdf_after"),
)
RENDER_WEIGHT = "render"  # the weight key of the render group (lambda_1)


def weight_keys() -> tuple[str, ...]:
    """Every weight key the rows name (with RENDER_WEIGHT and warm-up terms' `after` keys)."""
    keys = [RENDER_WEIGHT] + [t.weight for t in LOSS_TERMS]
    keys += [t.after for t in LOSS_TERMS if t.after]
    return tuple(dict.fromkeys(keys))


def compute_terms(x: LossInputs, terms: dict[str, torch.Tensor] | None = None
                  ) -> dict[str, torch.Tensor]:
    """Every row of LOSS_TERMS that the step wants, computed in row order: name -> scalar."""
    terms = {} if terms is None else terms
    for t in LOSS_TERMS:
        if t.name not in terms and t.wanted(x):
            terms[t.name] = t.compute(x)
    return terms


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
        diff = torch.where(has, corner_sdf[nb.clamp_min(0)] - corner_sdf,
                           torch.zeros_like(corner_sdf))
        sq = sq + diff.square()
    return torch.sqrt(sq + 1e-12).mean()
