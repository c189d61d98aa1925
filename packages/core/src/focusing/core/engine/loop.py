"""The generic training loop: see the package docstring (focusing.core.engine) for the API.

Signals: SIGINT (Ctrl-C) or SIGTERM (a scheduler's notice) during `fit` finish the current step,
write a checkpoint and raise TrainingInterrupted, whose message says where the checkpoint is; a
second one stops at once (the newest checkpoint written before stays intact). Without this a
Ctrl-C lost everything since the last periodic checkpoint, silently.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings
from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from focusing.core.config import EngineConfig, dumps
from focusing.core.engine import checkpoint
from focusing.core.engine.ema import WeightAverage
from focusing.core.engine.distributed import (
    DistInfo, all_reduce_gradients, all_reduce_mean, barrier, init_distributed, rank_slots,
)
from focusing.core.engine.memory import PeakMemory, current_rss_bytes
from focusing.core.engine.profile import phase
from focusing.core.engine.runfolder import check_run_folder, claim_run_folder, record_changes
from focusing.core.io import resolve_dotdot


class NonFiniteError(RuntimeError):
    """Training met a non-finite loss or gradient and was told to stop (or skipped too often)."""


class TrainingInterrupted(BaseException):
    """Training stopped on SIGINT or SIGTERM, after a checkpoint of its last complete step unless
    a second signal asked to stop at once. exit_code: 128 + the signal (130 for SIGINT).
    A BaseException, as KeyboardInterrupt is, but not one: click would print "Aborted!" for it."""

    def __init__(self, message: str, signum: int, step: int, checkpoint: Path | None = None):
        super().__init__(message)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return str(self.args[0])


class _StopSignals:
    """SIGINT/SIGTERM handlers for the span of a fit (main thread only): the first signal is
    noted and stops the loop after the current step; a second raises TrainingInterrupted at
    once, wherever the process is (atomic writes leave no partial file)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, engine: "Engine"):
        self.engine = engine
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        engine = self.engine
        if self.signum is not None:
            raise TrainingInterrupted(
                f"{name} again: stopped at once; the newest intact checkpoint is "
                f"{checkpoint.newest_checkpoint(engine.run_dir)}", signum, engine.step)
        self.signum = signum
        if engine.dist.is_main:  # os.write: a signal may arrive while tqdm writes to stderr
            os.write(2, f"\n{name}: finishing the current step, then writing a checkpoint (send "
                        f"{name} again to stop at once)\n".encode())


@dataclass
class StepOutput:
    """What TrainStep.loss returns: the loss to back-propagate and what to log about it."""

    loss: torch.Tensor                                        # scalar, mean over the call's slots
    terms: dict[str, float] = field(default_factory=dict)     # logged as loss/<name>
    counts: dict[str, float] = field(default_factory=dict)    # logged as <counts_tag>/<name>
    images: dict[str, torch.Tensor] = field(default_factory=dict)  # kept for TrainStep.log
    extra: dict[str, Any] = field(default_factory=dict)       # anything else for TrainStep.log
    postfix: dict[str, Any] = field(default_factory=dict)     # added to the progress bar


@dataclass
class StepResult:
    """What one engine step measured (the history `Engine.fit` returns)."""

    step: int = 0
    terms: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    postfix: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    @property
    def mesh(self):
        """The step's mesh (vertices, faces), when the trainer kept one in extra['mesh']."""
        return self.extra.get("mesh")


