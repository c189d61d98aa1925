"""`focusing eval` on real meshes: the acceptance check against an independent computation,
JSON keys, folder pairing and reports, and clear errors for bad meshes (exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh
import typer

from focusing.core import cli
from typer.testing import CliRunner

from meshdata import mesh_file
from focusing.core.plugin_system import get_registry
from focusing.eval.cli.evaluate import eval_command
from focusing.core.metrics import METRIC_KEYS, RESULT_KEYS, evaluate

EXPECTED_KEYS = {
    "chamfer_l2", "chamfer_l1", "fscore", "precision", "recall", "tau",
    "normal_consistency", "n_points", "floor_chamfer_l2", "floor_fscore", "convention",
}


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The `focusing` app, with every registered command (focusing-eval's among them)."""
    return cli.get_app()


def _run(app, *args: str):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


# ---------------------------------------------------------------- independent computation
# Written apart from focusing.eval and focusing.core.geometry: trimesh loading, its own
# sampler (sqrt-barycentric), brute-force float64 distances over grid-bucketed candidates.


def _independent_samples(tm: trimesh.Trimesh, centre, scale, n: int, seed: int):
    rng = np.random.default_rng(seed)
    tri = (np.asarray(tm.vertices)[np.asarray(tm.faces)] - centre) * scale
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    face = rng.choice(len(tri), size=n, p=area / area.sum())
    s, t = np.sqrt(rng.random(n))[:, None], rng.random(n)[:, None]
    t0, t1, t2 = tri[face, 0], tri[face, 1], tri[face, 2]
    points = (1 - s) * t0 + s * (1 - t) * t1 + s * t * t2
    normals = cross[face] / np.linalg.norm(cross[face], axis=1, keepdims=True)
    return points, normals


