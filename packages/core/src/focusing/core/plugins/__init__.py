"""The seams of the toolkit: hook specifications, plugin base classes and registries."""

from focusing.core.plugins.base import Plugin
from focusing.core.plugins.hookspecs import hookimpl, hookspec
from focusing.core.plugins.registry import (
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
