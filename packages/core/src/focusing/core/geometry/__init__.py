"""focusing.core.geometry: meshes, cameras, ray casting, sampling, voxelisation, TSDF."""

from focusing.core.geometry.camera import Camera, look_at, orbit_cameras, perspective
from focusing.core.geometry.mesh import Mesh, apply_normalization, normalize_mesh
from focusing.core.geometry.meshio import SUPPORTED_FORMATS, load_mesh, save_mesh
from focusing.core.geometry.raycast import embree_available, raycast
from focusing.core.geometry.sampling import sample_surface
from focusing.core.geometry.tsdf import fuse_view_tsdf, view_tsdf
from focusing.core.geometry.validation import MeshError, validate_mesh
from focusing.core.geometry.voxelize import (
    dilate_voxels,
    surface_voxels,
    triangle_box_overlap,
    voxel_centers,
)

__all__ = [
    "Camera",
    "Mesh",
    "MeshError",
    "SUPPORTED_FORMATS",
    "apply_normalization",
    "dilate_voxels",
    "embree_available",
    "fuse_view_tsdf",
    "load_mesh",
    "look_at",
    "normalize_mesh",
    "orbit_cameras",
    "perspective",
    "raycast",
    "sample_surface",
    "save_mesh",
    "surface_voxels",
    "triangle_box_overlap",
    "validate_mesh",
    "view_tsdf",
    "voxel_centers",
]
