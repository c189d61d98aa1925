"""The torch reference backend against dense F.conv3d / F.conv_transpose3d (float64, gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from focusing.core.sparse.backends.pure_torch import TorchBackend
from focusing.core.sparse.nn import SparseDownsample, SparseUpsample, SubMConv3d, set_backend
from focusing.core.sparse.tensor import SparseTensor

from ._data import mesh_batch

R = 16


def _dense_w(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Our [k^3, C_in, C_out] (dz fastest) as F.conv3d's [C_out, C_in, k, k, k]."""
    c_in, c_out = weight.shape[1:]
    return weight.reshape(k, k, k, c_in, c_out).permute(4, 3, 0, 1, 2)


def _at(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    return dense.permute(0, 2, 3, 4, 1)[coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3]]


def _inputs(c_in, c_out, kvol, seed=0, names=("fandisk", "bunny00")):
    g = torch.Generator().manual_seed(seed)
    coords = mesh_batch(names, R, shuffle_seed=seed)
    feats = torch.randn(coords.shape[0], c_in, dtype=torch.float64, generator=g).requires_grad_()
    weight = torch.randn(kvol, c_in, c_out, dtype=torch.float64, generator=g).requires_grad_()
    bias = torch.randn(c_out, dtype=torch.float64, generator=g).requires_grad_()
    return coords, feats, weight, bias


def _grads(out, ref, params):
    g = torch.randn_like(ref)
    got = torch.autograd.grad((out * g).sum(), params)
    want = torch.autograd.grad((ref * g).sum(), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("c_in,c_out", [(1, 3), (5, 4)])
def test_submanifold_matches_dense_conv3d(c_in, c_out):
    coords, feats, weight, bias = _inputs(c_in, c_out, 27)
    x = SparseTensor(coords, feats, R)
    out = TorchBackend().submanifold_conv(x, weight, bias)
    assert torch.equal(out.coords, coords)
    dense = F.conv3d(x.to_dense(), _dense_w(weight, 3), bias, padding=1)
    ref = _at(dense, coords)
    torch.testing.assert_close(out.feats, ref, rtol=1e-12, atol=1e-12)
    _grads(out.feats, ref, (feats, weight, bias))


def test_downsample_matches_dense_strided_conv3d():
    coords, feats, weight, bias = _inputs(3, 4, 8, seed=1)
    x = SparseTensor(coords, feats, R)
    out = TorchBackend().downsample_conv(x, weight, bias)
    assert out.resolution == R // 2
    want_coords = sorted({(b, i // 2, j // 2, k // 2) for b, i, j, k in coords.tolist()})
    assert out.coords.tolist() == [list(c) for c in want_coords]
    dense = F.conv3d(x.to_dense(), _dense_w(weight, 2), bias, stride=2)
    ref = _at(dense, out.coords)
    torch.testing.assert_close(out.feats, ref, rtol=1e-12, atol=1e-12)
    _grads(out.feats, ref, (feats, weight, bias))


def test_upsample_matches_dense_conv_transpose3d():
    coords, feats, weight, bias = _inputs(3, 2, 8, seed=2)
    x = SparseTensor(coords, feats, R)
    out = TorchBackend().upsample_conv(x, weight, bias)
    assert torch.equal(out.coords, x.subdivide().coords) and out.resolution == 2 * R
    dense = F.conv_transpose3d(x.to_dense(), _dense_w(weight, 2).transpose(0, 1), bias, stride=2)
    ref = _at(dense, out.coords)
    torch.testing.assert_close(out.feats, ref, rtol=1e-12, atol=1e-12)
    _grads(out.feats, ref, (feats, weight, bias))


def test_map_is_cached_and_reused_across_layers():
    coords, feats, weight, _ = _inputs(2, 2, 27, seed=3)
    x = SparseTensor(coords, feats.detach(), R)
    be = TorchBackend()
    y = be.submanifold_conv(x, weight.detach())
    nbr = x.cache[("kernel3",)].nbr
    be.submanifold_conv(y, weight.detach())
    assert y.cache[("kernel3",)].nbr is nbr  # the second layer did not rebuild it


def test_empty_tensor_and_bad_weights():
    be = TorchBackend()
    x = SparseTensor(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 3), 8)
    assert be.submanifold_conv(x, torch.randn(27, 3, 5)).feats.shape == (0, 5)
    assert be.downsample_conv(x, torch.randn(8, 3, 5)).feats.shape == (0, 5)
    assert be.upsample_conv(x, torch.randn(8, 3, 5)).feats.shape == (0, 5)
    coords = mesh_batch(("fandisk",), 8)
    y = SparseTensor(coords, torch.randn(coords.shape[0], 3), 8)
    with pytest.raises(ValueError, match="weight must be"):
        be.submanifold_conv(y, torch.randn(8, 3, 5))
    with pytest.raises(ValueError, match="C_in"):
        be.downsample_conv(y, torch.randn(8, 4, 5))


def test_modules_match_backend_calls_and_swap_by_name():
    torch.manual_seed(0)
    coords = mesh_batch(("camel",), R)
    x = SparseTensor(coords, torch.randn(coords.shape[0], 4), R)
    conv, down, up = SubMConv3d(4, 6), SparseDownsample(4, 6), SparseUpsample(4, 6)
    be = TorchBackend()
    torch.testing.assert_close(conv(x).feats, be.submanifold_conv(x, conv.weight, conv.bias).feats)
    torch.testing.assert_close(down(x).feats, be.downsample_conv(x, down.weight, down.bias).feats)
    torch.testing.assert_close(up(x).feats, be.upsample_conv(x, up.weight, up.bias).feats)
    conv(x).feats.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    with pytest.raises(LookupError):
        set_backend(conv, "no-such-backend")
    assert set_backend(conv, "torch").backend == "torch"
