"""focusing.render: differentiable mesh renderers (see the package README)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["default_renderer_name", "make_renderer"]


def default_renderer_name(device="cpu") -> str:
    """Default renderer name for `device`: embree on CPU, nvdiffrast on CUDA, else torch."""
    import torch

    from focusing.render.nvdiffrast_renderer import NvdiffrastRenderer
    from focusing.render.renderers import EmbreeRenderer

    kind = torch.device(device).type
    if kind == "cpu" and EmbreeRenderer.available()[0]:
        return "embree"
    if kind == "cuda" and NvdiffrastRenderer.available()[0]:
        return "nvdiffrast"
    return "torch"


def make_renderer(name: str | None = None, device="cpu", **kwargs):
    """An instance of the registered renderer `name` (default: default_renderer_name(device))."""
    from focusing.core.plugins import get_registry

    cls = get_registry("renderer").get(name or default_renderer_name(device))
    return cls(**kwargs)
