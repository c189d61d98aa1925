"""`cnn`: a small conv net trained jointly with the flow; needs no weights, so it always runs.

Every conv is followed by a GroupNorm and the tokens by a LayerNorm, so that the image reaches the
flow at unit scale. Without them (the first version: nine plain convs at PyTorch's default init)
each layer shrank its input about threefold: on the nine example meshes' normal-map views the
tokens of different images differed by a std of 8.5e-6 at initialisation, against 0.07 for the
tokens themselves (the position embedding), and the structure flow learned to ignore its image
(IoU 0.24 from held-out views, the same at CFG 0, 1 and 3). Normalised, the tokens differ by
0.73 against 1.0, and the nine-mesh overfit reaches IoU 0.92 (BENCHMARKS.md, session 4).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from focusing.flow.encoders.base import ImageEncoder


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups of at least 4 channels."""
    return nn.GroupNorm(max(1, min(8, channels // 4)), channels)


class CNNEncoder(ImageEncoder):
    """`levels` stride-2 conv stages (GroupNorm, SiLU), a 1x1 conv to `width`, a LayerNorm per
    token and a learned position embedding: [B,3,S,S] -> [B,(S/2^levels)^2,width]."""

    name: ClassVar[str] = "cnn"
    trainable: ClassVar[bool] = True

    def __init__(self, width: int = 64, image_size: int = 64, levels: int = 4):
        super().__init__()
        self.image_size, self.out_channels = int(image_size), int(width)
        if self.image_size % 2**levels:
            raise ValueError(f"cnn: image_size {image_size} is not divisible by 2^{levels}")
        widths = [max(self.out_channels >> (levels - 1 - i), 8) for i in range(levels)]
        layers: list[nn.Module] = []
        c_in = 3
        for c in widths:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), _group_norm(c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, padding=1), _group_norm(c), nn.SiLU()]
            c_in = c
        layers.append(nn.Conv2d(c_in, self.out_channels, 1))
        self.net = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(self.out_channels)
        side = self.image_size // 2**levels
        self.pos = nn.Parameter(torch.randn(side * side, self.out_channels) * 0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B,3,H,W] in [0, 1] -> tokens [B,T,width], each token of unit RMS before `pos`."""
        x = self.net(self.resize(images) * 2 - 1)
        return self.norm(x.flatten(2).transpose(1, 2)) + self.pos
