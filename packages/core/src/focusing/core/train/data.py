"""A folder of meshes as a cached training set.

Per mesh and settings we cache: the normalised mesh, oriented surface points, the active
voxels at the latent resolution (surface voxels, dilated as TripoSF does) and the
ground-truth active voxels at 2x and 4x (occupancy targets), and a few ground-truth depth
maps of the raw mesh from which the TSDF warm-up target is fused (no watertight repair).
The cache key is the file's content hash plus the settings, so editing a mesh or a setting
never reuses a stale entry.

A data set prepared by `focusing prepare` (core.data) holds the same records, built by the same
build_record, one safetensors file each: ShapeDataset reads it instead of a mesh folder, after
checking that it was prepared with this setup's cache_settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from focusing.core.config import Setup
from focusing.core.geometry.camera import orbit_cameras
from focusing.core.geometry.mesh import normalize_mesh
from focusing.core.geometry.meshio import find_mesh_files, load_mesh, mesh_names
from focusing.core.geometry.raycast import raycast
from focusing.core.geometry.sampling import sample_surface
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.io import atomic_path


class CacheError(RuntimeError):
    """A shape-cache entry cannot be read."""


MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb")
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


def mesh_files(folder: Path) -> list[Path]:
    """Mesh files of a folder (sorted), or an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    files = find_mesh_files(folder)  # the one rule eval uses too (hidden, ._*, folders skipped)
    if not files:
        raise FileNotFoundError(
            f"no meshes ({', '.join(MESH_SUFFIXES)}) in {folder}"
        )
    return files


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


def cache_key(path: Path, settings: dict) -> str:
    """Content hash of the mesh file plus the settings."""
    h = hashlib.sha256(Path(path).read_bytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:24]


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


def _write_record(record: ShapeRecord, out: Path) -> None:
    # a unique temp name per writer: ranks may build the same entry at once
    with atomic_path(out) as tmp:
        torch.save(record.__dict__, tmp)


def _load_or_build(args: tuple[Path, dict, Path]) -> Path:
    path, settings, cache_dir = args
    out = cache_dir / f"{Path(path).stem}-{cache_key(path, settings)}.pt"
    if not out.exists():
        _write_record(build_record(path, settings), out)
    return out


def read_record(entry: Path) -> ShapeRecord:
    """A cached record; CacheError naming the file and the fault if it is damaged."""
    try:
        fields = torch.load(entry, weights_only=False)
        return ShapeRecord(**fields)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise CacheError(f"{entry}: damaged cache entry ({type(exc).__name__}: "
                         f"{text[0] if text else 'unreadable'})") from None


def _read_or_rebuild(entry: Path, mesh: Path, settings: dict) -> ShapeRecord:
    try:
        return read_record(entry)
    except CacheError as exc:
        print(f"warning: {exc}; rebuilding it from {mesh}", file=sys.stderr)
        _write_record(build_record(mesh, settings), entry)
        return read_record(entry)


def default_cache_dir() -> Path:
    """Where prepared shapes are cached: $FOCUSING_CACHE, else ~/.cache/focusing/shapes."""
    root = os.environ.get("FOCUSING_CACHE") or Path.home() / ".cache" / "focusing"
    return Path(root) / "shapes"


def is_prepared_set(folder: Path) -> bool:
    """Whether `folder` is a data set made by `focusing prepare` (or a folder of such sets)."""
    from focusing.core.data.prepared import is_prepared

    return is_prepared(folder)


def held_shapes(folder: Path, config: Setup | dict) -> int:
    """How many records a ShapeDataset of `folder` holds in memory (a streamed set: none); a
    mesh folder is counted, not read."""
    if not is_prepared_set(folder):
        return len(mesh_files(folder))
    from focusing.core.data.streaming import PreparedShapes

    shapes = PreparedShapes(folder, cache_settings(config))
    return 0 if shapes.should_stream() else len(shapes)


class ShapeDataset:
    """The meshes of a folder, prepared once into `cache_dir` and loaded into memory; or a set
    made by `focusing prepare`, read from its records (streamed when it is large)."""

    def __init__(self, folder: Path, config: Setup | dict, cache_dir: Path | None = None,
                 workers: int = 0, progress: bool = True, stream: bool | None = None):
        self.settings = cache_settings(config)
        if is_prepared_set(folder):
            self._open_prepared(Path(folder), progress, stream)
            return
        self.files = mesh_files(folder)
        self.streamed = False
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(f, self.settings, self.cache_dir) for f in self.files]
        bar = dict(desc="preparing meshes", unit="mesh", disable=not progress)
        if workers > 0 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                paths = list(tqdm(pool.map(_load_or_build, jobs), total=len(jobs), **bar))
        else:
            paths = [_load_or_build(j) for j in tqdm(jobs, **bar)]
        self.records = [_read_or_rebuild(p, f, self.settings) for p, f in zip(paths, self.files)]
        # a cached record stores its file's stem; `shape.off` and `shape.ply` need more
        for record, name in zip(self.records, mesh_names(self.files)):
            record.name = name

    def _open_prepared(self, folder: Path, progress: bool, stream: bool | None) -> None:
        """A set made by `focusing prepare` (core.data): its records read from their files,
        all at once, or one per access when streamed (None: when the set is large)."""
        from focusing.core.data.streaming import PreparedShapes

        shapes = PreparedShapes(folder, self.settings)
        self.files = [Path(s.source) for s in shapes.shapes]
        self.cache_dir = folder
        self.streamed = shapes.should_stream() if stream is None else stream
        self.records = shapes if self.streamed else shapes.load_all(progress)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> ShapeRecord:
        return self.records[i]


@lru_cache(maxsize=4)
def epoch_permutation(n_shapes: int, seed: int, epoch: int) -> np.ndarray:
    """The shape order [n_shapes] of one epoch (read-only; cached: a step reads one or two)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n_shapes)
    perm.flags.writeable = False
    return perm


def shape_order(n_shapes: int, step: int, batch_size: int, seed: int) -> list[int]:
    """Shape indices of a step's global batch: epoch-wise permutations, fixed by the seed."""
    out = []
    for slot in range(batch_size):
        epoch, pos = divmod(step * batch_size + slot, n_shapes)
        out.append(int(epoch_permutation(n_shapes, seed, epoch)[pos]))
    return out
