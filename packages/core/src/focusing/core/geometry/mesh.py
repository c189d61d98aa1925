"""Triangle meshes: `Mesh`, loading (OBJ/PLY/OFF/STL/GLB), validation, normalisation, atomic save.

Every fault in an input file raises `MeshError` (a ValueError) whose message names the file and
the fault, so a CLI can print it and stop before writing anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from focusing.core.io import write_bytes_atomic

__all__ = [
    "Mesh",
    "MeshError",
    "SUPPORTED_FORMATS",
    "load_mesh",
    "normalize_mesh",
    "apply_normalization",
    "save_mesh",
    "validate_mesh",
]

# Extension -> trimesh file type. GLTF (text) is left out: it needs side files (buffers).
SUPPORTED_FORMATS = {".obj": "obj", ".ply": "ply", ".off": "off", ".stl": "stl", ".glb": "glb"}


class MeshError(ValueError):
    """A mesh file or array that cannot be used; the message names the file and the fault."""


def _where(source: Path | str | None) -> str:
    return f"mesh {str(source)!r}" if source is not None else "mesh (in memory)"


@dataclass
class Mesh:
    """A triangle mesh: vertices [V,3] float64, faces [F,3] int64 (indices into vertices)."""

    vertices: np.ndarray
    faces: np.ndarray
    source: Path | None = field(default=None)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(np.asarray(self.vertices, dtype=np.float64))
        self.faces = np.ascontiguousarray(np.asarray(self.faces, dtype=np.int64))
        if self.source is not None:
            self.source = Path(self.source)

    @property
    def num_vertices(self) -> int:
        """V."""
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        """F."""
        return int(self.faces.shape[0])

    @property
    def triangles(self) -> np.ndarray:
        """Corner positions per face [F,3,3] float64."""
        return self.vertices[self.faces]

    def _cross(self) -> np.ndarray:
        tri = self.triangles
        return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])

    @property
    def face_areas(self) -> np.ndarray:
        """Triangle areas [F] float64 (world units squared)."""
        return 0.5 * np.linalg.norm(self._cross(), axis=1)

    @property
    def face_normals(self) -> np.ndarray:
        """Unit face normals [F,3] float64 (right-hand rule on the face's vertex order); 0 for
        degenerate faces."""
        c = self._cross()
        n = np.linalg.norm(c, axis=1, keepdims=True)
        return np.divide(c, n, out=np.zeros_like(c), where=n > 0)

    @property
    def bounds(self) -> np.ndarray:
        """Axis-aligned bounds [2,3] (min row, max row) of the vertices the faces use."""
        used = self.vertices[np.unique(self.faces)] if self.num_faces else self.vertices
        if used.shape[0] == 0:
            raise MeshError(f"{_where(self.source)}: no vertices, bounds undefined")
        return np.stack([used.min(axis=0), used.max(axis=0)])

    def to_trimesh(self):
        """This mesh as a trimesh.Trimesh (process=False: vertices and faces kept as they are)."""
        import trimesh

        return trimesh.Trimesh(vertices=self.vertices, faces=self.faces, process=False)

    def torch(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(vertices float32 [V,3], faces long [F,3]) torch tensors on `device`."""
        v = torch.as_tensor(self.vertices, dtype=torch.float32, device=device)
        f = torch.as_tensor(self.faces, dtype=torch.long, device=device)
        return v, f


def validate_mesh(mesh: Mesh) -> Mesh:
    """Raise MeshError unless faces [F>0,3] index finite vertices [V,3] and the area is positive."""
    where = _where(mesh.source)
    v, f = mesh.vertices, mesh.faces
    if v.ndim != 2 or v.shape[1] != 3:
        raise MeshError(f"{where}: vertices must have shape [V,3], got {list(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise MeshError(f"{where}: faces must be triangles of shape [F,3], got {list(f.shape)}")
    if v.shape[0] == 0:
        raise MeshError(f"{where}: no vertices")
    if f.shape[0] == 0:
        raise MeshError(f"{where}: no faces (a point cloud, not a surface mesh)")
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise MeshError(
            f"{where}: {int(bad.sum())} vertices have NaN or infinite coordinates "
            f"(first: vertex {int(np.flatnonzero(bad)[0])})"
        )
    if f.min() < 0:
        raise MeshError(f"{where}: faces hold a negative vertex index ({int(f.min())})")
    if f.max() >= v.shape[0]:
        raise MeshError(
            f"{where}: faces index vertex {int(f.max())} but there are only {v.shape[0]} vertices"
        )
    area = float(mesh.face_areas.sum())
    if not area > 0.0:
        raise MeshError(f"{where}: total surface area is zero (every face is degenerate)")
    return mesh


def _load_trimesh(path: Path, file_type: str):
    import trimesh

    fmt = file_type.upper()
    hint = _format_hint(path, file_type)
    try:
        loaded = trimesh.load(str(path), file_type=file_type, process=False)
    except Exception as exc:  # trimesh raises many types on corrupt files
        raise MeshError(
            f"mesh {str(path)!r}: could not parse as {fmt}{hint}: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(loaded, trimesh.Scene):
        # Node transforms applied, every geometry concatenated into one mesh.
        geoms = loaded.dump()
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh)]
        if not meshes:
            if geoms:  # e.g. only points or lines
                raise MeshError(
                    f"mesh {str(path)!r}: no faces, the file holds only "
                    f"{', '.join(sorted({type(g).__name__ for g in geoms}))}"
                )
            raise MeshError(
                f"mesh {str(path)!r}: no triangles could be read as {fmt} "
                f"(empty, truncated or not a {fmt} file){hint}"
            )
        loaded = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    if not isinstance(loaded, trimesh.Trimesh):
        kind = type(loaded).__name__
        if isinstance(loaded, trimesh.PointCloud):
            kind = "points (a point cloud)"
        raise MeshError(
            f"mesh {str(path)!r}: no faces, the file holds only {kind}, not a surface mesh"
        )
    return loaded


def _format_hint(path: Path, file_type: str) -> str:
    """' (its content looks like X)' when the file's first bytes betray another format, else ''."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(80)
    except OSError:
        return ""
    guess = None
    if head.startswith(b"ply"):
        guess = "ply"
    elif head.startswith(b"glTF"):
        guess = "glb"
    elif head.lstrip().startswith((b"OFF", b"COFF", b"NOFF")):
        guess = "off"
    elif head.lstrip().startswith(b"solid"):
        guess = "stl"
    if guess is None or guess == file_type:
        return ""
    return f" (its content looks like {guess.upper()}: wrong extension?)"


def load_mesh(path: str | os.PathLike, normalize: bool = True) -> Mesh:
    """Load an OBJ/PLY/OFF/STL/GLB triangle mesh (a GLB scene is merged into one mesh), validate
    it, and (by default) normalise it into the unit box [-0.5, 0.5]^3; raises MeshError."""
    path = Path(path)
    if not path.exists():
        raise MeshError(f"mesh {str(path)!r}: file does not exist")
    if not path.is_file():
        raise MeshError(f"mesh {str(path)!r}: not a regular file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_FORMATS:
        raise MeshError(
            f"mesh {str(path)!r}: unknown format {ext or '(no extension)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_FORMATS))}"
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
    except OSError as exc:
        raise MeshError(f"mesh {str(path)!r}: cannot read file: {exc}") from exc
    if not head:
        raise MeshError(f"mesh {str(path)!r}: file is empty")
    tm = _load_trimesh(path, SUPPORTED_FORMATS[ext])
    # np.array copies: trimesh's TrackedArrays must not alias our data.
    faces = np.array(tm.faces)
    if faces.size == 0:
        faces = faces.reshape(0, 3)
    mesh = validate_mesh(Mesh(np.array(tm.vertices), faces, path))
    if normalize:
        mesh, _, _ = normalize_mesh(mesh)
    return mesh


def normalize_mesh(mesh: Mesh) -> tuple[Mesh, np.ndarray, float]:
    """Centre the bounding box at 0 and scale its largest extent to 1 (unit box [-0.5, 0.5]^3);
    returns (new mesh, centre [3] float64, scale) with new = (old - centre) * scale."""
    lo, hi = mesh.bounds
    extent = float((hi - lo).max())
    if not extent > 0.0:
        raise MeshError(f"{_where(mesh.source)}: zero extent, cannot normalise")
    center = (lo + hi) / 2.0
    scale = 1.0 / extent
    return apply_normalization(mesh, center, scale), center, scale


def apply_normalization(mesh: Mesh, center, scale: float) -> Mesh:
    """Map `mesh` with a transform from normalize_mesh: vertices (v - center) * scale."""
    center = np.asarray(center, dtype=np.float64).reshape(3)
    verts = (mesh.vertices - center) * float(scale)
    return Mesh(verts, mesh.faces.copy(), mesh.source)


def save_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write `mesh` (format from the extension) atomically: a temp file in the same folder, then
    os.replace, so a failure never leaves a half-written file. Returns the path."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_FORMATS:
        raise MeshError(
            f"mesh {str(path)!r}: cannot save, unknown format {ext or '(no extension)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_FORMATS))}"
        )
    validate_mesh(mesh)
    data = mesh.to_trimesh().export(file_type=SUPPORTED_FORMATS[ext])
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise MeshError(f"mesh {str(path)!r}: folder {str(folder)!r} does not exist")
    write_bytes_atomic(path, data)
    return path
