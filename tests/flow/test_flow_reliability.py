"""Issue 25 for the image-to-3D commands: a flow run records the shape VAE's weights it trained
on, and `generate` / `eval-flow` refuse a VAE changed since (resumed in place, or replaced by
one with other channels) unless --allow-vae-change; `train-flow --vae` given a flow run says
so; `generate` refuses broken image files and bad outputs with one `error:` line, exit 2.

Every run is a real one, a few steps long, on two example meshes copied by the test."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.engine.checkpoint import weights_path

from meshdata import mesh_file, mesh_folder

VAE_TINY = [
    "model.latent_resolution=8", "model.points_per_shape=1024", "cameras.image_size=32",
    "encoder.width=16", "encoder.depth=1", "encoder.heads=2", "encoder.window=4",
    "decoder.width=16", "decoder.depth=1", "decoder.heads=2", "decoder.window=4",
    "pointnet.hidden=8", "pointnet.out=8", "upsampler.channels=[8, 8]", "loss.tsdf_views=2",
    "train.checkpoint_every=0", "evaluation.calibration_meshes=1",
]
FLOW_TINY = [
    "views.count=2", "views.held_out=1", "views.render_size=32", "views.image_size=32",
    "encoder.params.width=8", "encoder.params.image_size=32", "encoder.params.levels=2",
    "structure_vae.channels=[8, 8]", "structure_vae.steps=2",
    "structure_flow.width=16", "structure_flow.depth=1", "structure_flow.heads=2",
    "latent_flow.width=16", "latent_flow.io_channels=8", "latent_flow.depth=1",
    "latent_flow.heads=2", "train.steps=2", "train.batch_size=2", "train.checkpoint_every=0",
]


def _invoke(args: list) -> tuple[int, str]:
    """In-process CLI run: (exit code, stdout + stderr); an escaped exception fails the test."""
    res = CliRunner().invoke(cli.get_app(), [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _train_vae(data: Path, out: Path, *sets: str, resume: bool = False) -> None:
    code, text = _invoke(["train", "--setup", "focusing", "--data", data, "--out", out, "--quiet",
                          *_sets(VAE_TINY + list(sets)), *(["--resume", "--allow-changes"]
                                                           if resume else [])])
    assert code == 0, text


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A shape VAE (2 steps) and both flow stages (2 steps each) on two meshes."""
    root = tmp_path_factory.mktemp("flow-reliability")
    mp = pytest.MonkeyPatch()
    mp.setenv("FOCUSING_CACHE", str(root / "cache"))
    mp.delenv("FOCUSING_DEBUG", raising=False)
    data = mesh_folder(root / "data", "couplingdown", "elephant-with-holes")
    _train_vae(data, root / "vae", "train.steps=2")
    out = {"root": root, "data": data, "vae": root / "vae"}
    for stage in ("structure", "latent"):
        code, text = _invoke(["train-flow", "--stage", stage, "--vae", root / "vae", "--data", data,
                              "--out", root / stage, "--quiet", *_sets(FLOW_TINY)])
        assert code == 0, text
        out[stage] = root / stage
    yield out
    mp.undo()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _generate(runs, output: Path, *extra) -> tuple[int, str]:
    return _invoke(["generate", "--structure", runs["structure"], "--latent", runs["latent"],
                    "--mesh", mesh_file("couplingdown"), "--steps", "2", "-o", output, *extra])


def _vae_error(text: str) -> bool:
    return "changed since the flow run" in text and "--allow-vae-change" in text


# -- fault 7 -------------------------------------------------------------------------------

def test_a_flow_run_records_the_vae_weights_it_trained_on(runs):
    weights = weights_path(runs["vae"], 2)
    for stage in ("structure", "latent"):
        cfg = json.loads((runs[stage] / "config.json").read_text())
        assert cfg["vae_step"] == 2 and cfg["vae_sha256"] == _sha(weights)


