"""The sparse structure VAE (TRELLIS's SparseStructureVAE, paper sec. 3.5): a dense 3D conv VAE that
compresses the occupancy of the shape VAE's latent voxels, an R^3 grid, to a small dense latent
(R/f)^3 x C (f = 2^(levels - 1); TRELLIS: 64^3 -> 16^3 x 8). The structure flow generates this
small latent; its decoder turns it back into *where* the shape's latent voxels are.

Res blocks use a LayerNorm over channels, SiLU and a zero-initialised second conv (each block
starts as the identity); downsampling is a stride-2 conv, upsampling a conv to 8x channels and a
3D pixel shuffle. The loss is Dice on sigmoid(logits) (BCE as an option) plus KL weighted 1e-3;
decoding keeps logits > 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from focusing.flow.config import StructureVAEConfig


class ChannelLayerNorm3d(nn.LayerNorm):
    """LayerNorm over the channels of a dense grid: [B,C,D,H,W] -> [B,C,D,H,W]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Normalise each voxel's channel vector."""
        return super().forward(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class ResBlock3d(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))) with the second conv zero-initialised; a 1x1 conv
    skip when widths differ; [B,C_in,R,R,R] -> [B,C_out,R,R,R]."""

    def __init__(self, c_in: int, c_out: int | None = None):
        super().__init__()
        c_out = c_in if c_out is None else c_out
        self.norm1 = ChannelLayerNorm3d(c_in)
        self.conv1 = nn.Conv3d(c_in, c_out, 3, padding=1)
        self.norm2 = ChannelLayerNorm3d(c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual update of x."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


def pixel_shuffle_3d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """[B, C f^3, D, H, W] -> [B, C, f D, f H, f W] (channel blocks to sub-voxels)."""
    b, c, d, h, w = x.shape
    c_out = c // factor**3
    x = x.view(b, c_out, factor, factor, factor, d, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c_out, d * factor, h * factor, w * factor)


class StructureVAE(nn.Module):
    """Occupancy [B,1,R,R,R] <-> latent [B,latent_channels,R/f,R/f,R/f], f = 2^(len(channels)-1).

    channels: widths per level from fine to coarse (TRELLIS: [32, 128, 512])."""

    def __init__(self, channels: list[int] | tuple[int, ...] = (16, 32, 64),
                 latent_channels: int = 8, blocks_per_level: int = 2):
        super().__init__()
        self.channels = [int(c) for c in channels]
        self.latent_channels = int(latent_channels)
        self.factor = 2 ** (len(self.channels) - 1)
        ch = self.channels
        enc: list[nn.Module] = [nn.Conv3d(1, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            enc += [ResBlock3d(c) for _ in range(blocks_per_level)]
            if i + 1 < len(ch):
                enc.append(nn.Conv3d(c, ch[i + 1], 3, stride=2, padding=1))
        enc += [ResBlock3d(ch[-1]), ChannelLayerNorm3d(ch[-1]), nn.SiLU(),
                nn.Conv3d(ch[-1], 2 * self.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv3d(self.latent_channels, ch[-1], 3, padding=1),
                                ResBlock3d(ch[-1])]
        for i in range(len(ch) - 1, -1, -1):
            dec += [ResBlock3d(ch[i]) for _ in range(blocks_per_level)]
            if i > 0:
                dec += [_Upsample(ch[i], ch[i - 1])]
        dec += [ChannelLayerNorm3d(ch[0]), nn.SiLU(), nn.Conv3d(ch[0], 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @classmethod
    def from_config(cls, table: StructureVAEConfig) -> StructureVAE:
        """The structure VAE of a flow setup's [structure_vae] table."""
        return cls(table.channels, table.latent_channels, table.blocks_per_level)

    def encode(self, occupancy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Occupancy [B,1,R,R,R] (0/1 float) -> latent mean, logvar [B,C,R/f,R/f,R/f]."""
        if occupancy.shape[-1] % self.factor:
            raise ValueError(
                f"grid {occupancy.shape[-1]} is not divisible by the VAE's factor {self.factor}")
        mean, logvar = self.encoder(occupancy).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent [B,C,G,G,G] -> occupancy logits [B,1,f G,f G,f G]."""
        return self.decoder(z)

    def forward(self, occupancy: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample z = mean + std * noise, decode; (logits, mean, logvar)."""
        mean, logvar = self.encode(occupancy)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mean, logvar


class _Upsample(nn.Module):
    """Conv to 8 x c_out channels, then a 3D pixel shuffle: [B,c_in,G^3] -> [B,c_out,(2G)^3]."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv3d(c_in, 8 * c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Double the grid resolution."""
        return pixel_shuffle_3d(self.conv(x), 2)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - (2 |p t| + s) / (|p| + |t| + s) with p = sigmoid(logits) (TRELLIS, s = 1); scalar."""
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + smooth) / (p.sum() + target.sum() + smooth)


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per element, averaged (TRELLIS); scalar."""
    return 0.5 * torch.mean(mean.pow(2) + logvar.exp() - logvar - 1)


def structure_vae_loss(model: StructureVAE, occupancy: torch.Tensor, kl_weight: float = 1e-3,
                       recon: str = "dice", generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, dict[str, float]]:
    """Dice (or BCE) + kl_weight * KL on a batch of occupancy grids [B,1,R,R,R]; (loss, terms)."""
    logits, mean, logvar = model(occupancy, generator)
    if recon == "dice":
        rec = dice_loss(logits, occupancy)
    elif recon == "bce":
        rec = F.binary_cross_entropy_with_logits(logits, occupancy)
    else:
        raise ValueError(f"structure_vae.loss must be 'dice' or 'bce', got {recon!r}")
    kl = kl_loss(mean, logvar)
    loss = rec + kl_weight * kl
    return loss, {recon: float(rec.detach()), "kl": float(kl.detach())}


def occupancy_grid(coords: torch.Tensor, resolution: int) -> torch.Tensor:
    """Voxel coords [K,3] in [0, R) -> a dense 0/1 grid [1,R,R,R] (float32)."""
    grid = torch.zeros(1, resolution, resolution, resolution)
    c = coords.long()
    grid[0, c[:, 0], c[:, 1], c[:, 2]] = 1.0
    return grid


def occupied_coords(logits: torch.Tensor) -> torch.Tensor:
    """Voxels with logit > 0 of one grid [1,R,R,R] or [R,R,R] -> coords [K,3] long."""
    return torch.nonzero(logits.reshape(logits.shape[-3:]) > 0)


def iou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Intersection over union of two boolean (or 0/1) grids of the same shape; 1 when both
    empty."""
    p, t = pred.bool(), target.bool()
    union = (p | t).sum().item()
    return 1.0 if union == 0 else (p & t).sum().item() / union
