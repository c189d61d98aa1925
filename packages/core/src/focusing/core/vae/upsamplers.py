"""Core's two upsamplers (the Upsampler base class is in `focusing.core.plugin_system.base`).

- `self-pruning` (TripoSF/Focusing): subdivide by a generative transposed conv, refine with a
  submanifold conv, and predict each child's occupancy; L_occ trains the head against the
  ground-truth active voxels at the finer resolution. Children are pruned by the predicted
  occupancy only at inference (paper sec. 3.4: pruning in training makes holes).
- `subdivide` (the control): the same subdivision and conv, no occupancy head, no pruning.
"""

from __future__ import annotations

import torch
from torch import nn

from focusing.core.plugin_system.base import Upsampler
from focusing.core.plugin_system.types import UpsampleOutput
from focusing.core.sparse.hashing import CoordIndex
from focusing.core.sparse.nn import SparseUpsample, SubMConv3d
from focusing.core.sparse.tensor import SparseTensor


class RefiningUpsampler(Upsampler):
    """Shared body of core's upsamplers: subdivide (transposed conv), LayerNorm, GELU, and a
    residual submanifold conv; [N,C_in] at R -> [8N,C_out] at 2R."""

    def __init__(self, c_in: int, c_out: int, backend: str = "torch", train_prune: str = "none"):
        super().__init__()
        if train_prune not in ("none", "ground-truth"):
            raise ValueError(f"train_prune must be 'none' or 'ground-truth', got {train_prune!r}")
        self.train_prune = train_prune
        self.up = SparseUpsample(c_in, c_out, backend=backend)
        self.norm = nn.LayerNorm(c_out)
        self.conv = SubMConv3d(c_out, c_out, backend=backend)
        self.act = nn.GELU()

    def _refine(self, x: SparseTensor) -> SparseTensor:
        y = self.up(x)
        y = y.replace(self.act(self.norm(y.feats)))
        return y.replace(y.feats + self.conv(y).feats)

    @staticmethod
    def occupancy_target(children: SparseTensor, target: torch.Tensor) -> torch.Tensor:
        """1.0 where a child [8N,4] is in the ground-truth active set target [K,4], else 0.0."""
        return (CoordIndex(target.to(children.coords.device)).lookup(children.coords) >= 0).float()

    def forward(self, x: SparseTensor, target: torch.Tensor | None = None, prune: bool = False,
                threshold: float = 0.0) -> UpsampleOutput:
        """x at R -> children at 2R; `target` [K,4] GT active voxels at 2R; prune at inference."""
        y = self._refine(x)
        t = None if target is None else self.occupancy_target(y, target)
        if self.train_prune == "ground-truth" and self.training and t is not None:
            keep = (t > 0).nonzero().squeeze(1)
            return UpsampleOutput(y.index_select(keep), None, None)
        return UpsampleOutput(y, None, t)


class SubdivideUpsampler(RefiningUpsampler):
    """Subdivide and refine; every child is kept (the control)."""

    name = "subdivide"


class SelfPruningUpsampler(RefiningUpsampler):
    """Subdivide, refine, predict occupancy; prune by it at inference only."""

    name = "self-pruning"

    def __init__(self, c_in: int, c_out: int, backend: str = "torch", train_prune: str = "none"):
        super().__init__(c_in, c_out, backend, train_prune)
        self.occupancy = nn.Linear(c_out, 1)

    def forward(self, x: SparseTensor, target: torch.Tensor | None = None, prune: bool = False,
                threshold: float = 0.0) -> UpsampleOutput:
        """Children at 2R with occupancy logits [8N]; pruned to logit > threshold when `prune`."""
        y = self._refine(x)
        logits = self.occupancy(y.feats).squeeze(-1)
        t = None if target is None else self.occupancy_target(y, target)
        if prune:
            keep = (logits > threshold).nonzero().squeeze(1)
            return UpsampleOutput(y.index_select(keep), logits[keep],
                                  None if t is None else t[keep])
        if self.train_prune == "ground-truth" and self.training and t is not None:
            out = UpsampleOutput(y, logits, t)
            keep = (t > 0).nonzero().squeeze(1)
            return UpsampleOutput(y.index_select(keep), out.logits, out.target)
        return UpsampleOutput(y, logits, t)
