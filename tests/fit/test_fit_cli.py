"""`focusing fit` from the command line: writes the mesh, prints JSON with the metric keys that
`focusing eval` would give for the written file, and rejects bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer

from focusing.core import cli
from typer.testing import CliRunner

from meshdata import mesh_file
from focusing.core.metrics import METRIC_KEYS, evaluate

BAD = Path(__file__).resolve().parents[1] / "data" / "bad_meshes"
SMALL = ["--res", "16", "--steps", "5", "--views", "8", "--image-size", "32", "--points", "5000"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The `focusing` app, with every registered command (focusing-eval's among them)."""
    return cli.get_app()


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(app, *args):
    return CliRunner().invoke(app, ["fit", *map(str, args)])


def test_cli_writes_mesh_and_json_matching_eval(app, tmp_path):
    out = tmp_path / "fit.ply"
    res = _run(app, mesh_file("fandisk"), *SMALL, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert out.exists()
    for key in ("seconds", "peak_mb", "steps", "resolution", "renderer", "num_voxels"):
        assert key in summary
    assert summary["steps"] == 5 and summary["resolution"] == 16
    assert set(METRIC_KEYS) <= set(summary["metrics"])
    # What `focusing eval OUT SOURCE` computes from the written file (same seed and samples).
    again = evaluate(out, mesh_file("fandisk"), n_points=5000, tau=0.005, seed=0)
    for key in ("chamfer_l2", "fscore", "floor_fscore"):
        assert summary["metrics"][key] == pytest.approx(again[key], rel=1e-3, abs=1e-6)


def test_cli_table_output(app, tmp_path):
    out = tmp_path / "fit.obj"
    res = _run(app, mesh_file("fandisk"), *SMALL, "--out", out, "--renderer", "torch")
    assert res.exit_code == 0, res.output
    assert "chamfer_l2" in res.stdout and "renderer torch" in res.stdout
    assert out.exists()


@pytest.mark.parametrize("name", ["garbage.off", "point_cloud.off", "nan_vertex.off", "empty.obj"])
def test_cli_bad_mesh_exits_2_and_writes_nothing(app, tmp_path, name):
    out = tmp_path / "fit.ply"
    res = _run(app, BAD / name, *SMALL, "--out", out)
    assert res.exit_code == 2, res.output
    assert name in res.stderr and "error:" in res.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--renderer", "no-such-renderer"], "no-such-renderer"),
        (["--res", "1"], "resolution"),
        (["--image-size", "0"], "image_size"),
    ],
)
def test_cli_bad_options_exit_2_and_write_nothing(app, tmp_path, extra, needle):
    out = tmp_path / "fit.ply"
    res = _run(app, mesh_file("fandisk"), *SMALL, *extra, "--out", out)
    assert res.exit_code == 2, res.output
    assert needle in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_file_and_bad_out_folder(app, tmp_path):
    res = _run(app, tmp_path / "nope.off", *SMALL, "--out", tmp_path / "a.ply")
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = _run(app, mesh_file("fandisk"), *SMALL, "--out", tmp_path / "no" / "a.ply")
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = _run(app, mesh_file("fandisk"), *SMALL, "--out", tmp_path / "a.xyz")
    assert res.exit_code == 2 and "format" in res.stderr
    assert list(tmp_path.iterdir()) == []
