"""A toy trainer on the shared engine: linear regression y = x @ w_true + b_true.

Every step's data comes from a generator seeded by (seed, step, slot), as the VAE step's does,
so runs and resumes are reproducible. `nan_at` makes the loss of those steps NaN (fault
injection). Run as a script: python _toy_engine.py RUN STEPS [--resume] (used by the SIGKILL test).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from focusing.core.config import EngineConfig, load_defaults, check_value, setting_rules
from focusing.core.engine import Engine, StepOutput, TrainStep, prepare

W_TRUE = torch.tensor([[1.5], [-2.0], [0.5]])


def toy_train(**overrides) -> EngineConfig:
    """The defaults' [train] table with overrides, checked like any setup."""
    table = dict(load_defaults()["train"], **overrides)
    rules = setting_rules()
    return EngineConfig(**{k: check_value(f"train.{k}", v, rules[f"train.{k}"])
                          for k, v in table.items()})


class LinearStep(TrainStep):
    """Fit a 3 -> 1 linear layer to noisy samples of W_TRUE."""

    shape_keys = ("model",)

    def __init__(self, device, seed: int = 0, nan_at: tuple[int, ...] = ()):
        self.net = torch.nn.Linear(3, 1).to(device)
        self.seed, self.nan_at, self.evaluations = seed, set(nan_at), []

    @property
    def module(self):
        return self.net

    def loss(self, step, slots):
        losses = []
        for slot in slots:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + step * 101 + slot)
            x = torch.randn(16, 3, generator=g)
            y = x @ W_TRUE + 0.25 + 0.01 * torch.randn(16, 1, generator=g)
            losses.append((self.net(x) - y).pow(2).mean())
        loss = torch.stack(losses).mean()
        if step + 1 in self.nan_at:
            loss = loss * float("nan")
        return StepOutput(loss, terms={"mse": float(loss.detach()), "total": float(loss.detach())},
                          postfix={"w0": f"{float(self.net.weight.detach()[0, 0]):.3f}"})

    def evaluate(self, step):
        err = float((self.net.weight.detach().T - W_TRUE).abs().max())
        self.evaluations.append((step, err))
        return {"weight_error": err}


def make_engine(run: Path, resume: bool = False, nan_at=(), allow_changes: bool = False,
                config_extra: dict | None = None, **train) -> Engine:
    """An engine over LinearStep writing `run`."""
    cfg = toy_train(**{"lr": 0.05, "warmup_steps": 2, "steps": 12, "checkpoint_every": 4,
                       "deterministic": True, **train})
    dist = prepare(cfg)
    config = {"model": {"in": 3, "out": 1},
              "train": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
              **(config_extra or {})}
    return Engine(LinearStep(dist.device, nan_at=nan_at), cfg, run, config, resume=resume,
                  allow_changes=allow_changes, progress=False, dist_info=dist, name="toy")


if __name__ == "__main__":
    run, steps = Path(sys.argv[1]), int(sys.argv[2])
    engine = make_engine(run, resume="--resume" in sys.argv, steps=steps, checkpoint_every=2)
    engine.fit()
    engine.close()
    print(f"step {engine.step}")
