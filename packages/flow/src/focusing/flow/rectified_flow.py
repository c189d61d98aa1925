"""Rectified flow shared by both generation stages (TRELLIS's formulation, paper sec. 3.5).

Data x_0 and Gaussian noise eps are joined by the straight path
x_t = (1 - t) x_0 + (sigma_min + (1 - sigma_min) t) eps, whose velocity dx_t/dt is the regression
target (1 - sigma_min) eps - x_0. Training draws t logit-normally (more weight on the middle of
the path) and drops the condition to zeros with probability 0.1 so that one network also learns
the unconditional velocity that classifier-free guidance needs. Sampling integrates the velocity
with Euler steps from t = 1 (noise) to t = 0 (data) on TRELLIS's rescaled time grid, which
spends more steps near t = 1 where the path bends most.

Every function works on any tensor layout: dense [B, ...] latents take t [B]; packed sparse
latents [N, C] take t already expanded to their rows (see `expand_per_row`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

SIGMA_MIN = 1e-5


def _broadcast_t(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t [B] (or a scalar) shaped [B, 1, ..., 1] to broadcast against like [B, ...]."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (like.ndim - 1)))


def expand_per_row(t: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """Per-sample values t [B] to the rows of a packed batch: batch_index [N] -> [N]."""
    return t.index_select(0, batch_index.to(t.device))


def interpolate(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor,
                sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """x_t = (1 - t) x_0 + (sigma_min + (1 - sigma_min) t) eps; x0, eps [B, ...], t [B]."""
    tb = _broadcast_t(t, x0)
    return (1 - tb) * x0 + (sigma_min + (1 - sigma_min) * tb) * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor,
                    sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """The velocity dx_t/dt = (1 - sigma_min) eps - x_0 (independent of t); [B, ...]."""
    return (1 - sigma_min) * eps - x0


def sample_t(n: int, generator: torch.Generator | None = None, mean: float = 1.0, std: float = 1.0,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """n times t = sigmoid(N(mean, std)) in (0, 1) (TRELLIS: mean 1, std 1); [n]."""
    z = torch.randn(n, generator=generator, device=device) * std + mean
    return torch.sigmoid(z)


def drop_condition(cond: torch.Tensor, p: float, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the condition of each sample with probability p; (cond [B, ...], dropped [B] bool)."""
    dropped = torch.rand(cond.shape[0], generator=generator, device=cond.device) < p
    keep = _broadcast_t((~dropped).to(cond.dtype), cond)
    return cond * keep, dropped


def flow_loss(velocity: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
              sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """MSE between a predicted velocity and the target (1 - sigma_min) eps - x_0; scalar."""
    return torch.nn.functional.mse_loss(velocity, velocity_target(x0, eps, sigma_min))


def packed_flow_loss(velocity: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                     sample: torch.Tensor, samples: int,
                     sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """flow_loss of each sample of a packed batch (rows [N,C], sample index [N] in [0, samples)),
    then the mean over samples; scalar. Each shape weighs the same whatever its token count, so
    a batch split over processes (each averaging its own shapes) gives the same gradient."""
    err = (velocity - velocity_target(x0, eps, sigma_min)).pow(2).mean(1)
    sums = err.new_zeros(samples).index_add_(0, sample, err)
    counts = torch.bincount(sample, minlength=samples).clamp_min(1).to(err.dtype)
    return (sums / counts).mean()


def rescale_t(t: torch.Tensor, scale: float) -> torch.Tensor:
    """TRELLIS's time rescale t' = s t / (1 + (s - 1) t) (s = 1: unchanged); same shape."""
    return scale * t / (1 + (scale - 1) * t)


def time_grid(steps: int, scale: float = 3.0) -> list[float]:
    """The steps + 1 times of the sampler: linspace(1, 0, steps + 1), rescaled; from 1 to 0."""
    if steps < 1:
        raise ValueError(f"sampler steps must be >= 1, got {steps}")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return rescale_t(t, scale).tolist()


VelocityFn = Callable[[torch.Tensor, float, Any], torch.Tensor]


def guided_velocity(model: VelocityFn, x: torch.Tensor, t: float, cond: Any, uncond: Any,
                    strength: float, interval: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Classifier-free guidance v = (1 + w) v_cond - w v_uncond when interval[0] <= t <= interval[1]
    (else v_cond); the unconditional pass is skipped when w = 0; shape of x."""
    v_cond = model(x, t, cond)
    if strength == 0 or not interval[0] <= t <= interval[1]:
        return v_cond
    v_uncond = model(x, t, uncond)
    return (1 + strength) * v_cond - strength * v_uncond


@torch.no_grad()
def euler_sample(model: VelocityFn, noise: torch.Tensor, cond: Any = None, uncond: Any = None,
                 steps: int = 12, rescale: float = 3.0, cfg_strength: float = 0.0,
                 cfg_interval: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Integrate dx/dt = v(x, t, cond) from t = 1 (x = noise) to t = 0 with Euler steps
    x <- x - (t - t_prev) v on the rescaled grid, with CFG; the sample, shape of noise.

    model(x, t, cond) gets the current time as a Python float in [0, 1]."""
    grid = time_grid(steps, rescale)
    x = noise
    for t, t_prev in zip(grid[:-1], grid[1:]):
        v = guided_velocity(model, x, t, cond, uncond, cfg_strength, cfg_interval)
        x = x - (t - t_prev) * v
    return x
