"""Kernel offsets shared by SparseTensor, the sparse backends and the voxel selectors.

One definition, so that the weight layout of every backend ([K, C_in, C_out], K in this order),
the children order of `SparseTensor.child_coords` and the neighbourhoods of the selectors agree.
"""

from __future__ import annotations

import itertools

import torch

__all__ = ["KERNEL2_OFFSETS", "KERNEL3_OFFSETS"]

# The 27 offsets of a 3x3x3 kernel: (dx, dy, dz) each in -1, 0, 1, dz fastest; row 13 is (0, 0, 0).
KERNEL3_OFFSETS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.long)
# The 8 offsets of a 2x2x2 kernel (and of a voxel's children): (ox, oy, oz) in {0, 1}^3, oz fastest.
KERNEL2_OFFSETS = torch.tensor(list(itertools.product((0, 1), repeat=3)), dtype=torch.long)
