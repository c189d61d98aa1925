"""The data types that plugins return: `RenderOutput` (renderers), `Selection` (voxel selectors),
`UpsampleOutput` (upsamplers) and the selector `Stage`.

They sit below `plugin_system/base.py`, which imports them, so the base module imports nothing above
it: this module's only references upwards (`Camera`, `SparseTensor`) are annotations, and the
modules that define those two import nothing from `focusing.core.plugin_system`
(tests/test_import_rule.py checks both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from focusing.core.geometry.camera import Camera
    from focusing.core.sparse.tensor import SparseTensor

__all__ = ["RenderOutput", "Selection", "Stage", "UpsampleOutput"]

# Where a voxel selector acts: on the latent voxels before decoding, or on the output voxels
# before meshing.
Stage = Literal["latent", "output"]


@dataclass
class RenderOutput:
    """Per-view maps; batched renders stack a leading view axis [B,...].

    depth: [H,W] view depth (-z_view, see geometry.camera), 0 off the surface.
    normal: [H,W,3] unit world-space normals, 0 off the surface.
    mask: [H,W] coverage in [0, 1] (antialiased at silhouettes so it carries gradients).
    triangle_id: [H,W] long, index of the visible face, -1 off the surface.
    """

    depth: torch.Tensor
    normal: torch.Tensor
    mask: torch.Tensor
    triangle_id: torch.Tensor

    def detach(self) -> "RenderOutput":
        """A copy with every map detached from the autograd graph."""
        return RenderOutput(
            self.depth.detach(), self.normal.detach(), self.mask.detach(), self.triangle_id
        )


@dataclass
class Selection:
    """What a selector keeps: row indices into the voxels [K] (long, unique, sorted), the
    camera to render with, and whether that camera is new (then the ground truth must be
    re-rendered before the next selector or the loss)."""

    index: torch.Tensor
    camera: "Camera"
    camera_changed: bool = False


@dataclass
class UpsampleOutput:
    """Children at 2R; occupancy logits [8N] and 0/1 targets [8N] (None without a head)."""

    x: "SparseTensor"
    logits: torch.Tensor | None = None
    target: torch.Tensor | None = None
