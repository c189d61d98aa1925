"""The spconv and MinkowskiEngine adapters against a dense float64 F.conv3d oracle.

Inputs are the surface voxels of real meshes (fandisk, bunny00) at 16^3, batched and with
their rows shuffled, so that the adapters' row-order mapping is exercised.
"""

from __future__ import annotations

import pytest
import torch
from _adapter_oracle import (
    ADAPTERS,
    OFFSETS3,
    backend_or_skip,
    dense_downsample,
    dense_submanifold,
    dense_upsample,
    mesh_batch,
)

from focusing.core.sparse.tensor import SparseTensor

RES = 16
TOL = dict(rtol=1e-9, atol=1e-9)


def _grads(out: torch.Tensor, inputs, seed: int):
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad(out, inputs, g)


def _inputs(names, c_in, c_out, k, seed):
    gen = torch.Generator().manual_seed(seed)
    coords = mesh_batch(names, RES, seed)
    feats = torch.randn(coords.shape[0], c_in, dtype=torch.float64, generator=gen)
    weight = torch.randn(k, c_in, c_out, dtype=torch.float64, generator=gen)
    bias = torch.randn(c_out, dtype=torch.float64, generator=gen)
    return coords, feats.requires_grad_(), weight.requires_grad_(), bias.requires_grad_()


CASES = [(("fandisk",), 1, 1), (("fandisk", "bunny00"), 3, 5)]


