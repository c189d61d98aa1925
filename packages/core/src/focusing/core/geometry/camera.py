"""Pinhole cameras in OpenGL conventions: world-to-view, projection, pixels, zoom (paper eq. 4).

Conventions (used by every renderer, selector and test):
- view space looks down -Z, +Y up; *view depth* is -z_view (distance along the optical axis);
- NDC x, y in [-1, 1]; pixel (u, v) has u = column, v = row from the top, pixel centres at
  integer + 0.5, so u = (x_ndc + 1) / 2 * W and v = (1 - y_ndc) / 2 * H.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

__all__ = ["Camera", "look_at", "perspective", "orbit_cameras"]


def perspective(fov_y_deg: float, aspect: float, near: float, far: float) -> torch.Tensor:
    """OpenGL perspective projection [4,4] (float64) for a vertical field of view in degrees."""
    f = 1.0 / math.tan(math.radians(fov_y_deg) / 2.0)
    p = torch.zeros(4, 4, dtype=torch.float64)
    p[0, 0] = f / aspect
    p[1, 1] = f
    p[2, 2] = (far + near) / (near - far)
    p[2, 3] = 2.0 * far * near / (near - far)
    p[3, 2] = -1.0
    return p


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """World-to-view matrix [4,4] (float64) of a camera at `eye` looking at `target`."""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    up = torch.as_tensor(up, dtype=torch.float64)
    forward = target - eye
    forward = forward / forward.norm()
    if torch.cross(forward, up, dim=0).norm() < 1e-6:  # looking along `up`: pick another up
        up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    right = torch.cross(forward, up, dim=0)
    right = right / right.norm()
    true_up = torch.cross(right, forward, dim=0)
    m = torch.eye(4, dtype=torch.float64)
    m[0, :3], m[1, :3], m[2, :3] = right, true_up, -forward
    m[:3, 3] = -m[:3, :3] @ eye
    return m


@dataclass(frozen=True)
class Camera:
    """A perspective camera: world_to_view [4,4], projection [4,4] (float64), image size, clip
    planes."""

    world_to_view: torch.Tensor
    projection: torch.Tensor
    width: int
    height: int
    near: float
    far: float

    @classmethod
    def looking_at(
        cls,
        eye,
        target=(0.0, 0.0, 0.0),
        up=(0.0, 1.0, 0.0),
        fov_y_deg: float = 50.0,
        width: int = 256,
        height: int = 256,
        near: float = 0.1,
        far: float = 10.0,
    ) -> "Camera":
        """Build a camera at `eye` looking at `target` with a vertical FoV in degrees."""
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if not 0 < near < far:
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        return cls(
            look_at(eye, target, up),
            perspective(fov_y_deg, width / height, near, far),
            int(width),
            int(height),
            float(near),
            float(far),
        )

    # --- derived matrices -------------------------------------------------------------
    @property
    def view_to_world(self) -> torch.Tensor:
        """Inverse of world_to_view [4,4]."""
        return torch.linalg.inv(self.world_to_view)

    def pixel_size_at(self, depth: float) -> float:
        """World size of one pixel (vertical) at view depth `depth` (world units)."""
        return 2.0 * float(depth) / (float(self.projection[1, 1]) * self.height)

    @property
    def position(self) -> torch.Tensor:
        """Camera centre in world space [3]."""
        return self.view_to_world[:3, 3]

    @property
    def full_matrix(self) -> torch.Tensor:
        """projection @ world_to_view [4,4]: world to clip space."""
        return self.projection @ self.world_to_view

    def with_size(self, width: int, height: int) -> "Camera":
        """The same camera rendering at another image size (same field of view)."""
        return replace(self, width=int(width), height=int(height))

    # --- projection -------------------------------------------------------------------
    def to_view(self, points: torch.Tensor) -> torch.Tensor:
        """World points [N,3] to view-space points [N,3] (dtype of the input)."""
        m = self.world_to_view.to(points)
        return points @ m[:3, :3].T + m[:3, 3]

    def to_clip(self, points: torch.Tensor) -> torch.Tensor:
        """World points [N,3] to homogeneous clip coordinates [N,4]."""
        m = self.full_matrix.to(points)
        return points @ m[:, :3].T + m[:, 3]

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points [N,3] -> (pixels [N,2] as (u=column, v=row), view depth [N])."""
        clip = self.to_clip(points)
        w = clip[:, 3:4]
        ndc = clip[:, :2] / w
        u = (ndc[:, 0] + 1.0) * 0.5 * self.width
        v = (1.0 - ndc[:, 1]) * 0.5 * self.height
        depth = -self.to_view(points)[:, 2]
        return torch.stack([u, v], dim=-1), depth

    def project_ndc(self, points: torch.Tensor) -> torch.Tensor:
        """World points [N,3] -> NDC [N,3] (x, y, z in [-1, 1] inside the frustum)."""
        clip = self.to_clip(points)
        return clip[:, :3] / clip[:, 3:4]

    def pixel_rays(self, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays through every pixel centre: origin [3] and unit world directions [H,W,3].

        A hit at ray distance t has view depth t * ray_depth_scale()."""
        dirs = self._pixel_view_dirs(dtype)  # [H,W,3], z = -1
        rot = self.view_to_world.to(dtype)[:3, :3]
        world = dirs @ rot.T
        world = world / world.norm(dim=-1, keepdim=True)
        return self.position.to(dtype), world

    def ray_depth_scale(self, dtype=torch.float64) -> torch.Tensor:
        """Per-pixel factor [H,W]: view depth = ray distance * factor."""
        dirs = self._pixel_view_dirs(dtype)
        return 1.0 / dirs.norm(dim=-1)

    def _pixel_view_dirs(self, dtype) -> torch.Tensor:
        """View-space directions [H,W,3] through pixel centres, scaled to z = -1."""
        u = (torch.arange(self.width, dtype=dtype) + 0.5) / self.width * 2.0 - 1.0
        v = 1.0 - (torch.arange(self.height, dtype=dtype) + 0.5) / self.height * 2.0
        yy, xx = torch.meshgrid(v, u, indexing="ij")
        return self._ndc_xy_to_view_dirs(xx, yy)

    def _ndc_xy_to_view_dirs(self, x_ndc: torch.Tensor, y_ndc: torch.Tensor) -> torch.Tensor:
        # Solve P @ [x, y, -1, 1]^T for x, y given the NDC x, y (w = 1 at view depth 1);
        # general enough for off-centre (zoomed) projections.
        p = self.projection.to(x_ndc.dtype)
        # x_clip = p00 x + p01 y + p02 (-1) + p03 ; w_clip = p30 x + p31 y - p32 + p33 (= 1 here)
        a = p[:2, :2]
        rhs_x = x_ndc * (-p[3, 2] + p[3, 3]) - (-p[0, 2] + p[0, 3])
        rhs_y = y_ndc * (-p[3, 2] + p[3, 3]) - (-p[1, 2] + p[1, 3])
        rhs = torch.stack([rhs_x, rhs_y], dim=-1)
        xy = rhs @ torch.linalg.inv(a).T
        return torch.cat([xy, -torch.ones_like(xy[..., :1])], dim=-1)

    def unproject(self, pixels: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Pixels [N,2] (u, v) and view depths [N] -> world points [N,3]."""
        x_ndc = pixels[:, 0] / self.width * 2.0 - 1.0
        y_ndc = 1.0 - pixels[:, 1] / self.height * 2.0
        view = self._ndc_xy_to_view_dirs(x_ndc.to(torch.float64), y_ndc.to(torch.float64))
        view = view * depth.to(torch.float64)[:, None]
        m = self.view_to_world
        return (view @ m[:3, :3].T + m[:3, 3]).to(pixels.dtype)

    # --- adaptive zooming -------------------------------------------------------------
    def zoom(self, bbox_ndc, s: float = 1.1) -> "Camera":
        """New camera whose image shows the NDC box (xmin, xmax, ymin, ymax), scaled by s (eq. 4).

        The paper's eq. 4 (with its y-row typo fixed) maps the box onto [-1, 1] when s = 1.
        Its printed translation is not multiplied by s, which for s != 1 would move the box
        centre off the image centre; we scale about the box centre, so the box maps to
        [-s, s]: s > 1 pushes the crop's jagged border just outside the image, which is the
        purpose the paper gives for s. For s = 1 both readings are the same matrix.
        """
        xmin, xmax, ymin, ymax = (float(t) for t in bbox_ndc)
        if not (xmax > xmin and ymax > ymin):
            raise ValueError(f"degenerate zoom box {bbox_ndc}")
        if s <= 0:
            raise ValueError(f"zoom scale must be positive, got {s}")
        m = torch.eye(4, dtype=torch.float64)
        m[0, 0] = 2.0 * s / (xmax - xmin)
        m[0, 3] = -s * (xmax + xmin) / (xmax - xmin)
        m[1, 1] = 2.0 * s / (ymax - ymin)
        m[1, 3] = -s * (ymax + ymin) / (ymax - ymin)
        return replace(self, projection=m @ self.projection)

    def to_dict(self) -> dict:
        """A JSON-friendly description of the camera."""
        return {
            "world_to_view": self.world_to_view.tolist(),
            "projection": self.projection.tolist(),
            "width": self.width,
            "height": self.height,
            "near": self.near,
            "far": self.far,
        }


def orbit_cameras(
    n: int,
    *,
    radius: float = 2.0,
    fov_y_deg: float = 40.0,
    width: int = 256,
    height: int = 256,
    rng: np.random.Generator | int | None = None,
    target=(0.0, 0.0, 0.0),
) -> list[Camera]:
    """`n` cameras on a sphere of `radius` around `target`, looking at it; random directions
    (uniform on the sphere) from `rng`, or a Fibonacci spiral when rng is None.

    Near and far hug the unit box [-0.5, 0.5]^3 (half-diagonal sqrt(3)/2). At radius 2 the
    default 40 degree field of view shows the box's inscribed ball but may crop its corners;
    the whole box needs 2 asin(sqrt(3)/4) = 51.3 degrees (the trainer uses 55)."""
    if n <= 0:
        raise ValueError(f"need at least one camera, got n={n}")
    half_diag = math.sqrt(3.0) / 2.0
    if radius <= half_diag:
        raise ValueError(f"radius {radius} puts the camera inside the unit box")
    if rng is None:
        i = np.arange(n) + 0.5
        phi = np.arccos(1.0 - 2.0 * i / n)
        theta = np.pi * (1.0 + 5.0**0.5) * i
        dirs = np.stack(
            [np.cos(theta) * np.sin(phi), np.cos(phi), np.sin(theta) * np.sin(phi)], axis=-1
        )
    else:
        rng = np.random.default_rng(rng)
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    near = max(radius - half_diag - 0.05, 1e-3)
    far = radius + half_diag + 0.05
    t = np.asarray(target, dtype=np.float64)
    return [
        Camera.looking_at(t + radius * d, t, fov_y_deg=fov_y_deg, width=width, height=height,
                          near=near, far=far)
        for d in dirs
    ]
