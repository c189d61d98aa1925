"""`focusing prepare`: raw meshes to a prepared data set, resumable and fault tolerant.

Why: training built its records as a side effect of its start, every one of them, and one bad
mesh ended the run without a word on the others. Here every mesh is a job of its own in a
process pool, built by the very build_record training uses; a failure is a result (recorded
with its reason), not the end of the run. The parent alone appends to the manifest, one
fsynced line per finished shape, after the shape's record is in place (written atomically).
So a kill at any moment loses at most the shapes in flight: a rerun skips every shape whose
last manifest line says ok, whose file still has that content hash and whose record is whole
with the same settings, and it builds the others again (failed ones only with retry_failed,
or when their file changed). The DATASET folder is locked for the run (engine.lock).
With --ray the shapes are built as Ray tasks instead (core.data.ray_jobs), and this process
still writes every record and manifest line.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, deque
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from focusing.core.config import Setup
from focusing.core.data.prepared import (
    DATASET_FILE, FORMAT, MANIFEST_FILE, RECORDS_DIR, VERSION, ManifestWriter, PreparedError,
    check_settings, file_sha256, read_info, read_manifest, read_metadata, record_bytes,
    record_file, settings_hash, unique_names, write_info,
)
from focusing.core.engine.lock import LOCK_NAME, acquire
from focusing.core.geometry.meshio import find_mesh_files
from focusing.core.io import resolve_dotdot, temp_name_of, write_bytes_atomic
from focusing.core.data.records import BUILD_STAGES, build_record, cache_settings


@dataclass(frozen=True)
class Job:
    """One shape to prepare (sent to a worker process)."""

    source: str            # absolute path of the mesh
    name: str              # its name in the set
    record: str            # its record's path inside DATASET
    out: str               # DATASET
    settings: dict         # cache_settings of the setup
    settings_hash: str
    previous: dict | None  # its last manifest line, if any


@dataclass
class PrepareResult:
    """What a run of prepare did, and the state of the set after it."""

    built: int = 0                 # shapes built and written by this run
    skipped: int = 0               # finished before, still valid: left untouched
    failed: int = 0                # failed in this run
    failed_before: int = 0         # failed in an earlier run, not retried
    reasons: Counter = field(default_factory=Counter)  # reason -> shapes (both kinds of failure)
    seconds: dict = field(default_factory=dict)        # stage -> seconds over the built shapes
    timed: int = 0                 # shapes whose stage times are in `seconds`
    elapsed: float = 0.0           # wall-clock seconds of the run
    info: dict = field(default_factory=dict)           # dataset.json after the run

    @property
    def exit_code(self) -> int:
        """0 when every shape of the run is ok, 1 when some failed."""
        return 1 if self.failed or self.failed_before else 0


def list_sources(data: str | os.PathLike) -> list[str]:
    """The meshes to prepare, as absolute paths: a folder's mesh files (find_mesh_files, sorted),
    or the lines of a list file in their order (blank lines and # comments skipped, relative
    paths taken from the list file's folder, repeats dropped)."""
    data = Path(data)
    if data.is_dir():
        return [os.path.abspath(p) for p in find_mesh_files(data)]
    if not data.is_file():
        raise FileNotFoundError(f"{data} does not exist (give a folder of meshes or a list file)")
    out = []
    for line in data.read_text(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(os.path.abspath(data.parent / os.path.expanduser(line)))
    return list(dict.fromkeys(out))


def parse_shard(text: str) -> tuple[int, int]:
    """'RANK/WORLD' -> (rank, world); ValueError unless 0 <= RANK < WORLD."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not int(match[1]) < int(match[2]):
        raise ValueError(f"--shard {text!r}: give RANK/WORLD with 0 <= RANK < WORLD, e.g. 0/4")
    return int(match[1]), int(match[2])


def failure(exc: BaseException, source: str) -> tuple[str, str]:
    """(reason, error) of a failed shape: the error's first line, and the same without the
    file's path and with numbers as N, so that failures group by reason."""
    lines = str(exc).strip().splitlines()
    error = f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()
    text = lines[0] if lines else ""
    text = re.sub(r"^mesh " + re.escape(repr(source)) + r":\s*", "", text)
    text = text.replace(repr(source), "FILE").replace(source, "FILE")
    text = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", text)
    return f"{type(exc).__name__}: {text}"[:120].rstrip(": "), error


def _entry(job: Job, **fields) -> dict:
    """The job's manifest line: a failure with no reason unless `fields` say otherwise."""
    return {"source": job.source, "name": job.name, "record": job.record, "status": "failed",
            "settings_hash": job.settings_hash, "reason": None, "error": None, "bytes": 0,
            "seconds": {}, "sha256": None, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **fields}


def _failed(job: Job, exc: BaseException, **fields) -> dict:
    reason, error = failure(exc, job.source)
    return _entry(job, reason=reason, error=error, **fields)


def _reusable(job: Job, sha256: str) -> bool:
    """Whether the job's last manifest line says ok for this content and settings, and its
    record file is whole and says so too."""
    prev = job.previous
    if not prev or prev.get("status") != "ok" or prev.get("sha256") != sha256 \
            or prev.get("settings_hash") != job.settings_hash:
        return False
    path = Path(job.out) / job.record
    try:
        if path.stat().st_size != prev.get("bytes"):
            return False
        meta = read_metadata(path)
    except (OSError, PreparedError):
        return False
    return meta.get("settings_hash") == job.settings_hash and meta.get("source_sha256") == sha256


def run_job(job: Job) -> dict:
    """Prepare one shape (in a worker): its manifest entry, with `skipped` when it was done."""
    try:
        sha256 = file_sha256(job.source)
        if _reusable(job, sha256):
            return {**job.previous, "skipped": True}
    except OSError as exc:
        return _failed(job, exc)
    return store(job, *build_job(job, sha256))


def build_job(job: Job, sha256: str) -> tuple[dict, bytes | None]:
    """Build one shape's record, writing nothing: its manifest entry and the bytes of its record
    file (None when it failed). A bad mesh is a result, never the end of the run."""
    seconds: dict = {}
    try:
        record = build_record(Path(job.source), job.settings, seconds)
        record.name = job.name
        data = record_bytes(record, {"settings_hash": job.settings_hash,
                                     "source_sha256": sha256, "source": job.source})
    except Exception as exc:
        return _failed(job, exc, seconds=_rounded(seconds), sha256=sha256), None
    return _entry(job, status="ok", bytes=len(data), seconds=_rounded(seconds),
                  sha256=sha256), data


def store(job: Job, entry: dict, data: bytes | None) -> dict:
    """Write a built record into its place in DATASET atomically (temp file, fsync, rename):
    `entry`, or the failure to write it (a full disk) as the shape's entry."""
    if data is None:
        return entry
    try:
        write_bytes_atomic(Path(job.out) / job.record, data, make_parents=True)
    except OSError as exc:
        return _failed(job, exc, seconds=entry.get("seconds", {}), sha256=entry.get("sha256"))
    return entry


def _rounded(seconds: dict) -> dict:
    return {k: round(v, 4) for k, v in seconds.items()}


def _worker_init() -> None:
    """One thread per worker process: the pool is the parallelism."""
    import torch

    os.environ["IGL_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def _run_alone(job: Job) -> dict:
    """A job whose pool broke, run in a pool of its own: a crash now is its own."""
    with ProcessPoolExecutor(1, initializer=_worker_init) as pool:
        try:
            return pool.submit(run_job, job).result()
        except BrokenProcessPool:
            return _entry(job, reason="worker died: killed (out of memory?) or crashed in native"
                          " code", error="BrokenProcessPool: the worker process ended abruptly")


def run_jobs(jobs: Iterable[Job], workers: int) -> Iterator[dict]:
    """Each job's entry as it finishes (any order): in this process when workers is 0, else in
    a pool of `workers` processes, 2 jobs per worker in flight. When a worker dies, the jobs in
    flight run again one by one, alone, and the one that kills its worker then is failed."""
    if workers <= 0:
        yield from map(run_job, jobs)
        return
    pending, suspects = deque(jobs), []
    while pending or suspects:
        if suspects:
            yield _run_alone(suspects.pop())
            continue
        pool, in_flight = ProcessPoolExecutor(workers, initializer=_worker_init), {}
        try:
            while pending or in_flight:
                while pending and len(in_flight) < 2 * workers:
                    job = pending.popleft()
                    in_flight[pool.submit(run_job, job)] = job
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    in_flight.pop(future)
                    yield result
        except BrokenProcessPool:
            suspects = list(in_flight.values())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _check_out(out: Path) -> None:
    """Refuse an --out that is a file, or a non-empty folder that is no prepared set."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    if not out.is_dir() or (out / DATASET_FILE).exists():
        return
    entries = [e for e in os.listdir(out) if e != LOCK_NAME and not temp_name_of(e)]
    if entries:
        raise FileExistsError(f"--out {out} is not empty and holds no prepared data set (no "
                              f"{DATASET_FILE}); choose a new or empty folder")


def _remove_leftovers(out: Path) -> None:
    """Remove the temp files a killed run left (only atomic_path's own names)."""
    for folder in (out, out / RECORDS_DIR):
        if folder.is_dir():
            for entry in os.listdir(folder):
                if temp_name_of(entry):
                    (folder / entry).unlink(missing_ok=True)


def _info(settings: dict, setup_name: str, out: Path) -> dict:
    """dataset.json for the manifest's current state."""
    state = read_manifest(out)
    counts = Counter(e.get("status") for e in state.values())
    return {"format": FORMAT, "version": VERSION, "settings": settings,
            "settings_hash": settings_hash(settings), "setup": setup_name,
            "counts": {"shapes": len(state), "ok": counts["ok"], "failed": counts["failed"]},
            "record_bytes": sum(e.get("bytes", 0) for e in state.values()
                                if e.get("status") == "ok")}


def _jobs(sources: list[str], out: Path, settings: dict, retry_failed: bool,
          result: PrepareResult) -> list[Job]:
    """The jobs of a run; failed shapes not retried are counted in `result` instead."""
    state, shash = read_manifest(out), settings_hash(settings)
    jobs = []
    for source, name in zip(sources, unique_names(sources)):
        prev = state.get(source)
        if (prev and prev.get("status") == "failed" and prev.get("settings_hash") == shash
                and not retry_failed and prev.get("sha256") == _sha256_or_none(source)):
            result.failed_before += 1
            result.reasons[prev.get("reason") or "unknown"] += 1
            continue
        record = prev["record"] if prev and prev.get("record") else record_file(source)
        jobs.append(Job(source, name, record, str(out), settings, shash, prev))
    return jobs


def _sha256_or_none(path: str) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


@contextmanager
def _runner(ray: str | None, workers: int) -> Iterator[Callable[[list[Job]], Iterator[dict]]]:
    """What runs the jobs: `workers` local processes, or Ray tasks (core.data.ray_jobs) on the
    cluster `ray` names, joined for the block."""
    if ray is None:
        yield lambda jobs: run_jobs(jobs, workers)
        return
    from focusing.core.data.ray_jobs import ray_connection, run_jobs_ray

    with ray_connection(ray):
        yield run_jobs_ray


def prepare_dataset(data: str | os.PathLike, out: str | os.PathLike, setup: Setup | dict,
                    workers: int = 0, retry_failed: bool = False, limit: int | None = None,
                    shard: tuple[int, int] | None = None, progress: bool = True,
                    on_result: Callable[[dict], None] | None = None,
                    ray: str | None = None) -> PrepareResult:
    """Prepare the meshes of `data` (a folder or a list file) into the set `out`; see the
    module. shard (rank, world): every world-th mesh from rank; limit: the first N of those;
    ray: build the shapes as Ray tasks (core.data.ray_jobs: `local`, `auto` or an address)
    instead of in `workers` local processes."""
    setup = Setup.from_dict(setup)
    settings, start = cache_settings(setup), time.perf_counter()
    out = resolve_dotdot(out)
    _check_out(out)
    sources = list_sources(data)
    if shard is not None:
        sources = sources[shard[0]::shard[1]]
    sources = sources[:limit] if limit else sources
    if not sources:
        raise FileNotFoundError(f"no meshes to prepare in {data}")
    # Ray is joined (or found missing) before the set is locked and anything is written
    with _runner(ray, workers) as run, acquire(out, keep=False):
        if (out / DATASET_FILE).exists():
            check_settings(read_info(out)["settings"], settings, out)
        _remove_leftovers(out)
        (out / RECORDS_DIR).mkdir(exist_ok=True)
        write_info(out, _info(settings, setup.name, out))
        result = PrepareResult()
        jobs = _jobs(sources, out, settings, retry_failed, result)
        writer = ManifestWriter(out)
        bar = tqdm(total=len(jobs), desc="preparing", unit="shape", disable=not progress,
                   dynamic_ncols=True)
        runner = run(jobs)
        try:
            for entry in runner:
                _count(entry, writer, result)
                if on_result is not None:
                    on_result(entry)
                bar.update(1)
                bar.set_postfix(ok=result.built, skipped=result.skipped, failed=result.failed,
                                refresh=False)
        finally:
            runner.close()  # a stop mid-run: the work in flight is cancelled
            bar.close()
            writer.close()
        result.info = _info(settings, setup.name, out)
        write_info(out, result.info)
    result.elapsed = time.perf_counter() - start
    return result


def _count(entry: dict, writer: ManifestWriter, result: PrepareResult) -> None:
    """Record one finished job: a manifest line (not for a skipped one) and the tallies."""
    if entry.pop("skipped", False):
        result.skipped += 1
        return
    writer.append(entry)
    if entry["status"] == "ok":
        result.built += 1
    else:
        result.failed += 1
        result.reasons[entry["reason"]] += 1
    if entry.get("seconds"):
        result.timed += 1
        for stage, sec in entry["seconds"].items():
            result.seconds[stage] = result.seconds.get(stage, 0.0) + sec


def summary(result: PrepareResult, out: str | os.PathLike) -> list[str]:
    """The lines printed at the end: counts, failures by reason, seconds per stage."""
    counts = result.info.get("counts", {})
    rate = result.built / result.elapsed if result.elapsed > 0 else 0.0
    lines = [f"prepared {out}: {result.built} built, {result.skipped} skipped (done before), "
             f"{result.failed} failed, {result.failed_before} failed before and not retried; "
             f"{result.elapsed:.1f} s ({rate * 60:.1f} shapes/min)",
             f"the set holds {counts.get('ok', 0)} shapes ready and {counts.get('failed', 0)} "
             f"failed ({Path(out) / MANIFEST_FILE})"]
    if result.reasons:
        lines.append("failures by reason:")
        lines += [f"  {n:6d}  {reason}" for reason, n in result.reasons.most_common()]
        if result.failed_before:
            lines.append("(--retry-failed tries the failed ones again)")
    if result.timed:
        total = sum(result.seconds.values()) or 1.0
        lines.append(f"{'stage':<10}{'total s':>10}{'s/shape':>10}{'share':>8}")
        for stage in [s for s in BUILD_STAGES if s in result.seconds]:
            sec = result.seconds[stage]
            lines.append(f"{stage:<10}{sec:>10.2f}{sec / result.timed:>10.3f}"
                         f"{sec / total:>8.0%}")
    return lines
