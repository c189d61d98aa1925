"""Training of the two flow stages: `structure_loss` and `latent_loss`, one step each, and a
minimal loop around them.

TO BE MOVED ONTO THE SHARED TRAINING ENGINE (DESIGN.md "The training engine"): when core's engine
lands, the two loss functions become TrainSteps plugged into it, and `FlowTrainer.fit` (run
folder, step loop, warm-up, clipping, non-finite guard, checkpoints, resume, TensorBoard) goes.
The loop here is single-process (no torchrun yet).

Stage `structure` trains in two phases in one run: first the structure VAE on the occupancy of
the shape VAE's latent voxels (`structure_vae.steps`), then, with it frozen, the structure flow on
its latent means (`train.steps`). Stage `latent` trains the structured-latent flow on the shape
VAE's latent means at the true voxels, standardised per channel (statistics in the run). Every
random draw of step s comes from generators seeded by (seed, s), so `--resume` continues exactly.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from focusing.core.sparse.tensor import SparseTensor, collate
from focusing.core.train import checkpoint
from focusing.core.train.data import ShapeDataset, default_cache_dir, shape_order
from focusing.flow import rectified_flow as rf
from focusing.flow.stages import LatentStage, StructureStage, build_stage, load_vae, parameter_count
from focusing.flow.structure_vae import iou, occupancy_grid, structure_vae_loss
from focusing.flow.views import cached_views, view_settings


@dataclass
class FlowShape:
    """One training shape: its views, latent occupancy grid and (latent stage) latent means."""

    name: str
    views: torch.Tensor            # [V,3,S,S] training + held-out views
    occupancy: torch.Tensor        # [1,R,R,R] 0/1
    coords: torch.Tensor           # [K,3] active latent voxels
    latents: torch.Tensor | None = None  # [K,C] the VAE's latent means (standardised once the stats are known)


@dataclass
class StepLog:
    """What one step measured."""

    step: int
    phase: str
    terms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def prepare_shapes(cfg: dict, vae, vae_cfg: dict, data_dir: Path, with_latents: bool,
                   progress: bool = False) -> list[FlowShape]:
    """The shapes of a folder (prepared by core's cached ShapeDataset), their cached views and,
    if asked, their latent means from the shape VAE."""
    dataset = ShapeDataset(data_dir, vae_cfg, progress=progress)
    r = int(vae_cfg["model"]["latent_resolution"])
    settings = view_settings(cfg)
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


def _draws(cfg: dict, step: int, n_shapes: int) -> tuple[list[int], list[int], torch.Generator]:
    """Shapes, training-view indices and the torch generator of a step (fixed by seed and step)."""
    seed, batch = int(cfg["train"]["seed"]), int(cfg["train"]["batch_size"])
    shapes = shape_order(n_shapes, step, batch, seed)
    rng = np.random.default_rng([seed, step, 7])
    views = [int(v) for v in rng.integers(0, int(cfg["views"]["count"]), size=batch)]
    return shapes, views, torch.Generator().manual_seed(seed * 1_000_003 + step)


def structure_loss(model: StructureStage, cfg: dict, occupancy: torch.Tensor, images: torch.Tensor,
                   phase: str, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """One structure-stage loss: phase "vae" (Dice/BCE + KL of occupancy [B,1,R,R,R]) or phase
    "flow" (rectified flow on the frozen VAE's latent means, conditioned on images [B,3,S,S])."""
    sv, fl = cfg["structure_vae"], cfg["flow"]
    if phase == "vae":
        return structure_vae_loss(model.svae, occupancy, float(sv["kl"]), sv["loss"], generator)
    with torch.no_grad():
        x0, _ = model.svae.encode(occupancy)
    b, dev = x0.shape[0], x0.device
    tokens, _ = rf.drop_condition(model.encode_images(images), float(fl["cond_drop"]), generator)
    t = rf.sample_t(b, generator, float(fl["t_mean"]), float(fl["t_std"])).to(dev)
    eps = torch.randn(x0.shape, generator=generator).to(dev)
    x_t = rf.interpolate(x0, eps, t, float(fl["sigma_min"]))
    loss = rf.flow_loss(model.dit(x_t, t, tokens), x0, eps, float(fl["sigma_min"]))
    return loss, {"flow": float(loss.detach())}


def latent_loss(model: LatentStage, cfg: dict, latents: SparseTensor, images: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """One latent-stage loss: rectified flow on packed normalised latents [N,C] (B shapes, each
    its own t), conditioned on images [B,3,S,S]."""
    fl = cfg["flow"]
    b, dev = latents.batch_size, latents.device
    x0 = latents.feats
    tokens, _ = rf.drop_condition(model.encode_images(images), float(fl["cond_drop"]), generator)
    t = rf.sample_t(b, generator, float(fl["t_mean"]), float(fl["t_std"])).to(dev)
    eps = torch.randn(x0.shape, generator=generator).to(dev)
    x_t = rf.interpolate(x0, eps, rf.expand_per_row(t, latents.coords[:, 0]), float(fl["sigma_min"]))
    v = model.dit(latents.replace(x_t), t, tokens)
    loss = rf.flow_loss(v.feats, x0, eps, float(fl["sigma_min"]))
    return loss, {"flow": float(loss.detach())}


class FlowTrainer:
    """A train-flow run: prepares the data, trains the stage, writes the run folder."""

    def __init__(self, cfg: dict, data_dir: Path, run_dir: Path, resume: bool = False, progress: bool = True):
        self.run_dir = Path(run_dir)
        self.progress = progress
        if (self.run_dir / "config.json").exists() and not resume:
            raise FileExistsError(f"{self.run_dir} already holds a run; pass --resume to continue it")
        if resume:
            if not (self.run_dir / "config.json").exists():
                raise FileNotFoundError(f"--resume: {self.run_dir} holds no run")
            cfg = json.loads((self.run_dir / "config.json").read_text())
        self.vae, vae_cfg = load_vae(Path(cfg["vae_run"]))
        cfg = {**cfg, "vae_run": str(Path(cfg["vae_run"]).resolve()), "vae_config": vae_cfg}
        self.cfg = cfg
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(int(cfg["train"]["seed"]))  # the same initial weights for the same seed
        self.model = build_stage(cfg, vae_cfg)
        self.stage = cfg["stage"]
        self.shapes = prepare_shapes(cfg, self.vae, vae_cfg, data_dir, self.stage == "latent", progress)
        if self.stage == "latent":
            allz = torch.cat([s.latents for s in self.shapes])
            self.model.latent_mean.copy_(allz.mean(0))
            self.model.latent_std.copy_(allz.std(0).clamp_min(1e-6) if len(allz) > 1 else torch.ones(allz.shape[1]))
            for s in self.shapes:
                s.latents = self.model.normalize(s.latents)
        self.model.to(self.device)
        tr = cfg["train"]
        self.vae_steps = int(cfg["structure_vae"]["steps"]) if self.stage == "structure" else 0
        self.total_steps = self.vae_steps + int(tr["steps"])
        groups = [{"params": [p for n, p in self.model.named_parameters() if not n.startswith("svae.")],
                   "lr": float(tr["lr"])}]
        if self.stage == "structure":
            groups.append({"params": list(self.model.svae.parameters()), "lr": float(cfg["structure_vae"]["lr"])})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=float(tr["weight_decay"]))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._warmup)
        self.step = 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and checkpoint.latest_step(self.run_dir) is not None:
            self.step = checkpoint.load_weights(self.run_dir, self.model)
            checkpoint.load_training_state(self.run_dir, self.step, self.optimizer, self.scheduler)
        else:
            checkpoint.atomic_write_text(self.run_dir / "config.json", json.dumps(cfg, indent=2, sort_keys=True))
            summary = {"stage": self.stage, "parameters": parameter_count(self.model),
                       "shapes": [s.name for s in self.shapes]}
            if self.stage == "latent":
                summary["latent_mean"] = self.model.latent_mean.tolist()
                summary["latent_std"] = self.model.latent_std.tolist()
            checkpoint.atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:  # tensorboard not installed: metrics.jsonl still has everything
            pass

    def _warmup(self, step: int) -> float:
        start = self.vae_steps if step >= self.vae_steps else 0
        return min(1.0, (step - start + 1) / max(1, int(self.cfg["train"]["warmup_steps"])))

    def phase(self, step: int) -> str:
        """Which model step `step` trains: "vae" (structure VAE) or "flow"."""
        return "vae" if step < self.vae_steps else "flow"

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float], str]:
        """The loss of step `step` on its batch (drawn from the seed and the step)."""
        idx, views, g = _draws(self.cfg, step, len(self.shapes))
        images = torch.stack([self.shapes[i].views[v] for i, v in zip(idx, views)]).to(self.device)
        phase = self.phase(step)
        if self.stage == "structure":
            occ = torch.stack([self.shapes[i].occupancy for i in idx]).to(self.device)
            self.model.svae.train(phase == "vae")
            self.model.svae.requires_grad_(phase == "vae")
            loss, terms = structure_loss(self.model, self.cfg, occ, images, phase, g)
        else:
            r = self.model.resolution
            parts = []
            for i in idx:
                s = self.shapes[i]
                coords = torch.cat([s.coords.new_zeros(len(s.coords), 1), s.coords], 1)
                parts.append(SparseTensor(coords, s.latents, r))
            latents = collate(parts).to(self.device)
            loss, terms = latent_loss(self.model, self.cfg, latents, images, g)
        return loss, terms, phase

    @torch.no_grad()
    def structure_vae_iou(self) -> dict[str, float]:
        """IoU of the structure VAE's reconstruction (latent mean, logits > 0) of every shape's
        latent occupancy."""
        self.model.svae.eval()
        out = {}
        for s in self.shapes:
            occ = s.occupancy[None].to(self.device)
            mean, _ = self.model.svae.encode(occ)
            out[s.name] = iou(self.model.svae.decode(mean) > 0, occ)
        return out

    def _record_iou(self) -> None:
        per_shape = self.structure_vae_iou()
        summary_file = self.run_dir / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        summary["structure_vae_iou"] = {"mean": float(np.mean(list(per_shape.values()))), **per_shape}
        checkpoint.atomic_write_text(summary_file, json.dumps(summary, indent=2))
        if self.writer is not None:
            self.writer.add_scalar("vae/iou", summary["structure_vae_iou"]["mean"], self.step)

    def train_step(self) -> StepLog:
        """One optimiser step (skipped, and logged, when the loss or a gradient is not finite)."""
        t0 = time.perf_counter()
        self.model.train()
        loss, terms, phase = self.loss(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None],
                                                  float(self.cfg["train"]["grad_clip"]))
            if torch.isfinite(norm):
                self.optimizer.step()
            else:
                terms["skipped_nonfinite_grad"] = 1.0
        else:
            terms["skipped_nonfinite_loss"] = 1.0
        self.scheduler.step()
        terms["total"] = float(loss.detach())
        log = StepLog(self.step, phase, terms, time.perf_counter() - t0)
        self.step += 1
        return log

    def _log(self, log: StepLog) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": log.step, "phase": log.phase, "seconds": log.seconds, **log.terms}) + "\n")
        if self.writer is not None:
            for key, value in log.terms.items():
                self.writer.add_scalar(f"{log.phase}/{key}", value, log.step)
            self.writer.add_scalar("time/step_seconds", log.seconds, log.step)

    def fit(self) -> list[StepLog]:
        """Train to the configured number of steps; checkpoint periodically and at the end."""
        from tqdm.auto import tqdm

        every = int(self.cfg["train"]["checkpoint_every"])
        history = []
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train-flow {self.stage}",
                   disable=not self.progress)
        while self.step < self.total_steps:
            log = self.train_step()
            history.append(log)
            if log.step % max(1, int(self.cfg["train"]["log_every"])) == 0 or self.step == self.total_steps:
                self._log(log)
            if (every > 0 and self.step % every == 0) or self.step == self.total_steps:
                checkpoint.save_checkpoint(self.run_dir, self.step, self.model, self.optimizer, self.scheduler)
            if self.stage == "structure" and self.step == self.vae_steps:
                self._record_iou()
            bar.update(1)
            bar.set_postfix(phase=log.phase, loss=f"{log.terms['total']:.4f}")
        bar.close()
        if self.step == 0 or not history and checkpoint.latest_step(self.run_dir) is None:
            checkpoint.save_checkpoint(self.run_dir, self.step, self.model, self.optimizer, self.scheduler)
        return history

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def last_loss(history: list[StepLog]) -> float:
    """The last step's total loss (nan when nothing was trained)."""
    return history[-1].terms["total"] if history else math.nan
