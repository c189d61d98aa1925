"""Where a training step's time and memory go: named phases read from torch's profiler.

Trainers mark their phases with `phase("encode")` (a `torch.profiler.record_function` range,
a few microseconds when no profiler runs, so it stays in the hot path). `profile_steps` runs a
callable under `torch.profiler.profile(profile_memory=True)` and turns the trace into one row
per phase: wall seconds (the range's length on the calling thread) and peak tensor memory, the
highest level of live bytes inside the range counted from the level at the start of the step.
Tensor bytes come from the allocator's own events, so on the CPU the figure is exact and does
not depend on what glibc keeps or gives back (an RSS sampler cannot tell one step's peak from
the previous step's pages). Used by benchmarks/step_profile.py (BENCHMARKS.md, "Step profile").
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch

PREFIX = "focusing/"


def phase(name: str) -> AbstractContextManager:
    """A named phase of a training step (profiler range `focusing/<name>`)."""
    return torch.profiler.record_function(PREFIX + name)


@dataclass
class PhaseRow:
    """One phase over the profiled steps: mean seconds per step, peak MiB above step start."""

    name: str
    seconds: float
    peak_mib: float
    calls: float


def _events(prof) -> list[tuple[str, int, int, int]]:
    """(name, start ns, end ns, bytes) of every event of the trace (kineto's own records:
    `prof.events()` drops the allocator's `[memory]` events)."""
    return [(e.name(), e.start_ns(), e.end_ns(), e.nbytes())
            for e in prof.profiler.kineto_results.events()]


def phase_table(prof, steps: int, step_name: str = "step") -> list[PhaseRow]:
    """Per-phase rows of a profile whose steps are ranges `focusing/<step_name>`."""
    events = _events(prof)
    memory = sorted((t0, nbytes) for name, t0, _, nbytes in events if name == "[memory]")
    times = [t for t, _ in memory]
    live = np.cumsum([b for _, b in memory]) if memory else np.zeros(0, dtype=np.int64)

    def level_at(t: int) -> int:
        i = bisect.bisect_right(times, t) - 1
        return int(live[i]) if i >= 0 else 0

    def peak_in(t0: int, t1: int) -> int:
        i, j = bisect.bisect_left(times, t0), bisect.bisect_right(times, t1)
        return int(live[i:j].max()) if j > i else level_at(t0)

    ranges = [(name[len(PREFIX):], t0, t1) for name, t0, t1, _ in events
              if name.startswith(PREFIX)]
    step_starts = sorted(t0 for name, t0, _ in ranges if name == step_name)
    secs: dict[str, float] = defaultdict(float)
    peaks: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for name, t0, t1 in ranges:
        i = bisect.bisect_right(step_starts, t0) - 1  # the step this range belongs to
        base = level_at(step_starts[i] - 1) if i >= 0 else level_at(t0 - 1)
        secs[name] += (t1 - t0) / 1e9
        peaks[name] = max(peaks[name], (peak_in(t0, t1) - base) / 2**20)
        calls[name] += 1
    n = max(steps, 1)
    return [PhaseRow(k, secs[k] / n, peaks[k], calls[k] / n) for k in secs]


def profile_steps(run_step, steps: int) -> list[PhaseRow]:
    """Run `run_step()` `steps` times under the profiler; rows per phase (see phase_table)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        for _ in range(steps):
            with phase("step"):
                run_step()
    return phase_table(prof, steps)
