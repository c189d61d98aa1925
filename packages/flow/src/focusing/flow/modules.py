"""Transformer pieces shared by both flow models (TRELLIS's DiT block, paper sec. 3.5).

Tokens are *packed*: one [N, C] tensor holding every sample's tokens back to back, with row
offsets [B + 1]. The dense structure flow has B equal-length segments; the structured-latent flow
has one segment per shape, each as long as that shape has voxels, and nothing is padded to the
largest. Row-wise layers (Linear, norms, MLP, modulation) run on all rows at once; attention runs
per segment (one batched call when all segments are equally long), so samples never mix.

A block (adaLN-zero): the timestep embedding, through SiLU and a zero-initialised Linear, gives
shift/scale/gate for the self-attention and the MLP; self-attention normalises q and k per head
(RMS norm); cross-attention to the image tokens follows a LayerNorm, unmodulated and ungated.
Its output projection is zero-initialised too (a departure from TRELLIS), so that a fresh block
is exactly the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int = 256,
                       max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] = [cos(t f), sin(t f)] of (already scaled) times t [B]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedder(nn.Module):
    """t in [0, 1] -> t * 1000 -> 256-frequency sinusoid -> Linear, SiLU, Linear: [B] ->
    [B, width]."""

    def __init__(self, width: int, frequencies: int = 256):
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embedding of times t [B] (flow time in [0, 1])."""
        return self.mlp(timestep_embedding(t * 1000, self.frequencies).to(self.mlp[0].weight.dtype))


def sinusoidal_position_3d(coords: torch.Tensor, dim: int) -> torch.Tensor:
    """TRELLIS's absolute position embedding of integer voxel coords [N,3]: per axis
    [sin(x f), cos(x f)] with f = 10000^(-i / F), F = dim // 6, zero-padded to [N, dim]."""
    freq_dim = dim // 3 // 2
    freqs = 1.0 / (10000 ** (torch.arange(freq_dim, dtype=torch.float32, device=coords.device)
                             / freq_dim))
    args = coords.float()[:, :, None] * freqs  # [N,3,F]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1).reshape(coords.shape[0], -1)
    return F.pad(emb, (0, dim - emb.shape[1]))


class MultiHeadRMSNorm(nn.Module):
    """Per-head RMS norm with a learned gain: [..., H, d] -> [..., H, d]."""

    def __init__(self, heads: int, head_dim: int):
        super().__init__()
        self.scale = head_dim**0.5
        self.gamma = nn.Parameter(torch.ones(heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-RMS rows per head, times gamma."""
        return F.normalize(x.float(), dim=-1).to(x.dtype) * self.gamma * self.scale


def _uniform_length(offsets: list[int]) -> int | None:
    lengths = {b - a for a, b in zip(offsets[:-1], offsets[1:])}
    return lengths.pop() if len(lengths) == 1 else None


def packed_self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          offsets: list[int]) -> torch.Tensor:
    """Full attention within each segment [offsets[b], offsets[b+1]) of q, k, v [N,H,d]; [N,H,d]."""
    n, h, d = q.shape
    length = _uniform_length(offsets)
    if length is not None and length > 0:
        b = n // length
        qkv = [x.view(b, length, h, d).transpose(1, 2) for x in (q, k, v)]
        return F.scaled_dot_product_attention(*qkv).transpose(1, 2).reshape(n, h, d)
    out = torch.empty_like(q)
    for a, e in zip(offsets[:-1], offsets[1:]):
        if e > a:
            seg = [x[a:e].transpose(0, 1)[None] for x in (q, k, v)]
            out[a:e] = F.scaled_dot_product_attention(*seg)[0].transpose(0, 1)
    return out


def packed_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           offsets: list[int]) -> torch.Tensor:
    """Rows of segment b (q [N,H,d]) attend to sample b's context k, v [B,T,H,d]; [N,H,d]."""
    n, h, d = q.shape
    length = _uniform_length(offsets)
    kk, vv = k.transpose(1, 2), v.transpose(1, 2)  # [B,H,T,d]
    if length is not None and length > 0:
        b = n // length
        out = F.scaled_dot_product_attention(q.view(b, length, h, d).transpose(1, 2), kk, vv)
        return out.transpose(1, 2).reshape(n, h, d)
    out = torch.empty_like(q)
    for i, (a, e) in enumerate(zip(offsets[:-1], offsets[1:])):
        if e > a:
            out[a:e] = F.scaled_dot_product_attention(q[a:e].transpose(0, 1)[None], kk[i:i + 1],
                                                      vv[i:i + 1])[0].transpose(0, 1)
    return out


class SelfAttention(nn.Module):
    """Multi-head self-attention with QK RMS norm over packed tokens: [N,C] -> [N,C]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = MultiHeadRMSNorm(heads, self.head_dim)
        self.k_norm = MultiHeadRMSNorm(heads, self.head_dim)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, offsets: list[int]) -> torch.Tensor:
        """Attend within each segment."""
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.head_dim).unbind(1)
        o = packed_self_attention(self.q_norm(q), self.k_norm(k), v, offsets)
        return self.proj(o.reshape(n, -1))


class CrossAttention(nn.Module):
    """Packed queries [N,C] attend to each sample's context tokens [B,T,C_ctx]; zero-init output."""

    def __init__(self, width: int, context_dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(context_dim, 2 * width)
        self.proj = nn.Linear(width, width)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, offsets: list[int]) -> torch.Tensor:
        """Cross-attention of every row to its sample's context."""
        n, (b, t, _) = x.shape[0], context.shape
        q = self.q(x).view(n, self.heads, self.head_dim)
        k, v = self.kv(context).view(b, t, 2, self.heads, self.head_dim).unbind(2)
        return self.proj(packed_cross_attention(q, k, v, offsets).reshape(n, -1))


class ModulatedBlock(nn.Module):
    """adaLN-zero DiT block with cross-attention: packed x [N,C], per-row condition emb [N,C],
    context [B,T,C_ctx] -> [N,C]; the identity at initialisation."""

    def __init__(self, width: int, context_dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=True, eps=1e-6)
        self.cross_attn = CrossAttention(width, context_dim, heads)
        self.norm3 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor,
                offsets: list[int]) -> torch.Tensor:
        """One modulated self-attention, cross-attention and MLP update."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(emb).chunk(6, dim=1))
        h = self.norm1(x) * (1 + scale_msa) + shift_msa
        x = x + gate_msa * self.self_attn(h, offsets)
        x = x + self.cross_attn(self.norm2(x), context, offsets)
        h = self.norm3(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.mlp(h)


def zero_linear(c_in: int, c_out: int) -> nn.Linear:
    """A Linear with zero weight and bias (output layers start at zero velocity)."""
    layer = nn.Linear(c_in, c_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer
