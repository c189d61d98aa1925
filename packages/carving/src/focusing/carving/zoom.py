"""The `zoom` selector (Focusing, sec. 3.3): adaptive zooming on a cluster of kept voxels.

Pick a random kept voxel (among those whose centre lands on a foreground pixel), a random N
in [n_min, n_max], and its N nearest kept voxels in image space (scipy cKDTree on the
projected centres). Their image bounding box (of the projected cubes, so that it never
degenerates) gives a new projection by eq. 4 with scale s (Camera.zoom). The input is the
set to zoom in: the output of depth-carving in the Focusing setup (chain it first).

The crop returned is those N voxels plus, with `fill_view` (default), every input voxel whose
cube meets the zoomed frustum, dilated by one voxel within the input: the N nearest in image
space form a disc, the zoomed image a rectangle around it, and a dual mesher needs the
neighbours just outside the image for the faces on its border. Without it (paper-literal)
the render in the zoomed view may lose the corners of the rectangle.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from focusing.core.geometry.voxelize import voxel_centers
from focusing.core.plugin_system.base import VoxelSelector
from focusing.core.plugin_system.types import Selection

from focusing.carving._voxels import (
    check_render,
    cubes_in_frustum,
    dilate_within,
    empty_index,
    foreground,
    project_centres,
    shape_coords,
)

_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def cube_ndc_bbox(camera, xyz: torch.Tensor, resolution: int) -> tuple[float, float, float, float]:
    """NDC box (xmin, xmax, ymin, ymax) of the projected cubes of voxels xyz [N,3] (in front)."""
    corners = (xyz[:, None, :] + _CORNERS.to(xyz.device)[None]).reshape(-1, 3)
    points = corners.to(torch.float64) / resolution - 0.5
    depth = camera.project(points)[1]
    ndc = camera.project_ndc(points)
    ndc = ndc[depth > 0]
    return (
        float(ndc[:, 0].min()), float(ndc[:, 0].max()),
        float(ndc[:, 1].min()), float(ndc[:, 1].max()),
    )


class ZoomSelector(VoxelSelector):
    """Adaptive zooming: a random image-space cluster of n_min..n_max voxels and the camera of
    eq. 4 framing it (scale s); camera_changed is True whenever a crop is made."""

    name = "zoom"
    default_stage = "latent"

    def __init__(self, n_min: int = 64, n_max: int = 256, s: float = 1.1, fill_view: bool = True):
        n_min, n_max = int(n_min), int(n_max)
        if not 1 <= n_min <= n_max:
            raise ValueError(f"zoom needs 1 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
        if float(s) <= 0:
            raise ValueError(f"zoom scale s must be positive, got {s}")
        super().__init__(n_min=n_min, n_max=n_max, s=float(s), fill_view=bool(fill_view))
        self.n_min, self.n_max, self.s, self.fill_view = n_min, n_max, float(s), bool(fill_view)

    def select(self, voxels, camera, ground_truth, rng: np.random.Generator) -> Selection:
        """Return the rows [K] of the crop and the zoomed camera (unchanged if nothing is seen)."""
        xyz, res = shape_coords(voxels)
        check_render(camera, ground_truth)
        col, row, _, ok = project_centres(camera, xyz, res)
        cand = ok.nonzero().squeeze(1)
        if cand.numel() == 0:
            return Selection(empty_index(xyz.device), camera, False)
        on_fg = foreground(ground_truth).to(xyz.device)[row[cand], col[cand]]
        pool = cand[on_fg] if bool(on_fg.any()) else cand
        centre = pool[int(rng.integers(pool.numel()))]
        n = min(int(rng.integers(self.n_min, self.n_max + 1)), cand.numel())
        pix = camera.project(voxel_centers(xyz[cand], res, torch.float64))[0]
        pix = pix.cpu().numpy()
        tree = cKDTree(pix)
        c_pix = camera.project(voxel_centers(xyz[centre : centre + 1], res, torch.float64))[0]
        _, nearest = tree.query(c_pix.cpu().numpy()[0], k=n)
        crop = cand[torch.as_tensor(np.atleast_1d(nearest), device=xyz.device)]
        new_cam = camera.zoom(cube_ndc_bbox(camera, xyz[crop], res), s=self.s)
        if self.fill_view:
            seen = cubes_in_frustum(new_cam, xyz, res).nonzero().squeeze(1)
            seen = dilate_within(xyz, res, seen)
            crop = torch.cat([crop, seen])
        return Selection(torch.unique(crop), new_cam, True)
