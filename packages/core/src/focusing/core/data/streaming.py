"""Prepared records read one at a time, and each rank's share of every step's shapes.

Why: a set larger than memory cannot be loaded at the start of a run. PreparedShapes is a torch
Dataset that reads one record per item from its file, so DataLoader workers read ahead while
the memory stays flat. ShardSampler yields, for a range of steps, exactly the shape indices
training uses (data.dataset.shape_order: epoch-wise permutations fixed by the seed), and of each
step only the slots this rank computes (engine.distributed.rank_slots, the Engine's own split).
So every rank reads only its shard, the order is reproducible, and a run resumed at step S
reads what an unbroken run would have read from step S on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from focusing.core.data.dataset import shape_order
from focusing.core.data.prepared import prepared_shapes, read_record
from focusing.core.data.records import ShapeRecord
from focusing.core.engine.distributed import rank_slots

# A set whose records take more than this is streamed by default (ShapeDataset, stream=None);
# FOCUSING_STREAM_BYTES overrides it (0: always stream).
STREAM_ABOVE_BYTES = 8 * 2**30


class PreparedShapes(Dataset):
    """The ok shapes of a prepared set (or of a folder of them), one record read per item."""

    def __init__(self, folder: str | os.PathLike, settings: dict | None = None):
        self.folder = Path(folder)
        self.shapes = prepared_shapes(self.folder, settings)
        if not self.shapes:
            raise FileNotFoundError(f"{self.folder}: no prepared shape (status ok) in its "
                                    "manifest; see its manifest.jsonl for why")
        self.bytes = sum(s.bytes for s in self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i):
        """The record of shape i (read from its file), or a list of them for a slice."""
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        shape = self.shapes[i]
        record = read_record(shape.record)
        record.name = shape.name
        return record

    def __iter__(self) -> Iterator[ShapeRecord]:
        return (self[i] for i in range(len(self)))

    def should_stream(self) -> bool:
        """Whether the records are too large to hold (STREAM_ABOVE_BYTES)."""
        limit = os.environ.get("FOCUSING_STREAM_BYTES", "").strip()
        return self.bytes > (int(limit) if limit else STREAM_ABOVE_BYTES)

    def load_all(self, progress: bool = True) -> list[ShapeRecord]:
        """Every record, read into memory."""
        bar = dict(desc="reading records", unit="shape", disable=not progress)
        return [self[i] for i in tqdm(range(len(self)), **bar)]


class ShardSampler(Sampler):
    """Shape indices of steps [start, stop) for rank `rank` of `world_size`: per step, the
    entries of shape_order(n, step, batch_size, seed) at this rank's slots (rank_slots)."""

    def __init__(self, n_shapes: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(f"rank {rank} of {world_size} cannot share a batch of {batch_size}")
        self.n, self.batch, self.seed = n_shapes, batch_size, seed
        self.steps = range(start, stop)
        self.slots = rank_slots(batch_size, rank, world_size)

    def __iter__(self) -> Iterator[int]:
        for step in self.steps:
            order = shape_order(self.n, step, self.batch, self.seed)
            yield from (order[s] for s in self.slots)

    def __len__(self) -> int:
        return len(self.steps) * len(self.slots)


def _one(record: ShapeRecord) -> ShapeRecord:
    return record


def shard_loader(shapes: PreparedShapes, sampler: ShardSampler, workers: int = 2,
                 prefetch: int = 4) -> DataLoader:
    """A DataLoader yielding this rank's records in the sampler's order, read ahead by
    `workers` processes (0: in this one), one record at a time."""
    extra = dict(prefetch_factor=prefetch, persistent_workers=True) if workers > 0 else {}
    return DataLoader(shapes, sampler=sampler, batch_size=None, collate_fn=_one,
                      num_workers=workers, **extra)


def shard_indices(n_shapes: int, batch_size: int, seed: int, steps: range, rank: int,
                  world_size: int) -> list[int]:
    """The shape indices rank `rank` reads over `steps` (ShardSampler as a list)."""
    return list(ShardSampler(n_shapes, batch_size, seed, steps.start, steps.stop, rank,
                             world_size))
