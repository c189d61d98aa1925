"""The shape VAE (paper sec. 3.4): local PointNet -> sparse swin encoder -> Gaussian latent at
R; decoder blocks on the (selected) latents -> two 2x upsamplers -> SparseFlex head at 4R."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from focusing.core.plugin_system import get_registry
from focusing.core.sparse.attention import SparseTransformerBlock
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.sparseflex.field import FEATURE_CHANNELS, SDF_CHANNELS
from focusing.core.vae.pointnet import LocalPointNet

# The SDF head's range and its value at initialisation, in output voxels. The bound sits
# above the TSDF truncation (2 voxels) so that a truncated target is reachable with a finite raw.
SDF_BOUND_VOXELS = 3.0
SDF_INIT_VOXELS = 0.5


class PositionalEncoding3D(nn.Module):
    """Sinusoidal encoding of voxel centres (unit box) projected to `dim` channels."""

    def __init__(self, dim: int, bands: int = 6):
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(bands)) * math.pi, persistent=False)
        self.proj = nn.Linear(3 * 2 * bands, dim)

    def forward(self, x: SparseTensor) -> torch.Tensor:
        """Encoding [N, dim] of x's voxel centres."""
        centers = (x.coords[:, 1:].to(x.feats.dtype) + 0.5) / x.resolution - 0.5
        ang = centers[:, :, None] * self.freqs.to(centers)
        return self.proj(torch.cat([ang.sin(), ang.cos()], -1).flatten(1))


