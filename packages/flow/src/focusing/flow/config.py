"""The flow's setup as typed, checked tables: `FlowSetup`, built by core's config machinery.

`defaults.toml` beside this module holds every key a flow run may set and its default (the only
place flow defaults live); `--set key=value` overrides any, an unknown key is an error (except
inside encoder.params, the encoder's keyword parameters). The merged dict is checked once, by
`FlowSetup.from_dict` (focusing.core.config.build_table: the same per-key rules and messages as
the shape VAE's Setup), before anything is written: each table becomes a frozen dataclass whose
fields carry their rule, so a wrong value fails as one line naming the key, what it got and what
it accepts. Code reads attributes (`setup.train.lr`); `FlowSetup.to_dict()` gives back the plain
dict a run folder's config.json keeps, and `flow_setup_from_run` reads it back.

A flow run's config.json also records the shape VAE it trained on: `vae_config`, that VAE's
typed Setup (focusing.core.config.Setup), absent until train-flow loads the VAE.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from focusing.core.config import (
    ConfigError, EngineConfig, Setup, build_table, check_value, check_width_heads, load_defaults,
    merge_tables, optional_field, parse_override, setting, setup_from_run, table_field,
)

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
# Tables whose keys are not fixed in defaults.toml.
OPEN_TABLES = ("encoder.params",)


@dataclass(frozen=True)
class ViewsConfig:
    """[views]: the conditioning renders of every training mesh (focusing.flow.views)."""

    count: int = setting("int", lo=1)
    held_out: int = setting("int", lo=0)
    render_size: int = setting("int", lo=8, hi=8192)
    image_size: int = setting("int", lo=8, hi=8192)
    fov_y_deg: float = setting("float", lo=0, hi=180, lo_open=True, hi_open=True)
    radius: float = setting("float", lo=0, lo_open=True)
    seed: int = setting("int", lo=0)


@dataclass(frozen=True)
class ImageEncoderConfig:
    """[encoder]: the image_encoder plugin and its keyword parameters."""

    name: str = setting("str")
    params: dict = setting("kwargs")


@dataclass(frozen=True)
class StructureVAEConfig:
    """[structure_vae]: the structure VAE's sizes, loss and its own run's steps and lr."""

    channels: tuple[int, ...] = setting("ints", length=None, lo=1)
    latent_channels: int = setting("int", lo=1)
    blocks_per_level: int = setting("int", lo=0)
    loss: str = setting("str", choices=("dice", "bce"))
    kl: float = setting("float", lo=0)
    steps: int = setting("int", lo=1)
    lr: float = setting("float", lo=0, lo_open=True)

    @property
    def factor(self) -> int:
        """How much the structure VAE shrinks the grid: 2^(levels - 1)."""
        return 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class DiTConfig:
    """[structure_flow]: a transformer's sizes (width divisible by heads)."""

    width: int = setting("int", lo=1)
    depth: int = setting("int", lo=1)
    heads: int = setting("int", lo=1)
    mlp_ratio: float = setting("float", lo=0, lo_open=True)


@dataclass(frozen=True)
class LatentFlowConfig:
    """[latent_flow]: the sparse DiT's sizes: its res blocks' width, then the transformer's."""

    io_channels: int = setting("int", lo=1)
    width: int = setting("int", lo=1)
    depth: int = setting("int", lo=1)
    heads: int = setting("int", lo=1)
    mlp_ratio: float = setting("float", lo=0, lo_open=True)


@dataclass(frozen=True)
class FlowMatchingConfig:
    """[flow]: the rectified flow's path, its t distribution and the condition dropout."""

    sigma_min: float = setting("float", lo=0, hi=1, hi_open=True)
    t_mean: float = setting("float")
    t_std: float = setting("float", lo=0, lo_open=True)
    cond_drop: float = setting("float", lo=0, hi=1)


