"""The shared engine trains a toy step (linear regression) with checkpoints, exact resume, the
non-finite guard, damaged-run-folder handling, resume config checks, and survives SIGKILL in
the middle of a checkpoint write."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from focusing.core.config import ConfigError
from focusing.core.engine import CheckpointError, NonFiniteError, load_checkpoint
from focusing.core.engine.checkpoint import FAULT_ENV, state_path, weights_path

from _toy_engine import W_TRUE, make_engine

TOY = Path(__file__).with_name("_toy_engine.py")


def _fit(run, **kw):
    engine = make_engine(run, **kw)
    history = engine.fit()
    engine.close()
    return engine, history


def test_toy_regression_learns_checkpoints_and_evaluates(tmp_path):
    engine = make_engine(tmp_path / "run", steps=40, lr=0.3, eval_every=10)
    start = float((engine.module.weight.detach().T - W_TRUE).abs().max())
    history = engine.fit()
    engine.close()
    assert len(history) == 40 and engine.step == 40
    assert [s for s, _ in engine.trainstep.evaluations] == [10, 20, 30, 40]
    errors = [e for _, e in engine.trainstep.evaluations]
    assert errors[-1] < errors[0] < start and errors[-1] < 0.1 * start
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.safetensors"))
    assert ckpts == [f"step_{s:08d}.safetensors" for s in (4, 8, 12, 16, 20, 24, 28, 32, 36, 40)]
    assert (json.loads((tmp_path / "run" / "config.json").read_text())["model"]
            == {"in": 3, "out": 1})
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_is_bitwise_exact(tmp_path):
    whole, _ = _fit(tmp_path / "whole")
    engine = make_engine(tmp_path / "split")
    engine.fit(steps=6)  # stops at 6, after the checkpoint of step 4: saved at the stop too
    engine.close()
    resumed, _ = _fit(tmp_path / "split", resume=True)
    assert resumed.step == 12
    a, b = (load_file(weights_path(tmp_path / "whole", 12)),
            load_file(weights_path(tmp_path / "split", 12)))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_nan_loss_is_skipped_and_counted(tmp_path):
    engine, history = _fit(tmp_path / "run", nan_at=(3,))
    assert engine.skipped_total == 1
    assert [r.skipped for r in history].count(True) == 1 and history[2].skipped
    for k, v in load_file(weights_path(tmp_path / "run", 12)).items():
        assert torch.isfinite(v).all(), k
    # the skipped step changed nothing: the weights after step 3 equal those after step 2
    probe = make_engine(tmp_path / "probe", nan_at=(3,), steps=3, checkpoint_every=0)
    probe.fit(steps=2)
    after2 = {k: v.clone() for k, v in probe.module.state_dict().items()}
    probe.train_step()
    for k, v in probe.module.state_dict().items():
        assert torch.equal(v, after2[k]), k


def test_stop_mode_exits_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    engine = make_engine(tmp_path / "run", nan_at=(7,), nonfinite="stop")
    with pytest.raises(NonFiniteError, match=r"step 7 .*last good checkpoint is step 4"):
        engine.fit()
    engine.close()
    step, weights, state = load_checkpoint(tmp_path / "run", with_state=True)
    assert step == 4 and all(torch.isfinite(v).all() for v in weights.values())
    assert not weights_path(tmp_path / "run", 8).exists()


def test_too_many_skips_in_a_row_stop(tmp_path):
    engine = make_engine(tmp_path / "run", nan_at=tuple(range(5, 13)), max_nonfinite_skips=3)
    with pytest.raises(NonFiniteError, match="3 steps in a row"):
        engine.fit()


def _damage(run: Path, what: str) -> Path:
    if what == "empty weights":
        path = weights_path(run, 12)
        path.write_bytes(b"")
    elif what == "truncated weights":
        path = weights_path(run, 12)
        path.write_bytes(path.read_bytes()[:40])
    elif what == "truncated state":
        path = state_path(run, 12)
        path.write_bytes(path.read_bytes()[:100])
    else:
        path = run / "checkpoints" / "latest.json"
        path.write_text('{"step": 1')
    return path


@pytest.mark.parametrize("what", ["empty weights", "truncated weights", "truncated state",
                                  "corrupt latest"])
def test_damaged_checkpoint_is_named_and_the_newest_intact_one_used(what, tmp_path, capsys):
    run = tmp_path / "run"
    _fit(run)
    damaged = _damage(run, what)
    step, weights, state = load_checkpoint(run, with_state=True)
    err = capsys.readouterr().err
    assert str(damaged) in err
    if what == "corrupt latest":
        assert step == 12 and "corrupt" in err
    else:
        assert step == 8 and "using step 8, the newest intact checkpoint" in err
        with pytest.raises(CheckpointError, match=str(damaged).replace(".", r"\.")):
            load_checkpoint(run, step=12, with_state=True)
    # and a resume continues from there
    engine = make_engine(run, resume=True)
    assert engine.step == step
    engine.fit()
    assert engine.step == 12


def test_stray_temp_files_are_removed_at_start(tmp_path, capsys):
    run = tmp_path / "run"
    _fit(run)
    stray = run / "checkpoints" / ".step_00000016.safetensors.abc123.tmp"
    stray.write_bytes(b"half")
    make_engine(run, resume=True).close()
    assert not stray.exists()
    assert "removed 1 unfinished file" in capsys.readouterr().err


def test_resume_checks_the_stored_config(tmp_path):
    run = tmp_path / "run"
    _fit(run)
    with pytest.raises(ConfigError, match=r"model's shape differs.*model.out: 1 -> 2"):
        make_engine(run, resume=True, config_extra={"model": {"in": 3, "out": 2}})
    with pytest.raises(ConfigError, match=r"train.lr: 0.05 -> 0.01.*--allow-changes"):
        make_engine(run, resume=True, lr=0.01)
    engine = make_engine(run, resume=True, lr=0.01, steps=14, allow_changes=True)
    engine.fit()
    changes = json.loads((run / "config_changes.json").read_text())
    assert changes[-1]["step"] == 12
    assert changes[-1]["changes"]["train.lr"] == {"old": 0.05, "new": 0.01}
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.01
    with pytest.raises(FileExistsError, match="--resume"):
        make_engine(run)


@pytest.mark.parametrize("victim", ["safetensors", "state.pt"])
def test_sigkill_during_checkpoint_write_resumes_from_last_intact(victim, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", **{FAULT_ENV: "0.5"})
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(TOY), str(run), "8"], stderr=subprocess.PIPE,
                            text=True, env=env, cwd=TOY.parent)
    needle = f"step_00000004.{victim}"
    for line in proc.stderr:  # the writer sleeps with the file complete under its temp name
        if line.startswith("checkpoint-write") and line.rstrip().endswith(needle):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert list((run / "checkpoints").glob("*.tmp")), "the kill should leave a temp file"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 2
    env.pop(FAULT_ENV)
    out = subprocess.run([sys.executable, str(TOY), str(run), "8", "--resume"], capture_output=True,
                         text=True, env=env, cwd=TOY.parent)
    assert out.returncode == 0, out.stderr
    assert "step 8" in out.stdout and "removed 1 unfinished file" in out.stderr
    assert not list((run / "checkpoints").glob("*.tmp"))
    ref = subprocess.run([sys.executable, str(TOY), str(tmp_path / "ref"), "8"],
                         capture_output=True, text=True, env=env, cwd=TOY.parent)
    assert ref.returncode == 0, ref.stderr
    a, b = load_file(weights_path(run, 8)), load_file(weights_path(tmp_path / "ref", 8))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_minutes_budget_stops_saves_and_evaluates_at_the_end(tmp_path):
    # 0.002 min = 0.12 s of optimisation: far fewer than the 100000 steps allowed
    engine = make_engine(tmp_path / "run", steps=100_000, minutes=0.002, eval_every=1_000_000,
                         checkpoint_every=0)
    history = engine.fit()
    engine.close()
    spent = sum(r.seconds for r in history)
    assert 0 < engine.step < 100_000 and engine.step == len(history)
    assert spent >= 0.12 and spent - history[-1].seconds < 0.12  # stopped at the first step past it
    assert engine.train_seconds == pytest.approx(spent)
    assert [s for s, _ in engine.trainstep.evaluations] == [engine.step]  # the run's end
    assert load_checkpoint(tmp_path / "run")[0] == engine.step


def test_lr_schedule_follows_the_clock_when_minutes_run_out_first():
    from focusing.core.engine import lr_factor

    from _toy_engine import toy_train

    seconds = [0.0]
    f = lr_factor(toy_train(steps=1000, warmup_steps=0, minutes=1.0), clock=lambda: seconds[0])
    assert f(0) == pytest.approx(1.0)
    seconds[0] = 30.0  # half the minute spent at step 10: the cosine is half-way
    assert f(10) == pytest.approx(0.5)
    seconds[0] = 1.0  # step progress (600 of 1000) is ahead of the clock here
    assert f(600) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.6)))
    seconds[0] = 90.0
    assert f(20) == pytest.approx(0.0, abs=1e-12)
    plain = lr_factor(toy_train(steps=1000, warmup_steps=0))
    assert plain(500) == pytest.approx(0.5)


def test_ema_checkpoints_the_average_that_a_float64_recomputation_gives(tmp_path):
    """train.ema: the checkpoint's weights are the average of the online weights after every
    update, w <- d_n w + (1 - d_n) w_n with d_n = min(d, (1 + n) / (10 + n)), recomputed here
    in float64 from the online weights the optimiser produced; the online weights sit in the
    training state, and the evaluation sees the average."""
    decay = 0.8
    engine = make_engine(tmp_path / "run", steps=12, ema=decay, checkpoint_every=0, eval_every=12)
    flat = lambda m: torch.cat([m["weight"].flatten(), m["bias"]]).double()  # noqa: E731
    average = flat(engine.module.state_dict())
    online, seen_by_eval = [], []
    real_step, real_evaluate = engine.train_step, engine.trainstep.evaluate

    def recording_step():
        result = real_step()
        online.append(flat(engine.module.state_dict()).clone())
        return result

    def recording_evaluate(step):
        seen_by_eval.append(flat(engine.module.state_dict()).clone())
        return real_evaluate(step)

    engine.train_step, engine.trainstep.evaluate = recording_step, recording_evaluate
    engine.fit()
    engine.close()
    for n, w in enumerate(online, start=1):
        d = min(decay, (1 + n) / (10 + n))
        average = d * average + (1 - d) * w
    step, saved, state = load_checkpoint(tmp_path / "run", with_state=True)
    assert step == 12 and len(online) == 12 and state["ema_updates"] == 12
    torch.testing.assert_close(flat(saved), average, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(flat(state["online_weights"]), online[-1], rtol=0, atol=0)
    assert (flat(saved) - online[-1]).abs().max() > 1e-3  # the average is not the online weights
    torch.testing.assert_close(seen_by_eval[-1], flat(saved), rtol=0, atol=0)
    torch.testing.assert_close(flat(engine.module.state_dict()), online[-1], rtol=0, atol=0)


def test_ema_resume_is_bitwise_exact(tmp_path):
    whole, _ = _fit(tmp_path / "whole", ema=0.9)
    engine = make_engine(tmp_path / "split", ema=0.9)
    engine.fit(steps=6)
    engine.close()
    resumed, _ = _fit(tmp_path / "split", resume=True, ema=0.9)
    for run in ("whole", "split"):
        assert torch.load(next((tmp_path / run / "checkpoints").glob("step_00000012.state.pt")),
                          weights_only=False)["ema_updates"] == 12
    a, b = (load_file(weights_path(tmp_path / "whole", 12)),
            load_file(weights_path(tmp_path / "split", 12)))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    torch.testing.assert_close(resumed.module.weight, whole.module.weight, rtol=0, atol=0)


def test_ema_must_be_below_one(tmp_path):
    with pytest.raises(ConfigError, match="train.ema"):
        make_engine(tmp_path / "run", ema=1.0)


def test_ema_can_be_switched_on_and_off_at_a_resume(tmp_path):
    """A run without an average resumed with train.ema starts the average at its weights; a run
    with one resumed without it continues from the online weights, not from the average."""
    plain, averaged = tmp_path / "plain", tmp_path / "averaged"
    _fit(plain, steps=6)
    before = load_file(weights_path(plain, 6))
    engine = make_engine(plain, resume=True, allow_changes=True, steps=6, ema=0.9)
    for k, v in engine.ema.shadow.items():
        assert torch.equal(v, before[k]), k
    engine.close()
    _fit(averaged, steps=6, ema=0.9)
    _, _, state = load_checkpoint(averaged, with_state=True)
    engine = make_engine(averaged, resume=True, allow_changes=True, steps=6)
    assert engine.ema is None
    for k, v in engine.module.state_dict().items():
        assert torch.equal(v, state["online_weights"][k]), k
    engine.close()


def test_the_history_keeps_figures_not_images_and_meshes(tmp_path, monkeypatch):
    """A step's images and extra (a rendered step's views and mesh, 0.66 MiB at 128:
    BENCHMARKS.md, session 11) reach log(), but the history fit() returns drops them: a long
    run held every one of them to its end."""
    engine = make_engine(tmp_path / "run", steps=3, lr=0.1)
    step, plain_loss = engine.trainstep, engine.trainstep.loss
    seen = []

    def loss(s, slots):
        out = plain_loss(s, slots)
        out.images, out.extra = {"view": torch.ones(8, 8)}, {"mesh": (torch.ones(4, 3),)}
        return out

    monkeypatch.setattr(step, "loss", loss)
    monkeypatch.setattr(step, "log", lambda writer, s, res: seen.append(
        (s, set(res.images), res.mesh is not None)))
    history = engine.fit()
    engine.close()
    assert seen == [(1, {"view"}, True), (2, {"view"}, True), (3, {"view"}, True)]
    assert [(h.step, h.images, h.extra) for h in history] == [(1, {}, {}), (2, {}, {}),
                                                               (3, {}, {})]
    assert all("mse" in h.terms and h.seconds > 0 for h in history)
