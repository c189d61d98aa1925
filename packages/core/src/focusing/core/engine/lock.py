"""One process at a time in a run folder: a lock taken before anything is written.

Why: two `focusing train` runs given one `--out` (or a `--resume` started beside a live run)
both ran to the end, their checkpoints interleaved under one config.json: a silently wrong
result. The lock is the file FOLDER/focusing.lock, held with flock(2) for the whole command.
The kernel drops an flock when its process dies, so a lock left by `kill -9`, a crash or a lost
node is never obeyed forever. The file names its holder (pid, host, start time, command): a
second process's error says who holds the folder, and the next holder warns that it takes over
from a process that is gone. Where the file system has no flock (some network mounts), the
holder's pid is checked instead; that is possible on its own host only, so a lock written on
another host is refused, naming it and the file to delete once that process has ended.

A training run keeps the lock file, emptied, when it ends: it marks the folder as a run folder
(runfolder.is_run_folder). Other commands remove it. Within one process the lock is re-entrant
(the trainer and its engine share it) and counted: the last release lets it go.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from focusing.core.io import resolve_dotdot

LOCK_NAME = "focusing.lock"
# flock errors that mean "this file system cannot lock", not "someone holds it"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class FolderBusyError(FileExistsError):
    """Another live process holds the folder's lock (the message names it)."""


def _proc_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None: with the pid
    it tells a live holder from a later process that reuses its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("cli.py", "__main__.py"):  # python -m focusing.core.cli
        program = "focusing"
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "pid_start": _proc_start(os.getpid()),
            "command": " ".join([program, *sys.argv[1:]])[:500]}


def describe_holder(holder: dict) -> str:
    """'pid 123 on host h, since 2026-01-01 10:00:00 +0000 (focusing train --setup ...)'."""
    if not holder.get("pid"):
        return "a process that has not written its name yet"
    text = (f"pid {holder['pid']} on host {holder.get('host', '?')}, "
            f"since {holder.get('started', '?')}")
    command = str(holder.get("command", ""))
    if command:
        text += f" ({command[:60]}{' ...' if len(command) > 60 else ''})"
    return text


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 65536, 0)
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(holder: dict) -> bool:
    """Whether the holder's process still runs (it must be on this host)."""
    try:
        pid = int(holder.get("pid", 0))
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = holder.get("pid_start")
    return start is None or _proc_start(pid) in (None, start)


def _busy(folder: Path, holder: dict, extra: str = "") -> FolderBusyError:
    return FolderBusyError(f"{folder} is in use by another process: {describe_holder(holder)}; "
                           f"wait for it to end or choose another folder{extra}")


def _missing_dirs(folder: Path) -> list[Path]:
    """The folder and those of its parents that do not exist yet, outermost first."""
    out = []
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        out.append(p)
    return out[::-1]


def _open_locked(path: Path, folder: Path) -> tuple[int, bool]:
    """(fd, flocked) of the lock file, flocked by us when the file system can; FolderBusyError
    when another process holds it."""
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        flocked = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise _busy(folder, holder) from None
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                os.close(fd)
                raise
            flocked = False
        try:  # a releasing holder may have removed the file we opened: lock the one at `path`
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd, flocked
        os.close(fd)
    raise _busy(folder, {})


class FolderLock:
    """A held lock on a folder; release() (or the end of a `with`) lets it go."""

    def __init__(self, folder: Path, fd: int, keep: bool, created: list[Path]):
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.keep = keep
        self.created = created
        self.count = 1
        self._fd: int | None = fd
        self._pid = os.getpid()

    @property
    def held(self) -> bool:
        """Whether this process still holds the lock."""
        return self._fd is not None and self._pid == os.getpid()

    def release(self) -> None:
        """Let the lock go (the last of this process's holds). A folder that holds nothing but
        the lock file loses it, and the folders the lock made are removed again."""
        if not self.held:
            return
        self.count -= 1
        if self.count > 0:
            return
        _HELD.pop(_key(self.folder), None)
        fd, self._fd = self._fd, None
        try:
            alone = os.listdir(self.folder) == [LOCK_NAME]
            if alone or not self.keep:
                self.path.unlink(missing_ok=True)  # still locked: a waiting process re-opens
            else:
                os.ftruncate(fd, 0)  # empty: no holder; the file marks a run folder
            if alone:
                for d in reversed(self.created):
                    d.rmdir()
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


_HELD: dict[str, FolderLock] = {}


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def acquire(folder: Path, keep: bool = True) -> FolderLock:
    """Lock `folder` (made if missing) for this process; FolderBusyError naming the holder when
    another live process has it. keep: leave the emptied lock file at release (run folders)."""
    folder = Path(folder)
    held = _HELD.get(_key(folder))
    if held is not None and held.held:
        held.count += 1
        return held
    created = _missing_dirs(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd, flocked = _open_locked(folder / LOCK_NAME, folder)
    except BaseException:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                break
        raise
    previous = _read(fd)
    if previous.get("pid") and previous.get("pid") != os.getpid():
        here = previous.get("host") == socket.gethostname()
        if not flocked and (not here or _alive(previous)):  # without flock: trust the pid
            os.close(fd)
            hint = "" if here else f" (if that process has ended, delete {folder / LOCK_NAME})"
            raise _busy(folder, previous, hint)
        print(f"warning: {folder} was locked by {describe_holder(previous)}, which is gone "
              "(killed?); taking the lock over", file=sys.stderr, flush=True)
    lock = FolderLock(folder, fd, keep, created)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_me()) + "\n").encode("utf-8"), 0)
    except BaseException:
        lock.release()
        raise
    _HELD[_key(folder)] = lock
    return lock


def release_when_command_ends(lock: FolderLock) -> None:
    """Release `lock` when the running click/typer command ends (else at the process's exit)."""
    try:
        import click

        ctx = click.get_current_context(silent=True)
    except ImportError:
        ctx = None
    if ctx is not None:
        ctx.call_on_close(lock.release)


def writes_here() -> bool:
    """Whether this process is the one that writes (and locks): rank 0 under torchrun."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def hold_for_command(folder: Path, keep: bool = False) -> Path:
    """Lock `folder` (a `..` in it resolved first) until the running CLI command ends; return
    the folder to use. The one call a command needs: `out = hold_for_command(out)`."""
    folder = resolve_dotdot(folder)
    if writes_here():
        release_when_command_ends(acquire(folder, keep=keep))
    return folder


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD.values()):
        while lock.held:
            lock.release()
