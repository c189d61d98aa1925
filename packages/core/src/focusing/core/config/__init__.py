"""Setups as data: TOML presets, deep-merged overrides (`--set key=value`), one typed check.

A setup names a sparse backend, a renderer, the selectors with their stages, an upsampler,
resolutions, model sizes, loss weights and a schedule. `defaults.toml` holds every key and its
default (the only place defaults live); a preset or user file overrides some; `--set`
overrides any. Unknown keys are errors.

The merged dict is checked once, by `Setup.from_dict`, before anything is written: every key's
type, range and allowed values (plugin names against the registry). Each table becomes a frozen
dataclass whose fields carry their rule, so a wrong value fails as one line naming the key, what
it got and what it accepts. Code reads attributes (`setup.train.lr`); `Setup.to_dict()` gives
back the plain dict that `config.json` keeps and that dict-based code (the VAE) reads.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from focusing.core.plugin_system import get_registry
from focusing.core.plugin_system.registry import PluginError

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")


class ConfigError(ValueError):
    """A setup file or override is malformed, names an unknown key, or has a value out of range."""


# ---------------------------------------------------------------------------------------------
# Rules: a field's metadata says what it accepts.


def _rule(kind: str, *, lo=None, hi=None, lo_open=False, hi_open=False, choices=None, plugin=None,
          length=None, pow2=False) -> dict:
    return {"rule": dict(kind=kind, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open,
                         choices=choices, plugin=plugin, length=length, pow2=pow2)}


def _int(lo=None, hi=None, pow2=False):
    return field(metadata=_rule("int", lo=lo, hi=hi, pow2=pow2))


def _float(lo=None, hi=None, lo_open=False, hi_open=False):
    return field(metadata=_rule("float", lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open))


def _str(choices=None, plugin=None):
    return field(metadata=_rule("str", choices=choices, plugin=plugin))


def _bool():
    return field(metadata=_rule("bool"))


def _names(plugin):
    return field(metadata=_rule("names", plugin=plugin))


def _ints(length, lo=1):  # length None: any non-empty list
    return field(metadata=_rule("ints", length=length, lo=lo))


def _floats(length, lo=None, lo_open=False):
    return field(metadata=_rule("floats", length=length, lo=lo, lo_open=lo_open))


def _table(per_plugin: bool):
    return field(metadata=_rule("table" if per_plugin else "kwargs"))


def _accepts(r: dict) -> str:
    """What a rule accepts, in words."""
    kind = r["kind"]
    if kind == "str":
        if r["choices"]:
            return "one of " + ", ".join(repr(c) for c in r["choices"])
        if r["plugin"]:
            names = sorted(get_registry(r["plugin"]).names())
            return f"a {r['plugin']} plugin name ({', '.join(names)})"
        return "a string"
    if kind == "bool":
        return "true or false"
    if kind == "table":
        return "a table of tables (one per plugin name)"
    if kind == "kwargs":
        return "a table of keyword parameters"
    if kind == "names":
        names = sorted(get_registry(r["plugin"]).names())
        return f"a list of {r['plugin']} names ({', '.join(names)})"
    word = {"int": "an integer", "float": "a finite number",
            "ints": (f"a list of {r['length']} integers" if r["length"] is not None
                     else "a non-empty list of integers"),
            "floats": f"a list of {r['length']} finite numbers"}[kind]
    if r["pow2"]:
        word = "a power of two"
    bounds = []
    if r["lo"] is not None:
        bounds.append(f"{'>' if r['lo_open'] else '>='} {r['lo']}")
    if r["hi"] is not None:
        bounds.append(f"{'<' if r['hi_open'] else '<='} {r['hi']}")
    if bounds:
        word += (" each " if kind in ("ints", "floats") else " ") + " and ".join(bounds)
    return word


def _in_range(x, r: dict) -> bool:
    if r["lo"] is not None and (x <= r["lo"] if r["lo_open"] else x < r["lo"]):
        return False
    if r["hi"] is not None and (x >= r["hi"] if r["hi_open"] else x > r["hi"]):
        return False
    return True


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def check_value(key: str, value: Any, rule: dict) -> Any:
    """The value converted to its field's type, or ConfigError naming key, value and rule."""
    kind = rule["kind"]

    def fail():
        raise ConfigError(f"{key} = {value!r}: expected {_accepts(rule)}")

    if kind == "int":
        if not _is_int(value) or not _in_range(value, rule):
            fail()
        if rule["pow2"] and value & (value - 1):
            fail()
        return value
    if kind == "float":
        if not _is_number(value) or not _in_range(value, rule):
            fail()
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            fail()
        return value
    if kind == "str":
        if not isinstance(value, str):
            fail()
        if rule["choices"] and value not in rule["choices"]:
            fail()
        if rule["plugin"]:
            try:
                get_registry(rule["plugin"]).get(value)
            except PluginError as exc:  # keep the registry's error type, name the key
                raise type(exc)(f"{key} = {value!r}: {exc}") from None
        return value
    if kind == "names":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail()
        registry = get_registry(rule["plugin"])
        for name in value:
            try:
                registry.get(name)
            except PluginError as exc:
                raise type(exc)(f"{key} = {value!r}: {exc}") from None
        return tuple(value)
    if kind in ("ints", "floats"):
        ok = _is_int if kind == "ints" else _is_number
        n = rule["length"]
        if (not isinstance(value, list) or (len(value) != n if n is not None else not value)
                or not all(ok(v) and _in_range(v, rule) for v in value)):
            fail()
        return tuple(value) if kind == "ints" else tuple(float(v) for v in value)
    if kind in ("table", "kwargs"):
        if not isinstance(value, dict) or (kind == "table" and not all(isinstance(v, dict)
                                                                       for v in value.values())):
            fail()
        return copy.deepcopy(value)
    raise AssertionError(kind)


