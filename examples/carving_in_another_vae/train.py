"""Depth carving and zoom choosing which voxels a small VAE, not Focusing's, decodes and learns.

Why this exists: carving (Focusing, sec. 3.2) and adaptive zooming (sec. 3.3) are meant for any
sparse-voxel VAE, not only for this project's SparseFlex VAE. This script is the proof at toy
scale: the VAE below is written here with torch only (submanifold sparse convolutions from the
surface to per-voxel latents and back to per-voxel SDF values), and focusing contributes only
mesh loading, voxelisation, cameras, ground-truth depth (Embree ray casting) and the selectors,
built by name through the plugin registry. Each step: encode, carve the latent voxels against
the ground-truth depth of a random view, zoom on a cluster of the carved ones (a new camera, so
the ground truth is ray-cast again), decode only the kept latents into SDF values of their
2x2x2 children, and supervise those with the view's projective TSDF (depth map minus the
child's view depth, truncated). README.md next to this file says what it shows and what not.

    hatch run python examples/carving_in_another_vae/train.py [--steps 60] [--no-zoom]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from focusing.carving import build_selector, one_shape_voxels, run_selectors
from focusing.core.geometry import (
    dilate_voxels,
    load_mesh,
    orbit_cameras,
    raycast,
    sample_surface,
    surface_voxels,
    view_tsdf,
    voxel_centers,
)

HERE = Path(__file__).resolve().parent
DEFAULT_MESH = HERE.parent / "meshes" / "fandisk.off"

# The 27 offsets of a 3x3x3 neighbourhood and the 8 children of a voxel at twice the resolution.
OFFSETS = torch.tensor([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
CHILDREN = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


# --- the other VAE: nothing here comes from focusing ------------------------------------------


def neighbour_rows(xyz: torch.Tensor, resolution: int) -> torch.Tensor:
    """Row [N,27] (long) of each voxel's 3x3x3 neighbours among voxels xyz [N,3]; N where absent."""
    n = xyz.shape[0]
    lut = torch.full((resolution + 2,) * 3, n, dtype=torch.long)
    p = xyz + 1
    lut[p[:, 0], p[:, 1], p[:, 2]] = torch.arange(n)
    q = p[:, None, :] + OFFSETS[None]
    return lut[q[..., 0], q[..., 1], q[..., 2]]


