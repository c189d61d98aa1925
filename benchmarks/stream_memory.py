"""Goal D3: training reads a prepared set of 2,000 records with a process RSS within 15% of the
same training on 20 records.

Why: a set larger than memory must train with flat memory. Records are streamed (read one at a
time, read ahead by DataLoader workers: core.data.streaming.StepRecords), so the training
process should hold the same few records whatever the size of the set; what grows with it is
only the list of shapes (names, paths, sizes).

How: the seed meshes (default: couplingdown) are prepared once with the setup (`focusing
prepare`'s prepare_dataset). Each large set is then built from those records, not prepared:
every record is an exact transform of a seed record by one of the 24 rotations of the cube
(signed permutations of the axes with determinant +1): vertices, points and normals permuted
and negated, voxel and TSDF-corner indices mirrored as i -> R-1-i and c -> 4R-c, faces and
TSDF values unchanged (a rotation keeps orientation and distance), the TSDF views' cameras
turned with the shape so that their depth maps stay exact, the normalisation centre turned.
(Checked against build_record on turned copies of couplingdown: the same vertices, points,
voxels at R, 2R, 4R and TSDF corners, TSDF values within 1e-16.) So a set of N records holds
24 x seeds distinct records; the rest are hard links to them (copies where links fail) under
names of their own, each its own manifest line. Each training run is a fresh process
(`--child`): FOCUSING_STREAM_BYTES=0 streams both sets, the run trains --steps steps and
reports its peak RSS (getrusage ru_maxrss: the training process; the DataLoader workers' peak
separately, RUSAGE_CHILDREN) and the engine's per-step peak.

With one seed mesh every step costs the same whatever records it draws, so the two runs differ
only in the set. With several, both sets cycle through the seeds in the same proportions, but
a few steps may draw different seeds.

Run: hatch run python benchmarks/stream_memory.py [--records 2000 20] [--steps 20]
         [--meshes couplingdown ...] [--setup focusing] [--set key=value ...] [--work DIR]
         [--json FILE]
Smoke run (2026-12-06, 2-core box shared with other jobs, tests/train's TINY settings with
2048 points, 32-pixel views and render-free steps, 3 steps): 60 records 429.2 MiB, 4 records
429.6 MiB, ratio 0.999; the DataLoader workers peaked at 263 MiB each time. Not D3's figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MESHES = ROOT / "examples" / "meshes"
TARGET = 0.15  # D3: the large set's peak RSS within 15% of the small set's


# -- the 24 rotations of the cube, applied to a record exactly ------------------------------
def cube_rotations() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The 24 proper rotations as (perm, sign): new axis i = sign[i] * old axis perm[i]."""
    out = []
    for perm in itertools.permutations(range(3)):
        for sign in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[range(3), perm] = sign
            if np.linalg.det(matrix) > 0:
                out.append((perm, sign))
    return out


def _matrix(perm, sign) -> np.ndarray:
    matrix = np.zeros((3, 3))
    matrix[range(3), perm] = sign
    return matrix


def _vectors(x: torch.Tensor, perm, sign) -> torch.Tensor:
    """Points or directions [N,3] rotated (exact: a permutation and negations)."""
    return x[:, list(perm)] * torch.tensor(sign, dtype=x.dtype)


def _cells(idx: torch.Tensor, perm, sign, top: int) -> torch.Tensor:
    """Integer grid indices [N,3] in [0, top] rotated about the grid's centre, sorted (x,y,z)."""
    out = idx[:, list(perm)].clone()
    for axis, s in enumerate(sign):
        if s < 0:
            out[:, axis] = top - out[:, axis]
    return out


def _sort_key(idx: torch.Tensor, top: int) -> torch.Tensor:
    n = top + 1
    return (idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2]


