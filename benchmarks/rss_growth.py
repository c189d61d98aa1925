"""The process RSS through a training run, and where the growth lies: live tensors or the allocator.

Why: over a whole `small` run at 128 (BENCHMARKS.md, session 10) the selected encoding
(`loss.encode_selected`, the default) had per-step RSS peaks that climbed through the run to
1,796 MiB against 960 for the whole-shape encoding, though its first steps were lower (169
against 210 MiB). A climb of the high-water mark, not one step's need, points at the C
allocator keeping freed memory (glibc's arenas: tensors of a different size every step, since
the encoded region changes size), but that was a guess. This measures it.

How: each arm trains the `small` budget's focusing setup on the example meshes in a fresh process
(as compare's children do): `--warm` render-free warm-up steps, then `--steps` of the setup's own
rendered steps. After every step it records the engine's per-step RSS peak (above the level
before the first step) and glibc's mallinfo2: bytes in use by malloc (uordblks + hblkhd) and
bytes free but kept inside the arenas (fordblks). Arms:

- whole: `loss.encode_selected=false` (every latent voxel encoded);
- selected: the default;
- selected+trim: the default, and `malloc_trim(0)` after every step (glibc returns the free
  pages of its arenas to the system).

If the selected arm's climb is the allocator's, its free-in-arena bytes climb with it, and the
trimmed arm stays flat at about the whole arm's level or lower.

Run: hatch run python benchmarks/rss_growth.py [--warm 40] [--steps 400] [--arms whole,selected,
         selected+trim] [--set key=value ...] [--json FILE]
(glibc's own knobs go in the environment, e.g. MALLOC_MMAP_THRESHOLD_=131072.)

Measured (2026-12-06, 2-core EPYC, load up to 2.2, above 2 at the end of the last arm;
BENCHMARKS.md, session 11), 300 + 300 steps: two causes. The engine's history held every
rendered step's images and mesh (malloc's bytes in use grew 0.64 MiB a step; the step's images
and mesh are 0.66 MiB): fixed, in use now flat. The rest is the allocator: in use flat at about
370 MiB while the free bytes kept in the arenas grow from 260 to 780 MiB in the render-free
steps. malloc_trim(0) every step, or a fixed mmap threshold, keep the RSS flat (process 1,257
or 847 MiB against 1,940) at 1.5x or 2.9x the time per step.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MESHES = ROOT / "examples" / "meshes"
ARMS = {"whole": ["loss.encode_selected=false"], "selected": [], "selected+trim": []}
MiB = 2.0 ** 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _libc():
    """glibc through ctypes, or None (another C library: no mallinfo2, no malloc_trim)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError):
        return None


def malloc_figures(libc) -> dict:
    """{'malloc_used_mb': in use by malloc, 'malloc_free_mb': free but kept in its arenas}."""
    if libc is None:
        return {}
    m = libc.mallinfo2()
    return {"malloc_used_mb": (m.uordblks + m.hblkhd) / MiB, "malloc_free_mb": m.fordblks / MiB}


def _tensor_mb(tensors) -> float:
    """MiB held by the storages of `tensors` (a view counts its whole storage, once)."""
    seen = {}
    for t in tensors:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values()) / MiB