def test_generate_and_eval_flow_refuse_a_vae_changed_under_them(runs, tmp_path):
    """Each case on its own copy: the VAE resumed in place (a newer checkpoint), then replaced
    by a VAE with other latent channels (which used to fail with `mat1 and mat2 shapes`)."""
    from focusing.flow.generate import ImageTo3D

    copy = {k: tmp_path / k for k in ("vae", "structure", "latent")}
    for key, path in copy.items():
        shutil.copytree(runs[key], path)
    for key in ("structure", "latent"):  # point the flow runs at the copied VAE
        cfg_path = copy[key] / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg_path.write_text(json.dumps({**cfg, "vae_run": str(copy["vae"])}))
    runs = {**runs, **copy}
    assert ImageTo3D(copy["structure"], copy["latent"]) is not None  # unchanged: accepted
    _train_vae(runs["data"], copy["vae"], "train.steps=3", resume=True)  # resumed in place
    code, text = _generate(runs, tmp_path / "a.ply")
    assert code == 2 and _vae_error(text) and "Traceback" not in text, text
    assert "step 3" in text and "step 2" in text and not (tmp_path / "a.ply").exists()
    code, text = _invoke(["eval-flow", "--structure", copy["structure"], "--latent",
                          copy["latent"], "--data", runs["data"], "--steps", "2"])
    assert code == 2 and _vae_error(text), text
    # --allow-vae-change: a warning, and the command goes on (a 2-step VAE may decode nothing)
    code, text = _generate(runs, tmp_path / "b.ply", "--allow-vae-change")
    assert "warning: the shape VAE" in text and "using it anyway" in text, text
    assert code == 0 or "decoded surface is empty" in text, text
    # the training flow run refuses to resume on the changed VAE
    code, text = _invoke(["train-flow", "--stage", "latent", "--data", runs["data"], "--out",
                          copy["latent"], "--resume", "--quiet", "--set", "train.steps=3"])
    assert code == 2 and "changed since the flow run" in text and "new flow run" in text, text
    # replaced by a VAE of other latent channels
    shutil.rmtree(copy["vae"])
    _train_vae(runs["data"], copy["vae"], "train.steps=1", "model.latent_channels=4")
    code, text = _generate(runs, tmp_path / "c.ply")
    assert code == 2 and _vae_error(text) and "mat1" not in text, text


def test_train_flow_given_a_flow_run_as_vae_says_so(runs, tmp_path):
    code, text = _invoke(["train-flow", "--stage", "latent", "--vae", runs["latent"], "--data",
                          runs["data"], "--out", tmp_path / "x", "--quiet"])
    assert code == 2 and "is a train-flow run" in text and "not a shape VAE run" in text, text
    assert "encoder.name" not in text and str(runs["vae"]) in text
    assert not (tmp_path / "x").exists()


# -- fault 8 -------------------------------------------------------------------------------

def _png(path: Path) -> bytes:
    rgba = (np.random.default_rng(0).random((64, 64, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(path)
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "garbled"])
def test_generate_refuses_a_broken_image_with_one_error_line(runs, tmp_path, kind):
    image = tmp_path / "view.png"
    good = _png(image)
    broken = {"text": b"this is not an image\n", "empty": b"", "truncated": good[:len(good) // 2],
              "garbled": good[:60] + bytes(200) + good[260:]}[kind]
    image.write_bytes(broken)
    out = tmp_path / "out.ply"
    code, text = _invoke(["generate", image, "--structure", runs["structure"], "--latent",
                          runs["latent"], "-o", out])
    assert code == 2 and "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: image {image}"), text
    assert not out.exists()


@pytest.mark.parametrize("case", ["format", "folder", "is a folder", "read-only"])
def test_generate_checks_its_output_before_any_work(runs, tmp_path, case):
    image = tmp_path / "view.png"
    _png(image)
    if case == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        (tmp_path / "ro").mkdir(mode=0o555)
    output, needle = {"format": (tmp_path / "out.xyz", "unknown mesh format"),
                      "folder": (tmp_path / "no" / "out.ply", "does not exist"),
                      "is a folder": (tmp_path, "is a folder"),
                      "read-only": (tmp_path / "ro" / "out.ply", "not writable")}[case]
    # the runs are never read: the output is checked first
    code, text = _invoke(["generate", image, "--structure", tmp_path / "none", "--latent",
                          tmp_path / "none", "-o", output])
    assert code == 2 and needle in text and "not a run folder" not in text, text