# ---------------------------------------------------------------------------------------------
# The tables of defaults.toml.


@dataclass(frozen=True)
class BackendConfig:
    """[backend]: which sparse backend and renderer plugins run."""

    sparse: str = _str(plugin="sparse_backend")
    renderer: str = _str(plugin="renderer")


@dataclass(frozen=True)
class ModelConfig:
    """[model]: latent grid, latent width, surface samples."""

    latent_resolution: int = _int(lo=4, pow2=True)
    latent_channels: int = _int(lo=1)
    points_per_shape: int = _int(lo=1)


@dataclass(frozen=True)
class PointNetConfig:
    """[pointnet]: the local PointNet that pools surface samples into voxels."""

    hidden: int = _int(lo=1)
    out: int = _int(lo=1)
    reach: int = _int(lo=0, hi=1)
    frozen: bool = _bool()


@dataclass(frozen=True)
class TransformerConfig:
    """[encoder] / [decoder]: sparse window transformer sizes (width divisible by heads)."""

    width: int = _int(lo=1)
    depth: int = _int(lo=1)
    heads: int = _int(lo=1)
    window: int = _int(lo=1)


@dataclass(frozen=True)
class UpsamplerConfig:
    """[upsampler]: plugin, widths after the two 2x steps, training-time pruning."""

    name: str = _str(plugin="upsampler")
    channels: tuple[int, int] = _ints(2)
    train_prune: str = _str(choices=("none", "ground-truth"))
    params: dict = _table(per_plugin=False)


@dataclass(frozen=True)
class SelectorsConfig:
    """[selectors]: voxel selectors per stage, in order, and their keyword parameters."""

    latent: tuple[str, ...] = _names("voxel_selector")
    output: tuple[str, ...] = _names("voxel_selector")
    params: dict = _table(per_plugin=True)


@dataclass(frozen=True)
class CamerasConfig:
    """[cameras]: training views."""

    image_size: int = _int(lo=8, hi=8192)
    fov_y_deg: float = _float(lo=0, hi=180, lo_open=True, hi_open=True)
    radius: tuple[float, float] = _floats(2, lo=0, lo_open=True)
    target: str = _str(choices=("center", "surface"))


