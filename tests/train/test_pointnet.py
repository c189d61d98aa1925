"""The local PointNet's point-to-voxel pairs against a brute-force search, and its pooling."""

import itertools

import torch

from focusing.core.sparse.tensor import SparseTensor
from focusing.core.vae.pointnet import LocalPointNet, point_voxel_pairs


def _voxels(coords: list[tuple[int, int, int]], r: int) -> SparseTensor:
    c = torch.tensor(coords, dtype=torch.long)
    return SparseTensor(torch.cat([c.new_zeros(len(c), 1), c], 1), torch.zeros(len(c), 0), r)


def _brute_pairs(points: torch.Tensor, voxels: SparseTensor, reach: int) -> set[tuple[int, int]]:
    r = voxels.resolution
    holder = ((points.double() + 0.5) * r).floor().long().clamp(0, r - 1)
    pairs = set()
    for p, h in enumerate(holder.tolist()):
        for row, c in enumerate(voxels.coords[:, 1:].tolist()):
            if max(abs(a - b) for a, b in zip(h, c)) <= reach:
                pairs.add((row, p))
    return pairs


def test_pairs_match_a_brute_force_search_for_reach_zero_and_one():
    gen = torch.Generator().manual_seed(0)
    r = 6
    coords = [c for c in itertools.product(range(r), repeat=3) if (sum(c) * 7) % 5 < 2]
    voxels = _voxels(coords, r)
    points = torch.rand(300, 3, generator=gen) - 0.5
    for reach in (0, 1):
        rows, index = point_voxel_pairs(points, voxels, reach=reach)
        got = set(zip(rows.tolist(), index.tolist()))
        assert len(got) == len(rows)  # no pair twice
        assert got == _brute_pairs(points, voxels, reach)


def test_reach_one_gives_every_dilated_voxel_the_nearby_surface():
    # one point in voxel (2,2,2) of a 3x3x3 block: reach 0 reaches one voxel, reach 1 all 27
    coords = list(itertools.product((1, 2, 3), repeat=3))
    voxels = _voxels(coords, 8)
    point = torch.tensor([[(2.5 / 8) - 0.5 + 0.01, (2.5 / 8) - 0.5, (2.5 / 8) - 0.5]])
    normal = torch.tensor([[0.0, 0.0, 1.0]])
    torch.manual_seed(0)
    for reach, n_reached in ((0, 1), (1, 27)):
        net = LocalPointNet(hidden=8, out=4, reach=reach)
        with torch.no_grad():
            net.empty.fill_(123.0)
            feats = net(point, normal, voxels)
        assert int((feats[:, 0] != 123.0).sum()) == n_reached
        # the pooled feature of each reached voxel is the MLP of the point seen from its centre
        rows, _ = point_voxel_pairs(point, voxels, reach=reach)
        centre = (voxels.coords[rows, 1:].double() + 0.5) / 8 - 0.5
        local = ((point.double() - centre) * 8).float()
        with torch.no_grad():
            expect = net.mlp(torch.cat([local, normal.expand(len(rows), 3)], 1))
        torch.testing.assert_close(feats[rows], expect)
