"""`focusing train` where runs are long, many and parallel (issue 25): a user's folder is never
modified; one process per run folder, a killed holder's lock taken over; Ctrl-C leaves a
checkpoint and the command that continues; a run stopped before its first checkpoint resumes
from step 0; a full disk is one `error:` line naming the newest intact checkpoint; --steps and
--set train.steps must agree; a finished run says so; a `..` in --out makes no stray folder.

Every run here is a real `focusing train` (a subprocess where signals, kills or a second
process matter) on the tiny settings of _training_fixtures, a few steps long."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.engine import checkpoint, load_checkpoint
from focusing.core.engine.lock import LOCK_NAME, FolderBusyError, acquire

from _training_fixtures import TINY

HOST = socket.gethostname()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One shape cache for the module: the meshes are prepared once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _shared_cache(shared_cache, monkeypatch):
    monkeypatch.setenv("FOCUSING_CACHE", str(shared_cache))
    monkeypatch.delenv("FOCUSING_DEBUG", raising=False)
    monkeypatch.delenv(checkpoint.FAULT_ENV, raising=False)


def _args(data: Path, out: Path, *sets: str, extra=()) -> list[str]:
    args = ["train", "--setup", "focusing", "--data", str(data), "--out", str(out), *extra]
    for item in TINY + list(sets):
        args += ["--set", item]
    return args


def _invoke(args: list[str]):
    """In-process run of the CLI (typer's runner): output holds stdout and stderr."""
    return CliRunner().invoke(cli.get_app(), args)


def _env(**extra) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", **extra)


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "focusing.core.cli", *args]


