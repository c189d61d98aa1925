"""The trainer: one code path for every setup (backend, renderer, selectors, upsampler as plugins).

A training step, per shape (DESIGN.md "The training step"): sample a camera, render the ground
truth from the raw mesh, encode, run the latent-stage selectors, decode the kept latents,
run the output-stage selectors, extract the SparseFlex mesh, render it with the (possibly
zoomed) camera, and add up the losses of eq. 7. Steps are reproducible: every random draw of
step t comes from generators seeded by (seed, t, slot), so `--resume` continues exactly.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from focusing.core.geometry.camera import Camera
from focusing.core.plugins import get_registry
from focusing.core.sparse.hashing import CoordIndex
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.sparseflex.field import sparseflex_from_features
from focusing.core.sparseflex.flexicubes import extract_mesh
from focusing.core.train import checkpoint, losses
from focusing.core.train.config import dumps
from focusing.core.train.data import ShapeDataset, ShapeRecord, shape_order
from focusing.core.train.distributed import (
    DistInfo, all_reduce_gradients, all_reduce_mean, barrier, init_distributed,
)
from focusing.core.train.memory import PeakMemory, current_rss_bytes
from focusing.core.vae.model import ShapeVAE


@dataclass
class StepResult:
    """What one step measured: loss terms, voxel counts, time, memory."""

    terms: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    mesh: tuple[torch.Tensor, torch.Tensor] | None = None


def sample_camera(record: ShapeRecord, cfg: dict, rng: np.random.Generator) -> Camera:
    """A training view: an orbit view of the whole shape, or a near-surface view (TripoSF)."""
    cams = cfg["cameras"]
    size = int(cams["image_size"])
    r0, r1 = cams["radius"]
    radius = float(rng.uniform(r0, r1))
    if cams["target"] == "center":
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        eye, target = d * radius, np.zeros(3)
        half_diag = math.sqrt(3) / 2
        near, far = max(radius - half_diag - 0.05, 1e-2), radius + half_diag + 0.05
    elif cams["target"] == "surface":
        i = int(rng.integers(len(record.points)))
        target = record.points[i].double().numpy()
        n = record.normals[i].double().numpy()
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        if d @ n < 0:  # look at the point from the side its normal faces
            d = -d
        d = d + n
        d /= np.linalg.norm(d)
        eye = target + d * radius
        near, far = 0.02, radius + 1.8
    else:
        raise ValueError(f"cameras.target must be 'center' or 'surface', got {cams['target']!r}")
    return Camera.looking_at(eye, target, fov_y_deg=float(cams["fov_y_deg"]), width=size,
                             height=size, near=near, far=far)


def make_selectors(cfg: dict, stage: str) -> list:
    """Instances of the setup's selectors for `stage`, with their parameters."""
    registry = get_registry("voxel_selector")
    params = cfg["selectors"].get("params", {})
    return [registry.get(n)(**params.get(n, {})) for n in cfg["selectors"][stage]]


def _lr_lambda(cfg: dict):
    total = max(int(cfg["train"]["steps"]), 1)
    warm = int(cfg["train"]["warmup_steps"])

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min((step - warm) / max(total - warm, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * t))

    return f