class SparseTransformer(nn.Module):
    """`depth` shifted-window transformer blocks (shift on every other block) with 3D PE."""

    def __init__(self, width: int, depth: int, heads: int, window: int):
        super().__init__()
        self.pos = PositionalEncoding3D(width)
        self.blocks = nn.ModuleList(
            SparseTransformerBlock(width, heads, window, shift=bool(i % 2)) for i in range(depth)
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        """x [N,width] -> [N,width] on the same voxels."""
        x = x.replace(x.feats + self.pos(x))
        for block in self.blocks:
            x = block(x)
        return x


@dataclass
class Decoded:
    """Decoder output: SparseFlex features at 4R and the occupancy heads' logits and targets."""

    features: SparseTensor
    occupancy_logits: list[torch.Tensor] = field(default_factory=list)
    occupancy_targets: list[torch.Tensor] = field(default_factory=list)


class ShapeVAE(nn.Module):
    """Encoder and decoder of structured sparse latents; every size comes from the setup."""

    def __init__(self, cfg: dict):
        super().__init__()
        m, pn, enc, dec, up = (cfg["model"], cfg["pointnet"], cfg["encoder"], cfg["decoder"],
                               cfg["upsampler"])
        self.latent_resolution = int(m["latent_resolution"])
        self.latent_channels = int(m["latent_channels"])
        backend = cfg["backend"]["sparse"]
        self.pointnet = LocalPointNet(int(pn["hidden"]), int(pn["out"]), int(pn["reach"]))
        if pn["frozen"]:
            self.pointnet.requires_grad_(False)
        self.enc_in = nn.Linear(int(pn["out"]), int(enc["width"]))
        self.encoder = SparseTransformer(int(enc["width"]), int(enc["depth"]), int(enc["heads"]),
                                         int(enc["window"]))
        self.to_latent = nn.Linear(int(enc["width"]), 2 * self.latent_channels)
        self.dec_in = nn.Linear(self.latent_channels, int(dec["width"]))
        self.decoder = SparseTransformer(int(dec["width"]), int(dec["depth"]), int(dec["heads"]),
                                         int(dec["window"]))
        upsampler = get_registry("upsampler").get(up["name"])
        c1, c2 = (int(c) for c in up["channels"])
        params = dict(up.get("params", {}))
        params.setdefault("train_prune", up["train_prune"])
        self.up1 = upsampler(int(dec["width"]), c1, backend=backend, **params)
        self.up2 = upsampler(c1, c2, backend=backend, **params)
        self.head = nn.Linear(c2, FEATURE_CHANNELS)
        self.output_voxel = 1.0 / (4 * self.latent_resolution)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()
            # Step 0 is an empty field: every corner SDF exactly SDF_INIT_VOXELS outside,
            # whatever the latents, so the first mesh is empty rather than random sign changes.
            self.head.weight[SDF_CHANNELS] = 0.0

    def encode(self, points: torch.Tensor, normals: torch.Tensor, voxels: SparseTensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Oriented points [P,3]x2 and active voxels at R -> latent mean, logvar
        [N, latent_channels].

        R is normally the trained latent_resolution. A finer R (a power-of-two multiple) also
        works, because every part of the model is local and measured in voxels: the PointNet
        sees points relative to their voxel in voxel units, attention runs in windows of voxels
        and the SDF head is scaled by the output voxel of the grid it decodes (paper sec. 4.2:
        a 1024 model reconstructs at 1536). `reconstruct --resolution` uses that."""
        ratio = voxels.resolution / self.latent_resolution
        if ratio < 1 or ratio != int(ratio) or int(ratio) & (int(ratio) - 1):
            raise ValueError(f"voxels at {voxels.resolution}: the model was trained at "
                             f"{self.latent_resolution}; encode at that resolution or a "
                             f"power-of-two multiple of it")
        h = self.enc_in(self.pointnet(points, normals, voxels))
        h = self.encoder(voxels.replace(h)).feats
        mean, logvar = self.to_latent(h).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: SparseTensor, occupancy_targets: dict[int, torch.Tensor] | None = None,
               prune: bool = False, threshold: float = 0.0) -> Decoded:
        """Latents z [K, latent_channels] at R -> SparseFlex features [M, 53] at 4R.

        occupancy_targets: ground-truth active voxels [*,3] (batch 0) per finer resolution."""
        x = self.decoder(z.replace(self.dec_in(z.feats)))
        out = Decoded(features=x)
        for up in (self.up1, self.up2):
            res = x.resolution * 2
            target = None
            if occupancy_targets is not None and res in occupancy_targets:
                t = occupancy_targets[res].to(x.coords.device)
                target = torch.cat([t.new_zeros(len(t), 1), t], 1) if t.shape[1] == 3 else t
            step = up(x, target=target, prune=prune, threshold=threshold)
            x = step.x
            if step.logits is not None and step.target is not None:
                out.occupancy_logits.append(step.logits)
                out.occupancy_targets.append(step.target)
        out.features = x.replace(self.sdf_activation(self.head(x.feats), 1.0 / x.resolution))
        return out

    def sdf_activation(self, raw: torch.Tensor, output_voxel: float | None = None
                       ) -> torch.Tensor:
        """Head output [M,53] -> SparseFlex features: SDF channels in output voxels, bounded;
        output_voxel: the decoded grid's voxel size (default: the trained one, self.output_voxel).

        sdf = v * B * tanh(raw / B + atanh(I / B)), v the output voxel, B = SDF_BOUND_VOXELS,
        I = SDF_INIT_VOXELS: slope one voxel per unit of raw near the surface, |sdf| < B voxels,
        and I voxels (outside) at raw = 0. Measured on fandisk (latent 32), the previous
        identity head with weights x0.1 started with 40% negative corners and a median |sdf|
        of 1.5 voxels, a cloud of random sign changes that the render losses could not untangle."""
        sdf = (raw[:, SDF_CHANNELS] / SDF_BOUND_VOXELS
               + math.atanh(SDF_INIT_VOXELS / SDF_BOUND_VOXELS))
        voxel = self.output_voxel if output_voxel is None else output_voxel
        sdf = voxel * SDF_BOUND_VOXELS * torch.tanh(sdf)
        return torch.cat([sdf, raw[:, SDF_CHANNELS.stop:]], 1)
