"""`focusing compare`: train several setups under one budget, each in its own process, at one
or more seeds, then reconstruct and evaluate every mesh and write a report (focusing.eval.report).

One concern per module, so that each can change without reading the others:
- spec.py: the `NAME[:key=value...]` setup specs and CompareError;
- budget.py: budget files (steps, minutes, sizes, evaluation);
- plan.py: the job list (seeds, folders, the shared warm-up each seed forks);
- runner.py: the child process that trains one job, how its memory is measured, and the
  record of a finished one that `--resume` keeps;
- probe.py: probe steps in a fresh process (peak memory, time), shared with `--scaling`;
- memory_cap.py: the equal-memory mode (each setup's resolution under `--memory-cap`);
- pipeline.py: the comparison itself (train, reconstruct, evaluate, report; `--resume`).
`python -m focusing.eval.compare --child JOB.json` runs one job (__main__.py).
"""

from focusing.eval.compare.budget import (
    BUDGET_DIR, BUDGET_KEYS, MEMORY_CAP_KEYS, SCALING_KEYS, Budget, budget_path,
    flatten_overrides, load_budget,
)
from focusing.eval.compare.memory_cap import (
    CapSettings, alphas_for, cap_settings, choose_resolution, memory_cap_search, verdict_text,
    with_resolution,
)
from focusing.eval.compare.pipeline import (
    PLAN_FILE, Trained, TrainedRun, check_eval_resolution, check_resume, compare,
    comparison_plan, eval_output, evaluate_runs, log, memory_cap_plan, merge_warmup_history,
    minutes_after_warmup, own_time, prepare_out, train_jobs,
)
from focusing.eval.compare.probe import run_probe
from focusing.eval.compare.plan import (
    WARMUP_DIR, WARMUP_FREE_KEYS, TrainJob, fork_from_warmup, plan_jobs, seed_folder,
    seed_values, shared_warmup_steps,
)
from focusing.eval.compare.runner import (
    ChildResult, child_main, finished_result, launch_child, result_file, run_child_job,
    save_result,
)
from focusing.eval.compare.spec import (
    SHORTHANDS, CompareError, SetupSpec, parse_spec, parse_specs, split_specs,
)

__all__ = [
    "BUDGET_DIR", "BUDGET_KEYS", "MEMORY_CAP_KEYS", "PLAN_FILE", "SCALING_KEYS", "SHORTHANDS",
    "WARMUP_DIR",
    "WARMUP_FREE_KEYS", "Budget", "CapSettings", "ChildResult", "CompareError", "SetupSpec",
    "TrainJob", "Trained", "TrainedRun", "alphas_for", "budget_path", "cap_settings",
    "check_eval_resolution", "check_resume", "child_main", "comparison_plan",
    "finished_result", "result_file", "save_result", "choose_resolution", "compare", "eval_output",
    "evaluate_runs", "flatten_overrides", "fork_from_warmup", "launch_child", "load_budget", "log",
    "memory_cap_plan", "memory_cap_search", "merge_warmup_history", "minutes_after_warmup",
    "own_time", "parse_spec", "parse_specs", "plan_jobs", "prepare_out", "run_child_job",
    "run_probe", "seed_folder", "seed_values", "shared_warmup_steps", "split_specs", "train_jobs",
    "verdict_text", "with_resolution",
]
