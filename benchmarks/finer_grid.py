"""Reconstruction above the training resolution (issue 23, S3): one trained run, its meshes
reconstructed at the trained output resolution and at twice it (`reconstruct --resolution`).

    hatch run python benchmarks/finer_grid.py RUN [--data examples/meshes-eval] [--factor 2]

For each mesh of --data: F@0.005, Chamfer L2 and normal consistency (`core.metrics.evaluate`,
100,000 points) of the reconstruction at the trained grid and at `factor` times it, with the
run's calibrated threshold, and the seconds each took. S3 asks that the finer grid be no worse.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from focusing.core.config import setup_from_run
from focusing.core.engine import read_run_config
from focusing.core.geometry.meshio import find_mesh_files
from focusing.core.metrics import evaluate
from focusing.core.vae.reconstruct import reconstruct_file


def main(argv: list[str]) -> int:
    """Print one row per mesh and resolution, then the means; --json writes the rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, default=Path("examples/meshes-eval"))
    ap.add_argument("--factor", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    trained = 4 * setup_from_run(read_run_config(args.run)).model.latent_resolution
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mesh in find_mesh_files(args.data):
            for res in (trained, args.factor * trained):
                out = Path(tmp) / f"{mesh.stem}-{res}.ply"
                t0 = time.perf_counter()
                try:
                    info = reconstruct_file(args.run, mesh, out, resolution=res)
                except RuntimeError:  # an empty surface is a result: F 0, counted in the mean
                    rows.append({"mesh": mesh.stem, "output": res, "fscore": 0.0,
                                 "chamfer_l2": float("nan"), "normal_consistency": float("nan"),
                                 "faces": 0, "reconstruct_s": time.perf_counter() - t0})
                    print(f"{mesh.stem:20s} out {res:4d}  empty surface (F 0)", flush=True)
                    continue
                t1 = time.perf_counter()
                r = evaluate(out, mesh, n_points=100_000, tau=0.005)
                row = {"mesh": mesh.stem, "output": res, "fscore": r["fscore"],
                       "chamfer_l2": r["chamfer_l2"],
                       "normal_consistency": r["normal_consistency"],
                       "faces": info["faces"], "reconstruct_s": t1 - t0}
                rows.append(row)
                print(f"{mesh.stem:20s} out {res:4d}  F@0.005 {row['fscore']:.3f}  "
                      f"CD {row['chamfer_l2']:.2e}  NC {row['normal_consistency']:.3f}  "
                      f"{row['faces']:>8d} faces  {row['reconstruct_s']:.1f} s", flush=True)
    for res in (trained, args.factor * trained):
        sel = [r for r in rows if r["output"] == res]
        made = [r for r in sel if r["faces"]]
        print(f"mean at {res}: F@0.005 {statistics.mean(r['fscore'] for r in sel):.3f} over "
              f"{len(sel)} meshes (empty = 0); over the {len(made)} reconstructed: CD "
              f"{statistics.mean(r['chamfer_l2'] for r in made):.2e}  "
              f"NC {statistics.mean(r['normal_consistency'] for r in made):.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