def child(arm: str, warm: int, steps: int, extra: list[str], work: Path, out: Path) -> None:
    """Train one arm in this process; per-step figures to `out` (JSON)."""
    from focusing.core.engine.loop import Engine
    from focusing.eval.compare import load_budget
    from focusing.eval.compare.runner import run_child_job

    libc = _libc()
    trim = arm.endswith("+trim")
    after: list[dict] = []
    plain = Engine.train_step

    def train_step(self):
        res = plain(self)
        if trim and libc is not None:
            libc.malloc_trim(0)
        after.append({"step": res.step, "peak_mb": res.peak_memory_mb, "seconds": res.seconds,
                      **malloc_figures(libc),
                      "images_mesh_mb": _tensor_mb([*res.images.values(), *(res.mesh or ())])})
        return res

    Engine.train_step = train_step
    budget = load_budget("small")
    overrides = (list(budget.overrides) + ARMS[arm.replace("+trim", "")] + list(extra)
                 + [f"train.steps={warm + steps}", f"loss.tsdf_steps={warm}", "train.minutes=0",
                    "train.eval_every=0", "train.restart_at=0", "train.checkpoint_every=0",
                    "evaluation.image_every=0", "evaluation.calibrate_at_end=false"])
    job = {"mode": "train", "setup": "focusing", "overrides": overrides, "data": str(MESHES),
           "run_dir": str(work / arm), "history": str(work / f"{arm}.history.json"),
           "progress": True, "threads": 0}
    hist = run_child_job(job)
    own = [s for s in hist["steps"] if s["step"] > warm]
    out.write_text(json.dumps({
        "arm": arm, "steps": after, "own_seconds": [s["seconds"] for s in own],
        "latents_encoded": [s["counts"].get("latent_encoded") for s in own],
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_fit_mb": hist["rss_before_fit_mb"]}))


def _summary(rec: dict, warm: int, phase: str) -> dict:
    own = [s for s in rec["steps"] if (s["step"] > warm) == (phase == "own")]
    k = max(1, len(own) // 8)
    first, last = own[:k], own[-k:]

    def med(rows, key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    return {"arm": rec["arm"], "phase": phase, "steps": len(own), "window": k,
            "peak_first_mb": med(first, "peak_mb"), "peak_last_mb": med(last, "peak_mb"),
            "peak_max_mb": max(s["peak_mb"] for s in own),
            "used_first_mb": med(first, "malloc_used_mb"),
            "used_last_mb": med(last, "malloc_used_mb"),
            "free_first_mb": med(first, "malloc_free_mb"),
            "free_last_mb": med(last, "malloc_free_mb"),
            "s_per_step": statistics.median(r["seconds"] for r in own),
            "images_mesh_mb": med(own, "images_mesh_mb"),
            "max_rss_mb": rec["max_rss_mb"]}


def _f(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warm", type=int, default=40)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--arms", default="whole,selected,selected+trim")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=3, metavar=("ARM", "WORK", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.warm, a.steps, a.set, Path(a.child[1]), Path(a.child[2]))
        return
    arms = a.arms.split(",")
    for arm in arms:
        if arm.replace("+trim", "") not in ARMS:
            ap.error(f"--arms: {arm!r} is not one of {', '.join(ARMS)}")
    load = [f"{x:.2f}" for x in os.getloadavg()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rss-growth-") as tmp:
        for arm in arms:
            out = Path(tmp) / f"{arm}.json"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--warm", str(a.warm), "--steps",
                            str(a.steps), *sum((["--set", s] for s in a.set), []),
                            "--child", arm, tmp, str(out)], check=True)
            rec = json.loads(out.read_text())
            wall = time.perf_counter() - t0
            rows += [{**_summary(rec, a.warm, phase), "wall_s": wall}
                     for phase in ("warm-up", "own")
                     if any((x["step"] > a.warm) == (phase == "own") for x in rec["steps"])]
            rows[-1]["per_step"] = rec["steps"]
    load_after = [f"{x:.2f}" for x in os.getloadavg()]
    print(f"\n{platform.processor() or platform.machine()}, load {' '.join(load)} -> "
          f"{' '.join(load_after)}; {a.warm} warm-up + {a.steps} own steps, small budget, "
          f"focusing, examples/meshes; MiB; first/last: medians of the first/last eighth "
          f"of the phase's steps")
    print("| arm | phase | step peak first | last | max | malloc in use first | last | "
          "free in arenas first | last | s / step | max RSS | images + mesh per step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['phase']} | {_f(r['peak_first_mb'])} | {_f(r['peak_last_mb'])} | "
              f"{_f(r['peak_max_mb'])} | {_f(r['used_first_mb'])} | {_f(r['used_last_mb'])} | "
              f"{_f(r['free_first_mb'])} | {_f(r['free_last_mb'])} | {r['s_per_step']:.3f} | "
              f"{_f(r['max_rss_mb'])} | {r['images_mesh_mb'] or 0:.2f} |")
    if a.json:
        a.json.write_text(json.dumps({"load": [load, load_after], "warm": a.warm,
                                      "steps": a.steps, "set": a.set, "arms": rows}, indent=2))


if __name__ == "__main__":
    main()
