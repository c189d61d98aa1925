"""Peak memory of a block of work: CUDA allocator peak on the GPU, sampled RSS on the CPU.

On the CPU the process's resident set is sampled by a background thread (every 2 ms) and
reported above the level at entry, so the figure is what the block itself added.
"""

from __future__ import annotations

import os
import threading

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return 0


def _read_int(path: str) -> int | None:
    try:
        text = open(path).read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def available_memory_bytes() -> float:
    """Memory this process may still take, in bytes: MemAvailable of /proc/meminfo, lowered to
    what the cgroup (v2) limit leaves (a container, a batch job's slot); inf where unknown."""
    avail = float("inf")
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024.0
                    break
    except OSError:
        pass
    limit = _read_int("/sys/fs/cgroup/memory.max")
    used = _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        avail = min(avail, float(max(limit - used, 0)))
    return avail


class PeakMemory:
    """Context manager: `.peak_mb` is the peak memory above the entry level, in MiB."""

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.002,
                 base_bytes: int | None = None):
        """base_bytes: on the CPU, report the peak above this RSS instead of the level at entry
        (after the first step the allocator reuses freed pages, so the entry level hides them)."""
        self.device = torch.device(device)
        self.interval = interval_s
        self.base_bytes = base_bytes
        self.peak_mb = 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = current_rss_bytes() if self.base_bytes is None else self.base_bytes
        self._peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, current_rss_bytes())
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, current_rss_bytes())
        self.peak_mb = max(peak - self._base, 0) / 2**20
