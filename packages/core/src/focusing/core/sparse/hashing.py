"""Coordinate hashing: (batch, x, y, z) packed into one int64 key; lookups by sorted keys.

Keys keep the lexicographic order of (batch, x, y, z), so sorting keys sorts coordinates and the
keys of one batch element are contiguous. Memory is O(N): a table is the sorted keys of its N
coordinates plus the permutation that sorts them, a lookup is a binary search (searchsorted);
no dense grid anywhere, so 1024^3 grids (and far beyond) are addressable.

Layout: 17 bits per spatial axis with a bias of 2 (coordinates in [-2, 2^17 - 4), so the
neighbour queries of a kernel at -1 / -2 pack without wrapping), 12 bits of batch index.
The layout does not depend on the grid resolution, so keys of corner grids ([0, R]) and of voxel
grids ([0, R)) pack the same way.
"""

from __future__ import annotations

import torch

COORD_BITS = 17  # per spatial axis
BATCH_BITS = 63 - 3 * COORD_BITS  # 12: up to 4096 batch elements
BIAS = 2  # neighbour queries at -1 / -2 pack without wrapping
COORD_MIN = -BIAS
COORD_MAX = (1 << COORD_BITS) - BIAS - 2  # exclusive bound of packable spatial coords
BATCH_MAX = 1 << BATCH_BITS  # exclusive bound of packable batch indices
_MASK = (1 << COORD_BITS) - 1


def pack(coords: torch.Tensor) -> torch.Tensor:
    """Integer coords [...,4] (batch, x, y, z) -> int64 keys [...] (order-preserving; unchecked)."""
    c = coords.long()
    xyz = c[..., 1:] + BIAS
    return (
        (c[..., 0] << (3 * COORD_BITS))
        | (xyz[..., 0] << (2 * COORD_BITS))
        | (xyz[..., 1] << COORD_BITS)
        | xyz[..., 2]
    )


def unpack(keys: torch.Tensor) -> torch.Tensor:
    """int64 keys [...] -> coords [...,4] (b, x, y, z), the inverse of `pack`."""
    b = keys >> (3 * COORD_BITS)
    x = ((keys >> (2 * COORD_BITS)) & _MASK) - BIAS
    y = ((keys >> COORD_BITS) & _MASK) - BIAS
    z = (keys & _MASK) - BIAS
    return torch.stack([b, x, y, z], dim=-1)


def check_range(coords: torch.Tensor) -> None:
    """Raise ValueError if coords [N,4] cannot be packed without collisions."""
    if coords.numel() == 0:
        return
    lo, hi = int(coords[:, 1:].min()), int(coords[:, 1:].max())
    if lo < COORD_MIN or hi >= COORD_MAX:
        raise ValueError(
            f"hashing: voxel coordinates span [{lo}, {hi}], outside the packable "
            f"[{COORD_MIN}, {COORD_MAX})"
        )
    blo, bhi = int(coords[:, 0].min()), int(coords[:, 0].max())
    if blo < 0 or bhi >= BATCH_MAX:
        raise ValueError(f"hashing: batch indices span [{blo}, {bhi}], outside [0, {BATCH_MAX})")


def in_range(coords: torch.Tensor, extent: int) -> torch.Tensor:
    """Bool [N]: spatial coords of coords [N,4] inside [0, extent)^3."""
    xyz = coords[:, 1:]
    return ((xyz >= 0) & (xyz < extent)).all(dim=1)


def unique_coords(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique coords [M,4] sorted lexicographically, and the inverse map [N] into them."""
    keys, inverse = torch.unique(pack(coords), sorted=True, return_inverse=True)
    return unpack(keys), inverse


class CoordIndex:
    """Sorted keys of a coordinate set [N,4], for O(log N) lookups of many queries at once."""

    def __init__(self, coords: torch.Tensor, check_unique: bool = True) -> None:
        """Index coords [N,4] (b, x, y, z); duplicates raise ValueError unless
        check_unique=False."""
        if coords.ndim != 2 or coords.shape[1] != 4:
            raise ValueError(
                f"CoordIndex: coords must be [N,4] (b, x, y, z), got {list(coords.shape)}")
        check_range(coords)
        self.sorted_keys, self.order = torch.sort(pack(coords))
        if check_unique and self.sorted_keys.numel() > 1:
            dup = self.sorted_keys[1:] == self.sorted_keys[:-1]
            if bool(dup.any()):
                first = int(torch.nonzero(dup)[0, 0])
                bad = unpack(self.sorted_keys[first]).tolist()
                raise ValueError(f"CoordIndex: duplicate voxel coordinate (b, x, y, z) = {bad}")

    def __len__(self) -> int:
        return int(self.sorted_keys.numel())

    def lookup_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Row index of each query key [...] in the original coords, -1 where absent."""
        n = self.sorted_keys.numel()
        if n == 0:
            return torch.full_like(keys, -1)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp_max_(n - 1)
        found = self.sorted_keys[pos] == keys
        return torch.where(found, self.order[pos], torch.full_like(pos, -1))

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Row index of each query coord [...,4] (spatial coords >= -2), -1 where absent."""
        return self.lookup_keys(pack(coords))
