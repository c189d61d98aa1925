"""User errors through the real `focusing` entry point: one `error: ...` line, exit code 2, no
Python traceback; `--debug` / FOCUSING_DEBUG=1 bring the traceback back for bug reports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from focusing.core import cli
from focusing.core.geometry.validation import MeshError

from meshdata import mesh_file

BAD = Path(__file__).resolve().parent / "data" / "bad_meshes"


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A good data folder, a bad one (a NaN mesh and a folder named x.obj), a plain file."""
    monkeypatch.setenv("FOCUSING_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FOCUSING_DEBUG", raising=False)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    shutil.copy(mesh_file("couplingdown"), good / "couplingdown.off")
    shutil.copy(BAD / "nan_vertex.off", bad / "nan_vertex.off")
    (bad / "x.obj").mkdir()
    (tmp_path / "afile").write_text("x")
    loop = tmp_path / "loop.off"
    loop.symlink_to(loop)
    return tmp_path


def _main(capsys, *args) -> tuple[int, str]:
    """Run cli.main in-process; (exit code, stdout + stderr). A traceback would escape here."""
    with pytest.raises(SystemExit) as stop:
        cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return stop.value.code, out.out + out.err


FANDISK = mesh_file("fandisk")
CASES = {
    "bad mesh": (["eval", BAD / "nan_vertex.off", FANDISK], "NaN or infinite"),
    "missing file": (["eval", "{t}/missing.off", FANDISK], "does not exist"),
    "symlink loop": (["eval", "{t}/loop.off", FANDISK], "symlink loop"),
    "eval --out under a file": (["eval", FANDISK, FANDISK, "--out", "{t}/afile/r.json"],
                                "is a file, not a folder"),
    "unknown setup": (["train", "--setup", "nope", "--data", "{t}/good", "--out", "{t}/r1"],
                      "unknown setup 'nope'"),
    "missing data": (["train", "--setup", "triposf", "--data", "{t}/none", "--out", "{t}/r2"],
                     "does not exist"),
    "bad mesh in data": (["train", "--setup", "triposf", "--data", "{t}/bad", "--out", "{t}/r3",
                          "--steps", "1", "--quiet"], "nan_vertex.off"),
    "train --out under a file": (["train", "--setup", "triposf", "--data", "{t}/good", "--out",
                                  "{t}/afile/run", "--steps", "1", "--quiet"], "afile"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_errors_are_one_line_without_traceback(places, capsys, case):
    args, words = CASES[case]
    args = [str(a).format(t=places) for a in args]
    code, text = _main(capsys, *args)
    assert code == 2, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0], text


def test_debug_flag_and_env_show_the_exception(places, capsys, monkeypatch):
    with pytest.raises(MeshError, match="NaN"):
        cli.main(["--debug", "eval", str(BAD / "nan_vertex.off"), str(FANDISK)])
    monkeypatch.setenv("FOCUSING_DEBUG", "1")
    with pytest.raises(MeshError, match="NaN"):
        cli.main(["eval", str(BAD / "nan_vertex.off"), str(FANDISK)])


def test_console_entry_point(tmp_path):
    env = {**os.environ, "FOCUSING_CACHE": str(tmp_path)}
    env.pop("FOCUSING_DEBUG", None)
    bad = str(BAD / "zero_area.off")
    run = [sys.executable, "-m", "focusing.core.cli", "eval", bad, str(FANDISK)]
    res = subprocess.run(run, capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    assert res.stderr.startswith("error: mesh") and "area is zero" in res.stderr
    res = subprocess.run(run[:3] + ["--debug"] + run[3:], capture_output=True, text=True, env=env)
    assert res.returncode != 0 and "Traceback" in res.stderr and "MeshError" in res.stderr
