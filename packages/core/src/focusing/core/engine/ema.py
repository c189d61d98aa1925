"""An exponential moving average of a module's weights (`train.ema`), as TRELLIS trains its flows.

With train.ema = d > 0 the engine keeps, beside the weights the optimiser updates (the *online*
weights), an average w_ema <- d_n w_ema + (1 - d_n) w after every update, where
d_n = min(d, (1 + n) / (10 + n)) for the n-th update, so the first updates are not averaged
with the initialisation. Checkpoints store the average as the run's weights (what
`reconstruct`, `generate`, calibration and the in-training evaluations read) and the online
weights in the training state, so `--resume` continues the optimisation exactly.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class WeightAverage:
    """The running average of a module's floating-point state (parameters and float buffers)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()
                       if v.is_floating_point()}

    def rate(self) -> float:
        """The decay of the next update: min(decay, (1 + n) / (10 + n)) for the n-th update."""
        n = self.updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Fold the module's current weights into the average (after an optimiser step)."""
        d = self.rate()
        state = module.state_dict()
        for k, avg in self.shadow.items():
            avg.lerp_(state[k].detach().to(avg.dtype), 1.0 - d)
        self.updates += 1

    @contextmanager
    def swapped_in(self, module: torch.nn.Module):
        """Within the block the module holds the averaged weights; the online ones come back after.
        Yields the online weights (a copy of the averaged entries)."""
        online = self.online_state(module)
        module.load_state_dict(self.shadow, strict=False)
        try:
            yield online
        finally:
            module.load_state_dict(online, strict=False)

    def online_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """A copy of the module's averaged entries as they are now (the online weights)."""
        state = module.state_dict()
        return {k: state[k].detach().clone() for k in self.shadow}

    def load(self, averaged: dict[str, torch.Tensor], updates: int) -> None:
        """Restore the average (from a checkpoint's weights) and its update count."""
        for k, avg in self.shadow.items():
            avg.copy_(averaged[k])
        self.updates = int(updates)
