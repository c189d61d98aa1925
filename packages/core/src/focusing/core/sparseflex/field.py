"""SparseFlex (paper sec. 3.1): per-voxel features on active voxels -> shared corner values.

Grid: at resolution R, voxel (i, j, k) spans [-0.5 + i/R, -0.5 + (i+1)/R] per axis; corner
(i, j, k) (ints in [0, R]) sits at -0.5 + i/R. Cube corner order and edge order are those of
`tables.py` (corner c has offset (c>>2&1, c>>1&1, c&1), z fastest).

Feature layout (the VAE's SparseFlex head produces exactly these ``FEATURE_CHANNELS = 53``
channels per voxel, raw / pre-activation):

=========  ========  ==========================================================================
channels   name      mapping to the field
=========  ========  ==========================================================================
0:8        sdf       SDF of the voxel's 8 corners, world units (unit box), negative inside;
                     identity mapping
8:32       deform    corner deformations, corner-major ``8 + 3*c + axis``;
                     ``tanh(raw) * 0.5 / R`` (world units, at most half a voxel per axis)
32:40      alpha     FlexiCubes corner weights; ``0.01 + 1.98 * sigmoid(raw)`` (1 at raw = 0)
40:52      beta      FlexiCubes edge weights (edge order of tables.py); same mapping
52:53      gamma     FlexiCubes quad-split weight; same mapping
=========  ========  ==========================================================================

SDF and deformation are per corner and shared: every voxel predicts its 8 corners and each
corner takes the mean over the voxels that contain it (scatter-mean over unique corners).
alpha, beta and gamma stay per voxel. Corners that no active voxel covers do not exist in the
field; for extraction they count as outside (no surface is built across them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch

from focusing.core.geometry.distance import mesh_signed_distance
from focusing.core.sparse import hashing
from focusing.core.sparseflex.tables import CORNER_OFFSETS

__all__ = [
    "FEATURE_CHANNELS",
    "SDF_CHANNELS",
    "DEFORM_CHANNELS",
    "ALPHA_CHANNELS",
    "BETA_CHANNELS",
    "GAMMA_CHANNELS",
    "SparseFlexField",
    "sparseflex_from_features",
    "features_from_field",
    "corner_topology",
    "field_from_sdf",
    "field_from_corner_sdf",
    "field_from_mesh",
    "weight_activation",
    "corner_world_positions",
]

FEATURE_CHANNELS = 53
SDF_CHANNELS = slice(0, 8)
DEFORM_CHANNELS = slice(8, 32)
ALPHA_CHANNELS = slice(32, 40)
BETA_CHANNELS = slice(40, 52)
GAMMA_CHANNELS = slice(52, 53)

_W_MIN, _W_SPAN = 0.01, 1.98  # weights in (0.01, 1.99), exactly 1 at raw 0


def weight_activation(raw: torch.Tensor) -> torch.Tensor:
    """Raw logits -> positive FlexiCubes weights in (0.01, 1.99), 1 at 0; any shape."""
    return _W_MIN + _W_SPAN * torch.sigmoid(raw)


def _weight_inverse(w: torch.Tensor) -> torch.Tensor:
    p = ((w - _W_MIN) / _W_SPAN).clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def corner_world_positions(corner_ijk: torch.Tensor, resolution: int) -> torch.Tensor:
    """Integer corner coords [...,3] in [0,R] -> world positions [...,3] (float32, unit box)."""
    return corner_ijk.to(torch.float32) / resolution - 0.5


@dataclass
class SparseFlexField:
    """Shared-corner SparseFlex values on N active voxels with M unique corners.

    coords [N,4] long (b, x, y, z) in [0,R); corner_coords [M,4] long (b, i, j, k) in [0,R];
    cube_corners [N,8] long (rows of corner_coords, tables.py corner order); corner_sdf [M]
    (world units, negative inside); corner_deform [M,3] (world units, |.| <= 0.5/R);
    alpha [N,8], beta [N,12], gamma [N] (positive); voxel_sdf [N,8] and voxel_deform [N,8,3]
    the per-voxel predictions before averaging (None when the field was built from corners).
    """

    coords: torch.Tensor
    resolution: int
    corner_coords: torch.Tensor
    cube_corners: torch.Tensor
    corner_sdf: torch.Tensor
    corner_deform: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    gamma: torch.Tensor
    voxel_sdf: torch.Tensor | None = None
    voxel_deform: torch.Tensor | None = None

    @property
    def num_voxels(self) -> int:
        """N."""
        return int(self.coords.shape[0])

    @property
    def num_corners(self) -> int:
        """M."""
        return int(self.corner_coords.shape[0])

    @property
    def batch_size(self) -> int:
        """1 + the largest batch index (0 when empty)."""
        return int(self.coords[:, 0].max().item()) + 1 if self.num_voxels else 0

    @property
    def corner_positions(self) -> torch.Tensor:
        """Deformed corner positions [M,3], world units."""
        base = corner_world_positions(self.corner_coords[:, 1:], self.resolution)
        return base.to(self.corner_deform.dtype) + self.corner_deform

    def select(self, index: torch.Tensor) -> "SparseFlexField":
        """Sub-field on voxels `index` ([K] long or [N] bool); corner values stay as averaged over
        all N."""
        index = torch.as_tensor(index, device=self.coords.device)
        if index.dtype == torch.bool:
            if index.shape != (self.num_voxels,):
                raise ValueError(
                    f"bool index must have shape [{self.num_voxels}], got {list(index.shape)}"
                )
            index = index.nonzero().squeeze(1)
        index = index.long()
        return replace(
            self,
            coords=self.coords[index],
            cube_corners=self.cube_corners[index],
            alpha=self.alpha[index],
            beta=self.beta[index],
            gamma=self.gamma[index],
            voxel_sdf=None if self.voxel_sdf is None else self.voxel_sdf[index],
            voxel_deform=None if self.voxel_deform is None else self.voxel_deform[index],
        )

    def consistency_loss(self) -> torch.Tensor:
        """Mean squared gap between per-voxel corner predictions and the shared averages (scalar).

        SDF in world units plus deformation in voxel units (x R); 0 when built from corners.
        """
        zero = self.corner_sdf.sum() * 0.0
        if self.voxel_sdf is None or self.num_voxels == 0:
            return zero
        d_sdf = self.voxel_sdf - self.corner_sdf[self.cube_corners]
        loss = d_sdf.square().mean()
        if self.voxel_deform is not None:
            d_def = (self.voxel_deform - self.corner_deform[self.cube_corners]) * self.resolution
            loss = loss + d_def.square().sum(-1).mean()
        return loss


def _as_coords(coords: torch.Tensor | np.ndarray, resolution: int) -> torch.Tensor:
    coords = torch.as_tensor(coords)
    if coords.dtype.is_floating_point:
        raise ValueError(f"voxel coords must be integers, got {coords.dtype}")
    coords = coords.long()
    if coords.ndim != 2 or coords.shape[1] not in (3, 4):
        raise ValueError(
            f"voxel coords must be [N,3] (x,y,z) or [N,4] (b,x,y,z), got {list(coords.shape)}"
        )
    if coords.shape[1] == 3:
        coords = torch.cat([coords.new_zeros(coords.shape[0], 1), coords], dim=1)
    if resolution < 1 or resolution + 1 >= hashing.COORD_MAX:
        raise ValueError(f"resolution must be in [1, {hashing.COORD_MAX - 1}), got {resolution}")
    if coords.numel() and (
        coords[:, 1:].min() < 0
        or coords[:, 1:].max() >= resolution
        or coords[:, 0].min() < 0
        or coords[:, 0].max() >= hashing.BATCH_MAX
    ):
        raise ValueError(
            f"voxel coords out of range for resolution {resolution}: "
            f"min {coords.min(0).values.tolist()}, max {coords.max(0).values.tolist()}"
        )
    return coords


def _corner_index(coords: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique corners (b,i,j,k) [M,4] and the corner index of each voxel's 8 corners [N,8]."""
    n = coords.shape[0]
    offs = torch.cat([CORNER_OFFSETS.new_zeros(8, 1), CORNER_OFFSETS], 1).to(coords.device)
    corners = (coords[:, None, :] + offs[None]).reshape(-1, 4)
    # Packed int64 keys, sorted and made unique: the shared-corner index without a dense grid.
    corner_coords, inv = hashing.unique_coords(corners)
    return corner_coords, inv.reshape(n, 8)


