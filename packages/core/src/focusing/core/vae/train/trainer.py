"""The trainer: one code path for every setup (backend, renderer, selectors, upsampler as plugins).

A training step, per shape (docs/DESIGN.md "The training step"): sample a camera, render the ground
truth from the raw mesh, encode, run the latent-stage selectors, decode the kept latents,
run the output-stage selectors, extract the SparseFlex mesh, render it with the (possibly
zoomed) camera, and add up the losses of eq. 7. Steps are reproducible: every random draw of
step t comes from generators seeded by (seed, t, slot), so `--resume` continues exactly.

With `loss.encode_selected` (the default) the latent selectors, which read coordinates only,
run before the encoder, and only the kept latents and the encoder's reach around them are
encoded (selected_region): at output 1024 the default model's step took 1.0 GB and 1.4 s
against 6.2 GB and 28.7 s when it encoded all 501,361 latents (BENCHMARKS.md, "Session 10").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from focusing.core.config import Setup, normalise_stored
from focusing.core.data.dataset import ShapeDataset
from focusing.core.data.records import ShapeRecord
from focusing.core.data.streaming import StepRecords
from focusing.core.engine import (
    Engine, StepOutput, StepResult, TrainStep, check_run_folder, prepare, set_reproducibility,
)
from focusing.core.engine.distributed import DistInfo
from focusing.core.engine.lock import writes_here
from focusing.core.engine.profile import phase
from focusing.core.engine.runfolder import claim_run_folder
from focusing.core.geometry.camera import Camera
from focusing.core.geometry.voxelize import near_voxels
from focusing.core.io import resolve_dotdot
from focusing.core.plugin_system import get_registry
from focusing.core.selection import run_selectors
from focusing.core.sparse.hashing import CoordIndex
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.sparseflex.field import sparseflex_from_features
from focusing.core.sparseflex.flexicubes import extract_mesh
from focusing.core.vae.model import ShapeVAE
from focusing.core.vae.pointnet import holding_voxels
from focusing.core.vae.train import losses
from focusing.core.vae.train.memory import check_run_memory

@dataclass
class ShapeResult:
    """What one shape's loss measured: loss terms, voxel counts, renders, the extracted mesh."""

    terms: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    mesh: tuple[torch.Tensor, torch.Tensor] | None = None


# Setup tables that fix the VAE's parameter shapes: a resume that changes them is refused.
VAE_SHAPE_KEYS = ("model", "pointnet", "encoder", "decoder", "upsampler")


def sample_camera(record: ShapeRecord, setup: Setup, rng: np.random.Generator) -> Camera:
    """A training view: an orbit view of the whole shape, or a near-surface view (TripoSF)."""
    cams = setup.cameras
    size = cams.image_size
    r0, r1 = cams.radius
    radius = float(rng.uniform(r0, r1))
    if cams.target == "center":
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        eye, target = d * radius, np.zeros(3)
        half_diag = math.sqrt(3) / 2
        near, far = max(radius - half_diag - 0.05, 1e-2), radius + half_diag + 0.05
    else:  # "surface" (the setup check allows nothing else)
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
    return Camera.looking_at(eye, target, fov_y_deg=cams.fov_y_deg, width=size,
                             height=size, near=near, far=far)


@dataclass
class WarmupCrop:
    """A warm-up crop of latent voxels and the region the encoder needs for it.

    crop: rows [K] of the crop (sorted); region: rows [N'] (sorted) of every voxel within
    `halo` voxels of it; crop_in_region: the crop's positions in region [K]. centre [3] and
    radius (the crop's largest Chebyshev distance to centre) describe both."""

    crop: torch.Tensor
    region: torch.Tensor
    crop_in_region: torch.Tensor
    centre: torch.Tensor
    radius: int
    halo: int

    def holds_needed_points(self, points: torch.Tensor, resolution: int,
                            reach: int) -> torch.Tensor:
        """Mask [P] of the points [P,3] whose voxel lies within `reach` of the region: the ones
        the PointNet pools into the region's voxels."""
        ijk = holding_voxels(points, resolution)
        dist = (ijk - self.centre.to(ijk)).abs().max(1).values
        return dist <= self.radius + self.halo + reach


