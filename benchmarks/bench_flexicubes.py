"""Sparse FlexiCubes benchmark: extraction speed (active cubes per second) at 64^3, 128^3, 256^3.

Fields: real meshes' surface shells, i.e. the exact surface voxels of a normalised example mesh
(fandisk: CAD, armadillo: scan, mannequin-devil: open) dilated once (TripoSF's active set), with
corner SDF from `field_from_mesh` (signed distance to the mesh; for the 256^3 shells the
cheaper candidate search, `refine=False`, which changes no timing) and zero deformation / unit
weights. Cases per field:

- `extract (inference)`: extract_mesh(field, training=False), 2 triangles per quad, no grad;
- `extract (training)`: extract_mesh(field, training=True), 4 triangles per quad, no grad;
- `fwd+bwd (training)`: raw features [N,53] -> sparseflex_from_features (corner hashing
  included) -> extract_mesh(training=True) -> loss (sum of vertices + L_dev + consistency)
  -> backward to the features: what one training step pays for SparseFlex.

Run as a script to write benchmarks/results/flexicubes.md:
    .venv/bin/python benchmarks/bench_flexicubes.py [--repeats 5] [--threads 1,2]
or through pytest-benchmark:
    .venv/bin/pytest -p no:cacheprovider benchmarks/bench_flexicubes.py --benchmark-only
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import statistics
import time
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.sparseflex.field import (features_from_field, field_from_mesh,
                                            sparseflex_from_features)
from focusing.core.sparseflex.flexicubes import extract_mesh

REPO = Path(__file__).resolve().parents[1]
MESHES = ("fandisk", "armadillo", "mannequin-devil")
RESOLUTIONS = (64, 128, 256)


@lru_cache(maxsize=None)
def shell_field(name: str, resolution: int):
    """SparseFlexField on the mesh's surface voxels dilated once, corner SDF from the mesh."""
    mesh = load_mesh(REPO / "examples" / "meshes" / f"{name}.off")
    coords = dilate_voxels(surface_voxels(mesh, resolution), resolution)
    kwargs = {"refine": False, "candidates": 8} if resolution > 128 else {}
    return field_from_mesh(mesh, coords, resolution, **kwargs)


def case_fn(name: str, resolution: int, case: str):
    """A no-argument callable running one case once (the field is built beforehand)."""
    field = shell_field(name, resolution)
    if case == "extract (inference)":
        def run():
            with torch.no_grad():
                return extract_mesh(field, training=False)
    elif case == "extract (training)":
        def run():
            with torch.no_grad():
                return extract_mesh(field, training=True)
    elif case == "fwd+bwd (training)":
        feats0 = features_from_field(field)
        coords = field.coords

        def run():
            feats = feats0.clone().requires_grad_(True)
            f = sparseflex_from_features(feats, coords, field.resolution)
            out = extract_mesh(f, training=True)
            (out.vertices.sum() + out.l_dev + f.consistency_loss()).backward()
            return out
    else:
        raise ValueError(f"unknown case {case!r}")
    return run


CASES = ("extract (inference)", "extract (training)", "fwd+bwd (training)")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("name", ["fandisk", "armadillo"])
def test_flexicubes_extraction(benchmark, name, resolution, case):
    run = case_fn(name, resolution, case)
    out = benchmark(run)
    benchmark.extra_info["cubes"] = shell_field(name, resolution).num_voxels
    assert out.faces.shape[0] > 0


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def main() -> None:
    """Time every case and write benchmarks/results/flexicubes.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "flexicubes.md")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    build = {}
    for name in MESHES:
        for r in RESOLUTIONS:
            t = time.perf_counter()
            field = shell_field(name, r)
            build[name, r] = time.perf_counter() - t
            print(f"field {name} {r}^3: {field.num_voxels} cubes, built in {build[name, r]:.1f} s",
                  flush=True)
    lines = [
        "# Sparse FlexiCubes benchmark (extraction on real meshes' surface shells)",
        "",
        f"- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {platform.machine()}, {platform.platform()}, {torch.get_num_threads()} "
        f"default torch threads, torch {torch.__version__}; a shared CPU box with other jobs "
        "running, so absolute times drift",
        "- command: `.venv/bin/python benchmarks/bench_flexicubes.py "
        f"--repeats {args.repeats} --threads {args.threads}`",
        "- field: exact surface voxels of the normalised mesh dilated once; corner SDF = signed "
        "distance to the mesh (`field_from_mesh`); median of the repeats after one warm-up",
        "- cases: `inference` = extract_mesh(training=False) (2 tris/quad); "
        "`training` = extract_mesh(training=True) (4 tris/quad); `fwd+bwd` = features [N,53] -> "
        "field (corner hashing) -> extraction (training) -> backward",
        "",
    ]
    for nt in threads:
        torch.set_num_threads(nt)
        lines += [f"## {nt} torch thread{'s' if nt > 1 else ''}", "",
                  "| mesh | grid | cubes | faces (inference) | case | ms | cubes/s |",
                  "|---|---|---:|---:|---|---:|---:|"]
        for name in MESHES:
            for r in RESOLUTIONS:
                field = shell_field(name, r)
                nf = extract_mesh(field).faces.shape[0]
                for case in CASES:
                    ms = _median_ms(case_fn(name, r, case), args.repeats)
                    rate = field.num_voxels / (ms / 1000.0)
                    lines.append(f"| {name} | {r}^3 | {field.num_voxels} | {nf} | {case} | "
                                 f"{ms:.1f} | {rate / 1e6:.2f} M |")
                    print(lines[-1], flush=True)
        lines.append("")
    lines += ["Field construction (not timed above; `field_from_mesh`, exact SDF; 256^3 with "
              "`refine=False`):", "",
              "| mesh | grid | seconds |", "|---|---|---:|"]
    lines += [f"| {n} | {r}^3 | {s:.1f} |" for (n, r), s in build.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