class SubmanifoldConv(nn.Module):
    """3x3x3 sparse convolution on a fixed voxel set: outputs only where inputs are (no growth)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(27, c_in, c_out) / math.sqrt(27 * c_in))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, feats: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        """feats [N,C_in], neighbour rows [N,27] (N = absent) -> feats [N,C_out]."""
        padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])])
        return torch.einsum("nkc,kco->no", padded[nbr], self.weight) + self.bias


class TinyVAE(nn.Module):
    """A sparse-conv VAE on one voxel set: the surface grid at 2R (occupancy and mean normal,
    4 channels) read at each active voxel's 8 children -> Gaussian latents [N,C] at the active
    voxels at R -> an SDF value for each of the 8 children of whichever latents are decoded."""

    def __init__(self, channels: int = 8, hidden: int = 48, truncation: float = 1.0):
        super().__init__()
        self.truncation = truncation
        self.embed = nn.Linear(4 * 8, hidden)
        self.enc1 = SubmanifoldConv(hidden, hidden)
        self.enc2 = SubmanifoldConv(hidden, 2 * channels)
        self.dec1 = SubmanifoldConv(channels, hidden)
        self.dec2 = SubmanifoldConv(hidden, hidden)
        self.head = nn.Linear(hidden, 8)
        # Start from "free space" (+t): what most of the decoded children of a view are.
        nn.init.constant_(self.head.bias, 1.0)
        self.act = nn.SiLU()

    def encode(self, surface: torch.Tensor, xyz: torch.Tensor, resolution: int):
        """Surface grid [4,2R,2R,2R] -> mean, logvar [N,C] at the latent voxels xyz [N,3] (R)."""
        kids = 2 * xyz[:, None, :] + CHILDREN[None]  # [N,8,3]
        x = surface[:, kids[..., 0], kids[..., 1], kids[..., 2]]  # [4,N,8]
        nbr = neighbour_rows(xyz, resolution)
        h = self.act(self.embed(x.permute(1, 0, 2).reshape(xyz.shape[0], -1)))
        h = self.enc2(self.act(self.enc1(h, nbr)), nbr)
        mean, logvar = h.chunk(2, dim=1)
        # Start with a small posterior spread (std e^-3): unit noise would drown the mean.
        return mean, (logvar - 6.0).clamp(-12.0, 4.0)

    def decode(self, z: torch.Tensor, xyz: torch.Tensor, resolution: int):
        """Latents z [K,C] at voxels xyz [K,3] (R) -> (SDF [8K] in world units, child coords
        [8K,3] at 2R). Only these K voxels exist for the decoder: it never sees the others."""
        nbr = neighbour_rows(xyz, resolution)
        h = self.act(self.dec1(z, nbr))
        h = self.act(self.dec2(h, nbr))
        sdf = self.truncation * self.head(h).reshape(-1)
        children = (2 * xyz[:, None, :] + CHILDREN[None]).reshape(-1, 3)
        return sdf, children


# --- training with focusing's selectors --------------------------------------------------------


def surface_grid(mesh, resolution: int, seed: int, points: int = 50_000) -> torch.Tensor:
    """The encoder's input [4,R,R,R]: which voxels hold surface samples, and their mean unit
    normal (the normal says which side is outside; occupancy alone would not)."""
    p, n = sample_surface(mesh, points, seed=seed)
    ijk = torch.from_numpy(np.floor((p + 0.5) * resolution)).long().clamp(0, resolution - 1)
    key = (ijk[:, 0] * resolution + ijk[:, 1]) * resolution + ijk[:, 2]
    grid = torch.zeros(4, resolution**3)
    grid[0].index_fill_(0, key, 1.0)
    for c in range(3):
        grid[1 + c].index_add_(0, key, torch.from_numpy(n[:, c]).float())
    grid[1:] /= grid[1:].norm(dim=0, keepdim=True).clamp_min(1e-6)
    return grid.reshape(4, resolution, resolution, resolution)


def projective_tsdf(child_xyz: torch.Tensor, resolution: int, camera, depth: torch.Tensor,
                    truncation: float):
    """Target [M] (world units, in [-t, t]) and mask [M] (bool) of child voxels xyz [M,3] at
    `resolution`: depth map [H,W] minus view depth at each centre; unknown where the centre
    falls off the image or lies hidden more than t behind the visible surface."""
    centres = voxel_centers(child_xyz, resolution, torch.float64)
    target, valid = view_tsdf(centres, camera, depth, truncation)
    valid &= target > -truncation * (1.0 - 1e-6)
    return target.float(), valid


def masked_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, t: float):
    """Mean |pred - target| / t [scalar] over the valid entries (0 if none)."""
    if not bool(valid.any()):
        return pred.sum() * 0.0
    return (pred[valid] - target[valid]).abs().mean() / t


def parse_args(argv=None) -> argparse.Namespace:
    """The command-line options (see --help)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mesh", type=Path, default=DEFAULT_MESH, help="mesh file (OFF/OBJ/PLY/...)")
    p.add_argument("--steps", type=int, default=60, help="training steps (one view each)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--res", type=int, default=16, help="latent resolution R (outputs at 2R)")
    p.add_argument("--image-size", type=int, default=96, help="square image size (pixels)")
    p.add_argument("--zoom-min", type=int, default=48, help="zoom: fewest voxels in a crop")
    p.add_argument("--zoom-max", type=int, default=160, help="zoom: most voxels in a crop")
    p.add_argument("--no-zoom", action="store_true", help="carve only, keep the full view")
    p.add_argument("--eval-views", type=int, default=6, help="fixed views of the eval loss")
    p.add_argument("--eval-every", type=int, default=0, help="also evaluate every N steps")
    p.add_argument("--beta", type=float, default=1e-4, help="weight of the KL term")
    p.add_argument("--seed", type=int, default=0, help="seed of views, zoom and weights")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (small ops: 1)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Train the tiny VAE; print and return per-step losses and voxel counts, and the eval
    L1/t and sign agreement before and after (with the all-free-space constant's L1/t)."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    r, r_out = args.res, 2 * args.res
    trunc = 2.0 / r_out  # two output voxels, world units

    mesh = load_mesh(args.mesh)  # normalised into the unit box [-0.5, 0.5]^3

    def render(camera):
        return raycast(mesh.vertices, mesh.faces, camera)

    latent_xyz = dilate_voxels(surface_voxels(mesh, r), r)  # the latent voxels [N,3]
    surface = surface_grid(mesh, r_out, args.seed)
    latents = one_shape_voxels(latent_xyz, r)  # what selectors take: coordinates only

    carve = build_selector("depth-carving")  # r = 2 / R and a 3x3x3 dilation: the paper's rule
    chain = [carve] if args.no_zoom else [
        carve, build_selector("zoom", n_min=args.zoom_min, n_max=args.zoom_max, s=1.1)
    ]
    model = TinyVAE(truncation=trunc)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    def views(n, seed):
        return orbit_cameras(n, fov_y_deg=55.0, width=args.image_size, height=args.image_size,
                             rng=seed)

    eval_views = [(cam, render(cam)) for cam in views(args.eval_views, None)]

    def evaluate() -> tuple[float, float, float]:
        """Mean L1/t and sign agreement on fixed full views (carving only, mean latents), and
        the L1/t of predicting free space (+t) everywhere on the same voxels."""
        with torch.no_grad():
            mean, _ = model.encode(surface, latent_xyz, r)
            losses, free, agree, count = [], [], 0, 0
            for cam, gt in eval_views:
                kept = carve.select(latents, cam, gt, np.random.default_rng(0)).index
                sdf, kids = model.decode(mean[kept], latent_xyz[kept], r)
                target, valid = projective_tsdf(kids, r_out, cam, gt.depth, trunc)
                losses.append(float(masked_l1(sdf, target, valid, trunc)))
                free.append(float(masked_l1(torch.full_like(sdf, trunc), target, valid, trunc)))
                agree += int(((sdf > 0) == (target > 0))[valid].sum())
                count += int(valid.sum())
        return float(np.mean(losses)), agree / max(count, 1), float(np.mean(free))

    out = {"all": int(latent_xyz.shape[0]), "losses": [], "carved": [], "zoomed": [],
           "decoded": [], "supervised": [], "evals": []}
    out["eval_before"], out["sign_before"], out["free_space"] = evaluate()
    for step in range(args.steps):
        camera = views(1, rng)[0]
        gt = render(camera)
        mean, logvar = model.encode(surface, latent_xyz, r)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        # Focusing's part: which latents this view decodes, the camera and ground truth to use.
        kept = run_selectors(chain, latents, camera, gt, rng, render=render)
        sdf, kids = model.decode(z[kept.index], latent_xyz[kept.index], r)
        target, valid = projective_tsdf(kids, r_out, kept.camera, kept.ground_truth.depth, trunc)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()
        loss = masked_l1(sdf, target, valid, trunc) + args.beta * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss.detach())
        out["losses"].append(value)
        out["carved"].append(kept.kept[0])
        out["zoomed"].append(None if args.no_zoom else kept.kept[-1])
        out["decoded"].append(int(sdf.numel()))
        out["supervised"].append(int(valid.sum()))
        if args.eval_every and (step + 1) % args.eval_every == 0:
            out["evals"].append((step + 1, *evaluate()[:2]))
        if not args.quiet:
            zoom = "" if args.no_zoom else f", zoom kept {kept.kept[-1]}"
            print(f"step {step + 1:3d}/{args.steps}  loss {value:.4f}  latent voxels: carving "
                  f"kept {kept.kept[0]} of {out['all']}{zoom}; outputs decoded {sdf.numel()}, "
                  f"supervised {int(valid.sum())}")
    out["eval_after"], out["sign_after"], _ = evaluate()
    out["seconds"] = time.perf_counter() - t0
    carved = float(np.mean(out["carved"])) if out["carved"] else float("nan")
    print(f"carving kept {carved:.0f} of {out['all']} latent voxels per view on average "
          f"({carved / out['all']:.0%}); eval L1/t {out['eval_before']:.4f} -> "
          f"{out['eval_after']:.4f} (free space everywhere: {out['free_space']:.4f}), sign "
          f"agreement {out['sign_before']:.3f} -> {out['sign_after']:.3f}; "
          f"{args.steps} steps in {out['seconds']:.1f} s")
    return out


if __name__ == "__main__":
    main()