@dataclass(frozen=True)
class FlowTrainConfig:
    """[train]: the flow's schedule and run-folder rhythm, the keys of core's EngineConfig that a
    flow run sets (same rules); `engine_config` fills the others with core's defaults."""

    steps: int = setting("int", lo=0)
    batch_size: int = setting("int", lo=1)
    lr: float = setting("float", lo=0, lo_open=True)
    weight_decay: float = setting("float", lo=0)
    warmup_steps: int = setting("int", lo=0)
    grad_clip: float = setting("float", lo=0)
    ema: float = setting("float", lo=0, hi=1, hi_open=True)
    seed: int = setting("int", lo=0)
    log_every: int = setting("int", lo=1)
    checkpoint_every: int = setting("int", lo=0)
    eval_every: int = setting("int", lo=0)
    amp: str = setting("str", choices=("auto", "off", "bf16"))
    nonfinite: str = setting("str", choices=("skip", "stop"))
    max_nonfinite_skips: int = setting("int", lo=1)
    deterministic: bool = setting("bool")

    def engine_config(self, **changes) -> EngineConfig:
        """The engine's EngineConfig of this table with `changes` (engine keys the table leaves
        out, such as restart_at, take core's defaults); every value checked as core checks it."""
        merged = {**load_defaults()["train"], **plain(self), **changes}
        values = {}
        for f in dataclasses.fields(EngineConfig):
            values[f.name] = check_value(f"train.{f.name}", merged[f.name], f.metadata["rule"])
        return EngineConfig(**values)


@dataclass(frozen=True)
class SamplerConfig:
    """[sampler]: the Euler sampler of generate and eval-flow, with its CFG strengths."""

    steps: int = setting("int", lo=1)
    rescale_t: float = setting("float", lo=0, lo_open=True)
    cfg_structure: float = setting("float", lo=0)
    cfg_latent: float = setting("float", lo=0)
    cfg_interval: tuple[float, float] = setting("floats", length=2, lo=0, hi=1)


