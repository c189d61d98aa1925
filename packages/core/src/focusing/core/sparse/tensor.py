"""SparseTensor: active voxels of a batch of R^3 grids, their features, and a cache of maps.

Memory is O(N) in the number of active voxels: lookups go through sorted int64 keys
(`focusing.core.sparse.hashing`); `to_dense` / `from_dense` exist for tests only.

The cache holds what is expensive to derive from the coordinates (neighbour maps, window
partitions), keyed by what produced it, e.g. ("kernel3",) or ("window", w, shift). Tensors made by
`replace` share the cache (same coords); `index_select` carries over every entry that knows how
to remap itself (an object with `index_select(idx, new_row) -> entry | None`) and drops the rest.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from focusing.core.sparse import hashing
from focusing.core.sparse.kernels import KERNEL2_OFFSETS, KERNEL3_OFFSETS


class SparseTensor:
    """Coords [N,4] long (batch, x, y, z) in [0, R), feats [N,C], grid resolution R."""

    __slots__ = ("coords", "feats", "resolution", "_batch_size", "cache", "_counts")

    def __init__(
        self,
        coords: torch.Tensor,
        feats: torch.Tensor,
        resolution: int,
        batch_size: int | None = None,
        cache: dict | None = None,
    ) -> None:
        """Wrap coords [N,4] (b, x, y, z) and feats [N,C]; batch_size defaults to max(b) + 1."""
        if not isinstance(coords, torch.Tensor) or coords.ndim != 2 or coords.shape[1] != 4:
            shape = (list(coords.shape) if isinstance(coords, torch.Tensor)
                     else type(coords).__name__)
            raise ValueError(
                f"SparseTensor: coords must be a [N,4] tensor (b, x, y, z), got {shape}")
        if coords.is_floating_point() or coords.is_complex() or coords.dtype == torch.bool:
            raise ValueError(f"SparseTensor: coords must be integers, got {coords.dtype}")
        if not isinstance(feats, torch.Tensor) or feats.ndim != 2:
            shape = list(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise ValueError(f"SparseTensor: feats must be a [N,C] tensor, got {shape}")
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(
                f"SparseTensor: {coords.shape[0]} coords but {feats.shape[0]} feature rows"
            )
        resolution = int(resolution)
        if resolution <= 0:
            raise ValueError(f"SparseTensor: resolution must be positive, got {resolution}")
        if batch_size is not None and int(batch_size) < 0:
            raise ValueError(f"SparseTensor: batch_size must be >= 0, got {batch_size}")
        self.coords = coords if coords.dtype == torch.long else coords.long()
        self.feats = feats
        self.resolution = resolution
        self._batch_size = None if batch_size is None else int(batch_size)
        self.cache: dict[Any, Any] = {} if cache is None else cache
        self._counts: torch.Tensor | None = None

    # ------------------------------------------------------------------ basic properties
    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def num_voxels(self) -> int:
        """N, the number of active voxels."""
        return int(self.coords.shape[0])

    @property
    def num_channels(self) -> int:
        """C, the feature width."""
        return int(self.feats.shape[1])

    @property
    def device(self) -> torch.device:
        """Device of the feats."""
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the feats."""
        return self.feats.dtype

    @property
    def batch_size(self) -> int:
        """Number of batch elements (given, or max batch index + 1; 1 when empty)."""
        if self._batch_size is None:
            n = self.coords.shape[0]
            self._batch_size = int(self.coords[:, 0].max().item()) + 1 if n else 1
        return self._batch_size

    @property
    def counts(self) -> torch.Tensor:
        """Voxels per batch element, LongTensor [B]."""
        if self._counts is None:
            self._counts = torch.bincount(self.coords[:, 0], minlength=self.batch_size)
        return self._counts

    @property
    def offsets(self) -> torch.Tensor:
        """Row offsets [B+1] of the batch elements (rows [o[b], o[b+1]) when batch-sorted)."""
        c = self.counts
        return torch.cat([c.new_zeros(1), torch.cumsum(c, 0)])

    def is_batch_sorted(self) -> bool:
        """True when rows are grouped by batch index in increasing order (offsets are slices)."""
        b = self.coords[:, 0]
        return bool((b[1:] >= b[:-1]).all()) if b.numel() > 1 else True

    def __repr__(self) -> str:
        return (
            f"SparseTensor(N={self.num_voxels}, C={self.num_channels}, R={self.resolution}, "
            f"B={self.batch_size}, dtype={self.dtype}, device={self.device})"
        )

    # ------------------------------------------------------------------ derived tensors
    def replace(self, feats: torch.Tensor) -> "SparseTensor":
        """Same coords (and shared cache) with new feats [N,C']."""
        out = SparseTensor(self.coords, feats, self.resolution, self._batch_size, self.cache)
        out._counts = self._counts
        return out

    def to(self, *args: Any, **kwargs: Any) -> "SparseTensor":
        """Move/cast feats like Tensor.to; coords follow the device; the cache is dropped on a
        move."""
        feats = self.feats.to(*args, **kwargs)
        if feats.device == self.coords.device:
            return self.replace(feats)
        return SparseTensor(self.coords.to(feats.device), feats, self.resolution, self._batch_size)

    def hash(self) -> hashing.CoordIndex:
        """The (cached) coordinate lookup table of this tensor's coords."""
        key = ("hash",)
        h = self.cache.get(key)
        if h is None:
            h = hashing.CoordIndex(self.coords)
            self.cache[key] = h
        return h

    def index_select(self, idx: torch.Tensor) -> "SparseTensor":
        """Rows idx (LongTensor [M] of distinct rows, or bool mask [N]) in that order; [M,C].

        Cache entries that can remap themselves (e.g. neighbour maps) are carried over, so a
        selector's subset does not pay for rebuilding them; the others are dropped."""
        if not isinstance(idx, torch.Tensor):
            idx = torch.as_tensor(idx, dtype=torch.long)
        if idx.dtype == torch.bool:
            if idx.shape != (self.num_voxels,):
                raise ValueError(
                    f"index_select: mask must be [{self.num_voxels}], got {list(idx.shape)}"
                )
            idx = torch.nonzero(idx.to(self.coords.device)).squeeze(1)
        elif idx.is_floating_point() or idx.ndim != 1:
            raise ValueError(
                f"index_select: idx must be a 1-D LongTensor or a bool mask, got {idx.dtype} "
                f"{list(idx.shape)}"
            )
        idx = idx.long().to(self.coords.device)
        n = self.num_voxels
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(f"index_select: indices outside [0, {n})")
        cache: dict[Any, Any] = {}
        if self.cache:
            new_row = torch.full((n,), -1, dtype=torch.long, device=idx.device)
            new_row[idx] = torch.arange(idx.numel(), device=idx.device)
            for key, entry in self.cache.items():
                remap = getattr(entry, "index_select", None)
                if remap is not None:
                    sub = remap(idx, new_row)
                    if sub is not None:
                        cache[key] = sub
        return SparseTensor(
            self.coords.index_select(0, idx),
            self.feats.index_select(0, idx.to(self.feats.device)),
            self.resolution,
            self._batch_size,
            cache,
        )

    def sort(self) -> tuple["SparseTensor", torch.Tensor]:
        """Rows sorted by (b, x, y, z) and the permutation [N] used (sorted = self[perm])."""
        perm = torch.argsort(hashing.pack(self.coords))
        return self.index_select(perm), perm

    def dilate(self) -> "SparseTensor":
        """3x3x3 dilation within [0, R)^3: coords sorted by (b, x, y, z); old voxels keep their
        feats, new ones get zeros; [M,C] with M >= N."""
        r = self.resolution
        offs = KERNEL3_OFFSETS.to(self.coords.device)
        pieces = []
        # N * 27 candidates at once would be 27x the input: dedupe chunk by chunk
        for chunk in torch.split(self.coords, 1 << 17):
            cand = chunk[:, None, :].repeat(1, 27, 1)
            cand[:, :, 1:] += offs[None]
            cand = cand.reshape(-1, 4)
            cand = cand[hashing.in_range(cand, r)]
            pieces.append(torch.unique(hashing.pack(cand)))
        keys = torch.unique(torch.cat(pieces)) if pieces else self.coords.new_zeros(0)
        coords = hashing.unpack(keys)
        feats = self.feats.new_zeros((coords.shape[0], self.feats.shape[1]))
        if self.num_voxels:
            pos = torch.searchsorted(keys, hashing.pack(self.coords))
            feats = feats.index_copy(0, pos.to(feats.device), self.feats)
        return SparseTensor(coords, feats, r, self._batch_size)

    def child_coords(self) -> torch.Tensor:
        """Coords [8N,4] of every voxel's 8 children at 2R, rows 8 i + o (KERNEL2_OFFSETS order)."""
        offs = KERNEL2_OFFSETS.to(self.coords.device)
        children = self.coords.repeat_interleave(8, dim=0)
        children[:, 1:] = children[:, 1:] * 2 + offs.repeat(self.num_voxels, 1)
        return children

    def subdivide(self) -> "SparseTensor":
        """Each voxel to its 8 children at 2R, rows 8 i + o (o in KERNEL2_OFFSETS order), feats
        copied from the parent; [8N,C]."""
        feats = self.feats.repeat_interleave(8, dim=0)
        return SparseTensor(self.child_coords(), feats, self.resolution * 2, self._batch_size)

    # ------------------------------------------------------------------ dense round trip (tests)
    def to_dense(self) -> torch.Tensor:
        """Dense grid [B,C,R,R,R] (zeros off the active set); for tests and small grids only."""
        r, b, c = self.resolution, self.batch_size, self.num_channels
        dense = self.feats.new_zeros((b, r, r, r, c))
        x = self.coords.to(self.feats.device)
        dense = dense.index_put((x[:, 0], x[:, 1], x[:, 2], x[:, 3]), self.feats)
        return dense.permute(0, 4, 1, 2, 3).contiguous()

    @staticmethod
    def from_dense(dense: torch.Tensor, mask: torch.Tensor | None = None) -> "SparseTensor":
        """From dense [B,C,R,R,R]: active where mask [B,R,R,R] (default: any channel non-zero);
        coords sorted by (b, x, y, z); for tests and small grids only."""
        if dense.ndim != 5 or not dense.shape[2] == dense.shape[3] == dense.shape[4]:
            raise ValueError(f"from_dense: need [B,C,R,R,R], got {list(dense.shape)}")
        if mask is None:
            mask = (dense != 0).any(dim=1)
        elif mask.shape != (dense.shape[0], *dense.shape[2:]):
            raise ValueError(
                f"from_dense: mask must be {[dense.shape[0], *dense.shape[2:]]}, "
                f"got {list(mask.shape)}"
            )
        coords = torch.nonzero(mask).contiguous()
        feats = dense.permute(0, 2, 3, 4, 1)[mask]
        return SparseTensor(coords, feats, dense.shape[2], batch_size=dense.shape[0])