class Trainer:
    """Trains a ShapeVAE under a resolved setup, writing a run folder."""

    def __init__(self, config: dict, data_dir: Path, run_dir: Path, resume: bool = False,
                 progress: bool = True, dist_info: DistInfo | None = None,
                 eval_dir: Path | None = None):
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.dist = dist_info or init_distributed()
        self.device = self.dist.device
        self.progress = progress and self.dist.is_main
        torch.manual_seed(int(config["train"]["seed"]))
        self.data = ShapeDataset(Path(data_dir), config, workers=int(config["train"]["workers"]),
                                 progress=self.progress)
        self.eval_data = (ShapeDataset(Path(eval_dir), config, progress=self.progress)
                          if eval_dir is not None else None)
        self.model = ShapeVAE(config).to(self.device)
        self.threshold = float(config["inference"]["occupancy_threshold"])
        self.train_seconds = 0.0  # optimisation time only (no evaluation, calibration, logging)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=float(config["train"]["lr"]),
                                           weight_decay=float(config["train"]["weight_decay"]))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(config))
        self.renderer = get_registry("renderer").get(config["backend"]["renderer"])()
        self.latent_selectors = make_selectors(config, "latent")
        self.output_selectors = make_selectors(config, "output")
        self.step = 0
        self._tsdf_index: dict[str, CoordIndex] = {}
        # CPU peak memory is reported above the RSS after data and model set-up
        self._rss_base = current_rss_bytes()
        if resume:
            last = checkpoint.latest_step(self.run_dir)
            if last is None:
                raise FileNotFoundError(f"--resume: no checkpoint in {self.run_dir}")
            checkpoint.load_weights(self.run_dir, self.model, last)
            checkpoint.load_training_state(self.run_dir, last, self.optimizer, self.scheduler)
            self.step = last
        elif self.dist.is_main and (self.run_dir / "checkpoints").exists():
            raise FileExistsError(
                f"run folder {self.run_dir} already holds a run; use --resume or another --out"
            )
        self.writer = None
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.atomic_write_text(self.run_dir / "config.json", dumps(config))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        if self.dist.is_main and float(config["loss"]["perceptual"]) > 0:
            # No perceptual network ships with the toolkit (LPIPS needs torchvision and downloads
            # its backbone); the term stays off and the log says so.
            note = ("perceptual term OFF: no perceptual network is available offline "
                    f"(loss.perceptual_weights={config['loss']['perceptual_weights']!r})")
            print(note)
            if self.writer is not None:
                self.writer.add_text("notes/perceptual", note, 0)

    # ------------------------------------------------------------------------------------
    def _render(self, record: ShapeRecord, camera: Camera):
        with torch.no_grad():
            return self.renderer.render(record.vertices.to(self.device),
                                        record.faces.to(self.device), camera).detach()

    def _tsdf_target(self, record: ShapeRecord, corner_coords: torch.Tensor) -> torch.Tensor:
        """Cached TSDF target [M] at decoded corners [M,4] (every corner of a child of a latent
        voxel is in the record; a corner that is not, which cannot happen, counts as free)."""
        index = self._tsdf_index.get(record.name)
        if index is None:
            c = record.tsdf_corners
            index = CoordIndex(torch.cat([c.new_zeros(len(c), 1), c], 1).to(self.device))
            self._tsdf_index[record.name] = index
        trunc = 2.0 / (4 * int(self.cfg["model"]["latent_resolution"]))
        found = index.lookup(corner_coords)
        values = record.tsdf_values.to(self.device)[found.clamp_min(0)]
        return torch.where(found >= 0, values, torch.full_like(values, trunc))

    def _warmup_crop(self, z: SparseTensor, gen: torch.Generator) -> SparseTensor:
        """The warm-up decodes at most loss.warmup_latents latents: the nearest ones (Chebyshev
        distance, random tie-break) to a random latent voxel, so the crop is a compact block."""
        limit = int(self.cfg["loss"]["warmup_latents"])
        if limit <= 0 or len(z) <= limit:
            return z
        centre = z.coords[int(torch.randint(len(z), (1,), generator=gen))][1:]
        dist = (z.coords[:, 1:] - centre).abs().max(1).values.float()
        dist = dist + 0.5 * torch.rand(len(z), generator=gen).to(dist)
        return z.index_select(torch.argsort(dist)[:limit].sort().values)

    def _select(self, selectors, x: SparseTensor, camera: Camera, gt, record: ShapeRecord,
                rng: np.random.Generator):
        """Chain selectors: each keeps a subset of x; a new camera re-renders the ground truth."""
        for sel in selectors:
            s = sel.select(x, camera, gt, rng)
            x = x.index_select(s.index)
            if s.camera_changed:
                camera = s.camera
                gt = self._render(record, camera)
        return x, camera, gt

    def shape_loss(self, record: ShapeRecord, step: int, slot: int) -> tuple[torch.Tensor, StepResult]:
        """Loss of one shape at one step (one view), with what was measured on the way."""
        cfg, dev = self.cfg, self.device
        rng = np.random.default_rng([int(cfg["train"]["seed"]), step, slot])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        res = StepResult()
        r = int(cfg["model"]["latent_resolution"])
        active = record.active[r]
        voxels = SparseTensor(torch.cat([active.new_zeros(len(active), 1), active], 1),
                              torch.zeros(len(active), 0), r)
        mean, logvar = self.model.encode(record.points.to(dev), record.normals.to(dev),
                                         voxels.to(dev))
        eps = torch.randn(mean.shape, generator=gen).to(dev)
        z = voxels.to(dev).replace(mean + torch.exp(0.5 * logvar) * eps)
        res.counts["latent_all"] = len(z)
        if step < int(cfg["loss"]["tsdf_steps"]) and not bool(cfg["loss"]["warmup_render"]):
            targets = {2 * r: record.active[2 * r], 4 * r: record.active[4 * r]}
            return self._render_free_loss(record, z, gen, targets,
                                          {"kl": losses.kl_loss(mean, logvar)}, res)
        camera = sample_camera(record, cfg, rng)
        gt = self._render(record, camera)
        z, camera, gt = self._select(self.latent_selectors, z, camera, gt, record, rng)
        res.counts["latent_kept"] = len(z)
        terms: dict[str, torch.Tensor] = {"kl": losses.kl_loss(mean, logvar)}
        if len(z) == 0:  # the view sees none of the shape: only the KL term trains
            total = float(cfg["loss"]["kl"]) * terms["kl"]
            res.terms = {"kl": float(terms["kl"].detach()), "total": float(total.detach())}
            return total, res
        targets = {2 * r: record.active[2 * r], 4 * r: record.active[4 * r]}
        warmup = step < int(cfg["loss"]["tsdf_steps"])
        dec = self.model.decode(z, occupancy_targets=targets, prune=False)
        out = dec.features
        res.counts["output_all"] = len(out)
        out, camera, gt = self._select(self.output_selectors, out, camera, gt, record, rng)
        res.counts["output_kept"] = len(out)
        terms["occupancy"] = losses.occupancy_loss(dec.occupancy_logits, dec.occupancy_targets)
        res.counts.update(losses.occupancy_precision_recall(dec.occupancy_logits,
                                                            dec.occupancy_targets))
        field_ = sparseflex_from_features(out)
        mesh = extract_mesh(field_, training=True)
        res.counts["triangles"] = len(mesh.faces)
        pred = self.renderer.render(mesh.vertices, mesh.faces, camera)
        terms.update(losses.render_losses(pred, gt))
        terms["flex"] = mesh.l_dev
        terms["consistency"] = field_.consistency_loss()
        terms["tv"] = losses.sparse_tv_loss(field_.corner_coords, field_.corner_sdf)
        if warmup or float(cfg["loss"]["tsdf_after"]) > 0:
            trunc = 2.0 / (4 * r)
            target = self._tsdf_target(record, field_.corner_coords)
            terms["tsdf"] = losses.tsdf_loss(field_.corner_sdf, target,
                                             torch.ones_like(target, dtype=torch.bool), trunc)
        total = losses.total_loss(terms, cfg["loss"], warmup)
        res.terms = {k: float(v.detach()) for k, v in terms.items()}
        res.terms["total"] = float(total.detach())
        res.images = {"gt_depth": gt.depth, "pred_depth": pred.depth.detach(),
                      "gt_normal": gt.normal, "pred_normal": pred.normal.detach()}
        res.mesh = (mesh.vertices.detach(), mesh.faces)
        return total, res

    def _render_free_loss(self, record: ShapeRecord, z: SparseTensor, gen: torch.Generator, targets: dict, terms: dict,
                          res: StepResult) -> tuple[torch.Tensor, StepResult]:
        """The warm-up step: TSDF (eq. 5) and occupancy on every decoded corner and child of a
        compact crop of latents; no mesh extraction and no rasterisation.

        Why: on fandisk (small model, 2 CPU cores) this step takes 0.3 s against 2.2 s for a
        full decode and ~1 s for a rendered step, and 400 such steps (135 s) reach F@0.005 0.61
        where 300 steps with render losses from step 0 gave 0.05 (BENCHMARKS.md, "VAE learning")."""
        cfg, r = self.cfg, int(self.cfg["model"]["latent_resolution"])
        z = self._warmup_crop(z, gen)
        res.counts["latent_kept"] = len(z)
        dec = self.model.decode(z, occupancy_targets=targets, prune=False)
        res.counts["output_all"] = res.counts["output_kept"] = len(dec.features)
        terms["occupancy"] = losses.occupancy_loss(dec.occupancy_logits, dec.occupancy_targets)
        res.counts.update(losses.occupancy_precision_recall(dec.occupancy_logits,
                                                            dec.occupancy_targets))
        field_ = sparseflex_from_features(dec.features)
        terms["consistency"] = field_.consistency_loss()
        target = self._tsdf_target(record, field_.corner_coords)
        terms["tsdf"] = losses.tsdf_loss(field_.corner_sdf, target,
                                         torch.ones_like(target, dtype=torch.bool), 2.0 / (4 * r))
        total = losses.total_loss(terms, cfg["loss"], True)
        res.terms = {k: float(v.detach()) for k, v in terms.items()}
        res.terms["total"] = float(total.detach())
        return total, res

    def _autocast(self):
        """bf16 autocast on the GPU (train.amp = auto | bf16); full precision on the CPU."""
        amp = self.cfg["train"]["amp"]
        if amp not in ("auto", "bf16", "off"):
            raise ValueError(f"train.amp must be auto, bf16 or off, got {amp!r}")
        on = self.device.type == "cuda" and amp in ("auto", "bf16")
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on)

    def train_step(self) -> StepResult:
        """One optimisation step over this process's share of the global batch."""
        cfg = self.cfg
        step = self.step
        batch = int(cfg["train"]["batch_size"])
        world, rank = self.dist.world_size, self.dist.rank
        if batch % world:
            raise ValueError(f"train.batch_size {batch} is not divisible by {world} processes")
        order = shape_order(len(self.data), step, batch, int(cfg["train"]["seed"]))
        slots = list(range(rank * batch // world, (rank + 1) * batch // world))
        t0 = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        merged = StepResult()
        with PeakMemory(self.device, base_bytes=self._rss_base) as peak:
            for slot in slots:
                with self._autocast():
                    loss, res = self.shape_loss(self.data[order[slot]], step, slot)
                # mean over the global batch: each process holds batch/world shapes
                (loss / batch * world).backward()
                for k, v in res.terms.items():
                    merged.terms[k] = merged.terms.get(k, 0.0) + v / len(slots)
                for k, v in res.counts.items():
                    merged.counts[k] = merged.counts.get(k, 0.0) + v / len(slots)
                merged.images, merged.mesh = res.images, res.mesh
        all_reduce_gradients(self.model, world)
        clip = float(cfg["train"]["grad_clip"])
        if clip > 0:
            merged.terms["grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        self.optimizer.step()
        self.scheduler.step()
        merged.seconds = time.perf_counter() - t0
        merged.peak_memory_mb = peak.peak_mb
        for k in list(merged.terms):
            merged.terms[k] = all_reduce_mean(merged.terms[k], world)
        self.step += 1
        return merged

    def log(self, res: StepResult) -> None:
        """Write one step's scalars (and now and then images and a mesh) to TensorBoard."""
        if self.writer is None:
            return
        step = self.step
        tc = self.cfg["train"]
        if step % max(int(tc["log_every"]), 1) == 0 or step == 1:
            for k, v in res.terms.items():
                self.writer.add_scalar(f"loss/{k}", v, step)
            for k, v in res.counts.items():
                self.writer.add_scalar(f"voxels/{k}", v, step)
            self.writer.add_scalar("time/step_seconds", res.seconds, step)
            self.writer.add_scalar("memory/peak_mb", res.peak_memory_mb, step)
            self.writer.add_scalar("lr", self.scheduler.get_last_lr()[0], step)
        every = int(tc["image_every"])
        if every and (step % every == 0 or step == 1) and res.images:
            for key in ("gt_depth", "pred_depth"):
                d = res.images[key].float()
                d = d / d.max().clamp_min(1e-6)
                self.writer.add_image(f"depth/{key}", d[None], step)
            for key in ("gt_normal", "pred_normal"):
                self.writer.add_image(f"normal/{key}", res.images[key].float() * 0.5 + 0.5, step,
                                      dataformats="HWC")

    def _log_mesh(self, res: StepResult) -> None:
        every = int(self.cfg["train"]["mesh_every"])
        if self.writer is None or not every or self.step % every or res.mesh is None:
            return
        verts, faces = res.mesh
        if len(faces):
            self.writer.add_mesh("predicted_mesh", vertices=verts[None].float(),
                                 faces=faces[None].int(), global_step=self.step)

    def calibrate(self) -> dict:
        """Measure the occupancy threshold on the training meshes and store it in the run."""
        from focusing.core.train.reconstruct import decode_in_chunks
        from focusing.core.vae.calibration import calibrate_threshold, save_calibration

        r = int(self.cfg["model"]["latent_resolution"])
        chunk = int(self.cfg["inference"]["chunk_voxels"])
        halo = int(self.cfg["decoder"]["window"])
        k = int(self.cfg["train"]["calibration_meshes"])
        recs = self.data.records[:k] if k > 0 else self.data.records
        result = calibrate_threshold(
            self.model, [rec.active[r] for rec in recs], [(rec.points, rec.normals) for rec in recs],
            [rec.active[4 * r] for rec in recs],
            lambda z, thr: decode_in_chunks(self.model, z, chunk, halo, thr), start=self.threshold)
        if self.dist.is_main:
            save_calibration(self.run_dir, self.step, result)
            if self.writer is not None:
                self.writer.add_scalar("occupancy/calibrated_threshold", result["threshold"], self.step)
                self.writer.add_scalar("occupancy/calibrated_iou", result["iou"], self.step)
        self.threshold = result["threshold"]
        return result

    def evaluate_quality(self) -> dict[str, float]:
        """Reconstruct the fixed evaluation meshes (the first train.eval_meshes training meshes
        and every --eval mesh) with the calibrated threshold; log F-score, Chamfer and a normal
        render to TensorBoard and append them to RUN/quality.jsonl with the training seconds."""
        from focusing.core.geometry.mesh import Mesh
        from focusing.core.train.reconstruct import reconstruct_mesh
        try:
            from focusing.eval.metrics import evaluate
        except ImportError:  # focusing-eval not installed: nothing to score with
            return {}
        self.calibrate()
        tau = float(self.cfg["train"]["eval_tau"])
        scores = {}
        rows = []
        for split, rec in self._eval_records():
            gt = Mesh(rec.vertices.double().numpy(), rec.faces.numpy(), None)
            rec_mesh = reconstruct_mesh(self.model, self.cfg, gt,
                                        int(self.cfg["inference"]["chunk_voxels"]), self.threshold)
            if len(rec_mesh.faces) == 0:
                m = {"fscore": 0.0, "chamfer_l2": float("nan")}
            else:
                m = evaluate(rec_mesh, gt, n_points=20_000, tau=tau)
            rows.append({"step": self.step, "train_seconds": self.train_seconds, "split": split,
                         "mesh": rec.name, "fscore": m["fscore"], "chamfer_l2": m["chamfer_l2"],
                         "threshold": self.threshold, "faces": int(len(rec_mesh.faces))})
            if self.writer is not None:
                self.writer.add_scalar(f"quality_{split}/fscore/{rec.name}", m["fscore"], self.step)
                self.writer.add_scalar(f"quality_{split}/chamfer_l2/{rec.name}", m["chamfer_l2"], self.step)
                if len(rec_mesh.faces):
                    self.writer.add_image(f"quality_{split}/normals/{rec.name}",
                                          self._normal_image(rec_mesh), self.step, dataformats="HWC")
        for split in ("train", "eval"):
            f = [row["fscore"] for row in rows if row["split"] == split]
            if f:
                scores[split] = float(np.mean(f))
                if self.writer is not None:
                    self.writer.add_scalar(f"quality_{split}/mean_fscore", scores[split], self.step)
        if self.dist.is_main and rows:
            with open(self.run_dir / "quality.jsonl", "a") as fh:
                for row in rows:
                    fh.write(json.dumps(row) + "\n")
        return scores

    def _eval_records(self):
        k = int(self.cfg["train"]["eval_meshes"])
        for rec in self.data.records[:k]:
            yield "train", rec
        for rec in (self.eval_data.records if self.eval_data is not None else []):
            yield "eval", rec

    def _normal_image(self, mesh) -> torch.Tensor:
        """A normal render [H,W,3] in [0,1] of a mesh in the unit box, from a fixed view."""
        cam = Camera.looking_at(np.array([1.2, 0.9, 1.5]), np.zeros(3), fov_y_deg=40.0,
                                width=128, height=128, near=0.5, far=4.0)
        out = self.renderer.render(torch.as_tensor(mesh.vertices, dtype=torch.float32),
                                   torch.as_tensor(mesh.faces, dtype=torch.long), cam)
        img = out.normal.detach().float() * 0.5 + 0.5
        return torch.where(out.mask[..., None] > 0, img, torch.ones_like(img))

    def fit(self, steps: int | None = None) -> list[StepResult]:
        """Train until `steps` total steps (default: train.steps); checkpoints and logs as configured."""
        total = int(self.cfg["train"]["steps"] if steps is None else steps)
        history = []
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=self.step, desc=f"train {self.cfg.get('name', '')}",
                   unit="step", disable=not self.progress)
        every = int(self.cfg["train"]["checkpoint_every"])
        eval_every = int(self.cfg["train"]["eval_every"])
        quality = {}
        while self.step < total:
            res = self.train_step()
            self.train_seconds += res.seconds
            history.append(res)
            self.log(res)
            self._log_mesh(res)
            bar.update(1)
            if eval_every and self.step % eval_every == 0 and self.step < total:
                quality = self.evaluate_quality()
            post = {"loss": f"{res.terms['total']:.4f}", "kept": int(res.counts.get("latent_kept", 0))}
            if "train" in quality:
                post["F"] = f"{quality['train']:.3f}"
            bar.set_postfix(post)
            if self.dist.is_main and every and self.step % every == 0 and self.step < total:
                checkpoint.save_checkpoint(self.run_dir, self.step, self.model, self.optimizer,
                                           self.scheduler)
                self.calibrate()
        bar.close()
        if self.dist.is_main:
            checkpoint.save_checkpoint(self.run_dir, self.step, self.model, self.optimizer,
                                       self.scheduler)
            if eval_every:
                self.evaluate_quality()
            else:
                self.calibrate()
            if self.writer is not None:
                self.writer.flush()
        barrier(self.dist.world_size)
        return history

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
