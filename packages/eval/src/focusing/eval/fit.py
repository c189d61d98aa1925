"""Fitting without a network: SparseFlex features optimised directly on one mesh's active voxels.

This checks the representation and the renderer before any VAE exists (issue 4, item 5). The
parameters are raw per-voxel SparseFlex features [N,53] (layout in sparseflex.field) on the
3x3x3-dilated surface voxels at resolution R. They start from a view-based TSDF fused from the
ground-truth depth maps of the raw mesh (no watertight conversion and no exact mesh distance:
the fit has to find the surface through the renders), and Adam moves them so that the
FlexiCubes mesh, rendered from random views of a fixed pool, matches the ground-truth renders:
L1 depth, L1 normal and the antialiased mask, plus small L_dev and sparse-TV regularisers.
At the end the mesh is extracted for inference (2 triangles per quad), mapped back to the
source's frame and scored against the source with focusing.core.metrics.evaluate.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from focusing.core.geometry.camera import Camera, orbit_cameras
from focusing.core.geometry.mesh import Mesh, normalize_mesh
from focusing.core.geometry.meshio import load_mesh, save_mesh
from focusing.core.geometry.tsdf import fuse_view_tsdf
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.plugin_system.types import RenderOutput
from focusing.core.rendering import default_renderer_name
from focusing.core.sparseflex.field import (
    FEATURE_CHANNELS,
    corner_topology,
    corner_world_positions,
    sparseflex_from_features,
)
from focusing.core.sparseflex.flexicubes import extract_mesh
from focusing.core.vae.train.losses import render_losses, sparse_tv_loss
from focusing.core.engine.memory import PeakMemory

__all__ = ["FitConfig", "FitResult", "fit_mesh", "default_renderer", "init_features"]



@dataclass
class FitConfig:
    """Settings of one fit; lengths are in the unit box unless they say voxels."""

    resolution: int = 128
    steps: int = 300
    views: int = 64  # size of the fixed pool of random orbit views (GT rendered once)
    views_per_step: int = 1
    image_size: int = 256
    lr: float = 0.02  # Adam; SDF channels are optimised in voxel units, so one rate fits all
    renderer: str | None = None  # None: the fastest available CPU renderer
    seed: int = 0
    truncation_voxels: float = 3.0  # TSDF truncation of the initialisation
    w_depth: float = 10.0
    w_normal: float = 1.0
    w_mask: float = 1.0
    w_dev: float = 0.1  # L_dev in voxel units
    w_tv: float = 0.01  # sparse TV of the corner SDF in voxel units
    n_points: int = 100_000  # evaluation samples per mesh
    tau: float = 0.005  # F-score distance (units of the source's largest extent)
    progress: bool = True

    def check(self) -> None:
        """Raise ValueError naming the first setting out of range."""
        ints = {"resolution": 2, "steps": 0, "views": 1, "views_per_step": 1, "image_size": 8,
                "n_points": 1}
        for key, lo in ints.items():
            if int(getattr(self, key)) < lo:
                raise ValueError(f"{key} must be >= {lo}, got {getattr(self, key)}")
        if self.views_per_step > self.views:
            raise ValueError(f"views_per_step ({self.views_per_step}) exceeds the pool of "
                             f"{self.views} views")
        for key in ("lr", "tau", "truncation_voxels"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        for key in ("w_depth", "w_normal", "w_mask", "w_dev", "w_tv"):
            if not float(getattr(self, key)) >= 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")


@dataclass
class FitResult:
    """Outcome of fit_mesh: the mesh (source frame), timings (s), peak memory (MiB), metrics."""

    mesh: Mesh
    metrics: dict
    init_metrics: dict | None
    seconds: float  # setup + optimisation + final extraction (evaluation excluded)
    setup_seconds: float
    fit_seconds: float
    peak_mb: float
    num_voxels: int
    renderer: str
    config: FitConfig
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-ready dict: settings, sizes, time, memory, metrics (and init metrics if any)."""
        out = {
            "source": None if self.mesh.source is None else str(self.mesh.source),
            "resolution": self.config.resolution,
            "steps": self.config.steps,
            "views": self.config.views,
            "views_per_step": self.config.views_per_step,
            "image_size": self.config.image_size,
            "lr": self.config.lr,
            "seed": self.config.seed,
            "renderer": self.renderer,
            "threads": torch.get_num_threads(),
            "num_voxels": self.num_voxels,
            "vertices": int(len(self.mesh.vertices)),
            "faces": int(len(self.mesh.faces)),
            "seconds": self.seconds,
            "setup_seconds": self.setup_seconds,
            "fit_seconds": self.fit_seconds,
            "peak_mb": self.peak_mb,
            "metrics": self.metrics,
        }
        if self.init_metrics is not None:
            out["init_metrics"] = self.init_metrics
        if self.history:
            out["final_losses"] = self.history[-1]
        return out


