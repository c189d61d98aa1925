"""The seams of the toolkit: hook specifications, plugin base classes (base.py, with the table
of kinds) and registries."""

from focusing.core.plugin_system.base import (
    PLUGIN_KINDS,
    FlowStage,
    Plugin,
    PluginKind,
    Renderer,
    SparseBackend,
    Upsampler,
    VoxelSelector,
)
from focusing.core.plugin_system.hookspecs import hookimpl, hookspec
from focusing.core.plugin_system.types import RenderOutput, Selection, Stage, UpsampleOutput
from focusing.core.plugin_system.registry import (
    KINDS,
    DuplicatePluginError,
    PluginEntry,
    PluginError,
    UnavailablePluginError,
    UnknownPluginError,
    all_entries,
    get,
    get_registry,
    register_plugin,
    reset,
    unregister_plugin,
)

__all__ = [
    "KINDS",
    "PLUGIN_KINDS",
    "FlowStage",
    "PluginKind",
    "Renderer",
    "SparseBackend",
    "Upsampler",
    "VoxelSelector",
    "RenderOutput",
    "Selection",
    "Stage",
    "UpsampleOutput",
    "DuplicatePluginError",
    "Plugin",
    "PluginEntry",
    "PluginError",
    "UnavailablePluginError",
    "UnknownPluginError",
    "all_entries",
    "get",
    "get_registry",
    "hookimpl",
    "hookspec",
    "register_plugin",
    "reset",
    "unregister_plugin",
]