class TrainStep(ABC):
    """One trainer's own part: what to optimise and the loss of a step. See focusing.core.engine."""

    slots_per_call: int = 0            # slots per loss() call (backward after each); 0: all at once
    counts_tag: str = "counts"         # TensorBoard group of StepOutput.counts
    shape_keys: tuple[str, ...] = ()   # setup keys (or table prefixes) that fix the module's shape

    @property
    @abstractmethod
    def module(self) -> torch.nn.Module:
        """The module whose parameters are optimised and whose state_dict is checkpointed."""

    def parameters(self) -> list[torch.nn.Parameter]:
        """Parameters to optimise (default: the module's that require a gradient)."""
        return [p for p in self.module.parameters() if p.requires_grad]

    @abstractmethod
    def loss(self, step: int, slots: list[int]) -> StepOutput:
        """Loss at `step` (0-based) of the global-batch slots `slots` (this process's share)."""

    def evaluate(self, step: int) -> dict[str, float]:
        """Scalars for TensorBoard (eval/<name>) and the progress bar, every train.eval_every
        steps."""
        return {}

    def log(self, writer, step: int, result: StepResult) -> None:
        """Write extra summaries (images, meshes) on the main process after step `step`."""

    def on_checkpoint(self, step: int, final: bool) -> None:
        """Called on the main process after each checkpoint is written (e.g. to calibrate);
        final: the run's last one (train.steps reached or train.minutes spent)."""

    # Set by the engine before each evaluate(): optimisation seconds so far, resumes included
    # (no evaluation, checkpoint or logging time), the clock of quality-against-time plots.
    train_seconds: float = 0.0

    def state_dict(self) -> dict:
        """Extra state to checkpoint beside the module (the engine keeps train.ema itself)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""


def set_reproducibility(train: EngineConfig) -> None:
    """Seed torch; in deterministic mode also fix one CPU thread and deterministic kernels."""
    if train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(train.seed)


def prepare(train: EngineConfig) -> DistInfo:
    """Call before building a TrainStep: reproducibility settings, seed, process group."""
    set_reproducibility(train)
    return init_distributed()


def lr_factor(train: EngineConfig, clock=None, restart_clock=None):
    """LR multiplier per step: linear warm-up over train.warmup_steps, then cosine to 0 over
    train.steps, or over train.minutes of `clock()` seconds where that runs out first.

    train.restart_at > 0 splits the schedule in two phases: the first (steps before it) warms
    up and anneals to 0 at restart_at; the second warms up again and anneals over the steps
    left, or over the minutes left after `restart_clock()` (the optimisation seconds at the
    restart), at peak train.restart_lr (0: train.lr). Why: a render-free warm-up followed by
    rendered steps under one cosine left the rendered steps at the schedule's tail (the
    `small` budget's 50 own steps ran at 0.1% of the peak LR), so they could not change much."""
    warm = train.warmup_steps
    limit_s = 60.0 * train.minutes
    restart = train.restart_at if 0 < train.restart_at else 0
    peak2 = (train.restart_lr / train.lr) if train.restart_lr > 0 else 1.0

    def cosine(step: int, total: int, t_clock) -> float:
        """Warm-up, then cosine over `total` steps or the clock fraction t_clock(), which ever
        is further; the clock is read only after the warm-up."""
        if step < warm:
            return (step + 1) / warm
        t = min((step - warm) / max(total - warm, 1), 1.0)
        if t_clock is not None:
            t = max(t, min(t_clock(), 1.0))
        return 0.5 * (1.0 + math.cos(math.pi * t))

    def f(step: int) -> float:
        if restart and step < restart:
            return cosine(step, restart, None)
        if restart:
            t0 = restart_clock() if restart_clock is not None else 0.0  # read at the boundary
            t_clock = None
            if limit_s > 0 and clock is not None:
                t_clock = lambda: (clock() - t0) / max(limit_s - t0, 1e-9)  # noqa: E731
            return peak2 * cosine(step - restart, max(train.steps, 1) - restart, t_clock)
        t_clock = (lambda: clock() / limit_s) if limit_s > 0 and clock is not None else None
        return cosine(step, max(train.steps, 1), t_clock)

    return f


