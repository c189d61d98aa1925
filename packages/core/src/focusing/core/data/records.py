"""A training shape's record: what is computed from one mesh once, and what it depends on.

A record holds the normalised mesh, oriented surface points, the active voxels at the latent
resolution (surface voxels, dilated as TripoSF does) and the ground-truth active voxels at 2x
and 4x (occupancy targets), and a few ground-truth depth maps of the raw mesh from which the
TSDF warm-up target is fused (no watertight repair). `build_record` computes it;
`cache_settings` names the settings of a setup it depends on. The mesh cache (data.dataset) and
the prepared data sets (data.prepared) store the same records.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from focusing.core.config import Setup
from focusing.core.geometry.camera import orbit_cameras
from focusing.core.geometry.mesh import normalize_mesh
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.raycast import raycast
from focusing.core.geometry.sampling import sample_surface
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels


class CacheError(RuntimeError):
    """A shape-cache entry cannot be read."""


CACHE_VERSION = 4  # 4: the TSDF target's sign band spans 1.5 pixels of its views
SIGN_BAND_PIXELS = 1.5


@dataclass
class ShapeRecord:
    """One cached training shape (tensors on the CPU)."""

    name: str                     # the file's stem; its file name where stems clash
    vertices: torch.Tensor        # [V,3] float32, normalised to the unit box
    faces: torch.Tensor           # [F,3] long
    points: torch.Tensor          # [P,3] float32 oriented surface samples
    normals: torch.Tensor         # [P,3] float32
    active: dict[int, torch.Tensor]  # resolution -> [K,3] long active voxels
    tsdf_cameras: list[dict]      # Camera.to_dict() of the TSDF views
    tsdf_depths: torch.Tensor     # [T,H,W] float32 view depth maps of the raw mesh
    tsdf_corners: torch.Tensor    # [M,3] long corners (in [0,4R]) of every child of the latent
                                  # voxels
    tsdf_values: torch.Tensor     # [M] float32 the TSDF target there (geometry.tsdf.surface_tsdf)
    center: np.ndarray            # normalisation: normalised = (original - center) * scale
    scale: float


def cache_settings(setup: Setup | dict) -> dict:
    """The settings a cached record depends on."""
    setup = Setup.from_dict(setup)
    r = setup.model.latent_resolution
    return {
        "version": CACHE_VERSION,
        "resolutions": [r, 2 * r, 4 * r],
        "points": setup.model.points_per_shape,
        "tsdf_views": setup.loss.tsdf_views,
        "tsdf_image": setup.cameras.image_size,
    }


BUILD_STAGES = ("load", "sample", "voxelize", "render", "tsdf")  # build_record's steps, in order


@contextmanager
def _timed(times: dict | None, stage: str):
    """Add the seconds of the block to times[stage] (nothing when times is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if times is not None:
            times[stage] = times.get(stage, 0.0) + time.perf_counter() - start


def build_record(path: Path, settings: dict, times: dict | None = None) -> ShapeRecord:
    """Compute the cached record of one mesh (no cache involved); `times`, when given, gets the
    seconds of each stage of BUILD_STAGES."""
    with _timed(times, "load"):
        mesh, center, scale = normalize_mesh(load_mesh(path, normalize=False))
    with _timed(times, "sample"):
        points, normals = sample_surface(mesh, settings["points"], seed=0)
    with _timed(times, "voxelize"):
        active = {}
        for res in settings["resolutions"]:
            active[res] = dilate_voxels(surface_voxels(mesh, res), res)
    with _timed(times, "render"):
        cams = orbit_cameras(settings["tsdf_views"], fov_y_deg=55.0, width=settings["tsdf_image"],
                             height=settings["tsdf_image"])  # 55 degrees: the whole unit box
        verts = torch.as_tensor(mesh.vertices, dtype=torch.float64)
        faces = torch.as_tensor(mesh.faces, dtype=torch.long)
        depths = torch.stack([raycast(verts, faces, c).depth.float() for c in cams])
    with _timed(times, "tsdf"):
        corners, values = tsdf_target(mesh, active[settings["resolutions"][0]],
                                      settings["resolutions"][0], cams, depths)
    return ShapeRecord(
        name=Path(path).stem,
        vertices=verts.float(),
        faces=faces,
        points=torch.as_tensor(points, dtype=torch.float32),
        normals=torch.as_tensor(normals, dtype=torch.float32),
        active=active,
        tsdf_cameras=[c.to_dict() for c in cams],
        tsdf_depths=depths,
        tsdf_corners=corners,
        tsdf_values=values,
        center=center,
        scale=scale,
    )


def tsdf_target(mesh, latent_active: torch.Tensor, latent_resolution: int, cameras,
                depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TSDF target at every corner of every output cube under the latent voxels [K,3] at R:
    corners [M,3] long in [0,4R] and values [M] float32 (world units, truncation 2 output voxels).

    Computed once per mesh and cached: a training step decodes children of latent voxels only
    (no pruning in training), so a lookup serves every step, and the fusion and the exact
    distance query leave the hot path."""
    from focusing.core.geometry.tsdf import surface_tsdf

    out_res = 4 * latent_resolution
    offsets = torch.stack(torch.meshgrid(*[torch.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    # the distinct corners, sorted (x, y, z) as torch.unique(dim=0) gives them, through a bitmap
    # of the (4R+1)^3 corner grid: 0.14 s against 8.2 s for unique's sort on fandisk at 256
    n = out_res + 1
    raw = (latent_active[:, None, :] * 4 + offsets[None]).reshape(-1, 3)
    mask = torch.zeros(n ** 3, dtype=torch.bool)
    mask[(raw[:, 0] * n + raw[:, 1]) * n + raw[:, 2]] = True
    k = mask.nonzero()[:, 0]
    corners = torch.stack([k // (n * n), k // n % n, k % n], 1)
    world = corners.to(torch.float64) / out_res - 0.5
    # Within the sign band the nearest face's pseudonormal decides the sign, beyond it the
    # views. The views' sign is wrong up to a pixel or so from the surface (a depth map
    # quantises the surface to its pixels), so the band spans SIGN_BAND_PIXELS pixels of the
    # TSDF views at the shape's centre, and never less than half an output voxel. With half a
    # voxel alone, meshing the target itself gave F@0.005 0.53 (elephant-with-holes), 0.76
    # (mannequin-devil), 0.81 (couplingdown) at output 128 and 0.88 (armadillo) at 256; with the
    # pixel band 0.92, 0.96, 0.89 and 0.99 (benchmarks/target_ceiling.py, BENCHMARKS.md).
    pixel = max(c.pixel_size_at(float(c.position.norm())) for c in cameras)
    band = max(0.5 / out_res, SIGN_BAND_PIXELS * pixel)
    values = surface_tsdf(mesh, world, cameras, depths.double(), truncation=2.0 / out_res,
                          sign_band=band, sheet_half_width=0.5 / out_res)
    return corners, values.float()
