"""Triangle meshes: the `Mesh` type and normalisation into the unit box.

Normalisation takes its box from the surface that has area (`surface_bounds` in validation.py):
faces whose area is negligible (degenerate slivers, specks) and vertices no face uses carry no
surface samples, so a stray one must not decide the frame in which a shape is trained or
scored. Files are read and written by `focusing.core.geometry.meshio`, checked by
`focusing.core.geometry.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from focusing.core.geometry.validation import (
    MeshError,
    check_magnitude,
    mesh_label,
    surface_bounds,
)

__all__ = [
    "Mesh",
    "apply_normalization",
    "normalize_mesh",
]


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
        with np.errstate(over="ignore", invalid="ignore"):
            return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])

    @property
    def face_areas(self) -> np.ndarray:
        """Triangle areas [F] float64 (world units squared)."""
        with np.errstate(over="ignore", invalid="ignore"):
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
            raise MeshError(f"{mesh_label(self.source)}: no vertices, bounds undefined")
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


def normalize_mesh(mesh: Mesh) -> tuple[Mesh, np.ndarray, float]:
    """Centre the box of the surface with area (see surface_bounds) at 0 and scale its largest
    extent to 1 (unit box [-0.5, 0.5]^3); returns (new mesh, centre [3] float64, scale) with
    new = (old - centre) * scale."""
    check_magnitude(mesh, mesh.vertices[np.unique(mesh.faces)], "vertices")
    lo, hi = surface_bounds(mesh)
    extent = float((hi - lo).max())
    if not extent > 0.0:
        raise MeshError(f"{mesh_label(mesh.source)}: zero extent, cannot normalise")
    center = (lo + hi) / 2.0
    scale = 1.0 / extent
    return apply_normalization(mesh, center, scale), center, scale


def apply_normalization(mesh: Mesh, center, scale: float) -> Mesh:
    """Map `mesh` with a transform from normalize_mesh: vertices (v - center) * scale; a
    MeshError naming this mesh if its mapped coordinates overflow."""
    center = np.asarray(center, dtype=np.float64).reshape(3)
    with np.errstate(over="ignore", invalid="ignore"):
        verts = (mesh.vertices - center) * float(scale)
    out = Mesh(verts, mesh.faces.copy(), mesh.source)
    used = verts[np.unique(mesh.faces)] if mesh.num_faces else verts
    if not np.isfinite(used).all():
        raise MeshError(
            f"{mesh_label(mesh.source)}: coordinates too large: they overflow float64 once mapped "
            f"(centre {center.tolist()}, scale {float(scale):.3g}); rescale the mesh"
        )
    check_magnitude(out, used, "mapped vertices")
    return out
