"""Sparse window attention against a naive loop over windows, on real mesh surface voxels."""

from __future__ import annotations

import math

import pytest
import torch

from focusing.core.sparse.attention import (
    SparseTransformerBlock,
    SparseWindowAttention,
    window_attention,
    window_partition,
)
from focusing.core.sparse.tensor import SparseTensor

from ._data import mesh_batch

R = 32


def _naive(coords, q, k, v, window, shift):
    """Attention by a Python loop over the distinct (b, window) cells, float64; [N,H,d]."""
    cell = torch.cat([coords[:, :1], (coords[:, 1:] + shift) // window], dim=1)
    out = torch.zeros_like(q)
    for key in torch.unique(cell, dim=0):
        rows = torch.nonzero((cell == key).all(dim=1)).squeeze(1)
        qq, kk, vv = (t[rows].transpose(0, 1) for t in (q, k, v))  # [H,L,d]
        a = torch.softmax(qq @ kk.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        out[rows] = (a @ vv).transpose(0, 1)
    return out


@pytest.mark.parametrize("window,shift", [(8, 0), (8, 4), (4, 2)])
def test_window_attention_matches_naive_loop(window, shift):
    coords = mesh_batch(("bunny00", "fandisk"), R, shuffle_seed=0)
    n = coords.shape[0]
    g = torch.Generator().manual_seed(window + shift)
    q, k, v = (torch.randn(n, 2, 8, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    x = SparseTensor(coords, torch.zeros(n, 1), R)
    part = window_partition(x, window, shift)
    got = window_attention(q, k, v, part)
    want = _naive(coords, q, k, v, window, shift)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    gout = torch.randn(got.shape, generator=g, dtype=torch.float64)
    g1 = torch.autograd.grad((got * gout).sum(), (q, k, v))
    g2 = torch.autograd.grad((want * gout).sum(), (q, k, v))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_partition_is_exact_cached_and_packed():
    coords = mesh_batch(("armadillo", "armadillo"), R)
    x = SparseTensor(coords, torch.zeros(coords.shape[0], 1), R)
    part = window_partition(x, 8, 4)
    assert window_partition(x, 8, 4) is part and ("window", 8, 4) in x.cache
    # the two identical batch elements never share a window
    wid = part.window_id
    half = coords.shape[0] // 2
    assert not set(wid[:half].tolist()) & set(wid[half:].tolist())
    # every voxel sits in exactly one bucket slot
    rows = torch.cat([idx[idx < coords.shape[0]] for idx, _ in part.buckets])
    assert torch.equal(torch.sort(rows).values, torch.arange(coords.shape[0]))
    # packing by length: far less padding than padding every window to the largest one
    pad_all = part.num_windows * int(part.lengths.max()) - coords.shape[0]
    assert part.padded_fraction() <= 0.25
    assert part.padded_fraction() * coords.shape[0] < 0.25 * pad_all


def test_modules_run_shifted_blocks_and_train():
    torch.manual_seed(0)
    coords = mesh_batch(("camel",), R)
    x = SparseTensor(coords, torch.randn(coords.shape[0], 16), R)
    blocks = torch.nn.Sequential(
        SparseTransformerBlock(16, 4, 8, shift=0), SparseTransformerBlock(16, 4, 8, shift=True)
    )
    y = blocks(x)
    assert torch.equal(y.coords, coords) and y.feats.shape == (coords.shape[0], 16)
    assert ("window", 8, 0) in x.cache and ("window", 8, 4) in x.cache
    y.feats.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in blocks.parameters())
    # the module computes attention within windows: matches the functional call with its weights
    attn = SparseWindowAttention(16, 4, 8, shift=True)
    qkv = attn.qkv(x.feats).view(-1, 3, 4, 4)
    ref = _naive(coords, qkv[:, 0], qkv[:, 1], qkv[:, 2], 8, 4)
    torch.testing.assert_close(attn(x).feats, attn.proj(ref.reshape(-1, 16)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        SparseWindowAttention(10, 4, 8)
