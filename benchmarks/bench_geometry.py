"""Surface voxelisation and dilation on a real scan at 256^3 to 1024^3 (pytest-benchmark).

Run: hatch run bench benchmarks/bench_geometry.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from meshdata import mesh_file  # noqa: E402

from focusing.core.geometry.meshio import load_mesh  # noqa: E402
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels  # noqa: E402


@pytest.fixture(scope="module")
def armadillo():
    return load_mesh(mesh_file("armadillo"))


@pytest.mark.parametrize("resolution", [256, 512, 1024])
def test_surface_voxels(benchmark, armadillo, resolution):
    coords = benchmark.pedantic(surface_voxels, args=(armadillo, resolution), rounds=1,
                                iterations=1)
    benchmark.extra_info["voxels"] = int(len(coords))
    assert len(coords) > 0


@pytest.mark.parametrize("resolution", [256, 1024])
def test_dilate_voxels(benchmark, armadillo, resolution):
    coords = surface_voxels(armadillo, resolution)
    out = benchmark.pedantic(dilate_voxels, args=(coords, resolution), rounds=1, iterations=1)
    benchmark.extra_info["voxels"] = int(len(out))
    assert len(out) > len(coords)
