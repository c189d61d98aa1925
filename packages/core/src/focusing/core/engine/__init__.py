"""The shared training engine: every trainer is this engine plus its own `TrainStep`.

The engine owns what all trainers share: the run folder (config.json, config_changes.json,
tensorboard/, checkpoints/), the step loop, AdamW with a linear warm-up + cosine LR schedule,
gradient clipping, the non-finite guard, safetensors checkpoints with exact resume, TensorBoard
scalars, a periodic evaluation hook, torchrun/DDP (gradients averaged over processes; rank 0
writes) and a tqdm progress bar. A trainer supplies only its step.

API (what a new trainer needs)::

    from focusing.core.engine import Engine, StepOutput, TrainStep, prepare

    class LinearStep(TrainStep):
        slots_per_call = 0            # slots per loss() call; 0: all of this process's at once
        shape_keys = ("model",)       # setup keys whose change a resume refuses

        def __init__(self, device):
            self.net = torch.nn.Linear(3, 1).to(device)

        @property
        def module(self):             # optimised and checkpointed (its state_dict)
            return self.net

        def loss(self, step, slots):  # slots: this process's indices into the global batch
            x, y = data_of(step, slots)
            loss = (self.net(x) - y).pow(2).mean()
            return StepOutput(loss, terms={"total": float(loss)}, postfix={"x": 1})

        def evaluate(self, step):     # optional: every train.eval_every steps -> eval/<name>
            return {"val": ...}

        # optional: log(writer, step, result) for images; state_dict()/load_state_dict(state)

    dist = prepare(setup.train)       # seed, deterministic mode, process group: before building
    engine = Engine(LinearStep(dist.device), setup.train, run_dir, config=setup.to_dict(),
                    resume=False, allow_changes=False, dist_info=dist)
    history = engine.fit()            # list[StepResult]; engine.close() closes TensorBoard

`train` is a `focusing.core.config.EngineConfig` (the [train] table, the engine's keys and
no trainer's): steps, minutes (a wall-time limit on optimisation; the LR schedule then follows
the clock), batch_size, lr, weight_decay, warmup_steps, restart_at and restart_lr (a second
warm-up and cosine from that step), grad_clip (0: none), ema (0: none; a weight average that
checkpoints and evaluations use, `engine.ema`), seed, log_every, checkpoint_every,
eval_every, amp, nonfinite ("skip" | "stop"), max_nonfinite_skips, deterministic. What a
trainer reads beyond these lives in its own tables (the VAE's: [evaluation], [resources]).

The run folder (runfolder.py, lock.py): the engine locks it before writing anything (one
process per folder; a lock left by a killed process is taken over with a warning), refuses a
non-empty folder that is not a run, and removes only its own temp files. SIGINT/SIGTERM during
`fit` write a checkpoint of the last complete step and raise TrainingInterrupted; a checkpoint
that cannot be written (full disk) raises CheckpointWriteError naming the newest intact one.

Profiling: `engine.profile.phase(name)` marks a phase of a step (the engine marks `backward` and
`optimizer`); `profile_steps` reads their time and peak tensor memory from torch's profiler
(benchmarks/step_profile.py).

Non-finite guard: a loss or total gradient norm that is not finite (on any process) skips the
update; the skipped-step count is logged (guard/skipped_steps, the progress bar) and
max_nonfinite_skips in a row stop the run with NonFiniteError; with nonfinite = "stop" the first
one does. A checkpoint with non-finite weights is never written; the last good one is kept.

Reproducibility: every step's randomness should come from generators seeded by (seed, step,
slot), as the VAE step does; the engine checkpoints the optimiser, the scheduler and torch's
global RNG. With train.deterministic = true (one CPU thread, deterministic kernels) two runs
and a run killed and resumed give bitwise-equal weights on the same machine and library
versions. Without it, runs match to float rounding only (thread scheduling changes the order
of reductions).
"""

from focusing.core.engine.checkpoint import (
    CheckpointError, CheckpointWriteError, load_checkpoint, load_weights,
)
from focusing.core.engine.distributed import DistInfo, init_distributed
from focusing.core.engine.lock import FolderBusyError
from focusing.core.engine.loop import (
    Engine, NonFiniteError, StepOutput, StepResult, TrainingInterrupted, TrainStep, lr_factor,
    prepare, set_reproducibility,
)
from focusing.core.engine.runfolder import check_run_folder, claim_run_folder, read_run_config

__all__ = [
    "CheckpointError", "CheckpointWriteError", "DistInfo", "Engine", "FolderBusyError",
    "NonFiniteError", "StepOutput", "StepResult", "TrainStep", "TrainingInterrupted",
    "check_run_folder", "claim_run_folder", "init_distributed", "load_checkpoint",
    "load_weights", "lr_factor", "prepare", "read_run_config", "set_reproducibility",
]
