"""Training of the two flow stages as TrainSteps of core's shared engine (focusing.core.engine).

The engine owns everything a run shares with the VAE trainer: the run folder (config.json,
config_changes.json, tensorboard/, checkpoints/), AdamW with linear warm-up + cosine decay,
gradient clipping, the non-finite guard, safetensors checkpoints with exact resume and
torchrun. This module supplies only the steps:

- `StructureVAEStep`: the structure VAE on the occupancy of the shape VAE's latent voxels
  (Dice/BCE + KL), its own engine run in RUN/structure_vae/ (structure_vae.steps at
  structure_vae.lr), because it has its own schedule and must stay untouched afterwards;
- `StructureStep`: then, with that VAE frozen, the structure flow on its latent means
  (train.steps, in RUN/); its checkpoint holds the whole StructureStage (VAE included);
- `LatentStep`: the structured-latent flow on the shape VAE's latent means at the true voxels,
  standardised per channel (statistics in the module's buffers and RUN/summary.json).

Every random draw of slot k of step s (its view, t, noise, dropped condition) comes from
generators seeded by (seed, s, k), so `--resume` continues exactly and a torchrun process draws
the same for a slot as a single process would.

Everything here reads the typed flow setup (focusing.flow.config.FlowSetup); a stage plugin
receives it, with the shape VAE's typed Setup, in build, check and train_step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from focusing.core.config import ConfigError, Setup, EngineConfig, dumps
from focusing.core.engine import (
    Engine, StepOutput, StepResult, TrainStep, check_run_folder, load_weights, prepare,
    read_run_config,
)
from focusing.core.engine.checkpoint import latest_step
from focusing.core.engine.lock import writes_here
from focusing.core.engine.runfolder import claim_run_folder
from focusing.core.io import write_text_atomic
from focusing.core.plugin_system import FlowStage, get_registry
from focusing.core.sparse.tensor import SparseTensor, collate
from focusing.core.data.dataset import ShapeDataset, default_cache_dir, shape_order
from focusing.flow import rectified_flow as rf
from focusing.flow.config import (
    FlowSetup, FlowTrainConfig, flow_setup_from_run, is_flow_run_config, merge_flow_config,
    normalise_flow_stored, plain,
)
from focusing.flow.encoders import encoder_class
from focusing.flow.stages import (
    VAE_IDENTITY_KEYS, LatentStage, StructureStage, build_stage, check_structure_grid,
    check_vae_identity, load_vae, parameter_count,
)
from focusing.flow.structure_vae import iou, occupancy_grid, structure_vae_loss
from focusing.flow.views import cached_views, view_settings

STRUCTURE_VAE_DIR = "structure_vae"  # the structure VAE's own engine run, inside the structure run
# Config keys that fix a stage module's parameter shapes: a resume that changes them is refused.
STRUCTURE_VAE_SHAPE_KEYS = ("stage", "structure_vae.channels", "structure_vae.latent_channels",
                            "structure_vae.blocks_per_level")
STRUCTURE_SHAPE_KEYS = STRUCTURE_VAE_SHAPE_KEYS + ("structure_flow", "encoder", "vae_config.model")
LATENT_SHAPE_KEYS = ("stage", "latent_flow", "encoder", "vae_config.model", "vae_config.backend")


@dataclass
class FlowShape:
    """One training shape: its views, latent occupancy grid and (latent stage) latent means."""

    name: str
    views: torch.Tensor            # [V,3,S,S] training + held-out views
    occupancy: torch.Tensor        # [1,R,R,R] 0/1
    coords: torch.Tensor           # [K,3] active latent voxels
    # [K,C] the VAE's latent means (standardised once the stats are known)
    latents: torch.Tensor | None = None


def flow_train_config(train: FlowTrainConfig, **changes) -> EngineConfig:
    """The engine's EngineConfig of a flow [train] table with `changes` (engine keys the table
    leaves out, such as restart_at, take core's defaults); every value checked as core checks it."""
    return train.engine_config(**changes)


