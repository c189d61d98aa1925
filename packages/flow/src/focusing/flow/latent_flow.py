"""The structured-latent flow (TRELLIS's SLatFlowModel, paper sec. 3.5): a sparse DiT over the
shape VAE's latent voxels that predicts the rectified-flow velocity of their (normalised) latent
means, conditioned on a per-shape time and the image tokens.

Around the transformer sits one sparse down/up step: res blocks at R, a mean-pool to R/2
(parents coords // 2), the transformer blocks on the R/2 tokens with full attention per shape,
then nearest upsampling back to the R voxels, concatenated with the R features (skip). Shapes of
a batch are packed in one SparseTensor; attention runs per shape, so nothing is padded and no
shape sees another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from focusing.core.sparse import hashing
from focusing.core.sparse.nn import SubMConv3d
from focusing.core.sparse.tensor import SparseTensor
from focusing.flow.modules import (ModulatedBlock, TimestepEmbedder, sinusoidal_position_3d,
                                   zero_linear)

if TYPE_CHECKING:
    from focusing.flow.config import LatentFlowConfig


def batch_sorted(x: SparseTensor) -> SparseTensor:
    """x with rows grouped by batch index (x itself when already so)."""
    return x if x.is_batch_sorted() else x.sort()[0]


def row_offsets(x: SparseTensor) -> list[int]:
    """Row offsets [B+1] of a batch-sorted SparseTensor, as Python ints."""
    return [int(o) for o in x.offsets]


def mean_pool(x: SparseTensor) -> tuple[SparseTensor, torch.Tensor]:
    """Parents at R/2 (coords // 2, sorted by (b, x, y, z)) with the mean of their children's feats,
    and each child's parent row [N]."""
    parent = x.coords.clone()
    parent[:, 1:] = torch.div(parent[:, 1:], 2, rounding_mode="floor")
    keys, inverse = torch.unique(hashing.pack(parent), return_inverse=True)
    counts = torch.bincount(inverse, minlength=keys.numel()).to(x.feats.dtype)
    sums = x.feats.new_zeros((keys.numel(), x.num_channels)).index_add_(0, inverse, x.feats)
    pooled = SparseTensor(hashing.unpack(keys), sums / counts[:, None], x.resolution // 2,
                          x.batch_size)
    return pooled, inverse


class EmbResBlock(nn.Module):
    """TRELLIS's sparse res block: LN, SiLU, conv; LN without affine modulated by the time
    embedding (scale, shift); SiLU; zero-init conv; plus a (linear) skip: [N,C_in] -> [N,C_out]."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, backend: str = "torch"):
        super().__init__()
        self.norm1 = nn.LayerNorm(c_in, eps=1e-6)
        self.conv1 = SubMConv3d(c_in, c_out, backend=backend)
        self.norm2 = nn.LayerNorm(c_out, elementwise_affine=False, eps=1e-6)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * c_out))
        self.conv2 = SubMConv3d(c_out, c_out, backend=backend)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Linear(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: SparseTensor, emb: torch.Tensor) -> SparseTensor:
        """x [N,C_in] with per-row time embeddings emb [N,emb_dim] -> [N,C_out], same coords."""
        scale, shift = self.emb(emb).chunk(2, dim=1)
        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))
        h = h.replace(F.silu(self.norm2(h.feats) * (1 + scale) + shift))
        h = self.conv2(h)
        return h.replace(h.feats + self.skip(x.feats))


class LatentFlowDiT(nn.Module):
    """Velocity of packed latents x (SparseTensor [N,C] at R, batch-sorted) at per-shape times
    t [B] given image tokens [B,T,C_ctx]; a SparseTensor [N,C] on x's coords."""

    def __init__(self, in_channels: int = 8, io_channels: int = 32, width: int = 128,
                 depth: int = 4, heads: int = 4, context_dim: int = 64, mlp_ratio: float = 4.0,
                 backend: str = "torch"):
        super().__init__()
        self.in_channels, self.width = int(in_channels), int(width)
        self.t_embedder = TimestepEmbedder(width)
        self.input_layer = nn.Linear(in_channels, io_channels)
        self.res_in = EmbResBlock(io_channels, io_channels, width, backend)
        self.res_down = EmbResBlock(io_channels, width, width, backend)
        self.blocks = nn.ModuleList(ModulatedBlock(width, context_dim, heads, mlp_ratio)
                                    for _ in range(depth))
        self.res_up = EmbResBlock(width + io_channels, io_channels, width, backend)
        self.out_layer = zero_linear(io_channels, in_channels)

    @classmethod
    def from_config(cls, table: LatentFlowConfig, in_channels: int, context_dim: int,
                    backend: str = "torch") -> LatentFlowDiT:
        """The latent DiT of a flow setup's [latent_flow] table on in_channels-wide latents,
        cross-attending to context_dim-wide image tokens, with the VAE's sparse backend."""
        return cls(in_channels, table.io_channels, table.width, table.depth, table.heads,
                   context_dim, table.mlp_ratio, backend)

    def forward(self, x: SparseTensor, t: torch.Tensor, context: torch.Tensor) -> SparseTensor:
        """Predicted velocity of x's feats at times t (in [0, 1], one per shape)."""
        if x.num_channels != self.in_channels:
            raise ValueError(
                f"LatentFlowDiT: expected {self.in_channels} channels, got {x.num_channels}")
        if not x.is_batch_sorted():
            raise ValueError("LatentFlowDiT: rows must be grouped by shape (use batch_sorted)")
        b = context.shape[0]
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).expand(b)
        t_emb = self.t_embedder(t)  # [B,W]
        rows = x.coords[:, 0]
        h = x.replace(self.input_layer(x.feats))
        skip = self.res_in(h, t_emb[rows])
        coarse, parent_row = mean_pool(skip)
        coarse_rows = coarse.coords[:, 0]
        coarse = self.res_down(coarse, t_emb[coarse_rows])
        tokens = coarse.feats + sinusoidal_position_3d(coarse.coords[:, 1:],
                                                       self.width).to(coarse.feats)
        offsets = row_offsets(coarse)
        emb = t_emb[coarse_rows]
        for block in self.blocks:
            tokens = block(tokens, emb, context, offsets)
        up = tokens.index_select(0, parent_row)  # nearest: each voxel takes its parent's token
        h = self.res_up(skip.replace(torch.cat([up, skip.feats], dim=1)), t_emb[rows])
        return x.replace(self.out_layer(F.layer_norm(h.feats, h.feats.shape[-1:])))
