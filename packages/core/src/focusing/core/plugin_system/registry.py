"""One registry per plugin kind, filled from the `focusing` entry-point group through pluggy.

A duplicate name is an error naming both classes and their distributions; an unknown
name is an error listing what is registered (and what is registered but unavailable).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from focusing.core.plugin_system.base import PLUGIN_KINDS
from focusing.core.plugin_system.hookspecs import PROJECT, FocusingHookSpecs

# kind -> hook name (from the table in plugin_system/base.py). The order is the order
# `focusing plugins` prints.
KINDS: dict[str, str] = {k.kind: k.hook for k in PLUGIN_KINDS}


class PluginError(LookupError):
    """Base of the registry's errors."""


class DuplicatePluginError(PluginError):
    """Two plugins registered the same name for one kind."""


class UnknownPluginError(PluginError):
    """A name was asked for that no plugin registered."""


class UnavailablePluginError(PluginError):
    """The name is registered but cannot run here (missing library or device)."""


@dataclass(frozen=True)
class PluginEntry:
    """One registered object: its kind, name, the object, and where it came from."""

    kind: str
    name: str
    obj: Any
    distribution: str
    version: str

    def availability(self) -> tuple[bool, str]:
        """Return (available, reason) by asking the object; files and commands always are."""
        check = getattr(self.obj, "available", None)
        if check is None:
            return True, ""
        try:
            ok, reason = check()
        except Exception as exc:  # an availability probe must never take the registry down
            return False, f"available() raised {type(exc).__name__}: {exc}"
        return bool(ok), str(reason)

    @property
    def qualname(self) -> str:
        """The dotted path of the registered object, for error messages."""
        obj = self.obj
        if isinstance(obj, Path):
            return str(obj)
        module = getattr(obj, "__module__", "?")
        return f"{module}.{getattr(obj, '__qualname__', repr(obj))}"


def _entry_name(kind: str, obj: Any) -> str:
    if kind == "setup":
        return Path(obj).stem if isinstance(obj, (str, Path)) else obj.name
    if kind == "command":
        return getattr(obj, "command_name", None) or obj.__name__.replace("_", "-")
    name = getattr(obj, "name", "")
    if not name:
        raise PluginError(f"{kind} plugin {obj!r} has no `name` class attribute")
    return name


class KindRegistry:
    """The plugins of one kind, keyed by name."""

    def __init__(self, kind: str, entries: list[PluginEntry]):
        self.kind = kind
        self._entries: dict[str, PluginEntry] = {}
        # shared instances, dropped with the registry on reset()
        self._instances: dict[str, Any] = {}
        for entry in entries:
            if entry.name in self._entries:
                first = self._entries[entry.name]
                raise DuplicatePluginError(
                    f"duplicate {kind} name {entry.name!r}: registered by {first.qualname} "
                    f"(distribution {first.distribution}) and by {entry.qualname} "
                    f"(distribution {entry.distribution})"
                )
            self._entries[entry.name] = entry

    def names(self, available_only: bool = False) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(
            n for n, e in self._entries.items() if not available_only or e.availability()[0]
        )

    def entries(self) -> list[PluginEntry]:
        """Return every entry, sorted by name."""
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> PluginEntry:
        """Return the entry of `name` or raise UnknownPluginError listing what exists."""
        if name not in self._entries:
            usable, unusable = [], []
            for e in self.entries():
                ok, why = e.availability()
                (usable if ok else unusable).append(e.name if ok else f"{e.name} ({why})")
            msg = f"unknown {self.kind} {name!r}; registered: {', '.join(usable) or 'none'}"
            if unusable:
                msg += f"; registered but unavailable here: {'; '.join(unusable)}"
            raise UnknownPluginError(msg)
        return self._entries[name]

    def get(self, name: str, require_available: bool = True) -> Any:
        """Return the object registered as `name`; raise if unknown or (optionally) unavailable."""
        entry = self.entry(name)
        if require_available:
            ok, why = entry.availability()
            if not ok:
                raise UnavailablePluginError(f"{self.kind} {name!r} is not available here: {why}")
        return entry.obj

    def instance(self, name: str) -> Any:
        """One shared instance of the class registered as `name` (built on first use, checked as
        by `get`); `reset()` drops it together with this registry."""
        obj = self._instances.get(name)
        if obj is None:
            obj = self.get(name)()
            self._instances[name] = obj
        return obj


_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
_registries: dict[str, KindRegistry] = {}
_runtime_plugins: list[Any] = []


def _build_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(FocusingHookSpecs)
    pm.load_setuptools_entrypoints(PROJECT)
    for plugin in _runtime_plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    return pm


def _manager_or_build() -> pluggy.PluginManager:
    global _manager
    with _lock:
        if _manager is None:
            _manager = _build_manager()
        return _manager


def _distribution_of(pm: pluggy.PluginManager) -> dict[int, tuple[str, str]]:
    dists: dict[int, tuple[str, str]] = {}
    for plugin, dist in pm.list_plugin_distinfo():
        dists[id(plugin)] = (dist.project_name, dist.version)
    return dists


def get_registry(kind: str) -> KindRegistry:
    """Return the registry of `kind` (one of KINDS), loading plugins on first use."""
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
    if kind in _registries:
        return _registries[kind]
    pm = _manager_or_build()
    dists = _distribution_of(pm)
    entries: list[PluginEntry] = []
    hook = getattr(pm.hook, KINDS[kind])
    # Call each implementation on its own so every result is tied to its distribution.
    for impl in reversed(hook.get_hookimpls()):
        dist, version = dists.get(
            id(impl.plugin), (f"<runtime {getattr(impl.plugin, '__name__', impl.plugin_name)}>", "")
        )
        try:
            result = impl.function() or []
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name} (distribution {dist}) failed in {KINDS[kind]}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for obj in result:
            entries.append(PluginEntry(kind, _entry_name(kind, obj), obj, dist, version))
    registry = KindRegistry(kind, entries)
    _registries[kind] = registry
    return registry


def get(kind: str, name: str, require_available: bool = True) -> Any:
    """Return the object registered under `name` for `kind`."""
    return get_registry(kind).get(name, require_available=require_available)


def all_entries() -> list[PluginEntry]:
    """Return every entry of every kind, in KINDS order."""
    out: list[PluginEntry] = []
    for kind in KINDS:
        out.extend(get_registry(kind).entries())
    return out


def register_plugin(plugin: ModuleType | object) -> None:
    """Register a plugin module or object at run time (tests, notebooks) and reload registries."""
    _runtime_plugins.append(plugin)
    reset()


def unregister_plugin(plugin: ModuleType | object) -> None:
    """Undo register_plugin."""
    if plugin in _runtime_plugins:
        _runtime_plugins.remove(plugin)
    reset()


def reset() -> None:
    """Forget loaded plugins so the next lookup reloads entry points."""
    global _manager
    with _lock:
        _manager = None
        _registries.clear()