def prepare_shapes(setup: FlowSetup, vae, vae_setup: Setup, data_dir: Path, with_latents: bool,
                   progress: bool = False) -> list[FlowShape]:
    """The shapes of a folder (prepared by core's cached ShapeDataset), their cached views and,
    if asked, their latent means from the shape VAE."""
    dataset = ShapeDataset(data_dir, vae_setup, progress=progress)
    r = vae_setup.model.latent_resolution
    settings = view_settings(setup.views)
    view_dir = default_cache_dir().parent / "views"
    shapes = []
    for path, rec in zip(dataset.files, dataset.records):
        coords = rec.active[r]
        latents = None
        if with_latents:
            voxels = SparseTensor(torch.cat([coords.new_zeros(len(coords), 1), coords], 1),
                                  torch.zeros(len(coords), 0), r)
            with torch.no_grad():
                latents, _ = vae.encode(rec.points, rec.normals, voxels)
        views = cached_views(path, rec.vertices, rec.faces, settings, view_dir)
        shapes.append(FlowShape(rec.name, views, occupancy_grid(coords, r), coords, latents))
    return shapes


class _FlowStep(TrainStep):
    """What the flow steps share: the stage module, the batch of a step's slots and their
    seeded generators."""

    def __init__(self, setup: FlowSetup, shapes: list[FlowShape],
                 stage: StructureStage | LatentStage, device: torch.device):
        self.setup = setup
        self.shapes = shapes
        self.stage = stage
        self.device = device
        self.seed, self.batch = setup.train.seed, setup.train.batch_size

    def draws(self, step: int,
              slots: list[int]) -> tuple[list[FlowShape], torch.Tensor, list[torch.Generator]]:
        """The shapes of `slots` at `step`, one training view each [B,3,S,S] and one generator
        per slot, all fixed by (seed, step, slot)."""
        order = shape_order(len(self.shapes), step, self.batch, self.seed)
        shapes, views, gens = [], [], []
        for slot in slots:
            rng = np.random.default_rng([self.seed, step, slot, 7])
            shape = self.shapes[order[slot]]
            shapes.append(shape)
            views.append(shape.views[int(rng.integers(self.setup.views.count))])
            gens.append(torch.Generator().manual_seed(int(rng.integers(2**62))))
        return shapes, torch.stack(views).to(self.device), gens

    def flow_draws(
        self, tokens: torch.Tensor, shapes_rows: list[tuple[int, ...]],
        gens: list[torch.Generator],
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Per slot: its condition (zeroed with probability flow.cond_drop), its t and noise of
        shape shapes_rows[i]; (tokens [B,T,C], t [B], [noise_i])."""
        fl = self.setup.flow
        kept, times, noise = [], [], []
        for i, g in enumerate(gens):
            kept.append(rf.drop_condition(tokens[i:i + 1], fl.cond_drop, g)[0])
            times.append(rf.sample_t(1, g, fl.t_mean, fl.t_std))
            noise.append(torch.randn(shapes_rows[i], generator=g))
        return torch.cat(kept), torch.cat(times).to(self.device), noise


class StructureVAEStep(_FlowStep):
    """The structure VAE's step: Dice/BCE + KL on the latent occupancy [B,1,R,R,R] of the batch."""

    shape_keys = STRUCTURE_VAE_SHAPE_KEYS

    @property
    def module(self) -> torch.nn.Module:
        """The structure VAE."""
        return self.stage.svae

    def loss(self, step: int, slots: list[int]) -> StepOutput:
        """Occupancy reconstruction loss of the slots' shapes (generator of the first slot)."""
        shapes, _, gens = self.draws(step, slots)
        occ = torch.stack([s.occupancy for s in shapes]).to(self.device)
        sv = self.setup.structure_vae
        loss, terms = structure_vae_loss(self.stage.svae, occ, sv.kl, sv.loss, gens[0])
        return StepOutput(loss, terms={**terms, "total": float(loss.detach())})

    @torch.no_grad()
    def shape_iou(self) -> dict[str, float]:
        """IoU of each shape's reconstruction (latent mean, logits > 0) with its occupancy."""
        svae = self.stage.svae
        was_training = svae.training
        svae.eval()
        out = {}
        for s in self.shapes:
            occ = s.occupancy[None].to(self.device)
            mean, _ = svae.encode(occ)
            out[s.name] = iou(svae.decode(mean) > 0, occ)
        svae.train(was_training)
        return out

    def evaluate(self, step: int) -> dict[str, float]:
        """Mean reconstruction IoU over the shapes (eval/iou), every train.eval_every steps."""
        return {"iou": float(np.mean(list(self.shape_iou().values())))}


class StructureStep(_FlowStep):
    """The structure flow's step: rectified flow on the frozen structure VAE's latent means
    [B,C,G,G,G], conditioned on one view of each shape."""

    shape_keys = STRUCTURE_SHAPE_KEYS

    def __init__(self, setup: FlowSetup, shapes: list[FlowShape], stage: StructureStage,
                 device: torch.device):
        super().__init__(setup, shapes, stage, device)
        stage.svae.requires_grad_(False)

    @property
    def module(self) -> torch.nn.Module:
        """The whole StructureStage (its frozen VAE is checkpointed, not optimised)."""
        return self.stage

    def loss(self, step: int, slots: list[int]) -> StepOutput:
        """Flow-matching loss of the slots' shapes."""
        shapes, images, gens = self.draws(step, slots)
        self.stage.svae.eval()
        occ = torch.stack([s.occupancy for s in shapes]).to(self.device)
        with torch.no_grad():
            x0, _ = self.stage.svae.encode(occ)
        tokens, t, noise = self.flow_draws(self.stage.encode_images(images),
                                           [(1, *x0.shape[1:])] * len(shapes), gens)
        eps = torch.cat(noise).to(self.device)
        sigma_min = self.setup.flow.sigma_min
        x_t = rf.interpolate(x0, eps, t, sigma_min)
        loss = rf.flow_loss(self.stage.dit(x_t, t, tokens), x0, eps, sigma_min)
        return StepOutput(loss, terms={"flow": float(loss.detach()), "total": float(loss.detach())})


class LatentStep(_FlowStep):
    """The latent flow's step: rectified flow on the packed normalised latent means [N,C] of the
    slots' shapes (each its own t), conditioned on one view of each."""

    shape_keys = LATENT_SHAPE_KEYS

    @property
    def module(self) -> torch.nn.Module:
        """The LatentStage (DiT, trained encoder, latent statistics)."""
        return self.stage

    def loss(self, step: int, slots: list[int]) -> StepOutput:
        """Flow-matching loss of the slots' shapes."""
        shapes, images, gens = self.draws(step, slots)
        r = self.stage.resolution
        parts = [SparseTensor(torch.cat([s.coords.new_zeros(len(s.coords), 1), s.coords], 1),
                              s.latents, r)
                 for s in shapes]
        latents = collate(parts).to(self.device)
        tokens, t, noise = self.flow_draws(self.stage.encode_images(images),
                                           [tuple(s.latents.shape) for s in shapes], gens)
        x0, eps = latents.feats, torch.cat(noise).to(self.device)  # collate keeps the slot order
        sigma_min = self.setup.flow.sigma_min
        x_t = rf.interpolate(x0, eps, rf.expand_per_row(t, latents.coords[:, 0]), sigma_min)
        v = self.stage.dit(latents.replace(x_t), t, tokens)
        loss = rf.packed_flow_loss(v.feats, x0, eps, latents.coords[:, 0], len(shapes), sigma_min)
        return StepOutput(loss, terms={"flow": float(loss.detach()), "total": float(loss.detach())})


def structure_vae_config(setup: FlowSetup) -> tuple[dict, EngineConfig]:
    """The structure VAE's own run: the config its config.json keeps (its table, and [train]
    with its steps and lr) and the engine's EngineConfig of that [train]."""
    sv = setup.structure_vae
    train = dataclasses.replace(setup.train, steps=sv.steps, lr=sv.lr)
    config = {"stage": "structure_vae", "vae_run": setup.vae_run, "structure_vae": plain(sv),
              "train": plain(train)}
    return config, flow_train_config(train)


def flow_stage(name: str) -> FlowStage:
    """The registered flow stage called `name` (an instance); ConfigError naming the stages."""
    registry = get_registry("flow_stage")
    if name not in registry:
        raise ConfigError(f"stage must be one of {', '.join(registry.names())}, got {name!r}")
    return registry.instance(name)


def check_flow_setup(setup: FlowSetup, vae: Setup) -> None:
    """What a flow run checks before it writes anything, beyond every key's rule (FlowSetup):
    the stage is registered and accepts the setup on this shape VAE (FlowStage.check), and the
    image encoder is available here with its parameters (weights file, extra packages)."""
    flow_stage(setup.stage).check(setup, vae)
    encoder_class(setup.encoder.name, setup.encoder.params)


class StructureFlowStage(FlowStage):
    """Stage 1: where the latent voxels are. First the structure VAE's own engine run in
    RUN/structure_vae (skipped when complete, resumed when interrupted), then the structure
    flow on its frozen latent means."""

    name = "structure"
    shape_keys = STRUCTURE_SHAPE_KEYS

    def build(self, setup: FlowSetup, vae: Setup, encoder) -> StructureStage:
        """The structure VAE, the structure DiT and the image encoder."""
        return StructureStage(setup, vae, encoder)

    def check(self, setup: FlowSetup, vae: Setup) -> None:
        """The structure VAE's factor divides the shape VAE's latent resolution."""
        check_structure_grid(setup, vae)

    def before_steps(self, trainer: "FlowTrainer") -> None:
        """Train (or load) the structure VAE, then freeze it for the flow's steps."""
        sub_dir = trainer.run_dir / STRUCTURE_VAE_DIR
        sub_cfg, sub_train = structure_vae_config(trainer.setup)
        steps = sub_train.steps
        if trainer.resume and (trainer.run_dir / "checkpoints").exists():
            return  # the flow has started: its checkpoint holds the trained structure VAE
        step = StructureVAEStep(trainer.setup, trainer.shapes, trainer.model, trainer.device)
        if trainer.resume and (sub_dir / "checkpoints").exists() and latest_step(sub_dir) == steps:
            load_weights(sub_dir, trainer.model.svae, steps)
            trainer.structure_vae_iou = step.shape_iou()
            return
        engine = Engine(step, sub_train, sub_dir, sub_cfg,
                        resume=trainer.resume and (sub_dir / "checkpoints").exists(),
                        allow_changes=trainer.allow_changes, progress=trainer.progress,
                        dist_info=trainer.dist, name="structure VAE")
        try:
            trainer.vae_history = engine.fit()
            # the checkpoint's weights: with train.ema, the average, which the flow then freezes
            load_weights(sub_dir, trainer.model.svae, engine.step)
            trainer.structure_vae_iou = step.shape_iou()
            if engine.writer is not None:
                mean_iou = float(np.mean(list(trainer.structure_vae_iou.values())))
                engine.writer.add_scalar("eval/iou", mean_iou, engine.step)
        finally:
            engine.close()

    def train_step(self, setup: FlowSetup, shapes: list, module, device) -> StructureStep:
        """The structure flow's step."""
        return StructureStep(setup, shapes, module, device)

    def summary(self, trainer: "FlowTrainer") -> dict:
        """The structure VAE's reconstruction IoU per shape and its mean."""
        per_shape = getattr(trainer, "structure_vae_iou", None)
        if not per_shape:
            return {}
        return {"structure_vae_iou": {"mean": float(np.mean(list(per_shape.values()))),
                                      **per_shape}}


class LatentFlowStage(FlowStage):
    """Stage 2: what the latent voxels hold, on the shape VAE's latent means standardised per
    channel (the statistics are the module's buffers)."""

    name = "latent"
    shape_keys = LATENT_SHAPE_KEYS
    needs_latents = True

    def build(self, setup: FlowSetup, vae: Setup, encoder) -> LatentStage:
        """The latent DiT, its statistics buffers and the image encoder."""
        return LatentStage(setup, vae, encoder)

    def before_steps(self, trainer: "FlowTrainer") -> None:
        """Measure the per-channel statistics of all shapes' latents and standardise them."""
        model = trainer.model
        allz = torch.cat([s.latents for s in trainer.shapes])
        model.latent_mean.copy_(allz.mean(0))
        model.latent_std.copy_(allz.std(0).clamp_min(1e-6) if len(allz) > 1
                               else torch.ones(allz.shape[1]))
        for s in trainer.shapes:
            s.latents = model.normalize(s.latents.to(trainer.device)).cpu()

    def train_step(self, setup: FlowSetup, shapes: list, module, device) -> LatentStep:
        """The latent flow's step."""
        return LatentStep(setup, shapes, module, device)

    def summary(self, trainer: "FlowTrainer") -> dict:
        """The latent statistics."""
        return {"latent_mean": trainer.model.latent_mean.tolist(),
                "latent_std": trainer.model.latent_std.tolist()}


class FlowTrainer:
    """A train-flow run: prepares the data, trains the stage on the shared engine."""

    def __init__(self, setup: FlowSetup, data_dir: Path, run_dir: Path, resume: bool = False,
                 progress: bool = True, allow_changes: bool = False, dist_info=None):
        # the setup is checked (every key, the stage on this VAE, the encoder) before anything
        # is written
        setup = FlowSetup.from_dict(setup)
        self.progress = progress
        self.resume, self.allow_changes = resume, allow_changes
        self.stage_plugin = flow_stage(setup.stage)
        self.vae, vae_setup, identity = load_vae(Path(setup.vae_run))
        if resume:  # a run keeps the VAE identity it started with (none: an older run)
            if self.stage_plugin.needs_latents:  # latents of other weights would mix
                check_vae_identity(Path(run_dir), setup, identity, remedy=(
                    "start a new flow run on this VAE (another --out), or restore its weights"))
            identity = {k: getattr(setup, k) for k in VAE_IDENTITY_KEYS}
        setup = dataclasses.replace(setup, vae_run=str(Path(setup.vae_run).resolve()),
                                    vae_config=vae_setup, **identity)
        check_flow_setup(setup, vae_setup)
        self.setup, self.stage = setup, setup.stage
        # one process per run folder, locked before anything is written (rank 0 writes)
        self.lock = claim_run_folder(run_dir, resume, flag=None) if writes_here() else None
        self.run_dir = self.lock.folder if self.lock is not None else Path(run_dir)
        self.train = flow_train_config(setup.train)
        config = setup.to_dict()  # what config.json keeps
        # the run folder is checked before the (slow) data preparation
        flow_resume = resume and (self.run_dir / "checkpoints").exists()
        if resume and not (self.run_dir / "config.json").exists():
            raise FileNotFoundError(f"--resume: {self.run_dir} holds no run")
        if not resume and (self.run_dir / "config.json").exists():
            raise FileExistsError(f"run folder {self.run_dir} already holds a run; use --resume or "
                                  "another --out")
        check_run_folder(self.run_dir, config, flow_resume, allow_changes,
                         self.stage_plugin.shape_keys, normalise_flow_stored)
        # seeds torch: the same weights for the same seed
        self.dist = dist_info or prepare(self.train)
        if self.dist.is_main and not flow_resume:
            # written now (the engine rewrites it) so that a run stopped in the structure VAE's
            # phase can be resumed
            write_text_atomic(self.run_dir / "config.json", dumps(config), make_parents=True)
        self.device = self.dist.device
        self.model = build_stage(setup, vae_setup).to(self.device)
        self.shapes = prepare_shapes(setup, self.vae, vae_setup, data_dir,
                                     self.stage_plugin.needs_latents,
                                     progress and self.dist.is_main)
        self.vae_history: list[StepResult] = []
        self.stage_plugin.before_steps(self)
        self.trainstep: TrainStep = self.stage_plugin.train_step(setup, self.shapes, self.model,
                                                                 self.device)
        self.engine = Engine(self.trainstep, self.train, self.run_dir, config, resume=flow_resume,
                             allow_changes=allow_changes, progress=progress, dist_info=self.dist,
                             name=f"flow {self.stage}", normalise_config=normalise_flow_stored)
        if self.dist.is_main and not (self.run_dir / "summary.json").exists():
            self._write_summary()

    def _write_summary(self) -> None:
        summary = {"stage": self.stage, "parameters": parameter_count(self.model),
                   "shapes": [s.name for s in self.shapes], **self.stage_plugin.summary(self)}
        write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))

    @property
    def step(self) -> int:
        """Flow steps done so far."""
        return self.engine.step

    def fit(self) -> list[StepResult]:
        """Train the flow to train.steps; checkpoints and TensorBoard as configured."""
        return self.engine.fit()

    def close(self) -> None:
        """Close TensorBoard and let the run folder's lock go."""
        self.engine.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def resume_config(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> FlowSetup:
    """The typed setup of a train-flow run's stored config.json (every key checked; a bad one is
    a ConfigError naming the file) with `key=value` overrides applied on top."""
    stored = read_run_config(Path(run_dir))
    if not is_flow_run_config(stored):
        raise ConfigError(f"{run_dir} is not a train-flow run folder")
    base = flow_setup_from_run(stored, Path(run_dir) / "config.json")
    return FlowSetup.from_dict(merge_flow_config(overrides, base=base.to_dict()))


def last_loss(history: list[StepResult]) -> float:
    """The last step's total loss (nan when nothing was trained)."""
    return history[-1].terms["total"] if history else math.nan
