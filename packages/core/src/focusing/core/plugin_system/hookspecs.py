"""pluggy hook specifications of the `focusing` project.

Every hook returns a list; the registry flattens the lists of all plugins into one
registry per kind and checks names for duplicates.
"""

from __future__ import annotations

import pluggy

PROJECT = "focusing"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class FocusingHookSpecs:
    """The hooks a `focusing` plugin module may implement."""

    @hookspec
    def focusing_sparse_backends(self) -> list[type]:
        """Return SparseBackend subclasses (submanifold, strided and transposed sparse conv)."""

    @hookspec
    def focusing_renderers(self) -> list[type]:
        """Return Renderer subclasses (differentiable mesh -> depth/normal/mask)."""

    @hookspec
    def focusing_voxel_selectors(self) -> list[type]:
        """Return VoxelSelector subclasses (which voxels a training step decodes)."""

    @hookspec
    def focusing_upsamplers(self) -> list[type]:
        """Return Upsampler subclasses (2x sparse upsampling modules)."""

    @hookspec
    def focusing_image_encoders(self) -> list[type]:
        """Return ImageEncoder subclasses (image conditions for the flow models)."""

    @hookspec
    def focusing_flow_stages(self) -> list[type]:
        """Return FlowStage subclasses (trainable stages of the image-to-3D flow)."""

    @hookspec
    def focusing_setups(self) -> list:
        """Return setup presets: paths of TOML files, each named by its file stem."""

    @hookspec
    def focusing_commands(self) -> list:
        """Return CLI subcommands: callables decorated for typer, named by `command_name`."""
