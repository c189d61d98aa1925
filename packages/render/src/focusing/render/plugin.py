"""focusing-render's registrations through the `focusing` entry point."""

from __future__ import annotations

from focusing.core.plugin_system import hookimpl


@hookimpl
def focusing_renderers() -> list:
    """Renderer classes of focusing-render: torch (everywhere), embree (CPU), nvdiffrast (CUDA)."""
    from focusing.render.nvdiffrast_renderer import NvdiffrastRenderer
    from focusing.render.renderers import EmbreeRenderer, TorchRenderer

    return [TorchRenderer, EmbreeRenderer, NvdiffrastRenderer]


@hookimpl
def focusing_commands() -> list:
    """CLI subcommands of focusing-render."""
    return []
