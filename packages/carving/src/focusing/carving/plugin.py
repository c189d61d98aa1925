"""focusing-carving's registrations through the `focusing` entry point."""

from __future__ import annotations

from focusing.core.plugin_system import hookimpl


@hookimpl
def focusing_voxel_selectors() -> list[type]:
    """The voxel selectors: all, frustum, far-plane, depth-carving, depth-carving-tight, zoom."""
    from focusing.carving.depth_carving import DepthCarvingSelector
    from focusing.carving.depth_carving_tight import DepthCarvingTightSelector
    from focusing.carving.far_plane import FarPlaneSelector
    from focusing.carving.frustum import FrustumSelector
    from focusing.carving.keep_all import AllSelector
    from focusing.carving.zoom import ZoomSelector

    return [
        AllSelector,
        FrustumSelector,
        FarPlaneSelector,
        DepthCarvingSelector,
        DepthCarvingTightSelector,
        ZoomSelector,
    ]


@hookimpl
def focusing_commands() -> list:
    """CLI subcommands of focusing-carving: carve-stats."""
    from focusing.carving.cli import carve_stats

    return [carve_stats]
