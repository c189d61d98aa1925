"""Shape-record preparation at output 256 on one core: the old distance and TSDF code vs the new.

Why: issue 24's goal D1 asks for at most 5 s median per asset at output 256 on one core over the
nine training and six held-out meshes, with the fandisk target-ceiling F within 0.005 of today's.
The old geometry code (a cKDTree over dense surface samples to pick candidate faces and to
pre-filter the points near the surface) is loaded from git at --old-rev; the new one (libigl's
AABB tree, chunked view fusion) is the working tree's. Both build the same record through
focusing.core.data.records.build_record, old and new one after the other for each mesh, in one
process pinned to one CPU (sched_setaffinity, torch.set_num_threads(1), IGL_NUM_THREADS=1).
The table has each record's total seconds, the TSDF target's share (tsdf_target: corner
enumeration plus surface_tsdf) and surface_tsdf's, and the largest change of the target.

Validation run (2026-12-05, 2-core AMD EPYC box shared with other jobs, load 2.0 to 3.3, so
seconds inflated; pinned to one CPU): fandisk old 71.1 s, new 12.1 s per record (surface_tsdf
60.8 -> 2.9 s); cow old 30.4 s, new 5.4 s (25.9 -> 1.3 s); the targets are identical in float32.
Most of what is left is data.py's corner enumeration, torch.unique(dim=0): 8.2 s of fandisk's
12.1 s (a bitmap over the (4R+1)^3 corner grid gives the same sorted corners in 0.14 s). Fandisk
target ceiling F@0.005, old and new alike: 0.9516 (8 views at 96^2), 0.9629 (8 at 128^2).
The full run over all fifteen meshes is left for a quiet machine.

Run: hatch run python benchmarks/prepare_speed.py [MESH ...] [--output 256] [--old-rev REV]
     [--no-old] [--repeat N] [--ceiling] [--ceiling-only] [--json FILE]
Default meshes: every mesh of examples/meshes and examples/meshes-eval (15). --ceiling also meshes
fandisk's TSDF target at output 128 with old and new code (benchmarks/vae_target_ceiling.py's
"training target" rows: 8 views at 96^2 and at 128^2) and prints F@0.005 of each.
"""

from __future__ import annotations

import os

# One core for everything, set before torch, numpy's BLAS or libigl start their thread pools.
for _var in ("IGL_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import types
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
GEOMETRY = "packages/core/src/focusing/core/geometry"
# The last commit with the sampled candidate search (distance.py) and the cKDTree pre-filter
# (tsdf.py surface_tsdf): the "old" side of the comparison.
OLD_REV = "75a0f9c"


def load_old(rev: str) -> dict[str, types.ModuleType]:
    """geometry.distance and geometry.tsdf as they were at git revision `rev`, as modules."""
    mods = {}
    for name in ("distance", "tsdf"):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{GEOMETRY}/{name}.py"],
                             capture_output=True, text=True, check=True).stdout
        mod = types.ModuleType(f"_old_{name}")
        mod.__file__ = f"<{rev}:{GEOMETRY}/{name}.py>"
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 (our own git history)
        mods[name] = mod
    return mods


@contextmanager
def geometry_code(old: dict[str, types.ModuleType] | None):
    """Run the old code (old modules given) or the working tree's (None) through the same
    module attributes that build_record and surface_tsdf look up at call time."""
    import focusing.core.geometry.distance as dist
    from focusing.core.geometry import tsdf

    if old is None:
        yield
        return
    saved = dist.mesh_signed_distance, tsdf.surface_tsdf, tsdf.fuse_view_tsdf
    dist.mesh_signed_distance = old["distance"].mesh_signed_distance
    tsdf.surface_tsdf = old["tsdf"].surface_tsdf
    tsdf.fuse_view_tsdf = old["tsdf"].fuse_view_tsdf
    try:
        yield
    finally:
        dist.mesh_signed_distance, tsdf.surface_tsdf, tsdf.fuse_view_tsdf = saved


@contextmanager
def stage_timers(seconds: dict[str, float]):
    """Add the time spent in data.tsdf_target and tsdf.surface_tsdf to seconds[...]."""
    from focusing.core.geometry import tsdf
    from focusing.core.data import records as data

    patched = [(mod, name) for mod, name in ((data, "tsdf_target"), (tsdf, "surface_tsdf"))
               if hasattr(mod, name)]  # data.py may be reorganised: time what is there
    saved = [getattr(mod, name) for mod, name in patched]

    def timed(fn, key):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t
        return run

    for (mod, name), fn in zip(patched, saved):
        setattr(mod, name, timed(fn, name))
    try:
        yield
    finally:
        for (mod, name), fn in zip(patched, saved):
            setattr(mod, name, fn)


def settings_at(output: int) -> dict:
    """The cache settings training uses for a default setup at this output resolution."""
    from focusing.core.config import Setup, load_defaults
    from focusing.core.data.records import cache_settings

    if output % 4:
        raise SystemExit(f"--output must be 4x the latent resolution, got {output}")
    cfg = load_defaults()
    cfg["model"]["latent_resolution"] = output // 4
    return cache_settings(Setup.from_dict(cfg))


def time_record(path: Path, settings: dict, old, repeat: int) -> tuple[dict, torch.Tensor]:
    """Fastest of `repeat` build_record runs: seconds per stage, and the TSDF values [M]."""
    from focusing.core.data.records import build_record

    best = None
    for _ in range(repeat):
        seconds: dict[str, float] = {}
        with geometry_code(old), stage_timers(seconds):
            t = time.perf_counter()
            record = build_record(path, settings)
            seconds["total"] = time.perf_counter() - t
        if best is None or seconds["total"] < best["total"]:
            best = seconds
    return best, record.tsdf_values


