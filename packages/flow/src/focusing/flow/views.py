"""Conditioning images: renders of each training mesh by our own renderer, and the image
preprocessing every encoder input goes through (TRELLIS's: premultiply alpha on black, crop to the
alpha box x 1.2, resize).

View k of a mesh is a camera on a sphere around the unit box in a direction drawn from
rng([seed, k]); views 0 .. count-1 train, views count .. count+held_out-1 are never trained on and
serve the evaluation. The image is the world-space normal map (n / 2 + 1/2) premultiplied by
the coverage mask. Views are cached per mesh file (content hash plus view settings) beside the
prepared shapes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from focusing.core.geometry.camera import Camera

if TYPE_CHECKING:
    from focusing.flow.config import ViewsConfig

VIEWS_VERSION = 1


def view_camera(k: int, settings: dict) -> Camera:
    """Camera of view k: direction from rng([seed, k]) at `radius`, looking at the origin."""
    d = np.random.default_rng([int(settings["seed"]), int(k)]).normal(size=3)
    d /= np.linalg.norm(d)
    radius = float(settings["radius"])
    size = int(settings["render_size"])
    half_diag = 3**0.5 / 2
    return Camera.looking_at(d * radius, fov_y_deg=float(settings["fov_y_deg"]), width=size,
                             height=size, near=max(radius - half_diag - 0.05, 1e-2),
                             far=radius + half_diag + 0.05)


def render_rgba(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera,
                renderer=None) -> torch.Tensor:
    """Normal-shaded RGBA [4,H,W] in [0, 1] (RGB premultiplied by alpha) of a mesh [V,3], [F,3]."""
    if renderer is None:
        from focusing.core.plugin_system import get_registry

        renderer = get_registry("renderer").get("torch")()
    with torch.no_grad():
        out = renderer.render(vertices.float(), faces.long(), camera)
    alpha = out.mask.float().clamp(0, 1)
    rgb = (out.normal.float() * 0.5 + 0.5) * alpha[..., None]
    return torch.cat([rgb, alpha[..., None]], -1).permute(2, 0, 1).contiguous()


def preprocess(rgba: torch.Tensor, size: int, margin: float = 1.2) -> torch.Tensor:
    """RGBA [4,H,W] (or RGB [3,H,W]) in [0, 1] -> RGB [3,size,size]: premultiplied on black,
    cropped to a square of the alpha box's longer side x margin around its centre, resized."""
    if rgba.ndim != 3 or rgba.shape[0] not in (3, 4):
        raise ValueError(f"images must be [3|4,H,W], got {list(rgba.shape)}")
    rgba = rgba.float()
    if rgba.shape[0] == 3:
        rgba = torch.cat([rgba, torch.ones_like(rgba[:1])])
    alpha = rgba[3]
    # premultiplied on black (idempotent for our renders: alpha is 0 or 1 almost everywhere)
    rgb = rgba[:3] * alpha
    ys, xs = torch.nonzero(alpha > 0.5, as_tuple=True)
    h, w = alpha.shape
    if len(ys):
        y0, y1, x0, x1 = ys.min().item(), ys.max().item() + 1, xs.min().item(), xs.max().item() + 1
    else:
        y0, y1, x0, x1 = 0, h, 0, w
    side = max(int(round(max(y1 - y0, x1 - x0) * margin)), 1)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    top, left = cy - side // 2, cx - side // 2
    # pad with black so the square crop may leave the image
    pad = max(0, -top, -left, top + side - h, left + side - w)
    rgb = F.pad(rgb, (pad, pad, pad, pad))
    crop = rgb[:, top + pad:top + pad + side, left + pad:left + pad + side]
    return F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)[0].clamp(0, 1)


def load_image(path: Path) -> torch.Tensor:
    """An image file (PNG with or without alpha, JPEG, ...) as RGBA [4,H,W] in [0, 1]; a
    ValueError naming the file for one that is empty, not an image, truncated or corrupt."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"image {path}: empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    except PermissionError:
        raise
    # PIL's faults of a bad file: UnidentifiedImageError and "image file is truncated" are
    # OSErrors, a corrupt PNG chunk is a SyntaxError, a decompression bomb its own error
    except (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError) as exc:
        why = str(exc).strip().splitlines()
        raise ValueError(f"image {path}: not a readable image "
                         f"({why[0] if why else type(exc).__name__})") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def held_out_views(views: ViewsConfig) -> range:
    """Indices of a flow run's views never trained on (its [views] table): views.count to
    count + held_out - 1."""
    return range(views.count, views.count + views.held_out)


def view_settings(views: ViewsConfig) -> dict:
    """The settings a mesh's cached views depend on (of a flow setup's [views] table), as the
    plain dict view_camera, render_views and cached_views read (and the cache key hashes)."""
    return {"version": VIEWS_VERSION,
            **{k: getattr(views, k) for k in ("count", "held_out", "render_size", "image_size",
                                              "fov_y_deg", "radius", "seed")}}


def render_views(vertices: torch.Tensor, faces: torch.Tensor, settings: dict,
                 ks: range | list[int]) -> torch.Tensor:
    """Preprocessed views ks of a normalised mesh: [len(ks),3,S,S]."""
    from focusing.core.plugin_system import get_registry

    renderer = get_registry("renderer").get("torch")()
    size = int(settings["image_size"])
    return torch.stack([preprocess(render_rgba(vertices, faces, view_camera(k, settings),
                                               renderer), size)
                        for k in ks])


def cached_views(mesh_path: Path, vertices: torch.Tensor, faces: torch.Tensor, settings: dict,
                 cache_dir: Path) -> torch.Tensor:
    """All count + held_out views of a mesh [V,3,S,S], rendered once into cache_dir."""
    h = hashlib.sha256(Path(mesh_path).read_bytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    out = Path(cache_dir) / f"{Path(mesh_path).stem}-{h.hexdigest()[:24]}.pt"
    if out.exists():
        return torch.load(out, weights_only=True)
    views = render_views(vertices, faces, settings,
                         range(int(settings["count"]) + int(settings["held_out"])))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    torch.save(views, tmp)
    os.replace(tmp, out)
    return views