def rotate_record(record, perm, sign, settings: dict):
    """The record of the shape turned by the rotation (perm, sign), as build_record would give
    it for the turned mesh (exactly: every field is permuted, negated or mirrored)."""
    from focusing.core.data.records import ShapeRecord

    r = settings["resolutions"][0]
    active = {}
    for res, act in record.active.items():
        cells = _cells(act, perm, sign, res - 1)
        active[res] = cells[torch.argsort(_sort_key(cells, res - 1))]
    corners = _cells(record.tsdf_corners, perm, sign, 4 * r)
    order = torch.argsort(_sort_key(corners, 4 * r))
    rotation = np.eye(4)
    rotation[:3, :3] = _matrix(perm, sign).T  # world -> view of the turned shape: W @ R^-1
    cameras = [{**cam, "world_to_view": (np.asarray(cam["world_to_view"]) @ rotation).tolist()}
               for cam in record.tsdf_cameras]
    return ShapeRecord(
        name=record.name, vertices=_vectors(record.vertices, perm, sign), faces=record.faces,
        points=_vectors(record.points, perm, sign), normals=_vectors(record.normals, perm, sign),
        active=active, tsdf_cameras=cameras, tsdf_depths=record.tsdf_depths,
        tsdf_corners=corners[order], tsdf_values=record.tsdf_values[order],
        center=_matrix(perm, sign) @ np.asarray(record.center, np.float64),
        scale=record.scale)


# -- building the sets ------------------------------------------------------------------------
def prepare_seeds(meshes: list[str], setup, work: Path) -> Path:
    """The seed meshes prepared into work/seeds (reused when done)."""
    from focusing.core.data.prepare import prepare_dataset

    folder = work / "seed-meshes"
    folder.mkdir(parents=True, exist_ok=True)
    for name in meshes:
        path = Path(name) if Path(name).suffix else MESHES / f"{name}.off"
        shutil.copy(path, folder / path.name)
    result = prepare_dataset(folder, work / "seeds", setup, workers=0, progress=False)
    if result.exit_code:
        raise SystemExit(f"the seed meshes did not prepare: {dict(result.reasons)}")
    return work / "seeds"