def _run(args: list[str], timeout: float = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run(_command(args), capture_output=True, text=True, env=_env(**env),
                          timeout=timeout)


class Watched:
    """A `focusing train` subprocess whose stderr is read line by line (tqdm's '\\r' too)."""

    def __init__(self, args: list[str], **env):
        self.proc = subprocess.Popen(_command(args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=_env(**env))
        self.lines: list[str] = []
        self.out: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                         for s, b in ((self.proc.stderr, self.lines), (self.proc.stdout, self.out))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match:
        """The first stderr line matching `pattern`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the readers finish
                if not any(re.search(pattern, line) for line in self.lines):
                    break
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"no {pattern!r} in stderr: {self.stderr[-3000:]}")

    def wait_for_step(self, at_least: int = 1) -> int:
        """Wait until the training progress bar shows `at_least` steps done; that step."""
        bar = r"train focusing:.*\| *(\d+)/\d+ \["
        while True:
            step = int(self.wait_for(bar).group(1))
            if step >= at_least:
                return step
            self.lines[:] = [line for line in self.lines if not re.search(bar, line)]

    def finish(self, timeout: float = 120) -> int:
        """Wait for the exit; the return code."""
        rc = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return rc

    @property
    def stderr(self) -> str:
        """Everything read from stderr so far."""
        return "".join(self.lines)

    @property
    def stdout(self) -> str:
        """Everything read from stdout so far."""
        return "".join(self.out)


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: its bytes (files), mode and modification time."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (p.read_bytes() if p.is_file() else None, st.st_mode,
                                           st.st_mtime_ns)
    return out


def _user_folder(path: Path, with_config: bool = True) -> Path:
    """A folder of a user's own files, temp-looking names included."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / "thesis.tmp").write_text("chapter 3, unsaved\n")
    (path / ".notes.txt.abc123.tmp").write_text("an editor's swap file\n")
    (path / "drafts").mkdir()
    (path / "drafts" / "old.tmp").write_bytes(b"\x00\x01draft")
    if with_config:
        (path / "config.json").write_text('{"my": "own settings"}\n')
    return path


# -- fault 1: a user's folder ---------------------------------------------------------------
def test_a_non_run_folder_is_refused_and_left_byte_for_byte(tiny_data, tmp_path):
    user = _user_folder(tmp_path / "mine")
    before = _snapshot(user)
    r = _invoke(_args(tiny_data, user, extra=["--steps", "1", "--quiet"]))
    assert r.exit_code == 2, r.output
    assert "is not empty and holds no run" in r.output and "--allow-nonempty-out" in r.output
    r = _invoke(_args(tiny_data, user, extra=["--steps", "1", "--quiet", "--resume"]))
    assert r.exit_code == 2 and "is not a run folder" in r.output, r.output
    # with the flag, a file the run would write (config.json) still refuses the folder
    r = _invoke(_args(tiny_data, user, extra=["--steps", "1", "--quiet", "--allow-nonempty-out"]))
    assert r.exit_code == 2 and "config.json" in r.output and "overwrite" in r.output, r.output
    assert _snapshot(user) == before


def test_allow_nonempty_out_writes_the_run_beside_a_users_files(tiny_data, tmp_path):
    user = _user_folder(tmp_path / "mine", with_config=False)
    before = _snapshot(user)
    r = _invoke(_args(tiny_data, user, extra=["--steps", "1", "--quiet", "--allow-nonempty-out"]))
    assert r.exit_code == 0, r.output
    assert "removed" not in r.output
    after = _snapshot(user)
    assert {k: v for k, v in after.items() if k in before} == before
    assert (user / "checkpoints" / "step_00000001.safetensors").is_file()


def test_cleanup_removes_only_the_programs_own_temp_files(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert _invoke(_args(tiny_data, run, extra=["--steps", "1", "--quiet"])).exit_code == 0
    users = {run / "thesis.tmp": b"user", run / "checkpoints" / "notes.tmp": b"user",
             run / ".notes.txt.abc123.tmp": b"user",
             run / "checkpoints" / "x.safetensors.tmp": b"user"}
    own = [run / ".config.json.k3x9a2b1.tmp",
           run / "checkpoints" / ".step_00000009.safetensors.abc123.tmp",
           run / "checkpoints" / ".latest.json.q1w2e3r4.tmp"]
    for p, data in users.items():
        p.write_bytes(data)
    for p in own:
        p.write_bytes(b"half-written")
    r = _invoke(_args(tiny_data, run, "train.steps=1", extra=["--quiet", "--resume"]))
    assert r.exit_code == 0, r.output
    assert "removed 3 unfinished file(s)" in r.output
    assert not any(p.exists() for p in own)
    assert all(p.read_bytes() == data for p, data in users.items())


# -- fault 2: one process per run folder ---------------------------------------------------------
_HOLDER = textwrap.dedent("""
    import sys, time
    from focusing.core.engine.lock import acquire
    lock = acquire(sys.argv[1])
    print("held", flush=True)
    time.sleep(600)
""")


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE,
                            text=True, env=_env())
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_between_two_processes_names_the_holder_and_a_killed_one_is_taken_over(
        tmp_path, capsys):
    folder = tmp_path / "run"
    holder = _holder(folder)
    (folder / "config.json").write_text("{}")  # a run's file: the lock file stays at release
    try:
        with pytest.raises(FolderBusyError) as busy:
            acquire(folder)
        text = str(busy.value)
        assert re.search(rf"in use by another process: pid {holder.pid} on host {HOST}, "
                         r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text), text
    finally:
        holder.kill()
        holder.wait()
    with acquire(folder) as lock:  # kill -9: the process is gone, so is its flock
        assert lock.held
    err = capsys.readouterr().err
    assert f"was locked by pid {holder.pid} on host {HOST}" in err and "taking the lock over" in err
    assert (folder / LOCK_NAME).read_text() == ""  # released: empty, it marks a run folder


def test_without_flock_the_holders_pid_decides(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    folder = tmp_path / "run"
    holder = _holder(folder)
    monkeypatch.setattr(fcntl, "flock", no_flock)
    try:
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid} on host {HOST}"):
            acquire(folder)
    finally:
        holder.kill()
        holder.wait()
    with acquire(folder):
        pass
    assert f"was locked by pid {holder.pid}" in capsys.readouterr().err
    other = {"pid": 1, "host": "elsewhere", "started": "2026-01-01 00:00:00 +0000"}
    (folder / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(FolderBusyError, match=r"host elsewhere.*if that process has ended, delete"):
        acquire(folder)


def test_a_second_train_on_a_live_run_folder_is_refused_naming_the_holder(tiny_data, tmp_path):
    run = tmp_path / "run"
    first = Watched(_args(tiny_data, run, "train.checkpoint_every=0",
                          extra=["--steps", "100000"]))
    try:
        first.wait_for_step(1)
        for extra in (["--steps", "1", "--set", "train.seed=1"], ["--steps", "100000", "--resume"]):
            second = _run(_args(tiny_data, run, "train.checkpoint_every=0",
                                extra=["--quiet", *extra]))
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"is in use by another process: pid {first.proc.pid} on host {HOST}, since" \
                in second.stderr
            assert "Traceback" not in second.stderr
        assert first.proc.poll() is None
    finally:
        first.proc.kill()
        first.finish()
    assert not (run / "checkpoints").exists()  # the refused ones wrote nothing
    # the holder was killed (-9) before its first checkpoint: the lock is taken over, and the
    # resume starts from step 0 with the stored setup (fault 5)
    third = _run(_args(tiny_data, run, "train.checkpoint_every=0",
                       extra=["--quiet", "--steps", "1", "--resume", "--allow-changes"]))
    assert third.returncode == 0, third.stderr
    assert f"was locked by pid {first.proc.pid} on host {HOST}" in third.stderr
    assert "holds no checkpoint" in third.stderr and "starting from step 0" in third.stderr
    assert "trained focusing to step 1" in third.stdout
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 1


# -- fault 4: Ctrl-C ---------------------------------------------------------------------------
def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = Watched(_args(tiny_data, run, "train.checkpoint_every=0", extra=["--steps", "100000"]))
    proc.wait_for_step(1)
    proc.proc.send_signal(signal.SIGINT)
    assert proc.finish() == 130, proc.stderr[-3000:]
    err = proc.stderr
    assert "Traceback" not in err
    step = int(re.search(r"interrupted by SIGINT after step (\d+): checkpoint written to (\S+)",
                         err).group(1))
    assert step >= 1
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == step
    assert load_checkpoint(run)[0] == step
    resume = shlex.split(re.search(r"to continue: (.*)", err).group(1))
    assert resume[:2] == ["focusing", "train"] and resume[-1] == "--resume"
    assert resume[resume.index("--out") + 1] == str(run)
    resume[resume.index("--steps") + 1] = str(step + 1)  # one more step, not 100000
    again = _run(resume[1:] + ["--allow-changes", "--quiet"])
    assert again.returncode == 0, again.stderr
    assert f"trained focusing to step {step + 1}" in again.stdout
    assert load_checkpoint(run)[0] == step + 1


def test_a_second_ctrl_c_stops_at_once(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = Watched(_args(tiny_data, run, "train.checkpoint_every=0", extra=["--steps", "100000"]),
                   **{checkpoint.FAULT_ENV: "60"})  # each checkpoint file takes a minute
    proc.wait_for_step(1)
    proc.proc.send_signal(signal.SIGINT)
    proc.wait_for(r"checkpoint-write \S+")  # the first one writes its checkpoint, slowly
    t0 = time.monotonic()
    proc.proc.send_signal(signal.SIGINT)
    assert proc.finish(timeout=30) == 130
    assert time.monotonic() - t0 < 15
    err = proc.stderr
    assert "SIGINT again: stopped at once" in err and "Traceback" not in err, err[-3000:]
    assert "the newest intact checkpoint is none" in err, err[-3000:]
    assert not (run / "checkpoints" / "latest.json").exists()
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("step_*"))


# -- fault 5: a run stopped before its first checkpoint ----------------------------------------
def test_a_run_killed_in_its_first_checkpoint_resumes_from_step_0(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = Watched(_args(tiny_data, run, extra=["--steps", "2", "--quiet"]),
                   **{checkpoint.FAULT_ENV: "60"})
    proc.wait_for(r"checkpoint-write \S+")
    proc.proc.kill()
    proc.finish()
    assert (run / "config.json").is_file() and not (run / "checkpoints" / "latest.json").exists()
    fresh = _run(_args(tiny_data, run, extra=["--steps", "2", "--quiet"]))
    assert fresh.returncode == 2 and "use --resume" in fresh.stderr, fresh.stderr
    resumed = _run(_args(tiny_data, run, extra=["--steps", "2", "--quiet", "--resume"]))
    assert resumed.returncode == 0, resumed.stderr
    assert "holds no checkpoint" in resumed.stderr and "starting from step 0" in resumed.stderr
    assert "removed 1 unfinished file" in resumed.stderr
    assert "trained focusing to step 2" in resumed.stdout


# -- fault 6: a full disk ------------------------------------------------------------------------
class _FullDisk:
    """A file that takes nothing once the disk is 'full' (the kernel's ENOSPC)."""

    def __init__(self, path):
        self.fh = open(path, "wb")

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


@pytest.mark.parametrize("victim", ["safetensors", "state.pt"])
def test_full_disk_in_a_checkpoint_is_one_error_line(victim, tiny_data, tmp_path, monkeypatch):
    real_open = checkpoint._open_for_write

    def opener(path):
        if f"step_00000002.{victim}" in Path(path).name:
            return _FullDisk(path)
        return real_open(path)

    monkeypatch.setattr(checkpoint, "_open_for_write", opener)
    run = tmp_path / "run"
    r = _invoke(_args(tiny_data, run, "train.checkpoint_every=1",
                      extra=["--steps", "3", "--quiet"]))
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.output
    assert f"no space left on device: the checkpoint of step 2 in {run}" in errors[0]
    assert f"newest intact checkpoint is step 1 ({run / 'checkpoints'}" in errors[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "latest.json", "step_00000001.safetensors", "step_00000001.state.pt"]
    assert load_checkpoint(run, with_state=True)[0] == 1


def _can_mount_tmpfs() -> bool:
    """Whether this machine lets an unprivileged user namespace mount a tmpfs."""
    if not shutil.which("unshare"):
        return False
    where = tempfile.mkdtemp()
    try:
        probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "mount", "-t",
                                "tmpfs", "-o", "size=64k", "tmpfs", where], capture_output=True)
    finally:
        os.rmdir(where)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no user namespace to mount a tmpfs in")
def test_a_real_full_disk_is_one_error_line_and_keeps_the_last_checkpoint(tiny_data, tmp_path):
    """On a small tmpfs: one step and its checkpoint, then the disk is filled up to the size
    of a weights file and a little; the next checkpoint cannot be written."""
    disk = tmp_path / "disk"
    disk.mkdir()
    run = disk / "run"
    train = shlex.join(_command(_args(tiny_data, run, extra=["--quiet"])))
    script = textwrap.dedent(f"""
        set -u
        mount -t tmpfs -o size=8m tmpfs {disk}
        {train} --steps 1 || exit 90
        w=$(stat -c %s {run}/checkpoints/step_00000001.safetensors)
        dd if=/dev/zero of={disk}/filler bs=64k 2>/dev/null
        truncate -s -$((w + 131072)) {disk}/filler
        {train} --steps 2 --resume --allow-changes
        echo "rc=$?"
        ls {run}/checkpoints
    """)
    out = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert "rc=1" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    assert f"no space left on device: the checkpoint of step 2 in {run}" in errors[0]
    assert f"newest intact checkpoint is step 1 ({run}/checkpoints/step_00000001" in errors[0]
    listing = out.stdout.split("rc=1", 1)[1].split()
    assert listing == ["latest.json", "step_00000001.safetensors", "step_00000001.state.pt"]


# -- fault 9: messages that mislead -------------------------------------------------------------
def test_steps_and_set_train_steps_must_agree(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = _invoke(_args(tiny_data, out, "train.steps=abc", extra=["--steps", "2", "--quiet"]))
    assert r.exit_code == 2 and "train.steps" in r.output and "abc" in r.output, r.output
    r = _invoke(_args(tiny_data, out, "train.steps=3", extra=["--steps", "2", "--quiet"]))
    assert r.exit_code == 2 and "--steps 2 and --set train.steps=3 disagree" in r.output, r.output
    assert not out.exists()
    r = _invoke(_args(tiny_data, out, "train.steps=1", extra=["--steps", "1", "--quiet"]))
    assert r.exit_code == 0 and "trained focusing to step 1" in r.output, r.output


def test_resume_of_a_finished_run_says_it_is_finished(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert _invoke(_args(tiny_data, run, extra=["--steps", "1", "--quiet"])).exit_code == 0
    before = _snapshot(run / "checkpoints")
    r = _invoke(_args(tiny_data, run, extra=["--steps", "1", "--quiet", "--resume"]))
    assert r.exit_code == 0, r.output
    assert f"run {run} is already finished: step 1 of train.steps = 1" in r.output
    assert _snapshot(run / "checkpoints") == before


def test_a_dotdot_in_out_makes_no_stray_folder(tiny_data, tmp_path):
    r = _invoke(_args(tiny_data, tmp_path / "missing" / ".." / "run",
                      extra=["--steps", "1", "--quiet"]))
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "missing").exists()
    assert (tmp_path / "run" / "checkpoints" / "step_00000001.safetensors").is_file()
    # a run refused later (no meshes) leaves no folder at all, nor the one before `..`
    r = _invoke(_args(tmp_path / "nodata", tmp_path / "gone" / ".." / "run2",
                      extra=["--steps", "1", "--quiet"]))
    assert r.exit_code == 2, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]
