"""The structure flow DiT (TRELLIS's SparseStructureFlowModel, paper sec. 3.5): a transformer over
the structure VAE's dense latent grid G^3 (patch 1: G^3 tokens) that predicts the rectified-flow
velocity, conditioned on the flow time (adaLN-zero) and the image tokens (cross-attention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from focusing.flow.modules import (ModulatedBlock, TimestepEmbedder, sinusoidal_position_3d,
                                   zero_linear)

if TYPE_CHECKING:
    from focusing.flow.config import DiTConfig


class StructureDiT(nn.Module):
    """Velocity of latents x [B,C,G,G,G] at times t [B] given image tokens [B,T,C_ctx];
    [B,C,G,G,G]."""

    def __init__(self, grid: int, in_channels: int = 8, width: int = 128, depth: int = 4,
                 heads: int = 4, context_dim: int = 64, mlp_ratio: float = 4.0):
        super().__init__()
        self.grid, self.in_channels, self.width = int(grid), int(in_channels), int(width)
        self.t_embedder = TimestepEmbedder(width)
        self.input_layer = nn.Linear(in_channels, width)
        axis = torch.arange(self.grid)
        coords = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("pos_emb", sinusoidal_position_3d(coords, width), persistent=False)
        self.blocks = nn.ModuleList(ModulatedBlock(width, context_dim, heads, mlp_ratio)
                                    for _ in range(depth))
        self.out_layer = zero_linear(width, in_channels)

    @classmethod
    def from_config(cls, table: DiTConfig, grid: int, in_channels: int,
                    context_dim: int) -> StructureDiT:
        """The structure DiT of a flow setup's [structure_flow] table on a G^3 latent grid of
        in_channels, cross-attending to context_dim-wide image tokens."""
        return cls(grid, in_channels, table.width, table.depth, table.heads, context_dim,
                   table.mlp_ratio)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predicted velocity of x at times t (in [0, 1]) given the context."""
        b, c, g = x.shape[0], x.shape[1], self.grid
        if x.shape[1:] != (self.in_channels, g, g, g):
            raise ValueError(f"StructureDiT: expected [B,{self.in_channels},{g},{g},{g}], "
                             f"got {list(x.shape)}")
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).expand(b)
        tokens = x.reshape(b, c, g**3).transpose(1, 2)  # [B,L,C] in (x, y, z) row-major order
        h = (self.input_layer(tokens) + self.pos_emb).reshape(b * g**3, self.width)
        emb = self.t_embedder(t).repeat_interleave(g**3, dim=0)
        offsets = list(range(0, b * g**3 + 1, g**3))
        for block in self.blocks:
            h = block(h, emb, context, offsets)
        h = F.layer_norm(h, h.shape[-1:])
        out = self.out_layer(h).reshape(b, g**3, c)
        return out.transpose(1, 2).reshape(b, c, g, g, g)
