"""Real mesh surface voxels for the sparse tests, and a brute-force (dict-based) sparse conv."""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import torch

from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import surface_voxels

MESHES = Path(__file__).resolve().parents[2] / "examples" / "meshes"
# written out here (not imported) so that the offset order of the contract is itself under test
OFFSETS3 = list(itertools.product((-1, 0, 1), repeat=3))
OFFSETS2 = list(itertools.product((0, 1), repeat=3))


@lru_cache(maxsize=None)
def surface(name: str, resolution: int) -> torch.Tensor:
    """Exact surface voxels [K,3] of examples/meshes/<name>.off at `resolution`."""
    return surface_voxels(load_mesh(MESHES / f"{name}.off"), resolution)


def mesh_batch(names: tuple[str, ...], resolution: int,
               shuffle_seed: int | None = None) -> torch.Tensor:
    """Surface voxels of real meshes as one batch; coords [N,4] (b, x, y, z), optionally
    shuffled."""
    parts = []
    for b, name in enumerate(names):
        v = surface(name, resolution)
        parts.append(torch.cat([torch.full((v.shape[0], 1), b, dtype=torch.long), v], dim=1))
    coords = torch.cat(parts)
    if shuffle_seed is not None:
        g = torch.Generator().manual_seed(shuffle_seed)
        coords = coords[torch.randperm(coords.shape[0], generator=g)]
    return coords


def brute_submanifold(coords, feats, weight, bias=None):
    """out[i] = sum_k feats[row of coords[i] + OFFSETS3[k]] @ weight[k] by Python dict lookups."""
    table = {tuple(c): i for i, c in enumerate(coords.tolist())}
    out = feats.new_zeros((coords.shape[0], weight.shape[2]))
    rows = coords.tolist()
    for k, (dx, dy, dz) in enumerate(OFFSETS3):
        pairs = [(i, table.get((b, x + dx, y + dy, z + dz))) for i, (b, x, y, z) in enumerate(rows)]
        pairs = [(i, j) for i, j in pairs if j is not None]
        if pairs:
            o, s = torch.tensor(pairs).T
            out = out.index_add(0, o, feats[s] @ weight[k])
    return out if bias is None else out + bias


def brute_downsample(coords, feats, weight, bias=None):
    """Parents sorted by (b, x, y, z) and out[p] = sum over children c of feats[c] @
    weight[o(c)]."""
    rows = coords.tolist()
    parents = sorted({(b, x // 2, y // 2, z // 2) for b, x, y, z in rows})
    pidx = {p: i for i, p in enumerate(parents)}
    out = feats.new_zeros((len(parents), weight.shape[2]))
    for o, (ox, oy, oz) in enumerate(OFFSETS2):
        pairs = [
            (pidx[(b, x // 2, y // 2, z // 2)], i)
            for i, (b, x, y, z) in enumerate(rows)
            if (x % 2, y % 2, z % 2) == (ox, oy, oz)
        ]
        if pairs:
            p, s = torch.tensor(pairs).T
            out = out.index_add(0, p, feats[s] @ weight[o])
    out = out if bias is None else out + bias
    return torch.tensor(parents, dtype=torch.long).view(-1, 4), out


def brute_upsample(coords, feats, weight, bias=None):
    """Children (b, 2x+ox, 2y+oy, 2z+oz) of row i at rows 8 i + o, feats[i] @ weight[o]."""
    offs = torch.tensor(OFFSETS2, dtype=torch.long)
    kids = coords[:, None, :].repeat(1, 8, 1)
    kids[:, :, 1:] = kids[:, :, 1:] * 2 + offs[None]
    out = torch.stack([feats @ weight[o] for o in range(8)], dim=1).reshape(-1, weight.shape[2])
    out = out if bias is None else out + bias
    return kids.reshape(-1, 4), out
