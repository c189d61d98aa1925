"""A tiny two-stage overfit on two example meshes, all through the `focusing` CLI in-process:
a shape VAE, the structure stage, the latent stage; `generate` writes a non-empty mesh,
the same one for the same seed; `eval-flow` reports every metric; `--resume` continues exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.geometry.meshio import load_mesh

from meshdata import mesh_file, mesh_folder

VAE_TINY = [
    "model.latent_resolution=8", "model.points_per_shape=2048", "cameras.image_size=32",
    "encoder.width=16", "encoder.depth=1", "encoder.heads=2", "encoder.window=4",
    "decoder.width=32", "decoder.depth=1", "decoder.heads=2", "decoder.window=4",
    "pointnet.hidden=16", "pointnet.out=16", "upsampler.channels=[16, 8]", "loss.tsdf_views=4",
    "train.checkpoint_every=0", "train.lr=5e-3", "loss.tsdf_steps=120",
]
# the latent flow must overfit the two shapes' latents well enough for the VAE (an empty field
# until its latents say otherwise) to decode a surface from a sample
LATENT_STEPS = ["train.steps=200"]
FLOW_TINY = [
    "views.count=2", "views.held_out=1", "views.render_size=64", "views.image_size=32",
    "encoder.params.width=16", "encoder.params.image_size=32", "encoder.params.levels=3",
    "structure_vae.channels=[8, 8]", "structure_vae.steps=30",
    "structure_flow.width=32", "structure_flow.depth=1", "structure_flow.heads=2",
    "latent_flow.width=32", "latent_flow.io_channels=8", "latent_flow.depth=1",
    "latent_flow.heads=2",
    "train.steps=30", "train.batch_size=2", "train.checkpoint_every=0", "train.lr=1e-3",
]


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(cli.get_app(), args)
    assert result.exit_code == 0, result.output
    return result.output


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flow")
    mp = pytest.MonkeyPatch()
    mp.setenv("FOCUSING_CACHE", str(root / "cache"))
    data = mesh_folder(root / "data", "couplingdown", "elephant-with-holes")
    _run(["train", "--setup", "focusing", "--data", str(data), "--out", str(root / "vae"),
          "--steps", "120", "--quiet", *_sets(VAE_TINY)])
    out = {"root": root, "data": data, "vae": root / "vae"}
    for stage in ("structure", "latent"):
        text = _run(["train-flow", "--stage", stage, "--vae", str(root / "vae"),
                     "--data", str(data), "--out", str(root / stage), "--quiet",
                     *_sets(FLOW_TINY + LATENT_STEPS * (stage == "latent"))])
        assert f"trained the {stage} flow" in text
        out[stage] = root / stage
    yield out
    mp.undo()


def _scalar_steps(tensorboard: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def test_run_folders_hold_config_weights_metrics_and_statistics(runs):
    s, lat = runs["structure"], runs["latent"]
    sub = s / "structure_vae"  # the structure VAE's own engine run: 30 steps, then 30 flow steps
    assert json.loads((sub / "checkpoints" / "latest.json").read_text())["step"] == 30
    assert json.loads((s / "checkpoints" / "latest.json").read_text())["step"] == 30
    assert _scalar_steps(sub / "tensorboard", "loss/total")[-1] == 30
    assert _scalar_steps(s / "tensorboard", "loss/flow")[-1] == 30
    assert _scalar_steps(lat / "tensorboard", "loss/flow")[-1] == 200
    # the flow phase leaves the structure VAE as its own run trained it
    vae_weights = load_file(sub / "checkpoints" / "step_00000030.safetensors")
    stage_weights = load_file(s / "checkpoints" / "step_00000030.safetensors")
    for key, value in vae_weights.items():
        torch.testing.assert_close(stage_weights[f"svae.{key}"], value, rtol=0, atol=0, msg=key)
    assert any(k.startswith("dit.") for k in stage_weights)
    ious = json.loads((s / "summary.json").read_text())["structure_vae_iou"]
    assert set(ious) == {"mean", "couplingdown", "elephant-with-holes"} and 0 < ious["mean"] <= 1
    weights = load_file(lat / "checkpoints" / "step_00000200.safetensors")
    assert ("latent_mean" in weights and "latent_std" in weights
            and any(k.startswith("encoder.") for k in weights))
    summary = json.loads((lat / "summary.json").read_text())
    torch.testing.assert_close(weights["latent_std"], torch.tensor(summary["latent_std"]))
    assert (summary["parameters"] > 0
            and sorted(summary["shapes"]) == ["couplingdown", "elephant-with-holes"])
    # the views are cached beside the prepared shapes
    assert len(list((runs["root"] / "cache" / "views").glob("*.pt"))) == 2


def test_generate_writes_a_non_empty_mesh_deterministically_by_seed(runs, tmp_path):
    common = ["generate", "--structure", str(runs["structure"]), "--latent", str(runs["latent"]),
              "--mesh", str(mesh_file("couplingdown")), "--view", "2", "--steps", "4"]
    a, b, c = tmp_path / "a.ply", tmp_path / "b.ply", tmp_path / "c.ply"
    text = _run(common + ["-o", str(a), "--seed", "3"])
    assert "latent voxels" in text
    _run(common + ["-o", str(b), "--seed", "3"])
    _run(common + ["-o", str(c), "--seed", "4"])
    mesh_a, mesh_b, mesh_c = (load_mesh(p, normalize=False) for p in (a, b, c))
    assert mesh_a.num_faces > 0
    assert (mesh_a.vertices == mesh_b.vertices).all() and (mesh_a.faces == mesh_b.faces).all()
    assert (mesh_c.vertices.shape != mesh_a.vertices.shape
            or not (mesh_c.vertices == mesh_a.vertices).all())


def test_generate_and_train_flow_report_bad_input(runs, tmp_path):
    res = CliRunner().invoke(cli.get_app(), ["generate", "--structure", str(runs["latent"]),
                                             "--latent", str(runs["latent"]),
                                             "--mesh", str(mesh_file("fandisk")),
                                             "-o", str(tmp_path / "x.ply")])
    assert res.exit_code == 2 and "expected a structure run" in res.output
    res = CliRunner().invoke(cli.get_app(), ["train-flow", "--stage", "latent",
                                             "--vae", str(runs["vae"]),
                                             "--data", str(runs["data"]),
                                             "--out", str(tmp_path / "r"),
                                             "--set", "latent_flow.nope=1"])
    assert res.exit_code == 2 and "unknown flow setting 'latent_flow.nope'" in res.output


def test_eval_flow_reports_iou_chamfer_fscores_and_seconds(runs, tmp_path):
    out = tmp_path / "report.json"
    _run(["eval-flow", "--structure", str(runs["structure"]), "--latent", str(runs["latent"]),
          "--data", str(runs["data"]), "--steps", "2", "--points", "2000", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["held_out_views"] == [2] and len(report["rows"]) == 2
    for row in report["rows"]:
        assert (0 <= row["iou"] <= 1 and 0 <= row["f_0.005"] <= row["f_0.01"] <= 1
                and row["seconds"] > 0)
    assert set(report["mean"]) == {"iou", "chamfer_l2", "f_0.005", "f_0.01", "seconds"}


def test_resume_continues_the_latent_stage_exactly(runs, tmp_path):
    base = ["train-flow", "--stage", "latent", "--vae", str(runs["vae"]),
            "--data", str(runs["data"]), "--quiet"]
    short = [s for s in FLOW_TINY if not s.startswith("train.steps")]
    _run(base + ["--out", str(tmp_path / "straight"), *_sets(short + ["train.steps=6"])])
    _run(base + ["--out", str(tmp_path / "split"), *_sets(short + ["train.steps=3"])])
    cfg_file = tmp_path / "split" / "config.json"  # extend the run to 6 steps, then resume it
    cfg = json.loads(cfg_file.read_text())
    cfg["train"]["steps"] = 6
    cfg_file.write_text(json.dumps(cfg))
    _run(["train-flow", "--stage", "latent", "--data", str(runs["data"]),
          "--out", str(tmp_path / "split"), "--resume", "--quiet"])
    a = load_file(tmp_path / "straight" / "checkpoints" / "step_00000006.safetensors")
    b = load_file(tmp_path / "split" / "checkpoints" / "step_00000006.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_continues_the_structure_stage_exactly_and_refuses_unasked_changes(runs, tmp_path):
    base = ["train-flow", "--stage", "structure", "--vae", str(runs["vae"]),
            "--data", str(runs["data"]), "--quiet"]
    short = [s for s in FLOW_TINY if not s.startswith(("train.steps", "structure_vae.steps"))]
    short += ["structure_vae.steps=3"]
    _run(base + ["--out", str(tmp_path / "straight"), *_sets(short + ["train.steps=4"])])
    _run(base + ["--out", str(tmp_path / "split"), *_sets(short + ["train.steps=2"])])
    resume = ["train-flow", "--stage", "structure", "--data", str(runs["data"]),
              "--out", str(tmp_path / "split"), "--resume", "--quiet", "--set", "train.steps=4"]
    res = CliRunner().invoke(cli.get_app(), resume)
    assert res.exit_code == 2 and "--allow-changes" in res.output
    _run(resume + ["--allow-changes"])
    changes = json.loads((tmp_path / "split" / "config_changes.json").read_text())
    assert changes[0]["step"] == 2 and changes[0]["changes"]["train.steps"] == {"old": 2, "new": 4}
    a = load_file(tmp_path / "straight" / "checkpoints" / "step_00000004.safetensors")
    b = load_file(tmp_path / "split" / "checkpoints" / "step_00000004.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_torchrun_two_processes_train_the_latent_stage_as_one_process(runs, tmp_path):
    """train.batch_size=2 split over 2 gloo processes (one slot each, gradients averaged) gives
    the single process's weights: the packed sparse batch and every seeded draw per slot."""
    short = [s for s in FLOW_TINY if not s.startswith("train.steps")] + ["train.steps=2"]
    common = ["train-flow", "--stage", "latent", "--vae", str(runs["vae"]),
              "--data", str(runs["data"]), "--quiet", *_sets(short)]
    env = dict(os.environ, OMP_NUM_THREADS="1", FOCUSING_CACHE=str(runs["root"] / "cache"))
    single = subprocess.run([sys.executable, "-m", "focusing.core.cli", *common,
                             "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node=2", "-m", "focusing.core.cli", *common,
                            "--out", str(tmp_path / "two")],
                           env=env, capture_output=True, text=True)
    assert multi.returncode == 0, multi.stderr[-3000:]
    a = load_file(tmp_path / "one" / "checkpoints" / "step_00000002.safetensors")
    b = load_file(tmp_path / "two" / "checkpoints" / "step_00000002.safetensors")
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
