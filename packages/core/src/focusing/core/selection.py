"""Running a chain of voxel selectors: each on what the previous kept, the ground truth
re-rendered after a camera change. Written once, for the VAE trainer (`VAEStep._select`) and for
other models through `focusing.carving.run_selectors` (which re-exports it).

Why in core: the loop belongs to no selector and to no model. A selector reads only voxel
coordinates, a camera and a ground-truth render; a model needs the loop between its encoder and
its decoder, and core may not import focusing-carving (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from focusing.core.geometry.camera import Camera
from focusing.core.plugin_system.base import VoxelSelector
from focusing.core.plugin_system.registry import get
from focusing.core.plugin_system.types import RenderOutput
from focusing.core.sparse.tensor import SparseTensor

__all__ = ["ChainResult", "build_selector", "run_selectors"]


def build_selector(name: str, **params) -> VoxelSelector:
    """The voxel selector registered as `name` (e.g. "depth-carving"), built with `params`."""
    return get("voxel_selector", name)(**params)


@dataclass
class ChainResult:
    """What a chain of selectors keeps.

    index: rows [K] (long, sorted, unique) into the voxels given to `run_selectors`;
    voxels: those rows of the input (features carried along);
    camera, ground_truth: the camera to render the kept voxels with, and the ground truth
    rendered with that camera (the input's when no selector changed the camera);
    camera_changed: whether some selector replaced the camera;
    kept: how many voxels were left after each selector, in order.
    """

    index: torch.Tensor
    voxels: SparseTensor
    camera: Camera
    ground_truth: RenderOutput
    camera_changed: bool = False
    kept: list[int] = field(default_factory=list)


def run_selectors(
    selectors: Sequence[VoxelSelector | str],
    voxels: SparseTensor,
    camera: Camera,
    ground_truth: RenderOutput,
    rng: np.random.Generator | int | None = None,
    render: Callable[[Camera], RenderOutput] | None = None,
) -> ChainResult:
    """Run selectors in order on one shape's voxels (each on what the previous kept), as the
    Focusing trainer does; `render(camera)` re-renders the ground truth [H,W] after a camera
    change (required only if one happens). Names are built with default parameters; `rng`
    (a Generator or a seed) feeds the random selectors (zoom)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if not isinstance(voxels, SparseTensor):
        raise TypeError(
            f"voxels must be a SparseTensor (see one_shape_voxels), got {type(voxels).__name__}"
        )
    rows = torch.arange(len(voxels), device=voxels.coords.device)
    changed = False
    kept: list[int] = []
    for sel in selectors:
        sel = build_selector(sel) if isinstance(sel, str) else sel
        s = sel.select(voxels, camera, ground_truth, rng)
        voxels = voxels.index_select(s.index)
        rows = rows[s.index.to(rows.device)]
        kept.append(len(voxels))
        if s.camera_changed:
            if render is None:
                raise ValueError(
                    f"selector {getattr(sel, 'name', type(sel).__name__)!r} changed the camera: "
                    "pass render=callable(camera) -> RenderOutput to re-render the ground truth"
                )
            camera, changed = s.camera, True
            ground_truth = render(camera)
    return ChainResult(rows, voxels, camera, ground_truth, changed, kept)