def default_renderer() -> str:
    """Name of the fastest available CPU renderer (the rule of focusing.core.rendering)."""
    return default_renderer_name("cpu")


def _renderer(name: str | None):
    from focusing.core.plugin_system import get_registry

    name = name or default_renderer()
    cls = get_registry("renderer").get(name)  # unknown names: the registry lists the known ones
    ok, why = cls.available()
    if not ok:
        raise ValueError(f"renderer {name!r} is not available: {why}")
    return name, cls()


def _render_pool(renderer, vertices: torch.Tensor, faces: torch.Tensor, cams: list[Camera],
                 chunk: int = 8):
    """GT maps of all views (depth [B,H,W], normal [B,H,W,3], mask [B,H,W]), float32, no grad."""
    depth, normal, mask, tid = [], [], [], []
    with torch.no_grad():
        for a in range(0, len(cams), chunk):
            out = renderer.render(vertices, faces, cams[a : a + chunk])
            depth.append(out.depth.float())
            normal.append(out.normal.float())
            mask.append(out.mask.float())
            tid.append(out.triangle_id)
    return RenderOutput(torch.cat(depth), torch.cat(normal), torch.cat(mask), torch.cat(tid))


def _subset(out: RenderOutput, idx: torch.Tensor) -> RenderOutput:
    return RenderOutput(out.depth[idx], out.normal[idx], out.mask[idx], out.triangle_id[idx])


