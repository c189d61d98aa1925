"""The Renderer plugin kind and its output type (core owns the types; focusing-render the code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from focusing.core.plugins.base import Plugin

if TYPE_CHECKING:
    from focusing.core.geometry.camera import Camera


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


class Renderer(Plugin):
    """Differentiable mesh renderer: gradients flow to vertex positions."""

    def render(
        self, vertices: torch.Tensor, faces: torch.Tensor, camera: "Camera | list[Camera]"
    ) -> RenderOutput:
        """Render vertices [V,3] (float, world) and faces [F,3] (long) with one camera or a list."""
        raise NotImplementedError
