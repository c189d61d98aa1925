"""Mesh validation: `MeshError`, the checks a mesh passes before it is used, and which of its
faces have area.

Every fault raises `MeshError` (a ValueError) whose message names the mesh (its file, or "in
memory") and the fault, so a CLI can print it and stop before writing anything. A face whose
area is negligible (a degenerate sliver, a speck) or a vertex no face uses carries no surface
samples: `usable_faces` and `surface_bounds` leave them out, so that a stray one does not decide
the frame in which a shape is trained or scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from focusing.core.geometry.mesh import Mesh

__all__ = [
    "MeshError",
    "check_magnitude",
    "mesh_label",
    "surface_bounds",
    "usable_faces",
    "validate_mesh",
]

# A face is negligible when its area is below this fraction of its longest edge squared
# (float64 rounding of a collinear triangle leaves ~1e-16 L^2) ...
_SLIVER_RATIO = 1e-12
# ... or below this fraction of the mesh's total area (a speck that is never sampled). The
# example meshes' smallest faces are 5e-6 (shape) and 9e-11 (share of the area).
_SPECK_RATIO = 1e-14


# Largest |coordinate| accepted: squared differences (areas, squared distances) of coordinates
# up to this stay below float64's 1.8e308.
_MAX_COORDINATE = 1e150


class MeshError(ValueError):
    """A mesh file or array that cannot be used; the message names the file and the fault."""


def mesh_label(source: Path | str | None) -> str:
    """How a message names a mesh: "mesh 'its/file.off'", or "mesh (in memory)"."""
    return f"mesh {str(source)!r}" if source is not None else "mesh (in memory)"


def usable_faces(mesh: Mesh) -> np.ndarray:
    """Mask [F] bool of the faces with non-negligible area (not a sliver, not a speck)."""
    tri = mesh.triangles
    with np.errstate(over="ignore", invalid="ignore"):
        area = mesh.face_areas
        edge_sq = np.max([((tri[:, i] - tri[:, (i + 1) % 3]) ** 2).sum(axis=1) for i in range(3)],
                         axis=0) if len(tri) else np.zeros(0)
        total = float(area[np.isfinite(area)].sum())
        return (area > _SLIVER_RATIO * edge_sq) & (area > _SPECK_RATIO * total) & (area > 0)


def surface_bounds(mesh: Mesh) -> np.ndarray:
    """Axis-aligned bounds [2,3] of the vertices of the faces with area (see usable_faces)."""
    keep = usable_faces(mesh)
    if not keep.any():
        raise MeshError(
            f"{mesh_label(mesh.source)}: total surface area is zero (every one of its "
            f"{mesh.num_faces} faces is degenerate), cannot normalise"
        )
    used = mesh.vertices[np.unique(mesh.faces[keep])]
    return np.stack([used.min(axis=0), used.max(axis=0)])


def validate_mesh(mesh: Mesh) -> Mesh:
    """Raise MeshError unless faces [F>0,3] index finite vertices [V,3], the arithmetic on them
    does not overflow and some face has area."""
    where = mesh_label(mesh.source)
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
        raise MeshError(
            f"{where}: faces hold a negative vertex index ({int(f.min())}), outside the range "
            f"of its vertices [0, {v.shape[0]})"
        )
    if f.max() >= v.shape[0]:
        raise MeshError(
            f"{where}: faces index vertex {int(f.max())} but there are only {v.shape[0]} "
            f"vertices (outside the range of its vertices)"
        )
    check_magnitude(mesh, v[np.unique(f)], "vertices")
    if not usable_faces(mesh).any():
        raise MeshError(f"{where}: total surface area is zero (every face is degenerate)")
    return mesh


def check_magnitude(mesh: Mesh, points: np.ndarray, what: str) -> None:
    """MeshError naming the mesh if squared coordinate differences (areas) overflow float64."""
    span = float(np.abs(points).max()) if points.size else 0.0
    with np.errstate(over="ignore"):
        ok = span <= _MAX_COORDINATE and bool(np.isfinite(mesh.face_areas).all())
    if not ok:
        raise MeshError(
            f"{mesh_label(mesh.source)}: coordinates too large ({what} reach {span:.3g}): "
            f"areas and distances overflow float64; rescale the mesh"
        )