def init_features(
    coords: torch.Tensor,
    resolution: int,
    cams: list[Camera],
    gt_depth: torch.Tensor,
    truncation: float,
    topology: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Raw features [N,53] from the view TSDF of the GT depth maps [B,H,W] at the voxels' corners.

    SDF channels = fused view TSDF (world units, clamped to +-truncation) of each voxel's corners;
    deformation 0 (raw 0); FlexiCubes weights 1 (raw 0)."""
    corner_coords, cube_corners = (topology if topology is not None
                                   else corner_topology(coords, resolution))
    pos = corner_world_positions(corner_coords[:, 1:], resolution).to(torch.float64)
    tsdf = fuse_view_tsdf(pos, cams, gt_depth, truncation).to(torch.float32)
    feats = torch.zeros(len(cube_corners), FEATURE_CHANNELS)
    feats[:, :8] = tsdf[cube_corners]
    return feats


def _to_source_frame(vertices: np.ndarray, faces: np.ndarray, center: np.ndarray, scale: float,
                     source) -> Mesh:
    """Unit-box mesh -> the source's frame (inverse of normalize_mesh)."""
    return Mesh(np.asarray(vertices, np.float64) / scale + center, np.asarray(faces, np.int64),
                source)


def _extract(feats: torch.Tensor, coords: torch.Tensor, resolution: int,
             topology) -> tuple[np.ndarray, np.ndarray]:
    """Inference mesh (2 triangles per quad) of raw features: (vertices [V,3], faces [F,3])
    numpy."""
    with torch.no_grad():
        fld = sparseflex_from_features(feats, coords, resolution, topology=topology)
        fm = extract_mesh(fld, training=False)
    return fm.vertices.double().numpy(), fm.faces.numpy()


def fit_mesh(
    source: str | os.PathLike | Mesh,
    config: FitConfig | None = None,
    out: str | os.PathLike | None = None,
    evaluate_init: bool = False,
) -> FitResult:
    """Fit SparseFlex features to `source` (path or un-normalised Mesh) by render losses alone.

    Writes the fitted mesh (source frame) atomically to `out` when given, and scores it against
    the source (metrics in the source's unit box). `evaluate_init` also scores the TSDF start.
    Raises MeshError for a bad mesh before any work or writing."""
    from focusing.core.metrics import evaluate

    cfg = config or FitConfig()
    cfg.check()
    raw = source if isinstance(source, Mesh) else load_mesh(source, normalize=False)
    if out is not None:  # format and folder checked before any work
        from focusing.core.geometry.meshio import check_mesh_output

        out = check_mesh_output(out, "--out")
    r = int(cfg.resolution)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    renderer_name, renderer = _renderer(cfg.renderer)

    history: list[dict] = []
    init_mesh = None
    with PeakMemory("cpu") as mem:
        t0 = time.perf_counter()
        mesh, center, scale = normalize_mesh(raw)
        coords = dilate_voxels(surface_voxels(mesh, r), r)
        topology = corner_topology(coords, r)
        cams = orbit_cameras(cfg.views, width=cfg.image_size, height=cfg.image_size, rng=rng)
        gv = torch.as_tensor(mesh.vertices, dtype=torch.float32)
        gf = torch.as_tensor(mesh.faces, dtype=torch.long)
        gt = _render_pool(renderer, gv, gf, cams)
        feats0 = init_features(coords, r, cams, gt.depth, cfg.truncation_voxels / r, topology)
        # Optimise SDF channels in voxel units (x R) so that one Adam rate suits every channel.
        unit = torch.ones(FEATURE_CHANNELS)
        unit[:8] = 1.0 / r
        param = (feats0 / unit).clone().requires_grad_(True)
        opt = torch.optim.Adam([param], lr=cfg.lr)
        t1 = time.perf_counter()

        steps = range(cfg.steps)
        if cfg.progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"focusing fit R={r}", unit="step", disable=None)
        for step in steps:
            idx = torch.as_tensor(rng.choice(cfg.views, size=cfg.views_per_step, replace=False))
            feats = param * unit
            fld = sparseflex_from_features(feats, coords, r, topology=topology)
            fm = extract_mesh(fld, training=True)
            if fm.faces.shape[0] == 0:
                raise RuntimeError(f"step {step}: the field has no surface left to render")
            pred = renderer.render(fm.vertices, fm.faces, [cams[i] for i in idx.tolist()])
            terms = render_losses(pred, _subset(gt, idx))
            dev = fm.l_dev * r
            tv = (sparse_tv_loss(fld.corner_coords, fld.corner_sdf * r) if cfg.w_tv > 0
                  else dev * 0.0)
            loss = (
                # depth in units of 16 voxels: comparable to normals
                cfg.w_depth * terms["depth"] * r / 16.0
                + cfg.w_normal * terms["normal"]
                + cfg.w_mask * terms["mask"]
                + cfg.w_dev * dev
                + cfg.w_tv * tv
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rec = {"step": step, "loss": loss.item()}
            rec.update({k: terms[k].item() for k in ("depth", "normal", "mask")})
            rec.update(dev=dev.item(), tv=tv.item())
            history.append(rec)
            if cfg.progress and hasattr(steps, "set_postfix"):
                steps.set_postfix(depth=f"{rec['depth']:.2e}", normal=f"{rec['normal']:.3f}",
                                  mask=f"{rec['mask']:.4f}")
        t2 = time.perf_counter()
        verts, faces = _extract(param.detach() * unit, coords, r, topology)
        t3 = time.perf_counter()
    if evaluate_init:  # outside the timed block: a diagnostic, not part of the fit
        init_mesh = _extract(feats0, coords, r, topology)
    if len(faces) == 0:
        raise RuntimeError("the fitted field has no surface (empty mesh)")
    fitted = _to_source_frame(verts, faces, center, scale, raw.source)
    if out is not None:
        save_mesh(fitted, out)
        fitted = Mesh(fitted.vertices, fitted.faces, out)
    metrics = evaluate(fitted, raw, n_points=cfg.n_points, tau=cfg.tau, seed=cfg.seed)
    init_metrics = None
    if init_mesh is not None and len(init_mesh[1]):
        init_metrics = evaluate(
            _to_source_frame(*init_mesh, center, scale, None), raw, n_points=cfg.n_points,
            tau=cfg.tau, seed=cfg.seed,
        )
    return FitResult(
        mesh=fitted,
        metrics=metrics,
        init_metrics=init_metrics,
        seconds=t3 - t0,
        setup_seconds=t1 - t0,
        fit_seconds=(t2 - t1) + (t3 - t2),
        peak_mb=mem.peak_mb,
        num_voxels=int(len(coords)),
        renderer=renderer_name,
        config=cfg,
        history=history,
    )