@pytest.mark.parametrize("name", ADAPTERS)
@pytest.mark.parametrize("names,c_in,c_out", CASES)
def test_submanifold_matches_dense(name, names, c_in, c_out):
    backend = backend_or_skip(name)
    coords, feats, weight, bias = _inputs(names, c_in, c_out, 27, seed=1)
    x = SparseTensor(coords=coords, feats=feats, resolution=RES)
    out = backend.submanifold_conv(x, weight, bias)
    ref = dense_submanifold(coords, feats, weight, bias, len(names), RES)
    assert torch.equal(out.coords, coords) and out.resolution == RES
    torch.testing.assert_close(out.feats, ref, **TOL)
    leaves = (feats, weight, bias)
    for got, want in zip(_grads(out.feats, leaves, 2), _grads(ref, leaves, 2)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name", ADAPTERS)
@pytest.mark.parametrize("names,c_in,c_out", CASES)
def test_downsample_matches_dense(name, names, c_in, c_out):
    backend = backend_or_skip(name)
    coords, feats, weight, bias = _inputs(names, c_in, c_out, 8, seed=3)
    x = SparseTensor(coords=coords, feats=feats, resolution=RES)
    out = backend.downsample_conv(x, weight, bias)
    parents, ref = dense_downsample(coords, feats, weight, bias, len(names), RES)
    assert out.resolution == RES // 2
    assert torch.equal(out.coords, parents), "parents must be unique and sorted by (b, x, y, z)"
    torch.testing.assert_close(out.feats, ref, **TOL)
    leaves = (feats, weight, bias)
    for got, want in zip(_grads(out.feats, leaves, 4), _grads(ref, leaves, 4)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name", ADAPTERS)
@pytest.mark.parametrize("names,c_in,c_out", CASES)
def test_upsample_matches_dense(name, names, c_in, c_out):
    backend = backend_or_skip(name)
    coords, feats, weight, bias = _inputs(names, c_in, c_out, 8, seed=5)
    x = SparseTensor(coords=coords, feats=feats, resolution=RES)
    out = backend.upsample_conv(x, weight, bias)
    children, ref = dense_upsample(coords, feats, weight, bias, len(names), RES)
    assert out.resolution == RES * 2
    assert torch.equal(out.coords, children), "child o of voxel i must sit at row 8 i + o"
    torch.testing.assert_close(out.feats, ref, **TOL)
    leaves = (feats, weight, bias)
    for got, want in zip(_grads(out.feats, leaves, 6), _grads(ref, leaves, 6)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name", ADAPTERS)
def test_kernel_offset_order_by_lookup(name):
    """A one-hot weight per offset copies the neighbour at coords + offset (brute-force lookup)."""
    backend = backend_or_skip(name)
    coords = mesh_batch(("camel",), RES, seed=7)
    n = coords.shape[0]
    feats = torch.arange(1, n + 1, dtype=torch.float64)[:, None]  # row id + 1; 0 means no neighbour
    weight = torch.zeros(27, 1, 27, dtype=torch.float64)
    weight[torch.arange(27), 0, torch.arange(27)] = 1.0
    out = backend.submanifold_conv(SparseTensor(coords=coords, feats=feats, resolution=RES), weight)
    row_of = {tuple(c): i for i, c in enumerate(coords.tolist())}
    for k, (dx, dy, dz) in enumerate(OFFSETS3):
        want = [
            row_of.get((b, x + dx, y + dy, z + dz), -1) + 1 for b, x, y, z in coords.tolist()
        ]
        assert out.feats[:, k].tolist() == want, f"offset {k} = {(dx, dy, dz)} is misplaced"


@pytest.mark.parametrize("name", ADAPTERS)
def test_gradient_reaches_callers_weight_in_float32(name):
    """Our weight tensor (a leaf, not a library parameter) gets .grad through backward()."""
    backend = backend_or_skip(name)
    coords = mesh_batch(("fandisk",), RES, seed=8)
    gen = torch.Generator().manual_seed(9)
    feats = torch.randn(coords.shape[0], 8, generator=gen, requires_grad=True)
    w3 = torch.randn(27, 8, 8, generator=gen, requires_grad=True)
    w2 = torch.randn(8, 8, 4, generator=gen, requires_grad=True)
    x = SparseTensor(coords=coords, feats=feats, resolution=RES)
    y = backend.submanifold_conv(x, w3)
    z = backend.downsample_conv(y, w2)
    loss = (z.feats**2).sum() + backend.upsample_conv(y, w2).feats.sum()
    loss.backward()
    for t in (feats, w3, w2):
        assert t.grad is not None and t.grad.abs().sum() > 0
    # the float32 result agrees with float64 dense within float32 rounding
    ref = dense_submanifold(coords, feats.double(), w3.double(), None, 1, RES)
    torch.testing.assert_close(y.feats.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ADAPTERS)
def test_bad_weight_shape_is_a_clear_error(name):
    backend = backend_or_skip(name)
    coords = mesh_batch(("fandisk",), 8)
    x = SparseTensor(coords=coords, feats=torch.randn(coords.shape[0], 4), resolution=8)
    with pytest.raises(ValueError, match=r"\[27, C_in, C_out\]"):
        backend.submanifold_conv(x, torch.randn(8, 4, 4))
    with pytest.raises(ValueError, match="C_in=3"):
        backend.downsample_conv(x, torch.randn(8, 3, 4))


def test_spconv_cpu_scatter_fix_is_correct_and_deterministic():
    """spconv 2.3's multithreaded CPU scatter-add races; the adapter's replacement must not.

    Unfixed, about every call at 64 float64 channels on two threads returns some wrong rows.
    """
    backend = backend_or_skip("spconv")
    assert torch.get_num_threads() >= 1
    coords = mesh_batch(("armadillo",), RES, seed=10)
    gen = torch.Generator().manual_seed(11)
    feats = torch.randn(coords.shape[0], 64, dtype=torch.float64, generator=gen)
    weight = torch.randn(27, 64, 64, dtype=torch.float64, generator=gen)
    x = SparseTensor(coords=coords, feats=feats, resolution=RES)
    ref = dense_submanifold(coords, feats, weight, None, 1, RES)
    for _ in range(3):
        torch.testing.assert_close(backend.submanifold_conv(x, weight).feats, ref, **TOL)


@pytest.mark.parametrize("name", ADAPTERS)
def test_cached_maps_are_reused_and_invalidated(name):
    """Maps cached in x.cache serve a replace()d tensor; an index_select()ed one gets new ones."""
    backend = backend_or_skip(name)
    coords, feats, weight, bias = _inputs(("bunny00",), 2, 3, 27, seed=12)
    w2 = torch.randn(8, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    x = SparseTensor(coords=coords, feats=feats, resolution=RES)
    first = [backend.submanifold_conv(x, weight, bias), backend.downsample_conv(x, w2),
             backend.upsample_conv(x, w2)]  # fmt: skip
    assert any(isinstance(k, tuple) and k[0] == name for k in x.cache), "nothing cached"
    again = [backend.submanifold_conv(x, weight, bias), backend.downsample_conv(x, w2),
             backend.upsample_conv(x, w2)]  # fmt: skip
    for a, b in zip(first, again):
        assert torch.equal(a.coords, b.coords) and torch.equal(a.feats, b.feats)
    y = x.replace(feats * 2.0)  # shares the cache
    torch.testing.assert_close(
        backend.submanifold_conv(y, weight).feats,
        dense_submanifold(coords, feats * 2.0, weight, None, 1, RES), **TOL,
    )  # fmt: skip
    keep = torch.arange(0, coords.shape[0], 3)
    z = x.index_select(keep)  # a subset: the cached maps must not be reused
    torch.testing.assert_close(
        backend.submanifold_conv(z, weight, bias).feats,
        dense_submanifold(coords[keep], feats[keep], weight, bias, 1, RES), **TOL,
    )  # fmt: skip
    parents, ref = dense_downsample(coords[keep], feats[keep], w2, None, 1, RES)
    down = backend.downsample_conv(z, w2)
    assert torch.equal(down.coords, parents)
    torch.testing.assert_close(down.feats, ref, **TOL)
    children, ref = dense_upsample(coords[keep], feats[keep], w2, None, 1, RES)
    up = backend.upsample_conv(z, w2)
    assert torch.equal(up.coords, children)
    torch.testing.assert_close(up.feats, ref, **TOL)
