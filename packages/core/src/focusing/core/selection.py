"""What a voxel selector returns. The VoxelSelector base class is in `focusing.core.plugins.base`
(with every plugin kind); the selectors themselves are in focusing-carving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from focusing.core.plugins.base import Stage

if TYPE_CHECKING:
    from focusing.core.geometry.camera import Camera

__all__ = ["Selection", "Stage"]


@dataclass
class Selection:
    """What a selector keeps: row indices into the voxels [K] (long, unique, sorted), the
    camera to render with, and whether that camera is new (then the ground truth must be
    re-rendered before the next selector or the loss)."""

    index: torch.Tensor
    camera: "Camera"
    camera_changed: bool = False