def warmup_crop(coords: torch.Tensor, limit: int, halo: int, gen: torch.Generator) -> WarmupCrop:
    """The `limit` voxels of coords [N,3] nearest (Chebyshev, random tie-break) to a random one,
    and the region within `halo` of them; limit <= 0 or >= N: every voxel.

    With halo = encoder depth x (window - 1), a window transformer encodes the crop's voxels
    from the region exactly as from the whole shape (each block reaches window - 1 voxels);
    tests/train/test_warmup_crop.py checks it. On the nine example meshes (latent 32, crops of
    512) the region is a fraction of the shape, which matters with pointnet.reach = 1, where
    the PointNet pools 27 times as many (point, voxel) pairs."""
    n = len(coords)
    centre = coords[int(torch.randint(n, (1,), generator=gen))]
    dist = (coords - centre).abs().max(1).values
    if limit <= 0 or n <= limit:
        every = torch.arange(n, device=coords.device)
        return WarmupCrop(every, every, every, centre, int(dist.max()), halo)
    noisy = dist.float() + 0.5 * torch.rand(n, generator=gen).to(coords.device)
    crop = torch.argsort(noisy)[:limit].sort().values
    radius = int(dist[crop].max())
    region = (dist <= radius + halo).nonzero().squeeze(1)
    return WarmupCrop(crop, region, torch.searchsorted(region, crop), centre, radius, halo)


