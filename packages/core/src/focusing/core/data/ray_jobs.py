"""`focusing prepare --ray`: the per-shape work of prepare as Ray tasks, on a cluster or locally.

Why: local worker processes stop at one machine; a lab's cluster often runs Ray already. Only
the building moves: each task builds one shape's record (prepare.build_job, the code the local
workers run) and returns its entry and the record's bytes. The driver, the one process that
holds the DATASET lock, writes each record atomically (temp file, fsync, rename) and then its
manifest line, as with local workers. So the nodes need to read the meshes (at the same paths:
a shared file system) but never write into DATASET; a run killed at any moment leaves whole
records or none, and a rerun (through Ray or not) skips what is done and builds the rest. The
same input gives the same manifest and records as local workers, apart from the timings.

Ray is an optional extra (`pip install 'focusing-core[ray]'`), imported only here, only with
--ray.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import contextmanager
from typing import Iterable, Iterator

from focusing.core.data.prepare import Job, _entry, _failed, _reusable, _worker_init, build_job, \
    store
from focusing.core.data.prepared import file_sha256

EXTRA = "focusing-core[ray]"
TASKS_PER_CPU = 2  # tasks in flight per cluster CPU: the nodes stay busy, the driver's memory low


class RayUnavailable(RuntimeError):
    """Ray is not installed, or no Ray cluster answers at the address given."""


def import_ray():
    """The ray module; RayUnavailable naming the extra when it is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(f"--ray needs Ray, an optional extra of focusing: pip install "
                             f"'{EXTRA}' (or pip install ray) ({exc})") from None
    return ray


def connect(ray, address: str) -> bool:
    """Connect this process to Ray: `local` starts an instance on this machine, `auto` joins the
    cluster this machine belongs to (RAY_ADDRESS or `ray start`), anything else is an address
    (host:port, ray://host:port). A connection made before (ray.init) is used as it is.
    Returns whether this call connected (and so should disconnect at the end)."""
    if ray.is_initialized():
        return False
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=False)
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        text = str(exc).strip().splitlines()
        raise RayUnavailable(f"--ray {address}: no Ray cluster to join ({text[0] if text else exc}"
                             "); start one with `ray start --head`, give its address, or use "
                             "--ray local") from None
    return True


@contextmanager
def ray_connection(address: str) -> Iterator:
    """The ray module, connected to `address` (connect) for the block; disconnected after it
    when the block connected it."""
    ray = import_ray()
    started = connect(ray, address)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _build_task(job: Job, sha256: str | None) -> tuple[dict, bytes | None]:
    """A Ray task: one shape's entry and record bytes (prepare.build_job), one thread."""
    _worker_init()
    try:
        sha256 = sha256 or file_sha256(job.source)
    except OSError as exc:
        return _failed(job, exc), None
    return build_job(job, sha256)


def _precheck(job: Job) -> tuple[dict | None, str | None]:
    """In the driver, for a shape that was ok before: (its entry, marked skipped, when its record
    is still valid; None, the file's sha256 otherwise). Other shapes are hashed by their task."""
    prev = job.previous
    if not prev or prev.get("status") != "ok":
        return None, None
    try:
        sha256 = file_sha256(job.source)
    except OSError as exc:
        return _failed(job, exc), None
    return ({**prev, "skipped": True}, sha256) if _reusable(job, sha256) else (None, sha256)


def run_jobs_ray(jobs: Iterable[Job]) -> Iterator[dict]:
    """Each job's entry as it finishes (any order), its record written by this process; the
    shapes built as Ray tasks of one CPU each, TASKS_PER_CPU per cluster CPU in flight, on the
    cluster this process is connected to (ray_connection). A task whose worker dies is retried
    once by Ray, then failed with the reason. Closing the iterator cancels the tasks in
    flight."""
    ray = import_ray()
    if not ray.is_initialized():
        raise RayUnavailable("run_jobs_ray: not connected to Ray (use ray_connection)")
    task = ray.remote(num_cpus=1, max_retries=1)(_build_task)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending, in_flight = deque(jobs), {}
    try:
        while pending or in_flight:
            while pending and len(in_flight) < TASKS_PER_CPU * cpus:
                job = pending.popleft()
                entry, sha256 = _precheck(job)
                if entry is not None:
                    yield entry
                else:
                    in_flight[task.remote(job, sha256)] = job
            if not in_flight:
                continue
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                job = in_flight.pop(ref)
                try:
                    entry, data = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    yield _task_failed(job, exc)
                    continue
                yield store(job, entry, data)
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)


def _task_failed(job: Job, exc: BaseException) -> dict:
    """The entry of a task that Ray could not finish (its worker died, its node was lost)."""
    text = str(exc).strip().splitlines()
    return _entry(job, reason=f"Ray task failed: {type(exc).__name__}",
                  error=f"{type(exc).__name__}: {text[0] if text else ''}"[:500])

