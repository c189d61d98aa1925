"""focusing.render: differentiable mesh renderers (see the package README)."""

from __future__ import annotations

from focusing.core.rendering import default_renderer_name

__version__ = "0.1.0"

__all__ = ["default_renderer_name", "make_renderer"]


def make_renderer(name: str | None = None, device="cpu", **kwargs):
    """An instance of the registered renderer `name` (default: core's
    default_renderer_name(device))."""
    from focusing.core.plugin_system import get_registry

    cls = get_registry("renderer").get(name or default_renderer_name(device))
    return cls(**kwargs)