def selected_region(coords: torch.Tensor, rows: torch.Tensor, points: torch.Tensor,
                    resolution: int, halo: int, reach: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(region [N'] sorted rows of coords [N,3] within `halo` voxels (Chebyshev) of the kept rows
    [K], mask [P] of the points [P,3] whose holding voxel lies within halo + reach of them):
    what the encoder needs to give the kept latents their whole-shape features (WarmupCrop's
    argument, for any kept set). No kept rows: every row and every point."""
    if len(rows) == 0:
        return (torch.arange(len(coords), device=coords.device),
                torch.ones(len(points), dtype=torch.bool, device=points.device))
    kept = coords[rows]
    region = near_voxels(coords, kept, halo).nonzero().squeeze(1).to(coords.device)
    near = near_voxels(holding_voxels(points, resolution), kept, halo + reach).to(points.device)
    return region, near


def make_selectors(setup: Setup, stage: str) -> list:
    """Instances of the setup's selectors for `stage`, with their parameters."""
    registry = get_registry("voxel_selector")
    params = setup.selectors.params
    return [registry.get(n)(**params.get(n, {})) for n in getattr(setup.selectors, stage)]


class VAEStep(TrainStep):
    """The VAE's own step: data, cameras, selectors, decode, render, losses (docs/DESIGN.md)."""

    slots_per_call = 1  # one shape per backward: memory holds one shape's graph at a time
    counts_tag = "voxels"
    shape_keys = VAE_SHAPE_KEYS

    def __init__(self, setup: Setup, data: ShapeDataset, device: torch.device,
                 eval_data: ShapeDataset | None = None, run_dir: Path | None = None,
                 is_main: bool = True):
        self.setup = setup
        self.data = data
        self.eval_data = eval_data
        self.run_dir = run_dir
        self.is_main = is_main
        self.device = device
        self.model = ShapeVAE(setup.to_dict()).to(device)
        self.threshold = setup.inference.occupancy_threshold  # until the first calibration
        self.train_seconds = 0.0  # set by the engine before evaluate()
        # the record of (step, slot): indexed in memory, or read ahead from a streamed set
        self.records = StepRecords(data, setup.train.batch_size, setup.train.seed)
        self._tsdf_index: dict[str, CoordIndex] = self.records.cache()
        self.renderer = get_registry("renderer").get(setup.backend.renderer)()
        self.latent_selectors = make_selectors(setup, "latent")
        self.output_selectors = make_selectors(setup, "output")

    @property
    def module(self) -> torch.nn.Module:
        """The ShapeVAE."""
        return self.model

    def loss(self, step: int, slots: list[int]) -> StepOutput:
        """Loss of the shape at slot `slots[0]` of step's global batch (one slot per call)."""
        (slot,) = slots
        total, res = self.shape_loss(self.records(step, slot), step, slot)
        return StepOutput(total, terms=res.terms, counts=res.counts, images=res.images,
                          extra={"mesh": res.mesh},
                          postfix={"kept": int(res.counts.get("latent_kept", 0))})

    def log(self, writer, step: int, res: StepResult) -> None:
        """Depth and normal images every evaluation.image_every steps, a mesh every
        evaluation.mesh_every."""
        every = self.setup.evaluation.image_every
        if every and (step % every == 0 or step == 1) and res.images:
            for key in ("gt_depth", "pred_depth"):
                d = res.images[key].float()
                d = d / d.max().clamp_min(1e-6)
                writer.add_image(f"depth/{key}", d[None], step)
            for key in ("gt_normal", "pred_normal"):
                writer.add_image(f"normal/{key}", res.images[key].float() * 0.5 + 0.5, step,
                                 dataformats="HWC")
        for key, img in getattr(self, "_eval_images", {}).items():
            writer.add_image(f"quality/{key}/normals", img, step, dataformats="HWC")
        self._eval_images = {}
        every = self.setup.evaluation.mesh_every
        if every and step % every == 0 and res.mesh is not None:
            verts, faces = res.mesh
            if len(faces):
                writer.add_mesh("predicted_mesh", vertices=verts[None].float(),
                                faces=faces[None].int(), global_step=step)

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
        trunc = 2.0 / (4 * self.setup.model.latent_resolution)
        found = index.lookup(corner_coords)
        values = record.tsdf_values.to(self.device)[found.clamp_min(0)]
        return torch.where(found >= 0, values, torch.full_like(values, trunc))

    def _render_free_loss(self, record: ShapeRecord, voxels: SparseTensor, gen: torch.Generator,
                          res: ShapeResult) -> tuple[torch.Tensor, ShapeResult]:
        """The warm-up step: TSDF (eq. 5) and occupancy on every decoded corner and child of a
        compact crop of latents; no mesh extraction and no rasterisation. Only the crop's
        encoder region is encoded (see WarmupCrop), so the crop's latents are those of the
        whole shape at a fraction of the cost.

        Why: on fandisk (small model, 2 CPU cores) this step took 0.3 s against 2.2 s for a
        full decode, and 400 such steps (135 s) reached F@0.005 0.61 where 300 steps with
        render losses from step 0 gave 0.05 (BENCHMARKS.md, "VAE learning")."""
        setup, dev = self.setup, self.device
        r = setup.model.latent_resolution
        with phase("select"):
            crop = warmup_crop(voxels.coords[:, 1:], setup.loss.warmup_latents,
                               setup.encoder.depth * (setup.encoder.window - 1), gen)
            region = voxels.index_select(crop.region)
            near = crop.holds_needed_points(record.points, r, setup.pointnet.reach)
        with phase("encode"):
            mean, logvar = self.model.encode(record.points[near].to(dev),
                                             record.normals[near].to(dev), region.to(dev))
            mean, logvar = mean[crop.crop_in_region], logvar[crop.crop_in_region]
        eps = torch.randn(mean.shape, generator=gen).to(dev)
        z = region.index_select(crop.crop_in_region).to(dev).replace(
            mean + torch.exp(0.5 * logvar) * eps)
        res.counts["latent_all"] = len(voxels)
        res.counts["latent_kept"] = len(z)
        res.counts["latent_encoded"] = len(region)
        targets = {2 * r: record.active[2 * r], 4 * r: record.active[4 * r]}
        with phase("decode"):
            dec = self.model.decode(z, occupancy_targets=targets, prune=False)
        res.counts["output_all"] = res.counts["output_kept"] = len(dec.features)
        with phase("losses"):
            res.counts.update(losses.occupancy_precision_recall(dec.occupancy_logits,
                                                                dec.occupancy_targets))
            inputs = self._loss_inputs("render_free", record, mean, logvar, dec,
                                       sparseflex_from_features(dec.features), warmup=True)
            return self._total(losses.compute_terms(inputs), True, res)

    def _loss_inputs(self, step: str, record: ShapeRecord, mean, logvar, dec, field_,
                     warmup: bool, **rendered) -> losses.LossInputs:
        """What the rows of losses.LOSS_TERMS read; `rendered`: mesh, pred and gt."""
        trunc = 2.0 / (4 * self.setup.model.latent_resolution)
        return losses.LossInputs(step, self.setup.loss, mean, logvar, dec, field_, trunc,
                                 lambda corners: self._tsdf_target(record, corners),
                                 warmup=warmup, **rendered)

    def _total(self, terms: dict, warmup: bool, res: ShapeResult
               ) -> tuple[torch.Tensor, ShapeResult]:
        """Eq. 7's total of the computed terms; every term and the total go to res.terms."""
        total = losses.total_loss(terms, self.setup.loss, warmup)
        res.terms = {t.name: float(terms[t.name].detach()) for t in losses.LOSS_TERMS
                     if t.name in terms}
        res.terms["total"] = float(total.detach())
        return total, res

    def _select(self, selectors, x: SparseTensor, camera: Camera, gt, record: ShapeRecord,
                rng: np.random.Generator):
        """Chain selectors: each keeps a subset of x; a new camera re-renders the ground truth."""
        chain = run_selectors(selectors, x, camera, gt, rng, lambda c: self._render(record, c))
        return chain.voxels, chain.camera, chain.ground_truth

    def shape_loss(self, record: ShapeRecord, step: int,
                   slot: int) -> tuple[torch.Tensor, ShapeResult]:
        """Loss of one shape at one step (one view), with what was measured on the way."""
        setup, dev = self.setup, self.device
        rng = np.random.default_rng([setup.train.seed, step, slot])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        res = ShapeResult()
        r = setup.model.latent_resolution
        active = record.active[r]
        voxels = SparseTensor(torch.cat([active.new_zeros(len(active), 1), active], 1),
                              torch.zeros(len(active), 0), r)
        warmup = step < setup.loss.tsdf_steps
        if warmup and not setup.loss.warmup_render:
            return self._render_free_loss(record, voxels, gen, res)
        # the reparameterisation noise of every latent, drawn before anything is encoded, so
        # that a latent gets the same draw whether the whole shape or a region is encoded
        eps = torch.randn((len(voxels), self.model.latent_channels), generator=gen).to(dev)
        with phase("render_gt"):
            camera = sample_camera(record, setup, rng)
            gt = self._render(record, camera)
        if setup.loss.encode_selected and self.latent_selectors:
            z, mean, logvar, camera, gt = self._encode_selected(record, voxels, eps, camera, gt,
                                                                rng, res)
        else:
            with phase("encode"):
                mean, logvar = self.model.encode(record.points.to(dev), record.normals.to(dev),
                                                 voxels.to(dev))
            z = voxels.to(dev).replace(mean + torch.exp(0.5 * logvar) * eps)
            with phase("select"):
                z, camera, gt = self._select(self.latent_selectors, z, camera, gt, record, rng)
        res.counts["latent_all"] = len(voxels)
        res.counts["latent_kept"] = len(z)
        if len(z) == 0:  # the view sees none of the shape: only the KL term trains
            return self._total({"kl": losses.kl_loss(mean, logvar)}, False, res)
        targets = {2 * r: record.active[2 * r], 4 * r: record.active[4 * r]}
        with phase("decode"):
            dec = self.model.decode(z, occupancy_targets=targets, prune=False)
        out = dec.features
        res.counts["output_all"] = len(out)
        with phase("select"):
            out, camera, gt = self._select(self.output_selectors, out, camera, gt, record, rng)
        res.counts["output_kept"] = len(out)
        res.counts.update(losses.occupancy_precision_recall(dec.occupancy_logits,
                                                            dec.occupancy_targets))
        with phase("extract"):
            field_ = sparseflex_from_features(out)
            mesh = extract_mesh(field_, training=True)
        res.counts["triangles"] = len(mesh.faces)
        with phase("render"):
            pred = self.renderer.render(mesh.vertices, mesh.faces, camera)
        with phase("losses"):
            inputs = self._loss_inputs("rendered", record, mean, logvar, dec, field_, warmup,
                                       mesh=mesh, pred=pred, gt=gt)
            total, res = self._total(losses.compute_terms(inputs), warmup, res)
        res.images = {"gt_depth": gt.depth, "pred_depth": pred.depth.detach(),
                      "gt_normal": gt.normal, "pred_normal": pred.normal.detach()}
        res.mesh = (mesh.vertices.detach(), mesh.faces)
        return total, res

    def _encode_selected(self, record: ShapeRecord, voxels: SparseTensor, eps: torch.Tensor,
                         camera: Camera, gt, rng: np.random.Generator, res: ShapeResult):
        """loss.encode_selected: (z of the kept latents, mean and logvar of the encoded region,
        camera, gt). The latent selectors read coordinates only, so they run before encoding;
        then only the kept latents and every voxel within the encoder's reach of them are
        encoded (selected_region), which gives the kept latents the features a whole-shape
        encode gives them, at a cost bounded by the selection (the zoom's n_max), not by the
        shape. A view that keeps nothing encodes the whole shape for its KL term."""
        setup, dev = self.setup, self.device
        with phase("select"):
            kept, camera, gt = self._select(self.latent_selectors, voxels, camera, gt, record,
                                            rng)
            rows = CoordIndex(voxels.coords).lookup(kept.coords)
            region, near = selected_region(voxels.coords[:, 1:], rows, record.points,
                                           setup.model.latent_resolution,
                                           setup.encoder.depth * (setup.encoder.window - 1),
                                           setup.pointnet.reach)
        with phase("encode"):
            mean, logvar = self.model.encode(record.points[near].to(dev),
                                             record.normals[near].to(dev),
                                             voxels.index_select(region).to(dev))
        at = torch.searchsorted(region, rows).to(dev)
        z = kept.to(dev).replace(mean[at] + torch.exp(0.5 * logvar[at]) * eps[rows.to(dev)])
        res.counts["latent_encoded"] = len(region)
        return z, mean, logvar, camera, gt

    # -- calibration and quality, every train.eval_every steps and at each checkpoint -------
    def on_checkpoint(self, step: int, final: bool) -> None:
        """At the run's last checkpoint, calibrate the occupancy threshold on the training
        meshes and store it (evaluations calibrate too). Not at every checkpoint: with the
        default model a calibration costs about as much as 50 training steps.
        evaluation.calibrate_at_end = false skips it (a probe of the steps alone)."""
        if final and self.setup.evaluation.calibrate_at_end:
            self.calibrate(step)

    def calibrate(self, step: int) -> dict:
        """Measure the occupancy threshold on the training meshes (vae.calibration)."""
        from focusing.core.vae.calibration import calibrate_threshold, save_calibration
        from focusing.core.vae.reconstruct import decode_halo, decode_in_chunks

        r = self.setup.model.latent_resolution
        chunk, halo = self.setup.inference.chunk_voxels, decode_halo(self.setup)
        k = self.setup.evaluation.calibration_meshes
        recs = self.data.records[:k] if k > 0 else self.data.records
        result = calibrate_threshold(
            self.model, [rec.active[r] for rec in recs],
            [(rec.points, rec.normals) for rec in recs], [rec.active[4 * r] for rec in recs],
            lambda z, thr: decode_in_chunks(self.model, z, chunk, halo, thr), start=self.threshold)
        self.threshold = result["threshold"]
        if self.is_main and self.run_dir is not None:
            save_calibration(self.run_dir, step, result)
        return result

    def evaluate(self, step: int) -> dict[str, float]:
        """Calibrate, then reconstruct the first evaluation.meshes training meshes and every
        --eval mesh with that threshold; F-score (evaluation.tau), Chamfer and a normal render
        go to TensorBoard (by the engine and log()), and rows to RUN/quality.jsonl with the
        optimisation seconds so far (what `compare` plots F-score against)."""
        from focusing.core.geometry.mesh import Mesh
        from focusing.core.metrics import evaluate as score
        from focusing.core.vae.reconstruct import reconstruct_mesh
        calib = self.calibrate(step)
        out = {"threshold": calib["threshold"], "occupancy_iou": calib["iou"]}
        self._eval_images = {}
        rows = []
        k = self.setup.evaluation.meshes
        pairs = [("train", rec) for rec in self.data.records[:k]]
        pairs += [("eval", rec) for rec in (self.eval_data.records if self.eval_data else [])]
        for split, rec in pairs:
            gt = Mesh(rec.vertices.double().numpy(), rec.faces.numpy(), None)
            mesh = reconstruct_mesh(self.model, self.setup, gt, self.setup.inference.chunk_voxels,
                                    self.threshold)
            m = (score(mesh, gt, n_points=100_000, tau=self.setup.evaluation.tau)
                 if len(mesh.faces) else {"fscore": 0.0, "chamfer_l2": None})  # JSON: no NaN
            rows.append({"step": step, "train_seconds": self.train_seconds, "split": split,
                         "mesh": rec.name, "fscore": m["fscore"], "chamfer_l2": m["chamfer_l2"],
                         "threshold": self.threshold, "faces": int(len(mesh.faces))})
            out[f"{split}/{rec.name}/fscore"] = m["fscore"]
            if len(mesh.faces):
                self._eval_images[f"{split}/{rec.name}"] = self._normal_image(mesh)
        for split in ("train", "eval"):
            f = [row["fscore"] for row in rows if row["split"] == split]
            if f:
                out[f"F_{split}"] = float(np.mean(f))
        if self.is_main and self.run_dir is not None and rows:
            with open(self.run_dir / "quality.jsonl", "a") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in rows)
        return out

    def _normal_image(self, mesh) -> torch.Tensor:
        """A normal render [H,W,3] in [0,1] (white background) of a unit-box mesh, fixed view."""
        cam = Camera.looking_at(np.array([1.2, 0.9, 1.5]), np.zeros(3), fov_y_deg=40.0,
                                width=128, height=128, near=0.5, far=4.0)
        with torch.no_grad():
            out = self.renderer.render(torch.as_tensor(mesh.vertices, dtype=torch.float32),
                                       torch.as_tensor(mesh.faces, dtype=torch.long), cam)
        img = out.normal.detach().float() * 0.5 + 0.5
        return torch.where(out.mask[..., None] > 0, img, torch.ones_like(img))


class Trainer:
    """Trains a ShapeVAE under a setup: the shared Engine running a VAEStep."""

    def __init__(self, config: dict | Setup, data_dir: Path, run_dir: Path, resume: bool = False,
                 progress: bool = True, dist_info: DistInfo | None = None,
                 allow_changes: bool = False, eval_dir: Path | None = None,
                 allow_nonempty_out: bool = False):
        self.setup = Setup.from_dict(config)
        check_run_memory(self.setup, data_dir, eval_dir)  # a run that cannot fit: refused now
        # the run folder is locked and checked before the (slow) data preparation; rank 0 writes
        main = dist_info.is_main if dist_info is not None else writes_here()
        self.lock = (claim_run_folder(run_dir, resume, allow_nonempty_out) if main else None)
        self.run_dir = self.lock.folder if self.lock is not None else resolve_dotdot(run_dir)
        try:
            self._open(data_dir, resume, progress, dist_info, allow_changes, eval_dir)
        except BaseException:
            if getattr(self, "engine", None) is not None:
                self.engine.close()
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            raise

    def _open(self, data_dir, resume, progress, dist_info, allow_changes, eval_dir) -> None:
        """Check the (locked) run folder, prepare the data, build the step and the engine."""
        as_dict = self.setup.to_dict()
        check_run_folder(self.run_dir, as_dict, resume, allow_changes, VAE_SHAPE_KEYS,
                         normalise_stored)
        self.dist = dist_info or prepare(self.setup.train)
        if dist_info is not None:
            set_reproducibility(self.setup.train)
        self.device = self.dist.device
        show = progress and self.dist.is_main
        data = ShapeDataset(Path(data_dir), self.setup, workers=self.setup.resources.workers,
                            progress=show)
        eval_data = (ShapeDataset(Path(eval_dir), self.setup, progress=show)
                     if eval_dir is not None else None)
        self.vae_step = VAEStep(self.setup, data, self.device, eval_data=eval_data,
                                run_dir=self.run_dir, is_main=self.dist.is_main)
        self.engine = Engine(self.vae_step, self.setup.train, self.run_dir, as_dict, resume=resume,
                             allow_changes=allow_changes, progress=progress, dist_info=self.dist,
                             name=self.setup.name, normalise_config=normalise_stored)
        if self.dist.is_main and self.setup.loss.perceptual > 0:
            # No perceptual network ships with the toolkit (LPIPS needs torchvision and downloads
            # its backbone); the term stays off and the log says so.
            note = ("perceptual term OFF: no perceptual network is available offline "
                    f"(loss.perceptual_weights={self.setup.loss.perceptual_weights!r})")
            print(note)
            if self.engine.writer is not None:
                self.engine.writer.add_text("notes/perceptual", note, 0)

    @property
    def model(self) -> ShapeVAE:
        """The VAE being trained."""
        return self.vae_step.model

    @property
    def data(self) -> ShapeDataset:
        """The prepared training shapes."""
        return self.vae_step.data

    @property
    def step(self) -> int:
        """Steps done so far."""
        return self.engine.step

    def shape_loss(self, record: ShapeRecord, step: int, slot: int):
        """See VAEStep.shape_loss."""
        return self.vae_step.shape_loss(record, step, slot)

    def train_step(self) -> StepResult:
        """One optimisation step (see Engine.train_step)."""
        return self.engine.train_step()

    def fit(self, steps: int | None = None) -> list[StepResult]:
        """Train until `steps` total steps (default: train.steps); checkpoints and logs as
        configured."""
        return self.engine.fit(steps)

    def finished(self) -> bool:
        """Whether the run has reached train.steps (or spent train.minutes): nothing to train."""
        return self.engine.step >= self.setup.train.steps or self.engine.out_of_time()

    def close(self) -> None:
        """Close the TensorBoard writer and let the run folder's lock go."""
        self.engine.close()
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()
