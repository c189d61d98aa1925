"""Calibration of the training memory guard (focusing.core.vae.train.memory): real runs measured.

Why: `focusing train --set model.latent_resolution=256` used to run for minutes up to 15 GB and
die with a traceback. The guard refuses such a run before it allocates, from a model of the
config whose constants come from this script: each point is a fresh process that prepares the
meshes of --data into an empty shape cache, then trains steps of the setup, and reports

- prep_mb: the peak resident set above the level at entry while the meshes are prepared
  (voxelisation, dilation, the TSDF corners), one mesh at a time, the largest of them;
- records_mb: the bytes of the prepared records held in memory (every mesh);
- step_mb: the peak above the level before the first step, over the steps (the engine's own
  figure: warm-up and rendered steps both run when --steps exceeds loss.tsdf_steps);
- counts: dilated active voxels at R, 2R, 4R and TSDF corners per mesh;
- predicted: what the guard's model predicts for the same config, for comparison.

Measured on 2026-12-05 (2-core box, load about 2, torch 2.13.0+cpu, one thread; MiB; "step"
is the larger of a warm-up and a rendered step, loss.tsdf_steps=1), against the guard's estimate:

measured (estimated), MiB           prepare       records      step
focusing, couplingdown + fandisk
  latent 16                         66 (73)       12 (16)      1258 (1222)
  latent 32                         187 (204)     46 (57)      1334 (1320)
  latent 64                         702 (734)     189 (221)    1581 (1714)
triposf, couplingdown + fandisk
  latent 32 / 64                                               1786 / 3631 (2286 / 5830)
focusing, couplingdown, latent 16
  points 8192 / reach 0 / image 256                            420 / 219 / 1244 (492 / 286 / 1311)
focusing, couplingdown, points 2048
  latent 32                         175 (204)     26 (28)      297 (409)
  latent 64                         724 (734)     114 (110)    699 (802)
  latent 64, widths 128                                        1163 (1336)
  latent 64, zoom n_max 2048                                   756 (886)
  latent 32, image 512                                         753 (854)
triposf, couplingdown, points 2048
  latent 32 / 64                                               1146 / 4753 (1375 / 4918)

Run: hatch run python benchmarks/memory_guard.py --data examples/meshes --latent 16 32 64 \
         [--mesh fandisk couplingdown] [--setup focusing] [--steps 2] [--set key=value ...]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "IGL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _point(args: argparse.Namespace) -> dict:
    """One measured point, in this (fresh) process."""
    import torch

    torch.set_num_threads(1)
    from focusing.core.config import load_setup
    from focusing.core.engine.memory import PeakMemory, current_rss_bytes
    from focusing.core.data import dataset as data_mod
    from focusing.core.vae.train.trainer import Trainer

    setup = load_setup(args.setup, list(args.set) + [
        f"model.latent_resolution={args.point}", f"train.steps={args.steps}",
        "train.checkpoint_every=0", "evaluation.image_every=0"])
    settings = data_mod.cache_settings(setup)
    files = data_mod.mesh_files(Path(args.data))
    prep_mb, records_mb, counts = 0.0, 0.0, []
    cache = data_mod.default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for f in files:  # prepared as `train` does, into the (empty) cache the run then reads
        with PeakMemory() as peak:
            rec = data_mod.read_record(data_mod._load_or_build((f, settings, cache)))
        prep_mb = max(prep_mb, peak.peak_mb)
        tensors = [rec.vertices, rec.faces, rec.points, rec.normals, rec.tsdf_depths,
                   rec.tsdf_corners, rec.tsdf_values, *rec.active.values()]
        records_mb += sum(t.numel() * t.element_size() for t in tensors) / 2**20
        counts.append({"mesh": f.name, **{str(r): len(a) for r, a in rec.active.items()},
                       "corners": len(rec.tsdf_corners)})
        del rec
    before = current_rss_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(setup, Path(args.data), Path(tmp) / "run", progress=False)
        steps = [trainer.train_step() for _ in range(args.steps)]
        trainer.close()
    return {"latent": args.point, "meshes": len(files), "prep_mb": prep_mb,
            "records_mb": records_mb, "step_mb": max(s.peak_memory_mb for s in steps),
            "step_mb_each": [s.peak_memory_mb for s in steps], "counts": counts,
            "rss_before_train_mb": before / 2**20,
            "predicted": _predicted(setup, len(files))}


def _predicted(setup, meshes: int) -> dict | None:
    try:
        from focusing.core.vae.train.memory import estimate_training_memory
    except ImportError:
        return None
    return estimate_training_memory(setup, meshes).as_dict()


def main() -> None:
    """Run every point in a fresh process with a fresh cache; print one JSON line per point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="examples/meshes")
    p.add_argument("--mesh", nargs="*", default=[], help="stems of --data to use (default all)")
    p.add_argument("--latent", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--setup", default="focusing")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--point", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.point is not None:
        print(json.dumps(_point(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for f in sorted(Path(args.data).iterdir()):
            if not args.mesh or f.stem in args.mesh:
                (data / f.name).symlink_to(f.resolve())
        for r in args.latent:
            cache = Path(tmp) / f"cache-{r}"
            cmd = [sys.executable, __file__, "--data", str(data), "--point", str(r),
                   "--setup", args.setup, "--steps", str(args.steps)]
            for item in args.set:
                cmd += ["--set", item]
            out = subprocess.run(cmd, capture_output=True, text=True,
                                 env=dict(os.environ, FOCUSING_CACHE=str(cache)))
            shutil.rmtree(cache, ignore_errors=True)
            line = out.stdout.strip().splitlines()[-1:] or [""]
            print(line[0] if out.returncode == 0 else json.dumps(
                {"latent": r, "error": out.stderr.strip()[-2000:]}), flush=True)


if __name__ == "__main__":
    main()