def cat(tensors: Sequence[SparseTensor]) -> SparseTensor:
    """Concatenate the feats of tensors on the same coords along channels; [N, sum C]."""
    if not tensors:
        raise ValueError("cat: need at least one SparseTensor")
    first = tensors[0]
    for t in tensors[1:]:
        same = t.coords is first.coords or (
            t.coords.shape == first.coords.shape and torch.equal(t.coords, first.coords)
        )
        if not same or t.resolution != first.resolution:
            raise ValueError("cat: every tensor must have the same coords and resolution")
    return first.replace(torch.cat([t.feats for t in tensors], dim=1))


def collate(tensors: Sequence[SparseTensor]) -> SparseTensor:
    """Stack tensors into one batch, batch indices offset in order; rows concatenated."""
    if not tensors:
        raise ValueError("collate: need at least one SparseTensor")
    r = tensors[0].resolution
    if any(t.resolution != r for t in tensors):
        raise ValueError("collate: every tensor must have the same resolution")
    coords, base = [], 0
    for t in tensors:
        c = t.coords.clone()
        c[:, 0] += base
        coords.append(c)
        base += t.batch_size
    feats = torch.cat([t.feats for t in tensors], dim=0)
    return SparseTensor(torch.cat(coords), feats, r, batch_size=base)
