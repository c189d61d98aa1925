"""Goal D2: the CGAL corpus prepared with 2 workers, every failure named with its reason; a kill
and rerun leaves no duplicate or half-written record; the same run through Ray on a local
instance gives the same manifest.

Why: a lab prepares thousands of raw assets on machines that get preempted. The manifest is the
contract: one line per shape and attempt, the last one wins, each record written whole
(temp file + rename) before its line. This benchmark checks that contract on a real corpus,
under a real kill, and measures the throughput.

How (each `focusing prepare` is a fresh process, as a user runs it):
1. `focusing prepare CORPUS --out WORK/local --workers 2`, killed with SIGKILL after
   --kill-after seconds (a preempted job: no handler runs);
2. the same command again, to the end: it must skip what was finished and redo the rest;
3. checks: every source has exactly one final manifest status; every ok record reads back
   (safetensors header and tensors) and its content hash matches the manifest; no temp file is
   left; no record file without an ok line; every failure has a reason;
4. `focusing prepare CORPUS --out WORK/ray --ray local` (a local Ray instance, 2 CPUs): the
   statuses, reasons and content hashes must equal the local run's;
5. throughput: assets per minute of the uninterrupted Ray run and of an uninterrupted local
   run (`--fresh-local`, optional: it costs a third preparation).

Run: hatch run python benchmarks/prepare_corpus.py CORPUS [--work DIR] [--kill-after 60]
         [--set key=value ...] [--json FILE]
CORPUS: `python scripts/cgal_corpus.py CORPUS` (Debian's libcgal-demo meshes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from focusing.core.data.prepared import read_manifest, read_record
from focusing.core.io import temp_name_of


def _prepare(corpus: Path, out: Path, extra: list[str], sets: list[str],
             kill_after: float | None = None) -> tuple[float, int]:
    """Run `focusing prepare` in a fresh process; (seconds, exit code). With kill_after, SIGKILL
    the whole process group after that many seconds."""
    cmd = [sys.executable, "-m", "focusing.core.cli", "prepare", str(corpus), "--out", str(out),
           "--quiet", *extra]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        rc = proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
    return time.perf_counter() - t0, rc


def _final(manifest: dict[str, dict]) -> dict[str, tuple]:
    """source -> (status, reason, content hash) of the final manifest lines."""
    return {src: (e.get("status"), e.get("reason"), e.get("sha256"))
            for src, e in manifest.items()}


def check_dataset(out: Path, n_sources: int) -> dict:
    """The contract of a prepared folder; raises AssertionError with what broke."""
    manifest = read_manifest(out)
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if x]
    assert len(manifest) == n_sources, f"{out}: {len(manifest)} sources in the manifest, " \
                                       f"{n_sources} in the corpus"
    ok = {s: e for s, e in manifest.items() if e["status"] == "ok"}
    failed = {s: e for s, e in manifest.items() if e["status"] != "ok"}
    assert all(e.get("reason") and e.get("error") for e in failed.values()), \
        "a failure without its reason"
    records = {p.name for p in out.rglob("*.safetensors")}
    named = {Path(e["record"]).name for e in ok.values()}
    assert records == named, (f"record files without an ok line: {sorted(records - named)[:3]}, "
                              f"ok lines without a file: {sorted(named - records)[:3]}")
    for e in ok.values():
        read_record(out / e["record"])
    temps = [p for p in out.rglob("*") if temp_name_of(p.name) is not None]
    assert not temps, f"left-over temp files: {temps[:3]}"
    reasons: dict[str, int] = {}
    for e in failed.values():
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    return {"sources": n_sources, "ok": len(ok), "failed": len(failed), "lines": len(lines),
            "reasons": reasons,
            "failures": {Path(s).name: e["error"][:120] for s, e in failed.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--kill-after", type=float, default=60.0)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--fresh-local", action="store_true",
                        help="also time an uninterrupted local run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="prepare-corpus-"))
    work.mkdir(parents=True, exist_ok=True)
    from focusing.core.data.prepare import list_sources

    n = len(list_sources(args.corpus))
    res: dict = {"corpus": str(args.corpus), "assets": n, "settings": args.sets}
    print(f"{n} assets in {args.corpus}; work in {work}", flush=True)

    s1, rc1 = _prepare(args.corpus, work / "local", ["--workers", "2"], args.sets,
                       args.kill_after)
    before = read_manifest(work / "local") if (work / "local" / "manifest.jsonl").exists() else {}
    res["killed"] = {"after_s": round(s1, 1), "rc": rc1, "finished_before_kill": len(before)}
    print(f"killed after {s1:.0f} s (rc {rc1}): {len(before)} shapes in the manifest", flush=True)
    s2, rc2 = _prepare(args.corpus, work / "local", ["--workers", "2"], args.sets)
    res["rerun"] = {"seconds": round(s2, 1), "rc": rc2}
    res["local"] = check_dataset(work / "local", n)
    print(f"rerun: {s2:.0f} s (rc {rc2}); {json.dumps(res['local']['reasons'])}", flush=True)

    s3, rc3 = _prepare(args.corpus, work / "ray", ["--ray", "local"], args.sets)
    res["ray"] = dict(check_dataset(work / "ray", n), seconds=round(s3, 1), rc=rc3,
                      assets_per_min=round(60 * n / s3, 1))
    a, b = _final(read_manifest(work / "local")), _final(read_manifest(work / "ray"))
    same = {k: a[k] == b.get(k) for k in a}
    res["same_manifest"] = all(same.values()) and set(a) == set(b)
    res["differences"] = {Path(k).name: [a[k], b.get(k)] for k, v in same.items() if not v}
    print(f"ray: {s3:.0f} s, {res['ray']['assets_per_min']} assets/min; same manifest: "
          f"{res['same_manifest']}", flush=True)
    if args.fresh_local:
        s4, rc4 = _prepare(args.corpus, work / "local-fresh", ["--workers", "2"], args.sets)
        res["local_fresh"] = {"seconds": round(s4, 1), "rc": rc4,
                              "assets_per_min": round(60 * n / s4, 1)}
        print(f"local, uninterrupted: {s4:.0f} s, {res['local_fresh']['assets_per_min']} "
              "assets/min", flush=True)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
