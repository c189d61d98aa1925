"""What a renderer returns, and the one rule that picks the default renderer of a device.

The Renderer base class is in `focusing.core.plugins.base` (with every plugin kind); the
renderers themselves are in focusing-render. The rule lives in core, not in focusing-render,
so that every package (eval, the trainer) can ask it through the registry without importing
focusing-render.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RenderOutput", "RENDERER_PREFERENCE", "default_renderer_name"]


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


# Device type -> renderer names, fastest first (measured in benchmarks/bench_render.py):
# embree (ray-cast visibility) on the CPU, nvdiffrast on CUDA; `torch` runs everywhere.
RENDERER_PREFERENCE: dict[str, tuple[str, ...]] = {
    "cpu": ("embree", "torch"),
    "cuda": ("nvdiffrast", "torch"),
}


def default_renderer_name(device: "str | torch.device" = "cpu") -> str:
    """The first registered and available renderer of RENDERER_PREFERENCE for `device`
    (embree on the CPU, nvdiffrast on CUDA), else `torch`."""
    from focusing.core.plugins import get_registry

    registry = get_registry("renderer")
    for name in RENDERER_PREFERENCE.get(torch.device(device).type, ()):
        if name in registry and registry.entry(name).availability()[0]:
            return name
    return "torch"