def _check_unique_voxels(coords: torch.Tensor, resolution: int) -> None:
    if coords.shape[0] < 2:
        return
    key = hashing.pack(coords)
    if torch.unique(key).numel() != key.numel():
        raise ValueError("voxel coords contain duplicates; SparseFlex needs each active voxel once")


def _scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of rows of `values` [K,...] grouped by `index` [K] into [size,...]."""
    out = values.new_zeros((size,) + tuple(values.shape[1:])).index_add_(0, index, values)
    count = torch.bincount(index, minlength=size).to(values.dtype).clamp_min(1)
    return out / count.view((size,) + (1,) * (values.ndim - 1))


def corner_topology(coords: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shared corners of voxels coords [N,3|4] at R: (corner_coords [M,4] (b,i,j,k),
    cube_corners [N,8])."""
    coords = _as_coords(coords, int(resolution))
    _check_unique_voxels(coords, int(resolution))
    return _corner_index(coords, int(resolution))


def sparseflex_from_features(
    x: Any,
    coords: torch.Tensor | None = None,
    resolution: int | None = None,
    topology: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> SparseFlexField:
    """Per-voxel raw features [N,53] (see module doc) on coords [N,4] at R -> SparseFlexField.

    `x` is a SparseTensor (coords, feats, resolution taken from it) or the feats tensor itself,
    with `coords` and `resolution` given. `topology` = corner_topology(coords, R) (or
    (field.corner_coords, field.cube_corners) of a field on the same coords) skips the corner
    hashing when the voxels do not change between calls (direct fitting).
    """
    if hasattr(x, "feats") and hasattr(x, "coords"):
        feats, coords, resolution = x.feats, x.coords, int(x.resolution)
    else:
        feats = x
        if coords is None or resolution is None:
            raise ValueError(
                "give coords and resolution when x is a feature tensor, not a SparseTensor"
            )
    coords = _as_coords(coords, int(resolution))
    if feats.ndim != 2 or feats.shape[1] != FEATURE_CHANNELS:
        raise ValueError(
            f"SparseFlex features must be [N,{FEATURE_CHANNELS}], got {list(feats.shape)}"
        )
    if feats.shape[0] != coords.shape[0]:
        raise ValueError(f"{feats.shape[0]} feature rows for {coords.shape[0]} voxels")
    n = coords.shape[0]
    if topology is None:
        _check_unique_voxels(coords, resolution)
        corner_coords, cube_corners = _corner_index(coords.to(feats.device), resolution)
    else:
        corner_coords, cube_corners = (t.to(feats.device) for t in topology)
        if cube_corners.shape != (n, 8):
            raise ValueError(
                f"topology's cube_corners must be [{n},8], got {list(cube_corners.shape)}"
            )
    m = corner_coords.shape[0]
    # One split (a single gradient concat in backward) instead of five slices.
    raw_sdf, raw_def, raw_alpha, raw_beta, raw_gamma = feats.split([8, 24, 8, 12, 1], dim=1)
    voxel_sdf = raw_sdf
    voxel_deform = torch.tanh(raw_def).reshape(n, 8, 3) * (0.5 / resolution)
    flat = cube_corners.reshape(-1)
    corner_sdf = _scatter_mean(voxel_sdf.reshape(-1), flat, m)
    corner_deform = _scatter_mean(voxel_deform.reshape(-1, 3), flat, m)
    return SparseFlexField(
        coords=coords.to(feats.device),
        resolution=int(resolution),
        corner_coords=corner_coords,
        cube_corners=cube_corners,
        corner_sdf=corner_sdf,
        corner_deform=corner_deform,
        alpha=weight_activation(raw_alpha),
        beta=weight_activation(raw_beta),
        gamma=weight_activation(raw_gamma).squeeze(1),
        voxel_sdf=voxel_sdf,
        voxel_deform=voxel_deform,
    )


def features_from_field(field: SparseFlexField) -> torch.Tensor:
    """Raw features [N,53] that reproduce `field`'s corner values and weights (an initialiser)."""
    n, r = field.num_voxels, field.resolution
    sdf = field.corner_sdf[field.cube_corners]
    d = (field.corner_deform[field.cube_corners] * (2.0 * r)).clamp(-1 + 1e-6, 1 - 1e-6)
    return torch.cat(
        [
            sdf,
            torch.atanh(d).reshape(n, 24),
            _weight_inverse(field.alpha),
            _weight_inverse(field.beta),
            _weight_inverse(field.gamma[:, None]),
        ],
        dim=1,
    )


def field_from_corner_sdf(
    coords: torch.Tensor,
    resolution: int,
    corner_sdf_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    dtype: torch.dtype = torch.float32,
) -> SparseFlexField:
    """Field on coords [N,3|4] at R with corner SDF corner_sdf_fn(world [M,3] float64, batch [M])
    -> [M].

    Zero deformation and unit weights; values are stored as `dtype`.
    """
    coords = _as_coords(coords, resolution)
    _check_unique_voxels(coords, resolution)
    corner_coords, cube_corners = _corner_index(coords, resolution)
    # float64 positions: i / R - 0.5 is exact for power-of-two R, so corners on a surface
    # stay on it.
    pos = corner_coords[:, 1:].to(torch.float64) / resolution - 0.5
    sdf = torch.as_tensor(corner_sdf_fn(pos, corner_coords[:, 0]))
    if sdf.shape != (corner_coords.shape[0],):
        raise ValueError(
            f"corner SDF must have shape [{corner_coords.shape[0]}], got {list(sdf.shape)}"
        )
    sdf = sdf.to(dtype)
    n = coords.shape[0]
    return SparseFlexField(
        coords=coords,
        resolution=int(resolution),
        corner_coords=corner_coords,
        cube_corners=cube_corners,
        corner_sdf=sdf,
        corner_deform=torch.zeros(corner_coords.shape[0], 3, dtype=dtype),
        alpha=torch.ones(n, 8, dtype=dtype),
        beta=torch.ones(n, 12, dtype=dtype),
        gamma=torch.ones(n, dtype=dtype),
    )


def field_from_sdf(
    fn: Callable[[torch.Tensor], torch.Tensor],
    coords: torch.Tensor,
    resolution: int,
    dtype: torch.dtype = torch.float32,
) -> SparseFlexField:
    """Field with exact corner SDF fn(world points [M,3] float64) -> [M] on coords [N,3|4] at R.

    No deformation, unit weights, values stored as `dtype`.
    """
    return field_from_corner_sdf(coords, resolution, lambda pos, _b: fn(pos), dtype=dtype)


_ON_SURFACE = 1e-6  # voxels


def field_from_mesh(
    mesh: Any, coords: torch.Tensor, resolution: int, **kwargs: Any
) -> SparseFlexField:
    """Field on coords [N,3|4] at R with corner SDF = signed distance to `mesh` (open meshes too).

    `mesh` is a Mesh, trimesh.Trimesh or (vertices, faces) in the unit box, or a list of them
    (batch entry b uses mesh[b]). Zero deformation, unit weights; kwargs go to
    mesh_signed_distance (samples_per_area defaults to 16 R^2, capped at 2e5: samples ~1/4 voxel
    apart), and `dtype` (default float32) sets the stored precision.
    """
    kwargs.setdefault("samples_per_area", float(min(2.0e5, 16 * resolution * resolution)))
    dtype = kwargs.pop("dtype", torch.float32)
    meshes = list(mesh) if isinstance(mesh, list) else None

    def sdf(pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        if meshes is None:
            d = mesh_signed_distance(mesh, pos.numpy(), **kwargs)
        else:
            if int(batch.max()) >= len(meshes):
                raise ValueError(
                    f"coords hold batch index {int(batch.max())} but {len(meshes)} meshes "
                    "were given"
                )
            d = np.zeros(len(pos))
            for b, m in enumerate(meshes):
                sel = (batch == b).numpy()
                if sel.any():
                    d[sel] = mesh_signed_distance(m, pos[sel].numpy(), **kwargs)
        # Corners on the surface count as outside whatever the rounding of the file's
        # coordinates: where a normalised mesh's flat face lies on the unit box's face, a
        # corner there read as inside would need cubes outside the grid, and the surface
        # would open.
        d[np.abs(d) <= _ON_SURFACE / resolution] = 0.0
        return torch.from_numpy(d)

    return field_from_corner_sdf(coords, resolution, sdf, dtype=dtype)
