"""Image encoders for the flow's condition (plugin kind `image_encoder`)."""

from focusing.flow.encoders.base import (
    ImageEncoder, build_encoder, build_image_encoder, encoder_class,
)

__all__ = ["ImageEncoder", "build_encoder", "build_image_encoder", "encoder_class"]