def _loss_config() -> type:
    """[loss]: one checked weight (>= 0) per key the rows of vae/train/losses.LOSS_TERMS name, then
    the options of the TSDF warm-up and the perceptual term. Built from the rows, so that a new
    loss needs no field here: its row and its default in defaults.toml are enough."""
    from focusing.core.vae.train.losses import weight_keys

    options = [
        ("perceptual", float, _float(lo=0)),
        ("perceptual_weights", str, _str()),
        ("tsdf_steps", int, _int(lo=0)),
        ("warmup_render", bool, _bool()),
        ("warmup_latents", int, _int(lo=0)),
        ("encode_selected", bool, _bool()),
        ("tsdf_balanced", bool, _bool()),
        ("tsdf_saturate", bool, _bool()),
        ("tsdf_views", int, _int(lo=1)),
    ]
    weights = [(key, float, _float(lo=0)) for key in weight_keys()]
    cls = dataclasses.make_dataclass("LossConfig", weights + options, frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = "[loss]: weights of eq. 7 (vae/train/losses.LOSS_TERMS) and the TSDF warm-up."
    return cls


LossConfig = _loss_config()


@dataclass(frozen=True)
class EngineConfig:
    """[train]: the schedule and the run folder's rhythm: the keys the training engine reads
    (focusing.core.engine), and nothing of a particular trainer. The flow stages type their own
    [train] tables with it too."""

    steps: int = _int(lo=0)
    minutes: float = _float(lo=0)
    batch_size: int = _int(lo=1)
    lr: float = _float(lo=0, lo_open=True)
    weight_decay: float = _float(lo=0)
    warmup_steps: int = _int(lo=0)
    restart_at: int = _int(lo=0)
    restart_lr: float = _float(lo=0)
    grad_clip: float = _float(lo=0)
    ema: float = _float(lo=0, hi=1, hi_open=True)
    seed: int = _int(lo=0)
    log_every: int = _int(lo=1)
    checkpoint_every: int = _int(lo=0)
    amp: str = _str(choices=("auto", "off", "bf16"))
    eval_every: int = _int(lo=0)
    nonfinite: str = _str(choices=("skip", "stop"))
    max_nonfinite_skips: int = _int(lo=1)
    deterministic: bool = _bool()


@dataclass(frozen=True)
class EvaluationConfig:
    """[evaluation]: what the VAE measures and shows beside its loss: the evaluations (every
    train.eval_every steps and at the end), the threshold calibration, TensorBoard's images and
    meshes."""

    meshes: int = _int(lo=0)
    tau: float = _float(lo=0, lo_open=True)
    calibration_meshes: int = _int(lo=0)
    calibrate_at_end: bool = _bool()
    image_every: int = _int(lo=0)
    mesh_every: int = _int(lo=0)


@dataclass(frozen=True)
class ResourcesConfig:
    """[resources]: what a VAE run may take of the machine: mesh preparation processes and the
    share of the available memory its estimated start may need (vae/train/memory.py)."""

    workers: int = _int(lo=0)
    memory_fraction: float = _float(lo=0)


@dataclass(frozen=True)
class InferenceConfig:
    """[inference]: decoding budget and pruning threshold of `focusing reconstruct`."""

    chunk_voxels: int = _int(lo=0)
    occupancy_threshold: float = _float()


@dataclass(frozen=True)
class Setup:
    """A resolved, checked setup: one attribute per table of defaults.toml."""

    name: str = _str()
    description: str = _str()
    backend: BackendConfig = None
    model: ModelConfig = None
    pointnet: PointNetConfig = None
    encoder: TransformerConfig = None
    decoder: TransformerConfig = None
    upsampler: UpsamplerConfig = None
    selectors: SelectorsConfig = None
    cameras: CamerasConfig = None
    loss: LossConfig = None
    train: EngineConfig = None
    evaluation: EvaluationConfig = None
    resources: ResourcesConfig = None
    inference: InferenceConfig = None

    @classmethod
    def from_dict(cls, config: dict) -> "Setup":
        """Check every key of a merged config dict; raise ConfigError on the first bad one."""
        if isinstance(config, Setup):
            return config
        setup = _build(cls, config, "", MOVED_KEYS)
        check_width_heads(setup, ("encoder", "decoder"))
        r0, r1 = setup.cameras.radius
        if r0 > r1:
            raise ConfigError(
                f"cameras.radius = {[r0, r1]!r}: expected [near, far] with near <= far")
        return setup

    def to_dict(self) -> dict:
        """The plain dict of this setup (lists, not tuples): what config.json holds."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def check_width_heads(config: Any, tables: tuple[str, ...]) -> None:
    """Raise ConfigError unless each transformer table's width is a multiple of its heads."""
    for table in tables:
        t = getattr(config, table)
        if t.width % t.heads:
            raise ConfigError(f"{table}.width = {t.width}: expected a multiple of "
                              f"{table}.heads ({t.heads})")


def _build(cls, data: Any, path: str, moved: dict[str, str] | None = None):
    if not isinstance(data, dict):
        raise ConfigError(f"{path} = {data!r}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = sorted(n for n in set(fields) - set(data) if "optional" not in fields[n].metadata)
    if missing:
        raise ConfigError(f"setting {path + '.' if path else ''}{missing[0]} is missing")
    extra = sorted(set(data) - set(fields))
    if extra:
        valid = ", ".join(sorted(fields))
        where = f"{path}.{extra[0]}" if path else extra[0]
        raise ConfigError(f"unknown setting {path + '.' if path else ''}{extra[0]!r}"
                          f"{_moved_hint(where, moved)}; valid keys here: {valid}")
    values = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name not in data:  # an optional field left out keeps its default
            continue
        if "rule" in f.metadata:
            values[name] = check_value(where, data[name], f.metadata["rule"])
        elif "optional" in f.metadata:
            values[name] = f.metadata["optional"](data[name], where)
        else:
            values[name] = _build(f.metadata.get("table") or _TABLES[name], data[name], where,
                                  moved)
    return cls(**values)


_TABLES = {"backend": BackendConfig, "model": ModelConfig, "pointnet": PointNetConfig,
           "encoder": TransformerConfig, "decoder": TransformerConfig, "upsampler": UpsamplerConfig,
           "selectors": SelectorsConfig, "cameras": CamerasConfig, "loss": LossConfig,
           "train": EngineConfig, "evaluation": EvaluationConfig, "resources": ResourcesConfig,
           "inference": InferenceConfig}


def setting_rules() -> dict[str, dict]:
    """Every scalar key of a setup ('train.lr', ...) with its rule (what it accepts)."""
    out = {}
    for f in dataclasses.fields(Setup):
        if "rule" in f.metadata:
            out[f.name] = f.metadata["rule"]
            continue
        for g in dataclasses.fields(_TABLES[f.name]):
            out[f"{f.name}.{g.name}"] = g.metadata["rule"]
    return out


# ---------------------------------------------------------------------------------------------
# The same machinery for other packages' typed setups (focusing-flow's FlowSetup), and typed
# replacement of one setting (what a command's shorthand flag such as --steps sets).


def setting(kind: str, **rule) -> Any:
    """A dataclass field of a setup table checked by a rule, as this module's own tables are.
    kind: int, float, str, bool, names, ints, floats (length=None: any non-empty list), table
    (of per-plugin tables) or kwargs; rule: lo, hi, lo_open, hi_open, choices, plugin, length,
    pow2."""
    return field(metadata=_rule(kind, **rule))


def table_field(cls: type) -> Any:
    """A dataclass field holding the nested table `cls` (a frozen dataclass of settings)."""
    return field(default=None, metadata={"table": cls})


def optional_field(build) -> Any:
    """A dataclass field that a table may leave out (None then); given, build(value, key) makes
    its value (raising ConfigError for a bad one)."""
    return field(default=None, metadata={"optional": build})


def build_table(cls: type, data: Any, path: str = "") -> Any:
    """The frozen dataclass `cls` of a plain table (keys under `path`), every key checked: a
    ConfigError names the first missing, unknown or bad key and what it accepts."""
    return _build(cls, data, path)


def replace_setting(config: Any, key: str, value: Any) -> Any:
    """A copy of a typed setup (frozen dataclasses) with the dotted setting `key` set to `value`,
    checked by that field's rule as a file's value is (ConfigError naming the key). Every table
    on the way is remade by dataclasses.replace, so its own checks (__post_init__) run again."""
    return _replace(config, key.split("."), value, "")


def _replace(obj: Any, keys: list[str], value: Any, path: str) -> Any:
    name = keys[0]
    where = f"{path}.{name}" if path else name
    fields = {f.name: f for f in dataclasses.fields(obj)}
    f = fields.get(name)
    if f is None:
        valid = ", ".join(sorted(fields))
        raise ConfigError(f"unknown setting {where!r}; valid keys here: {valid}")
    if len(keys) == 1:
        if "rule" not in f.metadata:
            raise ConfigError(f"setting {where!r} is a table, not a value")
        return dataclasses.replace(obj, **{name: check_value(where, value, f.metadata["rule"])})
    inner = getattr(obj, name)
    if not dataclasses.is_dataclass(inner):
        raise ConfigError(f"setting {where!r} is not a table; {'.'.join(keys)} names no setting")
    return dataclasses.replace(obj, **{name: _replace(inner, keys[1:], value, where)})


# ---------------------------------------------------------------------------------------------
# Loading and merging.


def load_defaults() -> dict:
    """The full default configuration (every valid key)."""
    with open(DEFAULTS_FILE, "rb") as fh:
        return tomllib.load(fh)


def _moved_hint(where: str, moved: dict[str, str] | None) -> str:
    """' (moved to NEW)' for a key that moved elsewhere, else ''."""
    return f" (moved to {moved[where]})" if moved and where in moved else ""


def merge_tables(base: dict, update: dict, open_tables: tuple[str, ...] = (),
                 what: str = "setting", path: str = "",
                 moved: dict[str, str] | None = None) -> dict:
    """Deep merge of `update` into a copy of `base`: an unknown key is a ConfigError (naming
    `what`, e.g. "flow setting") except inside the open tables (dotted paths) listed; one of
    `moved` (old dotted key -> new) says where it went."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}.{key}" if path else key
        if key not in out:
            # A few tables are open maps (per-selector parameters), others are closed.
            if path in open_tables or where.startswith(tuple(f"{t}." for t in open_tables)):
                out[key] = copy.deepcopy(value)
                continue
            valid = ", ".join(sorted(out)) or "(none)"
            raise ConfigError(f"unknown {what} {where!r}{_moved_hint(where, moved)}; "
                              f"valid keys here: {valid}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{what} {where!r} is a table, got {value!r}")
            out[key] = merge_tables(out[key], value, open_tables, what, where, moved)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge(base: dict, update: dict) -> dict:
    return merge_tables(base, update, OPEN_TABLES, moved=MOVED_KEYS)


# Tables whose keys are not fixed in defaults.toml.
OPEN_TABLES = ("selectors.params", "upsampler.params")
# Keys that moved (old -> new): a setup that names the old one is told where it went; a run
# folder's stored config is read with it moved (normalise_stored). [train] holds the engine's
# keys only; the VAE's evaluation and resource keys have their own tables.
MOVED_KEYS = {
    "train.eval_meshes": "evaluation.meshes",
    "train.eval_tau": "evaluation.tau",
    "train.calibration_meshes": "evaluation.calibration_meshes",
    "train.image_every": "evaluation.image_every",
    "train.mesh_every": "evaluation.mesh_every",
    "train.workers": "resources.workers",
    "train.memory_fraction": "resources.memory_fraction",
}


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


def merge_setup(name_or_file: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Defaults, preset and `key=value` overrides merged into one dict (not yet checked)."""
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
    return config


def resolve_setup(name_or_file: str, overrides: list[str] | tuple[str, ...] = ()) -> Setup:
    """The typed, checked setup of a name or file with `key=value` overrides applied."""
    return Setup.from_dict(merge_setup(name_or_file, overrides))


def load_setup(name_or_file: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Resolved configuration as a plain dict (checked: see Setup.from_dict)."""
    return resolve_setup(name_or_file, overrides).to_dict()


def validate(config: dict) -> Setup:
    """Check a config dict (types, ranges, plugin names); return its typed Setup."""
    return Setup.from_dict(config)


def dumps(config: dict | Setup) -> str:
    """The resolved configuration as JSON text (what a run folder keeps)."""
    if isinstance(config, Setup):
        config = config.to_dict()
    return json.dumps(config, indent=2, sort_keys=True)


# Keys older run folders may hold that setups no longer have.
REMOVED_KEYS = ("cameras.views_per_step",)
# Keys added with a default other than the behaviour before them: a stored config without the
# key ran with this value.
EARLIER_BEHAVIOUR = {"pointnet.reach": 0, "loss.encode_selected": False}


def normalise_stored(stored: dict) -> dict:
    """A run folder's stored config brought to today's keys: moved keys moved (MOVED_KEYS),
    removed keys dropped, new keys filled with the behaviour the run had before they existed
    (EARLIER_BEHAVIOUR, else the default)."""
    stored = copy.deepcopy(stored)
    for old, new in MOVED_KEYS.items():
        table, _, leaf = old.rpartition(".")
        if isinstance(stored.get(table), dict) and leaf in stored[table]:
            value = stored[table].pop(leaf)
            new_table, _, new_leaf = new.rpartition(".")
            if isinstance(stored.setdefault(new_table, {}), dict):
                stored[new_table].setdefault(new_leaf, value)
    for key in REMOVED_KEYS:
        table, _, leaf = key.rpartition(".")
        if isinstance(stored.get(table), dict):
            stored[table].pop(leaf, None)
    for key, value in EARLIER_BEHAVIOUR.items():
        table, _, leaf = key.rpartition(".")
        if isinstance(stored.get(table), dict):
            stored[table].setdefault(leaf, value)
    return _merge(load_defaults(), stored)


def names_train_steps(override: str) -> bool:
    """Whether a `key=value` override names train.steps (`train.steps=N` or `train={steps=N}`)."""
    keys, value = parse_override(override)
    return keys == ["train", "steps"] or (keys == ["train"] and isinstance(value, dict)
                                         and "steps" in value)


def with_steps(overrides: list[str], steps: int | None, resolved_steps) -> list[str]:
    """The overrides with a command's `--steps N` applied as train.steps=N. resolved_steps: the
    train.steps the overrides alone give; a --set train.steps that disagrees with --steps is a
    ConfigError, never silently replaced. (The commands set the typed field: apply_steps.)"""
    if steps is None:
        return list(overrides)
    _check_steps_agree(overrides, steps, resolved_steps)
    return list(overrides) + [f"train.steps={steps}"]


def _check_steps_agree(overrides: list[str], steps: int, resolved_steps) -> None:
    if any(names_train_steps(o) for o in overrides) and resolved_steps != steps:
        raise ConfigError(f"--steps {steps} and --set train.steps={resolved_steps} disagree; "
                          "give the number of steps once")


def apply_steps(setup: Any, overrides: list[str], steps: int | None) -> Any:
    """A typed setup (any with a train.steps: Setup, the flow's FlowSetup) with a command's
    `--steps N` set as train.steps by replace_setting (checked by its rule). `overrides`: the
    --set items the setup was resolved with; one naming train.steps that disagrees is a
    ConfigError, never silently replaced. Every training command takes --steps this way."""
    if steps is None:
        return setup
    _check_steps_agree(overrides, steps, setup.train.steps)
    return replace_setting(setup, "train.steps", steps)


def setup_from_run(stored: dict) -> Setup:
    """The typed setup of a run folder's config.json (see normalise_stored)."""
    return Setup.from_dict(normalise_stored(stored))