def _brute_force_nn(query: np.ndarray, ref: np.ndarray, cell: float = 0.02):
    """Exact NN by cdist against the reference points of the 27 grid cells around each query's
    cell; a query whose best distance exceeds `cell` (a farther cell might then hold a closer
    point) is redone against every reference point."""
    offset = int(np.ceil(1.0 / cell)) + 4
    base = 2 * offset + 2

    def keys(cells):  # grid cell (i, j, k) -> one int64, valid for points in [-1, 1]^3
        c = cells + offset
        return (c[:, 0] * base + c[:, 1]) * base + c[:, 2]

    qc, rc = np.floor(query / cell).astype(np.int64), np.floor(ref / cell).astype(np.int64)
    ref_order = np.argsort(keys(rc), kind="stable")
    ref_keys = keys(rc)[ref_order]
    cells, inverse = np.unique(qc, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    q_order = np.argsort(inverse, kind="stable")
    q_bounds = np.searchsorted(inverse[q_order], np.arange(len(cells) + 1))
    step = [-1, 0, 1]
    shifts = np.stack(np.meshgrid(step, step, step, indexing="ij"), -1).reshape(27, 3)
    nb = keys((cells[:, None, :] + shifts[None]).reshape(-1, 3)).reshape(len(cells), 27)
    lo, hi = np.searchsorted(ref_keys, nb, "left"), np.searchsorted(ref_keys, nb, "right")
    dist = np.full(len(query), np.inf)
    idx = np.zeros(len(query), dtype=np.int64)
    for c in range(len(cells)):
        near = np.concatenate([ref_order[a:b] for a, b in zip(lo[c], hi[c])])
        if near.size == 0:
            continue
        q_ids = q_order[q_bounds[c]:q_bounds[c + 1]]
        d2 = ((query[q_ids, None, :] - ref[None, near, :]) ** 2).sum(-1)
        arg = d2.argmin(axis=1)
        dist[q_ids], idx[q_ids] = np.sqrt(d2[np.arange(len(q_ids)), arg]), near[arg]
    ref_t = torch.from_numpy(ref)
    far = np.flatnonzero(dist > cell)
    for start in range(0, len(far), 256):
        ids = far[start:start + 256]
        d = torch.cdist(torch.from_numpy(query[ids]), ref_t,
                        compute_mode="donot_use_mm_for_euclid_dist")
        best, arg = d.min(dim=1)
        dist[ids], idx[ids] = best.numpy(), arg.numpy()
    return dist, idx


def _independent_metrics(pred_path, gt_path, n: int, tau: float, seed: int) -> dict:
    pred = trimesh.load(str(pred_path), process=False, force="mesh")
    gt = trimesh.load(str(gt_path), process=False, force="mesh")
    used = np.asarray(gt.vertices)[np.unique(np.asarray(gt.faces))]
    lo, hi = used.min(0), used.max(0)
    centre, scale = (lo + hi) / 2, 1.0 / (hi - lo).max()
    p, pn = _independent_samples(pred, centre, scale, n, seed)
    g, gn = _independent_samples(gt, centre, scale, n, seed + 1)
    r, _ = _independent_samples(gt, centre, scale, n, seed + 2)

    def both(a, an, b, bn):
        d_ab, i_ab = _brute_force_nn(a, b)
        d_ba, i_ba = _brute_force_nn(b, a)
        prec, rec = np.mean(d_ab < tau), np.mean(d_ba < tau)
        out = {
            "chamfer_l2": np.mean(d_ab**2) + np.mean(d_ba**2),
            "chamfer_l1": np.mean(d_ab) + np.mean(d_ba),
            "precision": prec, "recall": rec, "fscore": 2 * prec * rec / (prec + rec),
        }
        if an is not None:
            out["normal_consistency"] = 0.5 * (np.mean(np.abs(np.sum(an * bn[i_ab], 1)))
                                               + np.mean(np.abs(np.sum(bn * an[i_ba], 1))))
        return out

    main = both(p, pn, g, gn)
    floor = both(r, None, g, None)
    return {**main, "floor_chamfer_l2": floor["chamfer_l2"], "floor_fscore": floor["fscore"]}


def _shifted_copy(src, dst, fraction: float) -> float:
    """Write src translated along x by `fraction` of its largest extent to dst; return the shift."""
    tm = trimesh.load(str(src), process=False, force="mesh")
    extent = float((tm.vertices.max(0) - tm.vertices.min(0)).max())
    moved = np.asarray(tm.vertices) + [fraction * extent, 0, 0]
    shifted = trimesh.Trimesh(moved, tm.faces, process=False)
    shifted.export(str(dst))
    return fraction * extent


def test_acceptance_shifted_copy_agrees_with_independent_computation(tmp_path):
    """`focusing eval` (the real console entry, default 100k points) on fandisk against a copy
    shifted by 0.3 % of its size agrees within 5 % with the independent computation."""
    gt = mesh_file("fandisk")
    pred = tmp_path / "fandisk_shifted.ply"
    _shifted_copy(gt, pred, 0.003)
    proc = subprocess.run(
        [sys.executable, "-m", "focusing.core.cli", "eval", str(pred), str(gt), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert set(got) == EXPECTED_KEYS
    assert got["n_points"] == 100_000 and got["tau"] == 0.005
    ref = _independent_metrics(pred, gt, n=100_000, tau=0.005, seed=1000)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=0.05), key
    # The shift is visible above the sampling floor: a shift delta along x adds (delta n_x)^2
    # per sample to the squared NN distance, so ~2 delta^2 E_area[n_x^2] to CD L2 (in units of
    # the largest extent). It is ~25 % of CD here, so the noise of CD and floor (0.5 % each)
    # is ~3 % of it; the crease lines shorten a few distances (~2 %): 10 % in all.
    tm = trimesh.load(str(gt), process=False, force="mesh")
    nx2 = float(np.sum(tm.area_faces * tm.face_normals[:, 0] ** 2) / tm.area)
    excess = got["chamfer_l2"] - got["floor_chamfer_l2"]
    assert excess == pytest.approx(2 * 0.003**2 * nx2, rel=0.1)


# ---------------------------------------------------------------- single pair


def test_json_keys_and_values(app, tmp_path):
    gt = mesh_file("camel")
    pred = tmp_path / "camel.obj"
    _shifted_copy(gt, pred, 0.01)
    res = _run(app, pred, gt, "--json", "--points", 3000, "--tau", 0.01, "--seed", 4)
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    assert set(got) == EXPECTED_KEYS == set(RESULT_KEYS)
    assert list(got)[:len(METRIC_KEYS)] == list(METRIC_KEYS)
    assert got == evaluate(pred, gt, n_points=3000, tau=0.01, seed=4)
    assert got["n_points"] == 3000 and got["tau"] == 0.01
    assert got["chamfer_l2"] > got["floor_chamfer_l2"]


def test_table_output_names_metrics_and_floor(app):
    gt = mesh_file("fandisk")
    res = _run(app, gt, gt, "--points", 2000)
    assert res.exit_code == 0, res.stderr
    for word in ("chamfer_l2", "chamfer_l1", "fscore", "normal_consistency", "sampling floor"):
        assert word in res.stdout
    expected = evaluate(gt, gt, n_points=2000)
    assert f"{expected['chamfer_l2']:.4e}" in res.stdout


def _write_bad(path, kind: str):
    if kind == "nan":
        path.write_text("OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n")
    elif kind == "points":
        path.write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    elif kind == "index":
        path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    return path


@pytest.mark.parametrize(
    "kind, fault", [("nan", "NaN"), ("points", "no faces"), ("index", "index")])
def test_bad_mesh_single_pair_exit_2_nothing_written(app, tmp_path, kind, fault):
    bad = _write_bad(tmp_path / f"bad_{kind}.off", kind)
    out = tmp_path / "report.json"
    res = _run(app, bad, mesh_file("fandisk"), "--points", 500, "--out", out)
    assert res.exit_code == 2
    assert "bad_" + kind + ".off" in res.stderr and fault in res.stderr
    assert res.stdout == ""
    assert list(tmp_path.iterdir()) == [bad]


def test_bad_arguments(app, tmp_path):
    fandisk = mesh_file("fandisk")
    res = _run(app, fandisk, tmp_path)
    assert res.exit_code == 2 and "both" in res.stderr
    res = _run(app, fandisk, fandisk, "--out", tmp_path / "r.txt")
    assert res.exit_code == 2 and ".json" in res.stderr
    res = _run(app, fandisk, fandisk, "--tau", 0)
    assert res.exit_code == 2 and "tau" in res.stderr
    res = _run(app, tmp_path / "missing.off", fandisk)
    assert res.exit_code == 2 and "does not exist" in res.stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- folders


@pytest.fixture
def folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    shutil.copy(mesh_file("fandisk"), pred / "fandisk.off")
    shutil.copy(mesh_file("fandisk"), gt / "fandisk.off")
    _shifted_copy(mesh_file("camel"), pred / "camel.ply", 0.01)  # paired by stem across formats
    shutil.copy(mesh_file("camel"), gt / "camel.off")
    shutil.copy(mesh_file("couplingdown"), pred / "only_pred.off")
    shutil.copy(mesh_file("couplingdown"), gt / "only_gt.off")
    (gt / "notes.txt").write_text("not a mesh\n")
    return pred, gt


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_folder_pairing_report(app, folders, tmp_path, suffix):
    pred, gt = folders
    out = tmp_path / f"report{suffix}"
    res = _run(app, pred, gt, "--json", "--points", 1500, "--tau", 0.01, "--out", out)
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert [r["name"] for r in report["pairs"]] == ["camel", "fandisk"]
    for row in report["pairs"]:
        want = evaluate(row["pred"], row["gt"], n_points=1500, tau=0.01, seed=0)
        assert {k: row[k] for k in METRIC_KEYS} == {k: want[k] for k in METRIC_KEYS}
    assert report["pairs"][0]["pred"] == str(pred / "camel.ply")
    for k in METRIC_KEYS:
        values = [r[k] for r in report["pairs"]]
        assert report["mean"][k] == pytest.approx(np.mean(values), rel=1e-12)
    # Unpaired files are reported, in the report and on stderr.
    assert report["unpaired"] == {
        "pred": [str(pred / "only_pred.off")], "gt": [str(gt / "only_gt.off")]}
    assert "only_pred" in res.stderr and "only_gt" in res.stderr and "notes.txt" in res.stderr
    # The file holds the same numbers; the write left no temp file behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pred", "gt", out.name])
    if suffix == ".json":
        assert json.loads(out.read_text()) == report
    else:
        rows = list(csv.DictReader(out.open()))
        assert [r["name"] for r in rows] == ["camel", "fandisk", "mean"]
        for row, want in zip(rows, report["pairs"] + [report["mean"]]):
            for k in METRIC_KEYS:
                assert float(row[k]) == want[k], k


def test_folder_table_has_mean_row(app, folders):
    pred, gt = folders
    res = _run(app, pred, gt, "--points", 1000)
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any("camel" in line for line in lines) and any("fandisk" in line for line in lines)
    assert any("mean" in line for line in lines)


def test_folder_with_bad_mesh_exit_2_nothing_written(app, folders, tmp_path):
    pred, gt = folders
    _write_bad(gt / "camel.off", "nan")
    out = tmp_path / "report.csv"
    res = _run(app, pred, gt, "--points", 500, "--out", out)
    assert res.exit_code == 2
    assert "camel.off" in res.stderr and "NaN" in res.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt", "pred"]


def test_folders_without_common_stems(app, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(mesh_file("fandisk"), tmp_path / "a" / "x.off")
    shutil.copy(mesh_file("fandisk"), tmp_path / "b" / "y.off")
    res = _run(app, tmp_path / "a", tmp_path / "b")
    assert res.exit_code == 2 and "no mesh file stems in common" in res.stderr


def test_eval_is_registered_through_the_entry_point():
    entry = get_registry("command").entry("eval")
    assert entry.obj is eval_command
    assert entry.distribution == "focusing-eval"


# ---------------------------------------------------------------- odd meshes and paths


def _fandisk_vertices() -> int:
    return int(mesh_file("fandisk").read_text().split()[1])


def _fandisk_plus(path, extra_vertices: list[str], extra_faces: list[str]):
    """fandisk.off with vertices and faces appended (header counts updated)."""
    lines = [s for s in mesh_file("fandisk").read_text().splitlines() if s.strip()]
    nv, nf, ne = (int(x) for x in lines[1].split())
    body = (["OFF", f"{nv + len(extra_vertices)} {nf + len(extra_faces)} {ne}"]
            + lines[2 : 2 + nv] + extra_vertices + lines[2 + nv : 2 + nv + nf] + extra_faces)
    path.write_text("\n".join(body) + "\n")
    return path, nv


def test_far_zero_area_face_in_gt_gives_the_real_score(app, tmp_path):
    # Today's failure: the stray face set the box, so camel vs fandisk scored F=1, NC=1.
    n = _fandisk_vertices()
    stray, _ = _fandisk_plus(tmp_path / "fandisk_stray.off",
                             ["1000 1000 1000", "1001 1001 1001", "1002 1002 1002"],
                             [f"3 {n} {n + 1} {n + 2}"])
    res = _run(app, mesh_file("camel"), stray, "--json", "--points", 3000)
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    want = evaluate(mesh_file("camel"), mesh_file("fandisk"), n_points=3000)
    assert {k: got[k] for k in METRIC_KEYS} == {k: want[k] for k in METRIC_KEYS}
    assert got["fscore"] < 0.2 and got["normal_consistency"] < 0.9 and got["chamfer_l2"] > 1e-3
    # A far vertex no face uses, in the prediction, changes nothing either.
    pred, _ = _fandisk_plus(tmp_path / "pred_far.off", ["1e30 1e30 1e30"], [])
    same = evaluate(pred, mesh_file("fandisk"), n_points=3000)
    assert same == evaluate(mesh_file("fandisk"), mesh_file("fandisk"), n_points=3000)


@pytest.mark.parametrize("which", ["pred", "gt"])
def test_overflowing_coordinates_blame_the_right_file(app, tmp_path, which):
    n = _fandisk_vertices()
    huge, _ = _fandisk_plus(tmp_path / "huge.off", ["1e200 0 0"], [f"3 0 1 {n}"])
    good = mesh_file("fandisk")
    pred, gt = (huge, good) if which == "pred" else (good, huge)
    res = _run(app, pred, gt, "--points", 500)
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert str(huge) in res.stderr and str(good) not in res.stderr
    assert "coordinates too large" in res.stderr


def test_prediction_overflowing_in_the_gt_frame_names_the_prediction(app, tmp_path):
    gt = tmp_path / "tiny.off"
    gt.write_text("OFF\n3 1 0\n0 0 0\n1e-3 0 0\n0 1e-3 0\n3 0 1 2\n")
    pred = tmp_path / "far.off"
    pred.write_text("OFF\n3 1 0\n1e149 0 0\n1e149 1 0\n1e149 0 1\n3 0 1 2\n")
    res = _run(app, pred, gt, "--points", 100)
    assert res.exit_code == 2
    assert str(pred) in res.stderr and str(gt) not in res.stderr and "too large" in res.stderr


def test_out_under_a_file_and_odd_folder_entries(app, folders, tmp_path):
    pred, gt = folders
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    res = _run(app, pred, gt, "--points", 200, "--out", blocker / "r.json")
    assert res.exit_code == 2 and "is a file, not a folder" in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)
    # Hidden and ._ files and a folder named like a mesh: skipped by the train rule.
    (pred / "x.obj").mkdir()
    (gt / "._camel.off").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (gt / ".fandisk.off").write_bytes(b"junk")
    res = _run(app, pred, gt, "--json", "--points", 200)
    assert res.exit_code == 0, res.stderr
    assert [r["name"] for r in json.loads(res.stdout)["pairs"]] == ["camel", "fandisk"]
