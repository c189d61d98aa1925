"""The child processes of `focusing compare`: each training runs in its own process
(`python -m focusing.eval.compare --child JOB.json`), so its memory is measured from a clean
start. The child records the peak RSS of training above its level after data preparation
(sampled every 2 ms) and each step's own peak; the parent records the child's whole max RSS
through `os.wait4`.

A finished training leaves a record beside its job file (save_result: the job, exit status,
wall seconds, max RSS), so that `compare --resume` keeps it (finished_result) when the same job
comes again, and trains only what an interruption left unfinished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from focusing.core.io import write_text_atomic


def _rss_mb() -> float:
    from focusing.core.engine.memory import current_rss_bytes

    return current_rss_bytes() / 2**20


def run_child_job(job: dict) -> dict:
    """Train one setup in this process and write its step history (JSON) to job['history']."""
    import resource

    rss_start = _rss_mb()
    import torch

    from focusing.core.config import resolve_setup
    from focusing.core.engine.memory import PeakMemory
    from focusing.core.vae.train.trainer import Trainer

    if int(job.get("threads", 0)) > 0:
        torch.set_num_threads(int(job["threads"]))
    t0 = time.perf_counter()
    config = resolve_setup(job["setup"], job["overrides"])
    trainer = Trainer(config, Path(job["data"]), Path(job["run_dir"]),
                      progress=bool(job.get("progress", True)), resume=bool(job.get("resume")),
                      allow_changes=bool(job.get("resume")))
    prep_s = time.perf_counter() - t0
    rss_before = _rss_mb()
    t1 = time.perf_counter()
    try:
        with PeakMemory(trainer.device) as peak:
            history = trainer.fit(job.get("stop_at"))
    finally:
        trainer.close()
    fit_s = time.perf_counter() - t1
    steps = [{"step": r.step, "terms": r.terms, "counts": r.counts, "seconds": r.seconds,
              "peak_memory_mb": r.peak_memory_mb} for r in history]
    out = {
        "setup": job["setup"], "overrides": job["overrides"], "steps": steps,
        "prep_s": prep_s, "fit_s": fit_s, "rss_start_mb": rss_start,
        "rss_before_fit_mb": rss_before, "train_peak_mb": peak.peak_mb,
        # ru_maxrss is in KiB on Linux
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(), "device": str(trainer.device),
    }
    write_text_atomic(Path(job["history"]), json.dumps(out, indent=2))
    return out


@dataclass
class ChildResult:
    """How a child process ended: its history (None on failure) and its own rusage."""

    history: dict | None
    returncode: int
    wall_s: float
    max_rss_mb: float
    error: str = ""


def result_file(job_file: Path) -> Path:
    """Where the record of a finished child of `job_file` is kept: JOB.result.json beside it."""
    return job_file.with_name(job_file.stem + ".result.json")


def save_result(job: dict, job_file: Path, result: ChildResult) -> None:
    """Record a child that finished (its job, exit status, wall s, max RSS MiB) for --resume."""
    record = {"job": job, "returncode": result.returncode, "wall_s": result.wall_s,
              "max_rss_mb": result.max_rss_mb}
    write_text_atomic(result_file(job_file), json.dumps(record, indent=2))


def finished_result(job: dict, job_file: Path) -> ChildResult | None:
    """The result of an earlier child that ran exactly `job` to its end (its record and its
    history on disk), else None: a changed job, a missing or unreadable file trains again."""
    record, history = result_file(job_file), Path(job["history"])
    try:
        saved = json.loads(record.read_text())
        hist = json.loads(history.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("job") != job or saved.get("returncode") != 0:
        return None
    return ChildResult(hist, 0, float(saved["wall_s"]), float(saved["max_rss_mb"]))


def launch_child(job: dict, job_file: Path, log_file: Path | None = None,
                 timeout_s: float | None = None) -> ChildResult:
    """Run `python -m focusing.eval.compare --child job_file`; the child's progress bars pass
    through to our stderr (and are kept in log_file when given); max RSS by os.wait4."""
    write_text_atomic(job_file, json.dumps(job, indent=2))
    history_file = Path(job["history"])
    history_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "focusing.eval.compare", "--child", str(job_file)]
    t0 = time.perf_counter()
    try:  # the child's output (progress bars) joins ours on stderr; stdout stays for --json
        sink = sys.stderr if sys.stderr.fileno() >= 0 else sys.__stderr__
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests) has no file
        sink = sys.__stderr__
    proc = subprocess.Popen(cmd, stdout=sink, stderr=sink)
    error = ""
    deadline = None if timeout_s is None else t0 + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            error = f"timed out after {timeout_s:.0f} s"
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    rc = proc.returncode
    if not error and rc != 0:
        error = (f"killed by signal {-rc} (out of memory?)" if rc < 0
                 else f"exited with status {rc}")
    history = json.loads(history_file.read_text()) if (rc == 0 and history_file.exists()) else None
    if history is None and not error:
        error = "wrote no history"
    return ChildResult(history, rc, wall, usage.ru_maxrss / 1024, error)


def child_main(argv: list[str]) -> int:
    """Entry of `python -m focusing.eval.compare --child JOB.json`; returns the exit status."""
    if len(argv) != 2 or argv[0] != "--child":
        print("usage: python -m focusing.eval.compare --child JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    run_child_job(job)
    return 0
