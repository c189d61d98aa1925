"""Rectified flow: the path and target match the formulas; the Euler sampler transports noise onto
an analytic Gaussian target; CFG with w = 0 is the conditional model."""

from __future__ import annotations

import torch

from focusing.flow import rectified_flow as rf


def test_interpolation_and_target_match_the_formulas_exactly():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, 4, generator=g), torch.randn(5, 3, 4, generator=g)
    t = torch.rand(5, generator=g)
    s = rf.SIGMA_MIN
    expect = torch.stack([(1 - t[i]) * x0[i] + (s + (1 - s) * t[i]) * eps[i] for i in range(5)])
    assert torch.equal(rf.interpolate(x0, eps, t), expect)
    assert torch.equal(rf.velocity_target(x0, eps), (1 - s) * eps - x0)
    # the target is the time derivative of the path
    h = 1e-3
    tt = torch.full((5,), 0.4, dtype=torch.float64)
    d = (rf.interpolate(x0.double(), eps.double(), tt + h)
         - rf.interpolate(x0.double(), eps.double(), tt - h)) / (2 * h)
    torch.testing.assert_close(d, rf.velocity_target(x0.double(), eps.double()))
    # endpoints: data at t = 0, (almost) pure noise at t = 1
    assert torch.allclose(rf.interpolate(x0, eps, torch.zeros(5)), x0 + s * eps)
    assert torch.equal(rf.interpolate(x0, eps, torch.ones(5)), eps)
    assert rf.flow_loss(rf.velocity_target(x0, eps), x0, eps) == 0


def test_t_is_logit_normal_and_condition_dropout_zeroes_whole_samples():
    g = torch.Generator().manual_seed(1)
    t = rf.sample_t(200_000, g)
    logit = torch.log(t / (1 - t))
    assert abs(logit.mean().item() - 1.0) < 0.01 and abs(logit.std().item() - 1.0) < 0.01
    cond = torch.ones(10_000, 4, 2)
    out, dropped = rf.drop_condition(cond, 0.1, g)
    assert abs(dropped.float().mean().item() - 0.1) < 0.01
    assert torch.equal(out[dropped], torch.zeros_like(out[dropped]))
    assert torch.equal(out[~dropped], cond[~dropped])


def test_time_grid_is_trellis_rescaled_linspace():
    grid = rf.time_grid(4, 3.0)
    lin = [1.0, 0.75, 0.5, 0.25, 0.0]
    assert grid == [3 * t / (1 + 2 * t) for t in lin]
    assert rf.time_grid(4, 1.0) == lin


def _gaussian_velocity(mu: torch.Tensor, cov: torch.Tensor):
    """The exact marginal velocity E[dx_t/dt | x_t = x] when x_0 ~ N(mu, cov), eps ~ N(0, I)."""
    s = rf.SIGMA_MIN
    eye = torch.eye(len(mu), dtype=torch.float64)

    def velocity(x, t, cond):
        a, b = 1 - t, s + (1 - s) * t
        c_inv = torch.linalg.inv(a * a * cov + b * b * eye)
        r = (x - a * mu) @ c_inv  # (C^-1 (x - a mu)) per row (C symmetric)
        e_x0 = mu + a * r @ cov
        e_eps = b * r
        return -e_x0 + (1 - s) * e_eps

    return velocity


def test_euler_with_the_exact_velocity_lands_on_the_analytic_target():
    mu = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.5, 0.0], [0.5, 0.6, -0.2], [0.0, -0.2, 0.3]], dtype=torch.float64)
    noise = torch.randn(100_000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = rf.euler_sample(_gaussian_velocity(mu, cov), noise, steps=200, rescale=3.0)
    torch.testing.assert_close(x.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.03, rtol=0)


def test_cfg_with_zero_strength_equals_the_conditional_model():
    calls = []

    def model(x, t, cond):
        calls.append(cond)
        return x * cond + t

    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    cond, uncond = torch.full((4, 1), 2.0), torch.zeros(4, 1)
    plain = rf.euler_sample(model, x, cond, uncond, steps=5, cfg_strength=0.0)
    assert len(calls) == 5 and all(c is cond for c in calls)  # no unconditional pass at w = 0
    cond_only = rf.euler_sample(lambda x, t, c: model(x, t, cond), x, None, None, steps=5)
    assert torch.equal(plain, cond_only)
    # w > 0 mixes in the unconditional pass, only inside the guidance interval
    v = rf.guided_velocity(model, x, 0.5, cond, uncond, 3.0, (0.0, 1.0))
    torch.testing.assert_close(v, 4 * model(x, 0.5, cond) - 3 * model(x, 0.5, uncond))
    assert torch.equal(rf.guided_velocity(model, x, 0.9, cond, uncond, 3.0, (0.1, 0.8)),
                       model(x, 0.9, cond))


def test_packed_flow_loss_is_the_mean_of_each_samples_own_loss():
    """Two samples of 3 and 7 rows packed together: the mean of their separate flow_loss values
    (float64), not the pooled mean over all 10 rows, which weighs the larger sample more."""
    g = torch.Generator().manual_seed(0)
    v, x0, eps = (torch.randn(10, 4, generator=g, dtype=torch.float64) for _ in range(3))
    sample = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1, 1, 1])
    parts = [sample == k for k in (0, 1)]
    expected = sum(rf.flow_loss(v[m], x0[m], eps[m]) for m in parts) / 2
    got = rf.packed_flow_loss(v, x0, eps, sample, 2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    assert abs(float(got) - float(rf.flow_loss(v, x0, eps))) > 1e-3
