"""SparseTensor and coordinate hashing against brute force, on real mesh surface voxels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from focusing.core.geometry.voxelize import dilate_voxels
from focusing.core.sparse import hashing
from focusing.core.sparse.backends.pure_torch import build_kernel3_map, kernel3_map
from focusing.core.sparse.tensor import SparseTensor, cat, collate

from ._data import OFFSETS2, OFFSETS3, mesh_batch, surface


def test_pack_unpack_round_trip_and_order():
    g = torch.Generator().manual_seed(0)
    c = torch.randint(-2, 5000, (2000, 4), generator=g)
    c[:, 0] = torch.randint(0, 4000, (2000,), generator=g)
    keys = hashing.pack(c)
    assert torch.equal(hashing.unpack(keys), c)
    # keys sort like (b, x, y, z) tuples
    by_key = c[torch.argsort(keys)].tolist()
    assert by_key == sorted(c.tolist())


def test_pack_far_beyond_1024_cubed():
    c = torch.tensor([[3, 0, 0, 0], [3, 100_000, 99_999, 65_536], [0, 1023, 1023, 1023]])
    assert torch.equal(hashing.unpack(hashing.pack(c)), c)
    idx = hashing.CoordIndex(c)
    assert idx.lookup(torch.tensor([[3, 100_000, 99_999, 65_536],
                                    [3, 100_000, 99_999, 65_535]])).tolist() == [1, -1]


def test_coord_index_lookup_matches_dict():
    coords = mesh_batch(("fandisk", "bunny00"), 32, shuffle_seed=1)
    table = {tuple(c): i for i, c in enumerate(coords.tolist())}
    index = hashing.CoordIndex(coords)
    g = torch.Generator().manual_seed(2)
    query = torch.cat([coords + torch.randint(-1, 2, coords.shape, generator=g), coords[:50]])
    query[:, 0] = query[:, 0].clamp(0, 1)
    want = [table.get(tuple(q), -1) for q in query.tolist()]
    assert index.lookup(query).tolist() == want


def test_duplicates_and_range_are_clear_errors():
    with pytest.raises(ValueError, match="duplicate"):
        hashing.CoordIndex(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="packable"):
        hashing.CoordIndex(torch.tensor([[0, 1 << 17, 0, 0]]))
    with pytest.raises(ValueError, match="coords"):
        SparseTensor(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 1), 8)
    with pytest.raises(ValueError, match="feature rows"):
        SparseTensor(torch.zeros(3, 4, dtype=torch.long), torch.zeros(2, 1), 8)


def test_layout_counts_offsets_batch_size():
    coords = mesh_batch(("fandisk", "bunny00", "camel"), 16)
    x = SparseTensor(coords, torch.zeros(coords.shape[0], 1), 16)
    sizes = [surface(n, 16).shape[0] for n in ("fandisk", "bunny00", "camel")]
    assert x.batch_size == 3 and x.counts.tolist() == sizes
    assert x.offsets.tolist() == [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    assert x.is_batch_sorted()
    assert (SparseTensor(coords, torch.zeros(coords.shape[0], 1), 16, batch_size=5).counts.tolist()
            == sizes + [0, 0])


def test_dense_round_trip():
    coords = mesh_batch(("fandisk", "camel"), 16, shuffle_seed=0)
    feats = torch.randn(coords.shape[0], 3, dtype=torch.float64)
    x = SparseTensor(coords, feats, 16)
    dense = x.to_dense()
    assert dense.shape == (2, 3, 16, 16, 16)
    for i in torch.randint(0, coords.shape[0], (20,)).tolist():
        b, a, bb, c = coords[i].tolist()
        assert torch.equal(dense[b, :, a, bb, c], feats[i])
    assert int((dense != 0).any(1).sum()) == coords.shape[0]
    y = SparseTensor.from_dense(dense)
    assert y.coords.tolist() == sorted(coords.tolist())
    assert torch.equal(y.to_dense(), dense)


def test_dilate_matches_dense_max_pool_and_geometry():
    coords = mesh_batch(("fandisk", "bunny00"), 24)
    feats = torch.randn(coords.shape[0], 2, dtype=torch.float64)
    x = SparseTensor(coords, feats, 24)
    d = x.dilate()
    mask = x.replace(torch.ones(coords.shape[0], 1)).to_dense()
    dense_dil = F.max_pool3d(mask, 3, stride=1, padding=1)[:, 0] > 0
    assert d.coords.tolist() == torch.nonzero(dense_dil).tolist()  # sorted, exact set
    assert torch.equal(d.coords[d.coords[:, 0] == 0, 1:], dilate_voxels(surface("fandisk", 24), 24))
    # old voxels keep their feats, new ones are zero
    back = d.to_dense()
    assert torch.equal(back, x.to_dense())


def test_subdivide_rows_and_children():
    coords = mesh_batch(("camel",), 16, shuffle_seed=3)
    feats = torch.randn(coords.shape[0], 4)
    s = SparseTensor(coords, feats, 16).subdivide()
    assert s.resolution == 32 and s.num_voxels == 8 * coords.shape[0]
    for i in (0, 7, coords.shape[0] - 1):
        b, x, y, z = coords[i].tolist()
        for o, (ox, oy, oz) in enumerate(OFFSETS2):
            assert s.coords[8 * i + o].tolist() == [b, 2 * x + ox, 2 * y + oy, 2 * z + oz]
            assert torch.equal(s.feats[8 * i + o], feats[i])
    # children of distinct parents are distinct and cover exactly the parents' cells
    assert torch.unique(hashing.pack(s.coords)).numel() == s.num_voxels
    parents = s.coords.clone()
    parents[:, 1:] //= 2
    assert sorted(set(map(tuple, parents.tolist()))) == sorted(map(tuple, coords.tolist()))


def test_index_select_remaps_cached_neighbour_map():
    coords = mesh_batch(("bunny00", "fandisk"), 32, shuffle_seed=4)
    x = SparseTensor(coords, torch.randn(coords.shape[0], 3), 32)
    full = kernel3_map(x)
    assert ("kernel3",) in x.cache
    g = torch.Generator().manual_seed(5)
    idx = torch.randperm(coords.shape[0], generator=g)[: coords.shape[0] // 3]
    sub = x.index_select(idx)
    assert torch.equal(sub.coords, coords[idx]) and torch.equal(sub.feats, x.feats[idx])
    carried = sub.cache[("kernel3",)]
    assert torch.equal(carried.nbr.long(), build_kernel3_map(sub.coords).nbr.long())
    assert full.nbr.shape[1] == coords.shape[0]
    # a bool mask selects the same rows in increasing order
    mask = torch.zeros(coords.shape[0], dtype=torch.bool)
    mask[idx] = True
    assert torch.equal(x.index_select(mask).coords, coords[torch.sort(idx).values])
    with pytest.raises(IndexError):
        x.index_select(torch.tensor([coords.shape[0]]))


def test_kernel3_map_matches_dict_lookup():
    coords = mesh_batch(("armadillo", "blade"), 32, shuffle_seed=6)
    n = coords.shape[0]
    table = {tuple(c): i for i, c in enumerate(coords.tolist())}
    nbr = build_kernel3_map(coords).nbr.long()
    for k, (dx, dy, dz) in enumerate(OFFSETS3):
        want = [table.get((b, x + dx, y + dy, z + dz), n) for b, x, y, z in coords.tolist()]
        assert nbr[k].tolist() == want, f"offset {k}"


def test_replace_shares_cache_and_cat_collate():
    coords = mesh_batch(("fandisk",), 16)
    x = SparseTensor(coords, torch.randn(coords.shape[0], 2), 16)
    y = x.replace(torch.randn(coords.shape[0], 5))
    kernel3_map(y)
    assert x.cache is y.cache and ("kernel3",) in x.cache
    z = cat([x, y])
    assert z.num_channels == 7 and torch.equal(z.feats[:, 2:], y.feats)
    other = SparseTensor(coords.flip(0), x.feats, 16)
    with pytest.raises(ValueError):
        cat([x, other])
    batch = collate([x, y.replace(y.feats[:, :2])])
    assert batch.batch_size == 2 and batch.counts.tolist() == [coords.shape[0]] * 2
    assert torch.equal(batch.coords[coords.shape[0]:, 1:], coords[:, 1:])


def test_sort_orders_rows():
    coords = mesh_batch(("fandisk", "camel"), 16, shuffle_seed=7)
    x = SparseTensor(coords, torch.arange(coords.shape[0], dtype=torch.float32)[:, None], 16)
    s, perm = x.sort()
    assert s.coords.tolist() == sorted(coords.tolist())
    assert torch.equal(s.feats[:, 0].long(), perm)
