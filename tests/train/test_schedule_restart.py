"""train.restart_at: the LR schedule restarts for the rendered phase (issue 22's first lever).

Checked against the formula written out by hand, and on the toy engine: a run forked at the
restart from a warm-up checkpoint gets the second phase's warm-up and cosine, and the restart's
clock survives a resume."""

from __future__ import annotations

import math
import shutil

import pytest

from focusing.core.engine import lr_factor

from _toy_engine import toy_train


def _cos(t: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * t))


def test_two_phases_by_steps():
    f = lr_factor(toy_train(steps=300, warmup_steps=10, restart_at=200, lr=1e-3, restart_lr=5e-4))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(105) == pytest.approx(_cos(95 / 190))           # phase 1 anneals to 0 at 200
    assert f(199) == pytest.approx(_cos(189 / 190))
    assert f(200) == pytest.approx(0.5 * 0.1)                 # phase 2: warm-up again, peak x0.5
    assert f(209) == pytest.approx(0.5 * 1.0)
    assert f(250) == pytest.approx(0.5 * _cos(40 / 90))
    assert f(300) == pytest.approx(0.0, abs=1e-12)


def test_the_second_phase_follows_the_minutes_left_after_the_restart():
    seconds, at_restart = [0.0], [120.0]
    train = toy_train(steps=10_000, warmup_steps=0, restart_at=100, minutes=4.0)
    f = lr_factor(train, clock=lambda: seconds[0], restart_clock=lambda: at_restart[0])
    seconds[0] = 200.0  # phase 1 ignores the clock: steps only
    assert f(50) == pytest.approx(_cos(50 / 100))
    seconds[0] = 180.0  # half of the 120 s left after the restart (at 120 s of 240)
    assert f(101) == pytest.approx(_cos(0.5))
    seconds[0] = 240.0
    assert f(102) == pytest.approx(0.0, abs=1e-12)


def test_restart_off_is_todays_schedule():
    a = lr_factor(toy_train(steps=500, warmup_steps=5))
    b = lr_factor(toy_train(steps=500, warmup_steps=5, restart_at=0, restart_lr=0.0))
    assert [a(s) for s in range(0, 500, 7)] == [b(s) for s in range(0, 500, 7)]


def test_a_fork_at_the_restart_trains_the_second_phase_and_resumes_it(tmp_path):
    from _toy_engine import make_engine

    warm = make_engine(tmp_path / "warm", steps=20, restart_at=20, warmup_steps=2,
                       checkpoint_every=0)
    warm.fit()
    lr_end_of_warm = warm.optimizer.param_groups[0]["lr"]
    warm.close()
    assert warm.restart_seconds is not None  # the restart's clock is read at the boundary
    base = warm.train.lr
    assert lr_end_of_warm == pytest.approx(base * 0.5)  # f(20): phase 2's first warm-up step
    shutil.copytree(tmp_path / "warm", tmp_path / "fork")
    fork = make_engine(tmp_path / "fork", steps=40, restart_at=20, warmup_steps=2,
                       checkpoint_every=0, resume=True, allow_changes=True)
    assert fork.step == 20 and fork.restart_seconds == warm.restart_seconds
    lrs = []
    for _ in range(20):
        lrs.append(fork.optimizer.param_groups[0]["lr"])
        fork.fit(fork.step + 1)
    fork.close()
    assert lrs[0] == pytest.approx(base * 0.5) and lrs[1] == pytest.approx(base)
    assert lrs[10] == pytest.approx(base * _cos(8 / 18))  # step 30: 8 of 18 cosine steps
    assert max(lrs) == pytest.approx(base)  # the rendered phase trains at the full LR again
