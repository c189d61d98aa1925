"""`focusing compare --resume`: a comparison killed in the middle of a training goes on where it
stopped. The trainings that finished are kept byte for byte (their child is not launched
again), the unfinished one trains from its start, a warm-up that trains again takes its forks
with it, and a different comparison in the same folder is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_seeds import SEEDS_BUDGET
from typer.testing import CliRunner

from focusing.core import cli
from focusing.eval.compare import CompareError, compare, plan_jobs, parse_specs, result_file
from focusing.eval.compare import load_budget
from focusing.eval.compare import pipeline
from meshdata import mesh_folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOCUSING_CACHE", str(tmp_path / "cache"))


class Killed(Exception):
    """Stands for the comparison's process dying (a kill, the session's end)."""


def _launches(monkeypatch, die_at: int | None = None) -> list[str]:
    """Record the run folder of every child compare launches; raise Killed at launch die_at."""
    real, launched = pipeline.launch_child, []

    def launch(job, job_file, *args, **kwargs):
        launched.append(Path(job["run_dir"]).name)
        if len(launched) == die_at:
            raise Killed
        return real(job, job_file, *args, **kwargs)

    monkeypatch.setattr(pipeline, "launch_child", launch)
    return launched


def test_an_interrupted_comparison_resumes_keeping_its_finished_trainings(tmp_path,
                                                                          monkeypatch):
    data = mesh_folder(tmp_path / "data", "couplingdown")
    budget = tmp_path / "seeds.toml"
    budget.write_text(SEEDS_BUDGET)
    out = tmp_path / "out"
    args = (data, "triposf,focusing", str(budget), out)

    # killed while focusing (the third child: warm-up, triposf, focusing) trains
    launched = _launches(monkeypatch, die_at=3)
    with pytest.raises(Killed):
        compare(*args)
    assert launched == ["shared-warmup", "triposf", "focusing"]
    assert not (out / "report.json").exists()
    runs = out / "runs"
    kept = {n: (runs / n / "history.json").read_bytes() for n in ("shared-warmup", "triposf")}
    (runs / "focusing" / "left-by-the-kill.txt").write_text("partial")

    # the same command without --resume is refused, as any earlier comparison is
    with pytest.raises(CompareError, match="already holds runs"):
        compare(*args)
    # --resume: only focusing trains again, from its start; the others are kept as they were
    launched = _launches(monkeypatch)
    rep = compare(*args, resume=True)
    assert launched == ["focusing"]
    for name, history in kept.items():
        assert (runs / name / "history.json").read_bytes() == history
    assert not (runs / "focusing" / "left-by-the-kill.txt").exists()
    assert rep["resumed_runs"] == ["runs/shared-warmup", "runs/triposf"]
    warm = [s["terms"]["total"] for s in json.loads(kept["shared-warmup"])["steps"]]
    for label in ("triposf", "focusing"):
        run = rep["setups"][label]["runs"][0]
        assert len(run["history"]) == 24  # the kept warm-up's 20 steps, then 4 of its own
        assert [h["loss_total"] for h in run["history"][:20]] == warm
        assert (out / "recon" / label).is_dir() and "couplingdown" in run["meshes"]
    md = (out / "report.md").read_text()
    assert "--resume kept `runs/shared-warmup`, `runs/triposf`" in md

    # a warm-up that trains again (its record lost) takes the setups forked from it along
    job = plan_jobs(parse_specs("triposf,focusing", load_budget(str(budget)).overrides),
                    load_budget(str(budget)), out)[0]
    assert job.is_warmup
    result_file(job.job_file).unlink()
    launched = _launches(monkeypatch)
    rep = compare(*args, resume=True)
    assert launched == ["shared-warmup", "triposf", "focusing"] and rep["resumed_runs"] == []


def test_resume_refuses_another_comparison_and_nothing_to_resume(tmp_path):
    data = mesh_folder(tmp_path / "data", "couplingdown")
    budget = tmp_path / "seeds.toml"
    budget.write_text(SEEDS_BUDGET)
    out = tmp_path / "out"
    with pytest.raises(CompareError, match="holds no comparison to resume"):
        compare(data, "triposf,focusing", str(budget), out, resume=True)
    assert not (out / "runs").exists()
    plan = {"data": str(data.resolve()), "eval": None, "setups": "triposf,focusing",
            "budget": "0" * 64, "seeds": 1, "memory_cap_gb": None}
    out.mkdir()
    (out / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(CompareError, match="other budget"):  # the budget file was edited
        compare(data, "triposf,focusing", str(budget), out, resume=True)
    plan["budget"] = pipeline.comparison_plan(data, None, "", load_budget(str(budget)), 1,
                                              None)["budget"]
    (out / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(CompareError, match="other seeds, setups"):
        compare(data, "focusing", str(budget), out, seeds=2, resume=True)
    with pytest.raises(CompareError, match="give one of them"):
        compare(data, "triposf,focusing", str(budget), out, resume=True, overwrite=True)
    result = CliRunner().invoke(cli.get_app(), [
        "compare", "--data", str(data), "--out", str(out), "--setups", "focusing",
        "--budget", str(budget), "--resume"])
    assert result.exit_code != 0 and "other setups" in result.output
    assert not (out / "runs").exists()  # refused before anything was made or trained
