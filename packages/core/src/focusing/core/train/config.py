"""Setups as data: TOML presets, deep-merged overrides (`--set key=value`), validation.

A setup names a sparse backend, a renderer, the selectors with their stages, an upsampler,
resolutions, model sizes, loss weights and a schedule. `defaults.toml` holds every key; a
preset or user file overrides some; `--set` overrides any. Unknown keys are errors.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

from focusing.core.plugins import get_registry

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")


class ConfigError(ValueError):
    """A setup file or override is malformed or names an unknown key."""


def load_defaults() -> dict:
    """The full default configuration (every valid key)."""
    with open(DEFAULTS_FILE, "rb") as fh:
        return tomllib.load(fh)


def _merge(base: dict, update: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}.{key}" if path else key
        if key not in out:
            # A few tables are open maps (per-selector parameters), others are closed.
            if path in OPEN_TABLES or where.startswith(tuple(f"{t}." for t in OPEN_TABLES)):
                out[key] = copy.deepcopy(value)
                continue
            valid = ", ".join(sorted(out)) or "(none)"
            raise ConfigError(f"unknown setting {where!r}; valid keys here: {valid}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"setting {where!r} is a table, got {value!r}")
            out[key] = _merge(out[key], value, where)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Tables whose keys are not fixed in defaults.toml.
OPEN_TABLES = ("selectors.params", "upsampler.params")


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (['a','b','c'], value); the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def _nest(keys: list[str], value: Any) -> dict:
    out: Any = value
    for key in reversed(keys):
        out = {key: out}
    return out


def setup_path(name_or_file: str) -> Path:
    """Resolve a registered setup name or a TOML file path."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"setup file {path} does not exist")
        return path
    return Path(get_registry("setup").get(name_or_file))


def load_setup(name_or_file: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Resolved configuration of a setup (name or file) with `key=value` overrides applied."""
    path = setup_path(name_or_file)
    try:
        with open(path, "rb") as fh:
            preset = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"setup file {path}: {exc}") from None
    config = _merge(load_defaults(), preset)
    for text in overrides:
        keys, value = parse_override(text)
        config = _merge(config, _nest(keys, value))
    if not config.get("name"):
        config["name"] = path.stem
    validate(config)
    return config


def validate(config: dict) -> None:
    """Check plugin names and value ranges; raise ConfigError with what is wrong."""
    for kind, key in (("sparse_backend", ("backend", "sparse")), ("renderer", ("backend", "renderer"))):
        name = config[key[0]][key[1]]
        get_registry(kind).get(name)  # raises UnknownPluginError / UnavailablePluginError
    get_registry("upsampler").get(config["upsampler"]["name"])
    selectors = get_registry("voxel_selector")
    for stage in ("latent", "output"):
        names = config["selectors"][stage]
        if not isinstance(names, list):
            raise ConfigError(f"selectors.{stage} must be a list of names, got {names!r}")
        for name in names:
            selectors.get(name)
    model = config["model"]
    if model["latent_resolution"] < 4 or model["latent_resolution"] & (model["latent_resolution"] - 1):
        raise ConfigError(f"model.latent_resolution must be a power of two >= 4, got {model['latent_resolution']}")
    if config["train"]["steps"] < 0:
        raise ConfigError("train.steps must be >= 0")


def dumps(config: dict) -> str:
    """The resolved configuration as JSON text (what a run folder keeps)."""
    return json.dumps(config, indent=2, sort_keys=True)
