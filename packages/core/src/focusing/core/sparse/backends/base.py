"""The SparseBackend plugin kind: three sparse convolutions behind one weight layout.

Every backend takes the same weights, so one model can swap backends and the
conformance suite can compare them against the `torch` reference:

- offsets of the 3x3x3 kernel are `KERNEL3_OFFSETS` (dx, dy, dz each in -1, 0, 1, dz fastest);
  submanifold weights are [27, C_in, C_out] in that order;
- the 2x2x2 kernels of the strided and transposed convolutions use `KERNEL2_OFFSETS`
  ((ox, oy, oz) in {0, 1}^3, oz fastest); their weights are [8, C_in, C_out].

Output coordinate order is part of the contract:
- submanifold: the input's order;
- downsample (kernel 2, stride 2): parent coords (b, x // 2, y // 2, z // 2), unique, sorted
  lexicographically by (b, x, y, z);
- upsample (generative transposed, kernel 2, stride 2): every input voxel i yields its 8
  children (b, 2x + ox, 2y + oy, 2z + oz) at rows 8 i + o (i.e. `SparseTensor.subdivide`).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch

from focusing.core.plugins.base import Plugin

if TYPE_CHECKING:
    from focusing.core.sparse.tensor import SparseTensor

KERNEL3_OFFSETS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.long)
KERNEL2_OFFSETS = torch.tensor(list(itertools.product((0, 1), repeat=3)), dtype=torch.long)


class SparseBackend(Plugin):
    """Sparse convolutions on a SparseTensor; subclasses register under a unique `name`."""

    def submanifold_conv(
        self, x: "SparseTensor", weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> "SparseTensor":
        """Kernel-3 submanifold conv: out[i] = sum_k x[nbr(i, k)] @ weight[k] (+ bias); [N,C_out]."""
        raise NotImplementedError

    def downsample_conv(
        self, x: "SparseTensor", weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> "SparseTensor":
        """Kernel-2 stride-2 conv to the parent grid (resolution // 2); [M,C_out]."""
        raise NotImplementedError

    def upsample_conv(
        self, x: "SparseTensor", weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> "SparseTensor":
        """Generative transposed conv: each voxel to its 8 children (resolution * 2); [8N,C_out]."""
        raise NotImplementedError