class Engine:
    """Runs a TrainStep: run folder, loop, schedule, clipping, non-finite guard, checkpoints."""

    def __init__(self, step: TrainStep, train: EngineConfig, run_dir: Path, config: dict,
                 resume: bool = False, allow_changes: bool = False, progress: bool = True,
                 dist_info: DistInfo | None = None, name: str = "", normalise_config=None):
        self.trainstep = step
        self.train = train
        self.run_dir = resolve_dotdot(run_dir)
        self.config = config
        self.name = name or str(config.get("name", ""))
        self.dist = dist_info or init_distributed()
        self.device = self.dist.device
        self.progress = progress and self.dist.is_main
        if train.batch_size % self.dist.world_size:
            raise ValueError(f"train.batch_size {train.batch_size} is not divisible by "
                             f"{self.dist.world_size} processes")
        # the lock first (rank 0 writes): nothing is written, nor checked, before it is held
        self.lock = claim_run_folder(self.run_dir, resume) if self.dist.is_main else None
        try:
            self._open(config, resume, allow_changes, normalise_config)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            raise

    def _open(self, config: dict, resume: bool, allow_changes: bool, normalise_config) -> None:
        step, train = self.trainstep, self.train
        changes = check_run_folder(self.run_dir, config, resume, allow_changes, step.shape_keys,
                                   normalise_config)
        self.module = step.module
        self.optimizer = torch.optim.AdamW(step.parameters(), lr=train.lr,
                                           weight_decay=train.weight_decay)
        self.restart_seconds: float | None = None  # optimisation seconds at train.restart_at
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(train, clock=lambda: self.train_seconds,
                                      restart_clock=self._restart_clock))
        # train.ema > 0: the averaged weights are what checkpoints, evaluations and calibration use
        self.ema = WeightAverage(self.module, train.ema) if train.ema > 0 else None
        self.step = 0
        self.saved_step: int | None = None  # the step of the last checkpoint written or loaded
        self.skipped_total = 0
        self.skipped_in_row = 0
        self.train_seconds = 0.0
        self.last_eval: dict[str, float] = {}
        self._rss_base = current_rss_bytes()  # CPU peak memory is reported above this level
        if self.dist.is_main:
            checkpoint.remove_stray_temp_files(self.run_dir)
        if resume:
            self._resume()
        self.writer = None
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            record_changes(self.run_dir, self.step, changes)
            from focusing.core.io import write_text_atomic
            from torch.utils.tensorboard import SummaryWriter

            write_text_atomic(self.run_dir / "config.json", dumps(config))
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _restart_clock(self) -> float:
        """The optimisation seconds when the schedule restarted (train.restart_at): read the
        first time the second phase asks, then kept (and checkpointed)."""
        if self.restart_seconds is None:
            self.restart_seconds = self.train_seconds
        return self.restart_seconds

    # -- checkpoints --------------------------------------------------------------------
    def _resume(self) -> None:
        if not checkpoint.has_checkpoint(self.run_dir):  # stopped before its first checkpoint
            if self.dist.is_main:
                print(f"note: {self.run_dir} holds no checkpoint (the run stopped before its "
                      "first one): starting from step 0 with its stored setup "
                      f"({self.run_dir / 'config.json'})", file=sys.stderr, flush=True)
            return
        step, weights, state = checkpoint.load_checkpoint(self.run_dir, with_state=True)
        # written when the run kept an EMA: weights is the average
        online = state.get("online_weights")
        self.module.load_state_dict(weights if online is None else {**weights, **online})
        if self.ema is not None:
            self.ema.load(weights, state.get("ema_updates", 0))
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.skipped_total = int(state.get("skipped_total", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.restart_seconds = state.get("restart_seconds")
        self.trainstep.load_state_dict(state.get("trainstep", {}))
        self.step = self.saved_step = step

    def save(self) -> Path | None:
        """Checkpoint the current step (main process); never writes non-finite weights."""
        if not self.dist.is_main:
            return None
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                 "skipped_total": self.skipped_total, "train_seconds": self.train_seconds,
                 "restart_seconds": self.restart_seconds,
                 "trainstep": self.trainstep.state_dict()}
        with self.averaged_weights() as online:
            if online is not None:  # resume continues from these, the checkpoint holds the average
                state.update(online_weights=online, ema_updates=self.ema.updates)
            try:
                path = checkpoint.save_checkpoint(self.run_dir, self.step, self.module, state)
            except checkpoint.CheckpointError as exc:
                raise NonFiniteError(f"{exc}; the last good checkpoint is kept") from None
            except OSError as exc:  # a full disk above all: say so, and what is left
                raise checkpoint.CheckpointWriteError(checkpoint.write_fault(
                    self.run_dir, exc, f"the checkpoint of step {self.step}")) from None
            self.saved_step = self.step
            self.module.eval()
            with torch.no_grad():
                self.trainstep.on_checkpoint(self.step,
                                             self.step >= self.train.steps or self.out_of_time())
        self.module.train()
        return path

    def averaged_weights(self):
        """A context in which the module holds train.ema's averaged weights and which yields the
        online ones (without an average: nothing changes and it yields None)."""
        return self.ema.swapped_in(self.module) if self.ema is not None else nullcontext()

    # -- the step -----------------------------------------------------------------------
    def autocast(self):
        """bf16 autocast on the GPU (train.amp = auto | bf16); full precision on the CPU."""
        on = self.device.type == "cuda" and self.train.amp in ("auto", "bf16")
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on)

    def _all_finite(self, finite: bool) -> bool:
        if self.dist.world_size <= 1:
            return finite
        return all_reduce_mean(0.0 if finite else 1.0, self.dist.world_size) == 0.0

    def train_step(self) -> StepResult:
        """One optimisation step over this process's share of the global batch."""
        step, batch = self.step, self.train.batch_size
        world, rank = self.dist.world_size, self.dist.rank
        slots = rank_slots(batch, rank, world)
        per_call = self.trainstep.slots_per_call or len(slots)
        t0 = time.perf_counter()
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        merged = StepResult(step=step + 1)
        finite = True
        with PeakMemory(self.device, base_bytes=self._rss_base) as peak:
            for i in range(0, len(slots), per_call):
                part = slots[i:i + per_call]
                with self.autocast():
                    out = self.trainstep.loss(step, part)
                if not bool(torch.isfinite(out.loss.detach()).all()):
                    finite = False
                else:
                    # mean over the global batch: each process holds batch/world slots
                    scaled = out.loss / batch * world
                    with phase("backward"):
                        (scaled if len(part) == 1 else scaled * len(part)).backward()
                for k, v in out.terms.items():
                    merged.terms[k] = merged.terms.get(k, 0.0) + v * len(part) / len(slots)
                for k, v in out.counts.items():
                    merged.counts[k] = merged.counts.get(k, 0.0) + v * len(part) / len(slots)
                merged.images, merged.extra = out.images, out.extra
                merged.postfix.update(out.postfix)
        with phase("optimizer"):
            self._update(step, merged, self._all_finite(finite))
        merged.seconds = time.perf_counter() - t0
        merged.peak_memory_mb = peak.peak_mb
        for k in list(merged.terms):
            merged.terms[k] = all_reduce_mean(merged.terms[k], world)
        self.step += 1
        return merged

    def _update(self, step: int, merged: StepResult, finite: bool) -> None:
        """Average and clip the gradients, then step the optimiser, or skip a non-finite step."""
        if finite:
            all_reduce_gradients(self.module, self.dist.world_size)
            params = [p for p in self.trainstep.parameters() if p.grad is not None]
            if self.train.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(self.trainstep.parameters(),
                                                      self.train.grad_clip)
            else:
                norm = (torch.nn.utils.get_total_norm([p.grad for p in params]) if params
                        else torch.zeros(()))
            merged.terms["grad_norm"] = float(norm)
            finite = self._all_finite(math.isfinite(float(norm)))
        if finite:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.module)
            self.skipped_in_row = 0
        else:
            self._nonfinite(step)
            self.optimizer.zero_grad(set_to_none=True)
            merged.skipped = True
        with warnings.catch_warnings():  # a skipped first step: the schedule still advances
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()

    def _nonfinite(self, step: int) -> None:
        last = checkpoint.stored_steps(self.run_dir)
        keep = (f"the last good checkpoint is step {last[0]}" if last
                else "no checkpoint was written")
        hint = "lower train.lr or the loss weights, or set train.grad_clip > 0"
        if self.train.nonfinite == "stop":
            raise NonFiniteError(f"non-finite loss or gradient at step {step + 1} "
                                 f"(train.nonfinite = 'stop'); {keep}; {hint}")
        self.skipped_total += 1
        self.skipped_in_row += 1
        if self.dist.is_main:
            print(f"warning: step {step + 1}: non-finite loss or gradient, step skipped "
                  f"({self.skipped_total} skipped so far)", flush=True)
        if self.skipped_in_row >= self.train.max_nonfinite_skips:
            raise NonFiniteError(f"{self.skipped_in_row} steps in a row had a non-finite loss or "
                                 f"gradient (up to step {step + 1}; train.max_nonfinite_skips = "
                                 f"{self.train.max_nonfinite_skips}); {keep}; {hint}")

    def log(self, res: StepResult) -> None:
        """Write one step's scalars to TensorBoard, then the step's own summaries."""
        if self.writer is None:
            return
        step = self.step
        if step % self.train.log_every == 0 or step == 1:
            for k, v in res.terms.items():
                self.writer.add_scalar(f"loss/{k}", v, step)
            for k, v in res.counts.items():
                self.writer.add_scalar(f"{self.trainstep.counts_tag}/{k}", v, step)
            self.writer.add_scalar("time/step_seconds", res.seconds, step)
            self.writer.add_scalar("memory/peak_mb", res.peak_memory_mb, step)
            self.writer.add_scalar("lr", self.scheduler.get_last_lr()[0], step)
            self.writer.add_scalar("guard/skipped_steps", self.skipped_total, step)
        self.trainstep.log(self.writer, step, res)

    def out_of_time(self) -> bool:
        """True once train.minutes (> 0) of optimisation seconds are spent."""
        return self.train.minutes > 0 and self.train_seconds >= 60.0 * self.train.minutes

    def fit(self, steps: int | None = None) -> list[StepResult]:
        """Train until `steps` total steps (default: train.steps) or train.minutes of
        optimisation, whichever comes first; checkpoints as configured, saves at the stop, and
        evaluates every train.eval_every steps and at the run's end (not at a partial stop).
        Returns each step's StepResult without its images and extra (log() has seen them)."""
        from tqdm.auto import tqdm

        total = self.train.steps if steps is None else int(steps)
        history = []
        bar = tqdm(total=total, initial=self.step, desc=f"train {self.name}", unit="step",
                   disable=not self.progress)
        every, eval_every = self.train.checkpoint_every, self.train.eval_every
        try:
            with _StopSignals(self) as signals:
                while self.step < total and not self.out_of_time():
                    res = self.train_step()
                    self.train_seconds += res.seconds
                    self.log(res)
                    # the history keeps a step's figures, not its images and mesh: a rendered
                    # step's were 0.66 MiB at 128, and held to the run's end they grew malloc's
                    # bytes in use by 191 MiB in 300 steps (BENCHMARKS.md, session 11)
                    history.append(replace(res, images={}, extra={}))
                    last = self.step >= self.train.steps or self.out_of_time()  # the run's end
                    if eval_every and (self.step % eval_every == 0 or last):
                        self._evaluate()
                    bar.update(1)
                    bar.set_postfix(loss=f"{res.terms.get('total', float('nan')):.4f}",
                                    skipped=self.skipped_total, **res.postfix,
                                    **{k: f"{v:.4g}" for k, v in self.last_eval.items()
                                       if "/" not in k})
                    if every and self.step % every == 0 and self.step < total and not last:
                        self.save()
                    stop = self._stop_requested(signals.signum is not None)  # every rank
                    if stop and self.step < total and not self.out_of_time():
                        raise self._interrupted(signals.signum)  # (at the end: just finish)
                self.save()
        finally:
            bar.close()
            self._flush_events()
        barrier(self.dist.world_size)
        return history

    def _stop_requested(self, signalled: bool) -> bool:
        """Whether a signal asked this process (or, under torchrun, any process) to stop."""
        if self.dist.world_size <= 1:
            return signalled
        return all_reduce_mean(1.0 if signalled else 0.0, self.dist.world_size) > 0.0

    def _interrupted(self, signum: int) -> TrainingInterrupted:
        """Write the checkpoint of the last complete step (unless written) and say where."""
        if self.saved_step != self.step:
            self.save()
        path = checkpoint.weights_path(self.run_dir, self.step)
        return TrainingInterrupted(
            f"interrupted by {signal.Signals(signum).name} after step {self.step}: checkpoint "
            f"written to {path}; continue with --resume", signum, self.step, path)

    def _flush_events(self) -> None:
        if self.writer is not None:
            try:
                self.writer.flush()
            except OSError as exc:
                print(f"warning: TensorBoard events in {self.run_dir} could not be written "
                      f"({exc.strerror or exc})", file=sys.stderr)

    def _evaluate(self) -> None:
        self.trainstep.train_seconds = self.train_seconds
        self.module.eval()
        with torch.no_grad(), self.averaged_weights():
            self.last_eval = dict(self.trainstep.evaluate(self.step))
        self.module.train()
        if self.writer is not None:
            for k, v in self.last_eval.items():
                self.writer.add_scalar(f"eval/{k}", v, self.step)

    def close(self) -> None:
        """Close the TensorBoard writer and let the run folder's lock go."""
        writer, self.writer = getattr(self, "writer", None), None
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                print(f"warning: TensorBoard events in {self.run_dir} could not be written "
                      f"({exc.strerror or exc})", file=sys.stderr)
        lock, self.lock = getattr(self, "lock", None), None
        if lock is not None:
            lock.release()
