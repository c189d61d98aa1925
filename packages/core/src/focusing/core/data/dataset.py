"""A folder of meshes as a cached training set, and the order training reads its shapes in.

Per mesh and settings we cache its record (data.records): the normalised mesh, surface
points, active voxels and the TSDF target. The cache key is the file's content hash plus the
settings, so editing a mesh or a setting never reuses a stale entry.

A data set prepared by `focusing prepare` (core.data) holds the same records, built by the same
build_record, one safetensors file each: ShapeDataset reads it instead of a mesh folder, after
checking that it was prepared with this setup's cache_settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from focusing.core.config import Setup
from focusing.core.data.records import CacheError, ShapeRecord, build_record, cache_settings
from focusing.core.geometry.meshio import find_mesh_files, mesh_names
from focusing.core.io import atomic_path


MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb")


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


def cache_key(path: Path, settings: dict) -> str:
    """Content hash of the mesh file plus the settings."""
    h = hashlib.sha256(Path(path).read_bytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:24]


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