def ceiling(views: int, image: int, old, latent: int = 32) -> float:
    """F@0.005 of FlexiCubes on fandisk's TSDF target at output 4 * latent
    (benchmarks/vae_target_ceiling.py's 'training target' rows, same construction)."""
    from focusing.core.geometry import tsdf
    from focusing.core.geometry.camera import orbit_cameras
    from focusing.core.geometry.mesh import Mesh, normalize_mesh
    from focusing.core.geometry.meshio import load_mesh
    from focusing.core.geometry.raycast import raycast
    from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
    from focusing.core.metrics import evaluate
    from focusing.core.sparseflex.field import field_from_corner_sdf
    from focusing.core.sparseflex.flexicubes import extract_mesh

    mesh, _, _ = normalize_mesh(load_mesh(ROOT / "examples/meshes/fandisk.off", normalize=False))
    out = 4 * latent
    vox = 1 / out
    act = dilate_voxels(surface_voxels(mesh, latent), latent)
    off = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    kids = (act[:, None, :] * 4 + off[None]).reshape(-1, 3)
    cams = orbit_cameras(views, fov_y_deg=55.0, width=image, height=image)
    v = torch.as_tensor(mesh.vertices)
    f = torch.as_tensor(mesh.faces, dtype=torch.long)
    depths = torch.stack([raycast(v, f, c).depth for c in cams])
    with geometry_code(old):
        field = field_from_corner_sdf(
            kids, out, lambda pos, b: tsdf.surface_tsdf(mesh, pos, cams, depths, 2 * vox,
                                                        sign_band=0.5 * vox))
    m = extract_mesh(field)
    r = evaluate(Mesh(m.vertices.double().numpy(), m.faces.numpy(), None), mesh, n_points=100000)
    return float(r["fscore"])


def machine() -> dict:
    with open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh
                    if line.startswith("model name")), platform.processor())
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", GEOMETRY],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu, "cpus": os.cpu_count(),
            "torch": torch.__version__, "libigl": version("libigl"),
            "rev": rev + (" + uncommitted geometry changes" if dirty else "")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("meshes", nargs="*", type=Path)
    ap.add_argument("--output", type=int, default=256, help="output resolution (4x latent)")
    ap.add_argument("--old-rev", default=OLD_REV, help="git revision of the old geometry code")
    ap.add_argument("--no-old", action="store_true", help="time the new code only")
    ap.add_argument("--repeat", type=int, default=1, help="runs per mesh and side; the fastest")
    ap.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: first)")
    ap.add_argument("--ceiling", action="store_true", help="also fandisk's target-ceiling F")
    ap.add_argument("--ceiling-only", action="store_true", help="only the target-ceiling F")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()

    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    meshes = args.meshes or sorted((ROOT / "examples/meshes").glob("*.off")) + \
        sorted((ROOT / "examples/meshes-eval").glob("*.off"))
    old = None if args.no_old else load_old(args.old_rev)
    info = machine() | {"pinned_cpu": cpu, "output": args.output, "old_rev": args.old_rev,
                        "load_before": os.getloadavg()}
    print(" ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    results: dict = {"machine": info, "meshes": {}, "ceiling": {}}

    if not args.ceiling_only:
        settings = settings_at(args.output)
        print(f"settings {settings}")
        print(f"{'mesh':22s} {'side':4s} {'total s':>8s} {'tsdf_target':>11s} "
              f"{'surface_tsdf':>12s} {'corners':>9s} {'max|dT|':>9s}", flush=True)
        for path in meshes:
            row = {}
            sides = [("new", None)] if old is None else [("old", old), ("new", None)]
            values = {}
            for side, code in sides:
                sec, values[side] = time_record(Path(path), settings, code, args.repeat)
                row[side] = sec
                diff = ""
                if side == "new" and "old" in values:
                    diff = f"{float((values['new'] - values['old']).abs().max()):9.2e}"
                    row["max_abs_target_change"] = float(diff)
                print(f"{Path(path).stem:22s} {side:4s} {sec['total']:8.2f} "
                      f"{sec.get('tsdf_target', float('nan')):11.2f} "
                      f"{sec.get('surface_tsdf', float('nan')):12.2f} {len(values[side]):9d} "
                      f"{diff:>9s}", flush=True)
            results["meshes"][Path(path).stem] = row
        for side in ("old", "new"):
            totals = [r[side]["total"] for r in results["meshes"].values() if side in r]
            if totals:
                med = statistics.median(totals)
                results[f"median_s_{side}"] = med
                print(f"median seconds per asset, {side}: {med:.2f} over {len(totals)} meshes"
                      + (f" (D1 goal: <= 5 s: {'met' if med <= 5 else 'not met'})"
                         if side == "new" else ""))

    if args.ceiling or args.ceiling_only:
        for views, image in [(8, 96), (8, 128)]:
            for side, code in ([("new", None)] if old is None else [("old", old), ("new", None)]):
                t = time.perf_counter()
                fscore = ceiling(views, image, code)
                results["ceiling"][f"{side} {views}x{image}"] = fscore
                print(f"fandisk target ceiling, {views} views at {image}^2, {side}: "
                      f"F@0.005 {fscore:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)

    results["machine"]["load_after"] = os.getloadavg()
    print(f"load_after={results['machine']['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
