"""The job list of `focusing compare`: which child process trains what, at which seed, in which
folder, and from which shared warm-up. It is planned before anything runs, so that a stale
folder is refused up front and the forking can be checked without training.

Shared warm-up: the render-free warm-up reads no camera, selector or renderer, so setups that
differ only there train it identically (shared_warmup_steps). It is then trained once per seed
and each setup of that seed resumes from its checkpoint. With the small budget this gives the
warm-up 8 of the job's 14 minutes once, instead of a share per setup.

Seeds: with `--seeds K`, run i (0-based) of every setup trains with `train.seed = B + i`, B being
the seed the setups resolve to (the budget's `[config.train] seed`, 0 by default); the data
order and the camera draws follow the seed. Folders: with K = 1, RUN/runs/shared-warmup and
RUN/runs/SETUP as before; with K > 1, RUN/runs/seed-S/shared-warmup and RUN/runs/seed-S/SETUP
(reconstructions likewise under RUN/recon/seed-S/).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from focusing.eval.compare.budget import Budget
from focusing.eval.compare.spec import CompareError, SetupSpec

# Tables the render-free warm-up never reads: setups that differ only here train it alike.
WARMUP_FREE_KEYS = ("name", "description", "selectors", "cameras")
# [loss] keys it never reads either: its length (a longer one continues render-free after the
# fork) and how a rendered step encodes (loss.encode_selected)
WARMUP_FREE_LOSS_KEYS = ("tsdf_steps", "encode_selected")
WARMUP_DIR = "shared-warmup"


@dataclass(frozen=True)
class TrainJob:
    """One child process: a setup's training at one seed, or one seed's shared warm-up."""

    spec: SetupSpec              # the setup trained (a warm-up trains the first setup's config)
    seed: int                    # train.seed of this run
    run_dir: Path
    job_file: Path
    recon_dir: Path | None       # where its reconstructions go (None: a warm-up, never scored)
    stop_at: int | None = None   # a warm-up stops after this many steps
    fork_from: Path | None = None  # the shared warm-up folder this run resumes from
    warmup_seed: int | None = None  # the seed of that warm-up (budget.one_warmup: the first)

    @property
    def is_warmup(self) -> bool:
        """True for a seed's shared warm-up (trained once, forked by every setup)."""
        return self.recon_dir is None

    def child_job(self, budget: Budget, data: Path, extra: list[str] = ()) -> dict:
        """The JSON job of runner.run_child_job: setup, overrides (seed, then extra, last),
        folders."""
        return {"mode": "train", "setup": self.spec.base,
                "overrides": budget.overrides + budget.schedule + self.spec.overrides
                + [f"train.seed={self.seed}"] + list(extra),
                "data": str(data), "run_dir": str(self.run_dir),
                "history": str(self.run_dir / "history.json"), "progress": True,
                "threads": budget.threads, "resume": self.fork_from is not None,
                **({"stop_at": self.stop_at} if self.stop_at is not None else {})}


def shared_warmup_steps(specs: list[SetupSpec], steps: int) -> int:
    """Steps of render-free warm-up every setup would train identically (0: none to share).

    The render-free warm-up (loss.warmup_render = false) draws no camera and runs no selector
    or renderer; its randomness comes from (train.seed, step, slot) alone. Setups whose
    resolved configs differ only in WARMUP_FREE_KEYS, backend.renderer and WARMUP_FREE_LOSS_KEYS
    therefore train the same weights through the shortest of their warm-ups
    (tests/compare/test_compare.py checks it bit for bit), so `compare` trains that once and
    every setup resumes from its last checkpoint. A setup with a longer loss.tsdf_steps
    continues render-free after the fork: the render-free arm of the ablation."""
    def warmup_view(cfg: dict) -> dict:
        view = {k: v for k, v in cfg.items() if k not in WARMUP_FREE_KEYS}
        view["backend"] = {k: v for k, v in cfg["backend"].items() if k != "renderer"}
        view["loss"] = {k: v for k, v in cfg["loss"].items() if k not in WARMUP_FREE_LOSS_KEYS}
        return view

    if len(specs) < 2 or any(s.config["loss"]["warmup_render"] for s in specs):
        return 0
    shared = min(s.config["loss"]["tsdf_steps"] for s in specs)
    if not 0 < shared < steps:
        return 0
    first = warmup_view(specs[0].config)
    return shared if all(warmup_view(s.config) == first for s in specs[1:]) else 0


def seed_values(specs: list[SetupSpec], n_seeds: int) -> list[int]:
    """The K seeds every setup trains with: B, B+1, ..., B+K-1 (B: the setups' train.seed)."""
    if n_seeds < 1:
        raise CompareError(f"--seeds {n_seeds}: give 1 or more")
    base = {s.config["train"]["seed"] for s in specs}
    if len(base) > 1 and n_seeds > 1:
        raise CompareError(f"the setups set different train.seed values {sorted(base)}; with "
                           f"--seeds every setup trains the same seeds, so set none per setup")
    first = specs[0].config["train"]["seed"]
    return [first + i for i in range(n_seeds)]


def seed_folder(seed: int, n_seeds: int) -> str:
    """The folder level of one seed's runs: '' for a one-seed comparison, else 'seed-S'."""
    return "" if n_seeds == 1 else f"seed-{seed}"


def plan_jobs(specs: list[SetupSpec], budget: Budget, out: Path, n_seeds: int = 1
              ) -> list[TrainJob]:
    """Every child process in run order: per seed, its shared warm-up (if the setups share
    one), then each setup, forked from that seed's warm-up."""
    fork = shared_warmup_steps(specs, budget.steps)
    if budget.own_minutes > 0 and not fork:
        raise CompareError("the budget's own_minutes counts from a shared warm-up, but these "
                           "setups share none (their configs differ beyond the warm-up-free "
                           "tables, or loss.tsdf_steps is 0 or the whole run)")
    jobs = []
    warm_dir, warm_seed = None, None
    for i, seed in enumerate(seed_values(specs, n_seeds)):
        level = seed_folder(seed, n_seeds)
        runs, files = out / "runs" / level, out / "jobs" / level
        if fork and (i == 0 or not budget.one_warmup):
            warm_dir, warm_seed = runs / WARMUP_DIR, seed
            jobs.append(TrainJob(specs[0], seed, warm_dir, files / f"{WARMUP_DIR}.json", None,
                                 stop_at=fork))
        for s in specs:  # one seed: each setup keeps its own train.seed, as it always did
            jobs.append(TrainJob(s, s.config["train"]["seed"] + i, runs / s.slug,
                                 files / f"{s.slug}.json", out / "recon" / level / s.slug,
                                 fork_from=warm_dir, warmup_seed=warm_seed))
    return jobs


def fork_from_warmup(warm_dir: Path, run_dir: Path) -> None:
    """A setup's run folder that starts where the shared warm-up ended (its checkpoints,
    config and quality rows); the setup's own config is then recorded as a change."""
    if (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")
    shutil.copytree(warm_dir / "checkpoints", run_dir / "checkpoints")
    for name in ("config.json", "quality.jsonl"):
        if (warm_dir / name).exists():
            shutil.copy2(warm_dir / name, run_dir / name)
