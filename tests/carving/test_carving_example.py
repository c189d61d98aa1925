"""Carving as a library: the public API of focusing.carving behaves as its README says, and
examples/carving_in_another_vae/ (a VAE written outside the project) trains with it.

The example runs for 60 steps (seconds on one CPU thread, deterministic for its seed); over
five seeds its eval loss ended 20-35% below the all-free-space constant, so the 10% margin
asserted here tests learning, not noise.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _carving_helpers import active_xyz, mesh

from focusing.carving import ChainResult, build_selector, one_shape_voxels, run_selectors
from focusing.core.geometry import Camera, raycast
from focusing.core.plugin_system import VoxelSelector, get
from focusing.core.plugin_system.types import Selection
from focusing.core.sparse import SparseTensor

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "carving_in_another_vae" / "train.py"
RES = 16
STEPS = 60


def load_example():
    """The example's module, imported from its file (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("carving_example_train", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run():
    """One 60-step run of the example (seed 0) and its returned record."""
    return load_example().main(["--steps", str(STEPS), "--quiet", "--seed", "0"])


@pytest.fixture(scope="module")
def scene():
    """fandisk's dilated latent voxels at 16^3, a camera and its ground truth (64^2)."""
    m = mesh("fandisk")
    cam = Camera.looking_at((1.2, 0.9, 1.5), fov_y_deg=55.0, width=64, height=64,
                            near=0.5, far=4.0)
    voxels = one_shape_voxels(active_xyz("fandisk", RES), RES)
    return m, voxels, cam, raycast(m.vertices, m.faces, cam)


def render_of(m):
    return lambda camera: raycast(m.vertices, m.faces, camera)


# --- the example -------------------------------------------------------------------------------


def test_example_carving_keeps_fewer_voxels_and_only_those_are_decoded(run):
    assert len(run["losses"]) == STEPS
    for carved, zoomed, decoded, supervised in zip(
        run["carved"], run["zoomed"], run["decoded"], run["supervised"]
    ):
        assert 1 <= carved < run["all"]
        assert 1 <= zoomed <= carved
        assert decoded == 8 * zoomed  # the decoder ran on the kept latents only
        assert 1 <= supervised <= decoded


def test_example_loss_is_finite_and_decreases(run):
    losses = run["losses"]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert math.isfinite(run["eval_before"]) and math.isfinite(run["eval_after"])
    assert run["eval_after"] < run["eval_before"]
    # Beats predicting free space everywhere (where the model starts) by a clear margin.
    assert run["eval_after"] < 0.9 * run["free_space"]
    assert run["sign_after"] > run["sign_before"] + 0.02


def test_example_runs_as_a_script_and_prints_counts():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", "3"], capture_output=True, text=True,
        timeout=300, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 3
    for line in steps:
        kept, of = (int(w) for w in line.split("carving kept ")[1].split(",")[0].split(" of "))
        assert 1 <= kept < of
        assert "loss" in line and "zoom kept" in line
    assert "latent voxels per view on average" in proc.stdout.splitlines()[-1]


# --- the selector API as documented ------------------------------------------------------------


def test_selectors_are_reached_by_name():
    for name in ("all", "frustum", "far-plane", "depth-carving", "depth-carving-tight", "zoom"):
        cls = get("voxel_selector", name)
        assert issubclass(cls, VoxelSelector) and cls.name == name
    sel = build_selector("zoom", n_min=8, n_max=16, s=1.2)
    assert isinstance(sel, get("voxel_selector", "zoom"))
    assert (sel.n_min, sel.n_max, sel.s) == (8, 16, 1.2)


def test_depth_carving_returns_sorted_rows_and_the_same_camera(scene):
    _, voxels, cam, gt = scene
    s = build_selector("depth-carving").select(voxels, cam, gt, np.random.default_rng(0))
    assert isinstance(s, Selection)
    n = len(voxels)
    assert s.index.dtype == torch.long and s.index.ndim == 1
    assert 0 < s.index.numel() < n
    assert bool((s.index[1:] > s.index[:-1]).all()) and int(s.index.max()) < n
    assert s.camera is cam and s.camera_changed is False


def test_selectors_read_coordinates_only(scene):
    _, voxels, cam, gt = scene
    feats = torch.randn(len(voxels), 5)
    with_feats = SparseTensor(voxels.coords, feats, RES)
    for name in ("depth-carving", "zoom"):
        a = build_selector(name).select(voxels, cam, gt, np.random.default_rng(3))
        b = build_selector(name).select(with_feats, cam, gt, np.random.default_rng(3))
        assert torch.equal(a.index, b.index)


def test_zoom_changes_the_camera_and_the_chain_re_renders(scene):
    m, voxels, cam, gt = scene
    carve, zoom = build_selector("depth-carving"), build_selector("zoom", n_min=16, n_max=32)
    # By hand: zoom runs on what carving kept; its rows index carving's output.
    c = carve.select(voxels, cam, gt, np.random.default_rng(1))
    z = zoom.select(voxels.index_select(c.index), cam, gt, np.random.default_rng(1))
    assert z.camera_changed and z.camera is not cam
    assert (z.camera.width, z.camera.height) == (cam.width, cam.height)
    assert not torch.equal(z.camera.projection, cam.projection)
    # The helper does the same, composes the rows and re-renders the ground truth.
    out = run_selectors([carve, zoom], voxels, cam, gt, np.random.default_rng(1),
                        render=render_of(m))
    assert isinstance(out, ChainResult)
    assert torch.equal(out.index, c.index[z.index])
    assert bool((out.index[1:] > out.index[:-1]).all())
    assert out.kept == [c.index.numel(), z.index.numel()]
    assert out.camera_changed and torch.equal(out.camera.projection, z.camera.projection)
    assert torch.equal(out.ground_truth.depth, raycast(m.vertices, m.faces, z.camera).depth)
    assert torch.equal(out.voxels.coords, voxels.coords[out.index])


def test_chain_by_name_carries_features_and_keeps_the_camera_without_zoom(scene):
    _, voxels, cam, gt = scene
    feats = torch.arange(len(voxels), dtype=torch.float32)[:, None]
    out = run_selectors(["depth-carving"], SparseTensor(voxels.coords, feats, RES), cam, gt, 0)
    assert out.camera is cam and out.ground_truth is gt and not out.camera_changed
    assert torch.equal(out.voxels.feats[:, 0].long(), out.index)


def test_chain_errors_are_explicit(scene):
    _, voxels, cam, gt = scene
    with pytest.raises(ValueError, match="changed the camera"):
        run_selectors(["depth-carving", "zoom"], voxels, cam, gt, 0)
    with pytest.raises(ValueError, match="re-render the ground truth"):
        build_selector("depth-carving").select(voxels, cam.with_size(32, 32), gt, None)
    with pytest.raises(TypeError, match="SparseTensor"):
        run_selectors(["all"], voxels.coords, cam, gt, 0)
    with pytest.raises(ValueError, match=r"\[N,3\]"):
        one_shape_voxels(torch.zeros(4, 4, dtype=torch.long), RES)
    with pytest.raises(ValueError, match="integers"):
        one_shape_voxels(torch.zeros(4, 3), RES)