def build_set(seeds: Path, out: Path, n: int, setup) -> float:
    """A prepared set of n records at `out` from the seed set's records (see the module);
    the seconds it took."""
    from focusing.core.data.prepared import (
        ManifestWriter, prepared_shapes, read_info, read_record, record_file, write_info,
        write_record,
    )
    from focusing.core.data.records import cache_settings

    start = time.perf_counter()
    settings = cache_settings(setup)
    info = read_info(seeds)
    seed_records = [read_record(s.record) for s in prepared_shapes(seeds, settings)]
    rotations = cube_rotations()
    out.mkdir(parents=True)
    (out / "records").mkdir()
    writer = ManifestWriter(out)
    distinct: dict[tuple[int, int], Path] = {}
    total = 0
    for i in range(n):
        s, k = i % len(seed_records), (i // len(seed_records)) % len(rotations)
        name = f"{seed_records[s].name}-r{k:02d}-{i:05d}"
        source = str(out / "virtual" / f"{name}.off")  # no such file: built, not prepared
        record = out / record_file(source)
        if (s, k) in distinct:
            try:
                os.link(distinct[(s, k)], record)
            except OSError:
                shutil.copy(distinct[(s, k)], record)
        else:
            turned = rotate_record(seed_records[s], *rotations[k], settings)
            turned.name = name
            write_record(turned, record, {"settings_hash": info["settings_hash"],
                                          "source_sha256": f"{s}-{k}", "source": source})
            distinct[(s, k)] = record
        size = record.stat().st_size
        total += size
        writer.append({"source": source, "name": name, "record": record_file(source),
                       "status": "ok", "settings_hash": info["settings_hash"], "reason": None,
                       "error": None, "bytes": size, "seconds": {}, "sha256": f"{s}-{k}",
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    writer.close()
    write_info(out, {**info, "counts": {"shapes": n, "ok": n, "failed": 0},
                     "record_bytes": total})
    return time.perf_counter() - start


# -- one training run, in a fresh process -----------------------------------------------------
def child(dataset: str, run: str, steps: int, setup_name: str, overrides: list[str]) -> None:
    """Train `steps` steps on a streamed set; print one JSON line with the peaks."""
    from focusing.core.config import load_setup
    from focusing.core.vae.train.trainer import Trainer

    # the run's end calibrates on evaluation.calibration_meshes records: one, unless --set says
    setup = load_setup(setup_name, ["evaluation.calibration_meshes=1"] + overrides + [
        f"train.steps={steps}", "train.checkpoint_every=0", "train.eval_every=0"])
    start = time.perf_counter()
    trainer = Trainer(setup, Path(dataset), Path(run), progress=False)
    try:
        streamed, shapes = trainer.data.streamed, len(trainer.data)
        history = trainer.fit()
    finally:
        trainer.vae_step.records.close()
        trainer.close()
    kib = 1024.0
    print(json.dumps({
        "records": shapes, "streamed": streamed, "steps": len(history),
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib, 1),
        "workers_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                      / kib, 1),
        "step_peak_mib": round(max(r.peak_memory_mb for r in history), 1),
        "loss": [round(r.terms.get("total", float("nan")), 5) for r in history]}))


def measure(dataset: Path, run: Path, steps: int, setup: str, overrides: list[str]) -> dict:
    sets = [a for item in overrides for a in ("--set", item)]
    env = {**os.environ, "FOCUSING_STREAM_BYTES": "0"}
    out = subprocess.run([sys.executable, __file__, "--child", str(dataset), str(run), str(steps),
                          "--setup", setup, *sets], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"training on {dataset} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs=2, default=[2000, 20],
                        metavar=("LARGE", "SMALL"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--meshes", nargs="+", default=["couplingdown"],
                        help="seed meshes: example mesh names or paths")
    parser.add_argument("--setup", default="focusing")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work", type=Path, help="keep the sets and runs here (default: a "
                                                  "temporary folder, removed)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("DATASET", "RUN", "STEPS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.setup, args.overrides)
        return
    from focusing.core.config import load_setup

    setup = load_setup(args.setup, args.overrides)
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="stream-memory-")
        work = Path(tmp.name)
    try:
        t0 = time.perf_counter()
        seeds = prepare_seeds(args.meshes, setup, work)
        print(f"seed records: {len(args.meshes)} prepared in {time.perf_counter() - t0:.1f} s")
        rows = []
        for n in args.records:
            dataset = work / f"set-{n}"
            if dataset.exists():
                shutil.rmtree(dataset)
            built = build_set(seeds, dataset, n, setup)
            size = sum(p.stat().st_size for p in (dataset / "records").iterdir())
            print(f"set of {n} records built in {built:.1f} s ({size / 2**20:.0f} MiB of record "
                  "files, hard links counted each time)")
            run = work / f"run-{n}"
            if run.exists():
                shutil.rmtree(run)
            rows.append(measure(dataset, run, args.steps, args.setup, args.overrides))
        large, small = rows
        ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
        print(f"\n{'records':>8} {'steps':>6} {'peak RSS MiB':>13} {'workers MiB':>12} "
              f"{'step peak MiB':>14} {'seconds':>8}")
        for row in rows:
            print(f"{row['records']:>8} {row['steps']:>6} {row['peak_rss_mib']:>13.1f} "
                  f"{row['workers_peak_rss_mib']:>12.1f} {row['step_peak_mib']:>14.1f} "
                  f"{row['seconds']:>8.1f}")
        verdict = "met" if abs(ratio - 1) <= TARGET else "not met"
        print(f"peak RSS ratio {large['records']} / {small['records']} records: {ratio:.3f} "
              f"(D3 target: within {TARGET:.0%}: {verdict})")
        result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
                  "cpus": os.cpu_count(), "load": os.getloadavg(), "torch": torch.__version__,
                  "setup": args.setup, "overrides": args.overrides, "meshes": args.meshes,
                  "steps": args.steps, "rows": rows, "ratio": ratio, "target_met": verdict}
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
