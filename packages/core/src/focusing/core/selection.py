"""The VoxelSelector plugin kind (core owns the types; focusing-carving the selectors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import torch

from focusing.core.plugins.base import Plugin

if TYPE_CHECKING:
    from focusing.core.geometry.camera import Camera
    from focusing.core.rendering import RenderOutput
    from focusing.core.sparse.tensor import SparseTensor

Stage = Literal["latent", "output"]


@dataclass
class Selection:
    """What a selector keeps: row indices into the voxels [K] (long, unique, sorted), the
    camera to render with, and whether that camera is new (then the ground truth must be
    re-rendered before the next selector or the loss)."""

    index: torch.Tensor
    camera: "Camera"
    camera_changed: bool = False


class VoxelSelector(Plugin):
    """Chooses the voxels a training step decodes (latent stage) or meshes (output stage)."""

    default_stage: ClassVar[Stage] = "latent"

    def __init__(self, **params):
        self.params = params

    def select(
        self,
        voxels: "SparseTensor",
        camera: "Camera",
        ground_truth: "RenderOutput",
        rng: np.random.Generator,
    ) -> Selection:
        """Return the indices of `voxels` to keep and the camera to render them with."""
        raise NotImplementedError
