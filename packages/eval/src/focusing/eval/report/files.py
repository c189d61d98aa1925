"""The files of a report: JSON (NaN/inf as null), PNG figures, and the machine the figures
were taken on. Every file is written atomically (temp file in the same folder, then
os.replace), so an interrupted report never leaves half a file behind."""

from __future__ import annotations

import io
import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from focusing.core.io import write_bytes_atomic


def _clean(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _clean(obj.item())
    return obj


def write_json(path: Path, obj) -> None:
    """JSON (NaN/inf as null) written atomically."""
    write_bytes_atomic(path, (json.dumps(_clean(obj), indent=2) + "\n").encode(),
                       make_parents=True)


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue(), make_parents=True)


def _first_field(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """CPU model, core count, memory (GB), OS, Python and torch versions, load average."""
    import torch

    cpu = _first_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()
    mem = _first_field("/proc/meminfo", "MemTotal")
    return {
        "cpu": cpu, "cores": os.cpu_count(),
        "memory_gb": int(mem.split()[0]) / 2**20 if mem else None,
        "os": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