def _vae_setup(value: Any, key: str) -> Setup:
    """A stored vae_config: the shape VAE's typed Setup (brought to today's keys)."""
    if isinstance(value, Setup):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{key} = {value!r}: expected a table (the shape VAE's setup)")
    try:
        return setup_from_run(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


@dataclass(frozen=True)
class FlowSetup:
    """A resolved, checked flow setup: one attribute per table of the flow's defaults.toml, and
    the shape VAE's Setup a run trained on (vae_config; None before train-flow loads it)."""

    stage: str = setting("str")          # a flow_stage plugin name (set by train-flow --stage)
    vae_run: str = setting("str")        # the shape VAE run folder
    vae_step: int = setting("int", lo=-1)  # the VAE checkpoint step a run loaded (-1: none)
    vae_sha256: str = setting("str")     # that checkpoint's SHA-256 ("": not recorded)
    views: ViewsConfig = table_field(ViewsConfig)
    encoder: ImageEncoderConfig = table_field(ImageEncoderConfig)
    structure_vae: StructureVAEConfig = table_field(StructureVAEConfig)
    structure_flow: DiTConfig = table_field(DiTConfig)
    latent_flow: LatentFlowConfig = table_field(LatentFlowConfig)
    flow: FlowMatchingConfig = table_field(FlowMatchingConfig)
    train: FlowTrainConfig = table_field(FlowTrainConfig)
    sampler: SamplerConfig = table_field(SamplerConfig)
    vae_config: Setup | None = optional_field(_vae_setup)

    def __post_init__(self):
        """The checks across keys (also after replace_setting)."""
        check_width_heads(self, ("structure_flow", "latent_flow"))
        start, end = self.sampler.cfg_interval
        if start > end:
            raise ConfigError(f"sampler.cfg_interval = {[start, end]!r}: expected [start, end] "
                              "with start <= end")
        _check_encoder(self.encoder)

    @classmethod
    def from_dict(cls, config: dict | FlowSetup) -> FlowSetup:
        """Check every key of a merged flow config dict; raise ConfigError on the first bad
        one."""
        if isinstance(config, FlowSetup):
            return config
        return build_table(cls, config)

    def to_dict(self) -> dict:
        """The plain dict of this setup (lists, not tuples; no vae_config while it is None):
        what a run's config.json holds."""
        out = json.loads(json.dumps(dataclasses.asdict(self)))
        if self.vae_config is None:
            del out["vae_config"]
        return out


def _check_encoder(encoder: ImageEncoderConfig) -> None:
    """encoder.name is a registered image encoder and encoder.params are keywords it takes
    (whether it is available here, weights and extras, is checked when it is built)."""
    from focusing.core.plugin_system import get_registry
    from focusing.core.plugin_system.registry import PluginError

    try:
        cls = get_registry("image_encoder").get(encoder.name, require_available=False)
    except PluginError as exc:  # keep the registry's error type, name the key
        raise type(exc)(f"encoder.name = {encoder.name!r}: {exc}") from None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = sorted(n for n, p in params.items()
                   if n != "self" and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                 inspect.Parameter.KEYWORD_ONLY))
    for key in sorted(encoder.params):
        if key not in valid:
            raise ConfigError(f"unknown flow setting 'encoder.params.{key}' for the image encoder "
                              f"{encoder.name!r}; valid keys here: {', '.join(valid) or '(none)'}")


def flow_setting_rules() -> dict[str, dict]:
    """Every key of a flow setup ('train.lr', ...) with its rule (what it accepts)."""
    out = {}
    for f in dataclasses.fields(FlowSetup):
        if "rule" in f.metadata:
            out[f.name] = f.metadata["rule"]
        elif "table" in f.metadata:
            for g in dataclasses.fields(f.metadata["table"]):
                out[f"{f.name}.{g.name}"] = g.metadata["rule"]
    return out


def plain(table: Any) -> dict:
    """A typed table (or setup) as the plain dict a config.json holds (lists, not tuples)."""
    return json.loads(json.dumps(dataclasses.asdict(table)))


# ---------------------------------------------------------------------------------------------
# Loading, merging, run folders.


def load_flow_defaults() -> dict:
    """The full default flow configuration (every valid key), as a plain dict."""
    with open(DEFAULTS_FILE, "rb") as fh:
        return tomllib.load(fh)


def _merge(base: dict, update: dict) -> dict:
    return merge_tables(base, update, OPEN_TABLES, what="flow setting")


def merge_flow_config(overrides: list[str] | tuple[str, ...] = (),
                      base: dict | None = None) -> dict:
    """The flow defaults (or `base`) with `key=value` overrides applied (values read as TOML),
    as a plain dict, not yet checked; an unknown key is a ConfigError naming it."""
    config = load_flow_defaults() if base is None else base
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        config = _merge(config, nested)
    return config


def resolve_flow_setup(overrides: list[str] | tuple[str, ...] = (),
                       base: dict | None = None) -> FlowSetup:
    """The typed, checked flow setup of the defaults (or `base`) with `key=value` overrides."""
    return FlowSetup.from_dict(merge_flow_config(overrides, base))


def normalise_flow_stored(stored: dict) -> dict:
    """A flow run's stored config brought to today's keys: keys added since it was written take
    their defaults, and vae_config, the VAE's setup, is brought to today's VAE keys as its own
    run's would be (setup_from_run: moved keys moved), written as to_dict writes it; so a resume
    compares like with like. An unknown key is an error."""
    rest = {k: v for k, v in stored.items() if k != "vae_config"}
    out = _merge(load_flow_defaults(), rest)
    if "vae_config" in stored:
        vae = _vae_setup(copy.deepcopy(stored["vae_config"]), "vae_config")
        out["vae_config"] = json.loads(json.dumps(dataclasses.asdict(vae)))
    return out


def is_flow_run_config(stored: dict) -> bool:
    """Whether a run folder's stored config is a train-flow run's."""
    return "stage" in stored and "vae_config" in stored


def flow_setup_from_run(stored: dict, source: Path | str = "") -> FlowSetup:
    """The typed setup of a train-flow run's config.json (normalise_flow_stored); a ConfigError
    names `source`, the file, and the key."""
    try:
        return FlowSetup.from_dict(normalise_flow_stored(stored))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
