"""focusing-flow's registrations through the `focusing` entry point."""

from __future__ import annotations

from focusing.core.plugin_system import hookimpl


@hookimpl
def focusing_image_encoders() -> list:
    """Image encoders: cnn (trained jointly, always), efficientnet-lite0 (extra), dinov2 (local
    file)."""
    from focusing.flow.encoders.cnn import CNNEncoder
    from focusing.flow.encoders.dinov2 import DinoV2Encoder
    from focusing.flow.encoders.efficientnet import EfficientNetLite0Encoder

    return [CNNEncoder, EfficientNetLite0Encoder, DinoV2Encoder]


@hookimpl
def focusing_flow_stages() -> list:
    """The image-to-3D flow's trainable stages: structure, latent."""
    from focusing.flow.train import LatentFlowStage, StructureFlowStage

    return [StructureFlowStage, LatentFlowStage]


@hookimpl
def focusing_commands() -> list:
    """CLI subcommands of focusing-flow: `train-flow`, `generate`, `eval-flow`."""
    from focusing.flow.cli import eval_flow_command, generate_command, train_flow_command

    return [train_flow_command, generate_command, eval_flow_command]
