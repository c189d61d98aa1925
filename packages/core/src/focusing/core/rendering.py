"""The one rule that picks the default renderer of a device.

The Renderer base class is in `focusing.core.plugin_system.base` (with every plugin kind), what it
returns (`RenderOutput`) in `focusing.core.plugin_system.types`; the renderers themselves are in
focusing-render. The rule lives in core, not in focusing-render, so that every package (eval,
the trainer) can ask it through the registry without importing focusing-render.
"""

from __future__ import annotations

import torch

__all__ = ["RENDERER_PREFERENCE", "default_renderer_name"]


# Device type -> renderer names, fastest first (measured in benchmarks/bench_render.py):
# embree (ray-cast visibility) on the CPU, nvdiffrast on CUDA; `torch` runs everywhere.
RENDERER_PREFERENCE: dict[str, tuple[str, ...]] = {
    "cpu": ("embree", "torch"),
    "cuda": ("nvdiffrast", "torch"),
}


def default_renderer_name(device: "str | torch.device" = "cpu") -> str:
    """The first registered and available renderer of RENDERER_PREFERENCE for `device`
    (embree on the CPU, nvdiffrast on CUDA), else `torch`."""
    from focusing.core.plugin_system import get_registry

    registry = get_registry("renderer")
    for name in RENDERER_PREFERENCE.get(torch.device(device).type, ()):
        if name in registry and registry.entry(name).availability()[0]:
            return name
    return "torch"
