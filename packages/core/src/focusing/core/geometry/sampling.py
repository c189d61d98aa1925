"""Area-weighted surface point sampling with face normals."""

from __future__ import annotations

import numpy as np

from focusing.core.geometry.mesh import Mesh
from focusing.core.geometry.validation import MeshError

__all__ = ["sample_surface"]


def sample_surface(
    mesh: Mesh, n: int, seed: int | np.random.Generator | None = 0, return_faces: bool = False
):
    """n points [n,3] float64 drawn uniformly by area on the surface and their unit face normals
    [n,3] float64 (right-hand rule on the face order); with return_faces also the face ids [n]."""
    if n < 0:
        raise ValueError(f"sample_surface: n must be >= 0, got {n}")
    areas = mesh.face_areas
    total = float(areas.sum())
    if not total > 0.0:
        raise MeshError(f"{mesh.source or 'mesh (in memory)'}: zero surface area, cannot sample")
    rng = np.random.default_rng(seed)
    # Inverse-CDF face choice; searchsorted on the cumulative area is exact area weighting.
    cdf = np.cumsum(areas)
    face = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    face = np.minimum(face, len(areas) - 1)
    # Uniform point in a triangle: fold the unit square onto the lower-left half.
    r = rng.random((n, 2))
    flip = r.sum(axis=1) > 1.0
    r[flip] = 1.0 - r[flip]
    tri = mesh.vertices[mesh.faces[face]]
    points = tri[:, 0] + r[:, :1] * (tri[:, 1] - tri[:, 0]) + r[:, 1:] * (tri[:, 2] - tri[:, 0])
    normals = mesh.face_normals[face]
    if return_faces:
        return points, normals, face
    return points, normals
