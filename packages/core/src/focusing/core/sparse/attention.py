"""Sparse shifted-window multi-head self-attention (the TRELLIS / TripoSF sparse swin scheme).

Voxels of each batch element are split into 3D windows of side w: voxel (x, y, z) belongs to
window ((x + s) // w, (y + s) // w, (z + s) // w) with shift s = 0 or w // 2 on alternate blocks,
and attends to the voxels of its own window only. Windows hold variable numbers of voxels, so they
are packed by length: windows whose lengths fall in one bucket (bucket edges grow geometrically by
`BUCKET_GROWTH`, so padding wastes at most ~25% and usually far less) go through one
`scaled_dot_product_attention` call as a [windows, heads, length, d] batch, padded keys masked
out. Nothing is padded to the largest window. Partitions are cached on the SparseTensor under
("window", w, shift).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from focusing.core.sparse import hashing
from focusing.core.sparse.nn import SparseLayerNorm
from focusing.core.sparse.tensor import SparseTensor

BUCKET_GROWTH = 1.25


class WindowPartition:
    """Windows of a SparseTensor grouped into length buckets.

    `buckets`: list of (index [nw, P] long rows into the tensor, pad = N; key mask [nw, P] bool or
    None when no window of the bucket is padded). `window_id` [N]: each voxel's window (0..W-1);
    `lengths` [W]: voxels per window. `gather_rows` / `inverse` reorder bucket outputs to rows."""

    def __init__(self, coords: torch.Tensor, window: int, shift: int) -> None:
        """Partition coords [N,4] into windows of side `window` shifted by `shift` voxels."""
        n = coords.shape[0]
        device = coords.device
        self.window, self.shift, self.n = int(window), int(shift), n
        wc = coords.clone()
        wc[:, 1:] = torch.div(coords[:, 1:] + self.shift, self.window, rounding_mode="floor")
        wkeys, self.window_id = torch.unique(hashing.pack(wc), return_inverse=True)
        num_w = wkeys.numel()
        self.lengths = torch.bincount(self.window_id, minlength=num_w)
        # voxels sorted by window: window j occupies rows start[j] .. start[j] + len[j] of `order`
        order = torch.argsort(self.window_id, stable=True)
        start = torch.cumsum(self.lengths, 0) - self.lengths
        self.buckets: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        rows_out = []
        if n:
            edges = _bucket_edges(int(self.lengths.max()))
            edges_t = torch.tensor(edges, device=device)
            bucket_of = torch.searchsorted(edges_t, self.lengths)  # first edge >= length
            for bi in torch.unique(bucket_of).tolist():
                wins = torch.nonzero(bucket_of == bi).squeeze(1)
                lens = self.lengths[wins]
                pad_len = int(lens.max())
                ar = torch.arange(pad_len, device=device)
                valid = ar[None, :] < lens[:, None]
                pos = (start[wins][:, None] + ar[None, :]).clamp_max(max(n - 1, 0))
                idx = torch.where(valid, order[pos], torch.full_like(pos, n))
                mask = None if bool(valid.all()) else valid
                self.buckets.append((idx, mask))
                rows_out.append(idx[valid])
        rows = torch.cat(rows_out) if rows_out else torch.zeros(0, dtype=torch.long, device=device)
        # bucket outputs come out in `rows` order; inverse[r] = where row r sits in that order
        self.inverse = torch.empty_like(rows)
        self.inverse[rows] = torch.arange(rows.numel(), device=device)

    @property
    def num_windows(self) -> int:
        """Number of non-empty windows."""
        return int(self.lengths.numel())

    def padded_fraction(self) -> float:
        """Padded token slots over real tokens across buckets (0 = no padding)."""
        slots = sum(idx.numel() for idx, _ in self.buckets)
        return (slots - self.n) / max(1, self.n)


def _bucket_edges(max_len: int) -> list[int]:
    """Bucket upper bounds 1, 2, 3, ... growing by BUCKET_GROWTH, the last one >= max_len."""
    edges, e = [], 1
    while True:
        edges.append(e)
        if e >= max_len:
            return edges
        e = max(e + 1, math.ceil(e * BUCKET_GROWTH))


def window_partition(x: SparseTensor, window: int, shift: int = 0) -> WindowPartition:
    """The (cached) partition of x into windows of side `window` shifted by `shift` voxels."""
    if window <= 0:
        raise ValueError(f"window_partition: window must be positive, got {window}")
    if not 0 <= shift < window:
        raise ValueError(f"window_partition: shift must be in [0, {window}), got {shift}")
    key = ("window", int(window), int(shift))
    part = x.cache.get(key)
    if part is None:
        part = WindowPartition(x.coords, window, shift)
        x.cache[key] = part
    return part


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, part: WindowPartition
) -> torch.Tensor:
    """Self-attention of q, k, v [N,H,d] within the windows of `part`; [N,H,d] in row order."""
    n, h, d = q.shape
    if n != part.n:
        raise ValueError(f"window_attention: {n} rows but the partition has {part.n}")
    if n == 0:
        return q.new_zeros((0, h, d))
    qkv = torch.stack([q, k, v], dim=0)  # [3,N,H,d]
    qkv = torch.cat([qkv, qkv.new_zeros((3, 1, h, d))], dim=1)
    outs = []
    for idx, mask in part.buckets:
        nw, p = idx.shape
        g = qkv.index_select(1, idx.reshape(-1)).view(3, nw, p, h, d).permute(0, 1, 3, 2, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        o = F.scaled_dot_product_attention(g[0], g[1], g[2], attn_mask=attn_mask)  # [nw,H,P,d]
        o = o.transpose(1, 2)  # [nw,P,H,d]
        outs.append(o[mask] if mask is not None else o.reshape(nw * p, h, d))
    return torch.cat(outs).index_select(0, part.inverse)


class SparseWindowAttention(nn.Module):
    """Multi-head self-attention within (optionally shifted) 3D windows: [N,dim] -> [N,dim]."""

    def __init__(self, dim: int, heads: int, window: int, shift: int | bool = 0) -> None:
        """shift: voxels of shift (an int in [0, window)), or True for window // 2."""
        super().__init__()
        if dim % heads:
            raise ValueError(f"SparseWindowAttention: dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.window = int(dim), int(heads), int(window)
        self.shift = self.window // 2 if shift is True else int(shift)
        if not 0 <= self.shift < self.window:
            raise ValueError(
                f"SparseWindowAttention: shift {self.shift} outside [0, {self.window})")
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Attend within windows of x (partition cached on x); same coords."""
        if x.num_channels != self.dim:
            raise ValueError(
                f"SparseWindowAttention: expected {self.dim} channels, got {x.num_channels}")
        n = x.num_voxels
        qkv = self.qkv(x.feats).view(n, 3, self.heads, self.dim // self.heads)
        part = window_partition(x, self.window, self.shift)
        o = window_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2], part)
        return x.replace(self.proj(o.reshape(n, self.dim)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, window={self.window}, shift={self.shift}"


class SparseTransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)); [N,dim] -> [N,dim]."""

    def __init__(
        self, dim: int, heads: int, window: int, shift: int | bool = 0, mlp_ratio: float = 4.0
    ) -> None:
        super().__init__()
        self.norm1 = SparseLayerNorm(dim)
        self.attn = SparseWindowAttention(dim, heads, window, shift)
        self.norm2 = SparseLayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, dim))

    def forward(self, x: SparseTensor) -> SparseTensor:
        """One attention + MLP update of x's feats (same coords)."""
        h = x.feats + self.attn(self.norm1(x)).feats
        h = h + self.mlp(F.layer_norm(h, (h.shape[1],), self.norm2.weight, self.norm2.bias,
                                      self.norm2.eps))
        return x.replace(h)
