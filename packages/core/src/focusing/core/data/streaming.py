"""Prepared records read one at a time, and each rank's share of every step's shapes.

Why: a set larger than memory cannot be loaded at the start of a run. PreparedShapes is a torch
Dataset that reads one record per item from its file, so DataLoader workers read ahead while
the memory stays flat. ShardSampler yields, for a range of steps, exactly the shape indices
training uses (data.dataset.shape_order: epoch-wise permutations fixed by the seed), and of each
step only the slots this rank computes (engine.distributed.rank_slots, the Engine's own split).
So every rank reads only its shard, the order is reproducible, and a run resumed at step S
reads what an unbroken run would have read from step S on. StepRecords is what the VAE trainer
asks for the record of (step, slot): from a streamed set, through such a loader that reads ahead.
"""

from __future__ import annotations

import os
from collections import OrderedDict
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
# Training on a streamed set: DataLoader worker processes reading records ahead, and records
# each of them holds ready (FOCUSING_READ_WORKERS, FOCUSING_READ_AHEAD override; 0 workers:
# read in the training process, in order, with no read-ahead).
READ_WORKERS = 2
READ_AHEAD = 2


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


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    return int(text) if text else default


class LRUCache(OrderedDict):
    """A dict that keeps its `size` most recently used entries (a per-record cache that stays
    flat when the records are streamed)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class StepRecords:
    """The record at slot `slot` of step `step`'s global batch (data.dataset.shape_order), as the
    VAE trainer asks for them: (step, slot) -> ShapeRecord.

    An in-memory ShapeDataset is indexed, as before. A streamed one (ShapeDataset.streamed) is
    read through a shard_loader: READ_WORKERS DataLoader processes read this rank's records
    ahead, in training's order, from the step first asked for on. A request out of that order (a
    resumed run's first step, a fit beyond the planned steps, a caller of its own) starts a new
    loader at its step; a slot that is not this rank's is read directly. So a run resumed at
    step S reads exactly what an unbroken run reads from S on, and only this rank's shard.
    rank and world_size default to torch.distributed's when it is initialised (torchrun)."""

    def __init__(self, data, batch_size: int, seed: int, rank: int | None = None,
                 world_size: int | None = None, workers: int | None = None,
                 read_ahead: int | None = None):
        self.data, self.batch, self.seed = data, batch_size, seed
        self.streamed = bool(getattr(data, "streamed", False))
        if rank is None or world_size is None:
            rank, world_size = _dist_rank()
        self.rank, self.world = rank, world_size
        self.slots = rank_slots(batch_size, rank, world_size)
        self.workers = _env_int("FOCUSING_READ_WORKERS", READ_WORKERS) if workers is None \
            else workers
        self.read_ahead = max(1, _env_int("FOCUSING_READ_AHEAD", READ_AHEAD)
                              if read_ahead is None else read_ahead)
        self.restarts: list[int] = []  # the steps a loader was started at
        self._reader = None
        self._next: tuple[int, int] | None = None  # (step, position in self.slots) expected

    def cache(self, size: int = 16) -> dict:
        """A dict for per-record caches (by name): a plain one in memory, one that keeps the
        `size` latest records when streamed (so memory stays flat over a large set)."""
        return LRUCache(size) if self.streamed else {}

    def __call__(self, step: int, slot: int) -> ShapeRecord:
        index = shape_order(len(self.data), step, self.batch, self.seed)[slot]
        if not self.streamed:
            return self.data[index]
        if slot not in self.slots:
            return self.data[index]
        pos = self.slots.index(slot)
        if self._next != (step, pos) or self._reader is None:
            self._start(step, pos)
        record = next(self._reader)
        self._next = (step, pos + 1) if pos + 1 < len(self.slots) else (step + 1, 0)
        expected = self.data.records.shapes[index].name
        if record.name != expected:  # cannot happen: the sampler is shape_order's own
            raise RuntimeError(f"read-ahead out of order at step {step}, slot {slot}: read "
                               f"{record.name!r}, training's order says {expected!r}")
        return record

    def _start(self, step: int, pos: int) -> None:
        """A loader over this rank's shard from `step` on (open-ended), at slot position pos."""
        self.close()
        shapes = self.data.records  # PreparedShapes
        sampler = ShardSampler(len(shapes), self.batch, self.seed, step, step + 10**9,
                               self.rank, self.world)
        loader = shard_loader(shapes, sampler, workers=self.workers, prefetch=self.read_ahead)
        self._reader = iter(loader)
        self.restarts.append(step)
        for _ in range(pos):  # a request mid-step: the slots before it are read and dropped
            next(self._reader)

    def close(self) -> None:
        """Stop the loader's worker processes (a new request starts them again)."""
        reader, self._reader, self._next = self._reader, None, None
        shutdown = getattr(reader, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def _dist_rank() -> tuple[int, int]:
    """(rank, world size) of torch.distributed, or (0, 1) when it is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
