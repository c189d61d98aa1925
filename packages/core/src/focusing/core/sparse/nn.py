"""torch.nn modules on SparseTensor: convolutions through a named sparse backend, and feature-wise
helpers (linear, LayerNorm, GELU) that a sparse VAE stacks.

Parameters use the shared layout of the SparseBackend kind (`focusing.core.plugin_system.base`,
[K, C_in, C_out]), so
swapping the backend of a trained model is a string: `module.backend = "spconv"` or
`set_backend(model, "spconv")`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from focusing.core.plugin_system.base import SparseBackend
from focusing.core.sparse.tensor import SparseTensor


def get_backend(name: str) -> SparseBackend:
    """The shared sparse backend instance registered under `name`, cached on the registry (so
    `plugin_system.reset()` forgets it); raises the registry's error if unknown or unavailable."""
    from focusing.core.plugin_system import get_registry

    return get_registry("sparse_backend").instance(name)


def _check_input(x: SparseTensor, channels: int, what: str) -> None:
    if not isinstance(x, SparseTensor):
        raise TypeError(f"{what}: expected a SparseTensor, got {type(x).__name__}")
    if x.num_channels != channels:
        raise ValueError(f"{what}: expected {channels} input channels, got {x.num_channels}")


class _SparseConv(nn.Module):
    """Shared parameters and backend lookup of the three sparse convolutions."""

    kernel_volume = 27

    def __init__(self, c_in: int, c_out: int, bias: bool = True, backend: str = "torch") -> None:
        super().__init__()
        if c_in <= 0 or c_out <= 0:
            raise ValueError(
                f"{type(self).__name__}: channels must be positive, got {c_in}, {c_out}")
        self.c_in, self.c_out, self.backend = int(c_in), int(c_out), str(backend)
        self.weight = nn.Parameter(torch.empty(self.kernel_volume, self.c_in, self.c_out))
        self.bias = nn.Parameter(torch.empty(self.c_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights over fan_in = K * C_in (as nn.Conv3d), uniform bias."""
        fan_in = self.kernel_volume * self.c_in
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound * math.sqrt(3.0), bound * math.sqrt(3.0))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.c_in}, {self.c_out}, bias={self.bias is not None}, backend={self.backend!r}"


class SubMConv3d(_SparseConv):
    """Kernel-3 submanifold convolution: SparseTensor [N,C_in] -> [N,C_out] on the same coords."""

    kernel_volume = 27

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Convolve x's feats over its 3x3x3 neighbourhoods; rows stay in x's order."""
        _check_input(x, self.c_in, "SubMConv3d")
        return get_backend(self.backend).submanifold_conv(x, self.weight, self.bias)


class SparseDownsample(_SparseConv):
    """Kernel-2 stride-2 convolution: [N,C_in] at R -> parents [M,C_out] at R // 2."""

    kernel_volume = 8

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Parents sorted by (b, x, y, z), each the sum over its active children."""
        _check_input(x, self.c_in, "SparseDownsample")
        return get_backend(self.backend).downsample_conv(x, self.weight, self.bias)


class SparseUpsample(_SparseConv):
    """Generative transposed convolution: [N,C_in] at R -> the 8 children [8N,C_out] at 2R."""

    kernel_volume = 8

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Children of voxel i at rows 8 i + o (o in KERNEL2_OFFSETS order)."""
        _check_input(x, self.c_in, "SparseUpsample")
        return get_backend(self.backend).upsample_conv(x, self.weight, self.bias)


def set_backend(module: nn.Module, name: str) -> nn.Module:
    """Switch every sparse convolution inside module to the backend `name` (checked); module."""
    get_backend(name)
    for m in module.modules():
        if isinstance(m, _SparseConv):
            m.backend = name
    return module


class SparseLinear(nn.Linear):
    """Per-voxel linear map of the feats: [N,C_in] -> [N,C_out]."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """Apply the linear layer to every voxel's features."""
        return x.replace(super().forward(x.feats))


class SparseLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each voxel: [N,C] -> [N,C]."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """Normalise every voxel's features."""
        return x.replace(super().forward(x.feats))


class SparseGELU(nn.GELU):
    """GELU on the feats: [N,C] -> [N,C]."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """Apply GELU to every feature."""
        return x.replace(super().forward(x.feats))
