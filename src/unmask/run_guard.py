"""One run at a time per project, and nothing left behind by a killed one.

Kedro hooks (registered in ``settings.HOOKS``) that every ``kedro run`` goes through, so also
``unmask run`` and each stage of ``dvc repro``:

* :class:`RunLockHooks` takes ``data/.unmask-run.lock`` with ``flock`` before the first node runs.
  A second run in the same project fails at once with :class:`RunLockedError`, naming the running
  process and what to do. The kernel drops the lock when its holder dies, however it dies, so the
  lock of a killed run is simply taken over (the file still names it: the log says so).
* Holding the lock, it removes what killed runs left in ``data/`` (:func:`sweep_leftovers`):
  the ``.<folder>.partial-<pid>`` staging folders of ``ImagePartitionsDataset``, the
  ``.<file>.<pid>[.<hex>].tmp`` files of atomic writes, the ``.ddp-*`` scratch folders of
  multi-process training, each only when its process is no longer alive.
* It makes every local single-file dataset write atomically (:class:`AtomicLocalFileSystem`): a
  kill while ``data_split.parquet`` is written leaves the previous one, not a truncated file.
* :class:`ProcessRunContext` (an MLflow run-context provider, declared as an entry point in
  ``pyproject.toml``) creates the run's MLflow run tagged with this process (``unmask.pid``,
  ``unmask.host``); :class:`KilledRunHooks` marks the runs left ``RUNNING`` by processes of this host
  that are gone as ``KILLED`` (:func:`close_dead_mlflow_runs`).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileOpener, LocalFileSystem
from kedro.framework.hooks import hook_impl

from unmask.errors import UserError

logger = logging.getLogger(__name__)

__all__ = [
    "LOCK_FILE",
    "AtomicLocalFileSystem",
    "KilledRunHooks",
    "ProjectLock",
    "RunLockHooks",
    "RunLockedError",
    "close_dead_mlflow_runs",
    "pid_alive",
    "sweep_leftovers",
]

LOCK_FILE = Path("data") / ".unmask-run.lock"
PID_TAG, HOST_TAG = "unmask.pid", "unmask.host"

# Leftovers of a killed writer, named after its process id.
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)$")  # ImagePartitionsDataset folders
_TEMP_FILE = re.compile(r"^\..+\.(?P<pid>\d+)(?:\.[0-9a-f]{8,})?\.tmp$")  # atomic writes of one file
_DDP_SCRATCH = ".ddp-"  # training.py's TemporaryDirectory for devices > 1 (no pid: removed under the lock)
_SWEEP_DEPTH = 3  # data/<layer>/<folder>/<file>: deep enough for every layer, image folders and checkpoints/
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it: done once, at import, not while other threads make files


class RunLockedError(UserError):
    """Another run of this project is in progress."""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _command() -> str:
    """This process's command line as the user typed it (``kedro run --pipelines=train``)."""
    argv = list(sys.argv) or ["python"]
    return " ".join([Path(argv[0]).name, *argv[1:]])


class ProjectLock:
    """An exclusive ``flock`` on ``<project>/data/.unmask-run.lock``, holding who took it (JSON)."""

    def __init__(self, project_path: str | os.PathLike) -> None:
        self.path = Path(project_path) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _read_holder(self, fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096).decode("utf-8", "replace")
        try:
            holder = json.loads(raw)
        except json.JSONDecodeError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def acquire(self) -> dict[str, Any]:
        """Take the lock; ``RunLockedError`` if a live process holds it. Returns the previous holder's
        record (empty when there was none): a run that ended without releasing it was killed."""
        if self._fd is not None:
            return {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise RunLockedError(_locked_message(holder, self.path)) from None
        except BaseException:
            os.close(fd)
            raise
        previous = self._read_holder(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "running": True}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        _HELD_LOCKS.add(self)
        return previous if previous.get("running") else {}

    def release(self) -> None:
        """Mark the lock file as not running and drop the lock (closing the file releases it)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD_LOCKS.discard(self)
        with contextlib.suppress(OSError):
            holder = self._read_holder(fd)
            holder["running"] = False
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.close(fd)

    def _forget_in_child(self) -> None:
        """In a forked child (a DataLoader worker), close the copy of the descriptor without unlocking,
        so that the lock goes away with the run's own process, not with its last child."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


_HELD_LOCKS: set[ProjectLock] = set()


def _forget_locks_in_child() -> None:
    for lock in list(_HELD_LOCKS):
        lock._forget_in_child()
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


def _locked_message(holder: dict[str, Any], path: Path) -> str:
    pid = holder.get("pid")
    if not pid:
        who = "another process"
    else:
        who = f"process {pid} (`{holder.get('command', '?')}`, started {holder.get('started', '?')}"
        who += f" on {holder['host']})" if holder.get("host") and holder["host"] != socket.gethostname() else ")"
    stop = f"stop it (`kill {pid}`)" if pid else "stop it"
    return (f"Another run of this project is in progress: {who}. Two runs at once would overwrite each "
            f"other's data, model and MLflow run; wait until it ends, or {stop} and run again "
            f"(the lock is {path}).")


# ------------------------------------------------------------------------------ leftovers ----

def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _leftover(entry: os.DirEntry, folder: Path) -> Path | None:
    """``entry`` when it is a dead writer's leftover to delete (restoring an ``.old-<pid>`` folder first if
    its writer was killed between the two renames of a swap), else None."""
    staging = _STAGING.match(entry.name)
    if staging and entry.is_dir(follow_symlinks=False) and not pid_alive(int(staging["pid"])):
        target = folder / staging["name"]
        if staging["kind"] == "old" and not target.exists():
            os.rename(entry.path, target)  # the previous complete folder, taken out but never replaced
            logger.warning("Restored %s, which a killed run had moved aside", target)
            return None
        return Path(entry.path)
    temp = _TEMP_FILE.match(entry.name)
    if temp and entry.is_file(follow_symlinks=False) and not pid_alive(int(temp["pid"])):
        return Path(entry.path)
    if entry.name.startswith(_DDP_SCRATCH) and entry.is_dir(follow_symlinks=False):
        return Path(entry.path)
    return None


def sweep_leftovers(data_dir: str | os.PathLike, depth: int = _SWEEP_DEPTH) -> list[Path]:
    """Delete what killed runs left under ``data_dir`` (see the module doc); call it holding the lock.

    Returns the paths removed. A leftover whose process is alive is kept: it may be another
    program's write in progress.
    """
    removed: list[Path] = []
    stack = [(Path(data_dir), 1)]
    while stack:
        folder, level = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if not entry.name.startswith("."):
                if level < depth and entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), level + 1))
                continue
            path = _leftover(entry, folder)
            if path is not None:
                _remove(path)
                removed.append(path)
    return removed


# ------------------------------------------------------------------------- atomic files ----

class _AtomicFileOpener(LocalFileOpener):
    """A file opened for writing as ``.<name>.<pid>.tmp`` beside its target, moved over it on close.

    A kill leaves the target as it was (the temporary file is swept by the next run); an error
    inside ``with`` discards the temporary file instead of publishing half a file.
    """

    def _open(self) -> None:
        if self.f is None and "w" in self.mode:
            folder, name = os.path.split(self.path)
            self.temp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
            self.f = open(self.temp, mode=self.mode)  # closed by close() or discard()
            return
        super()._open()

    def close(self) -> None:
        if self.f is None or self.f.closed:
            return
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.chmod(self.temp, 0o666 & ~_UMASK)
        os.replace(self.temp, self.path)
        super().close()

    def discard(self) -> None:
        if self.f is not None and not self.f.closed:
            self.f.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.temp)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()


class _AtomicTextFile(io.TextIOWrapper):
    """Text mode over an :class:`_AtomicFileOpener`: an error inside ``with`` discards the file."""

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.buffer.discard()  # closes it, so the close() below publishes nothing
        super().__exit__(exc_type, exc, tb)


class AtomicLocalFileSystem(LocalFileSystem):
    """The local file system of fsspec, except that a file opened for writing appears whole or not at all."""

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode and "b" not in mode:
            text = {key: kwargs.pop(key) for key in ("encoding", "errors", "newline") if key in kwargs}
            return _AtomicTextFile(super().open(path, mode.replace("t", "") + "b", **kwargs), **text)
        return super().open(path, mode, **kwargs)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        if "w" not in mode:
            return super()._open(path, mode=mode, block_size=block_size, **kwargs)
        path = self._strip_protocol(path)
        if self.auto_mkdir:
            self.makedirs(self._parent(path), exist_ok=True)
        kwargs.pop("autocommit", None)
        return _AtomicFileOpener(path, mode, fs=self, **kwargs)


def make_writes_atomic(datasets: Iterable[Any]) -> int:
    """Give every local, single-file dataset among ``datasets`` an :class:`AtomicLocalFileSystem`.

    Kedro's file datasets (pandas, json, text, matplotlib, and kedro-mlflow's artifact wrappers of
    them) write through ``self._fs.open(path, "w...")``, which truncates the previous file first.
    Returns how many datasets were changed.
    """
    changed = 0
    for dataset in datasets:
        fs = getattr(dataset, "_fs", None)
        if type(fs) is LocalFileSystem and hasattr(dataset, "_filepath"):
            dataset._fs = AtomicLocalFileSystem(auto_mkdir=fs.auto_mkdir)
            changed += 1
    return changed


# --------------------------------------------------------------------------------- MLflow ----

def close_dead_mlflow_runs(client: Any, experiment_ids: list[str], skip: Iterable[str] = ()) -> list[str]:
    """Mark as ``KILLED`` the ``RUNNING`` runs whose process (``unmask.pid`` on ``unmask.host``, this host)
    is gone; returns their ids. Runs without those tags, or of other hosts, are left alone."""
    host, skipped, closed = socket.gethostname(), set(skip), []
    if not experiment_ids:
        return closed
    for run in client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if run.info.run_id in skipped or tags.get(HOST_TAG) != host or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "unmask.end", f"process {pid} ended without closing the run (killed)")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    return closed


# ---------------------------------------------------------------------------------- hooks ----

class RunLockHooks:
    """Takes the project lock before anything runs, sweeps killed runs' leftovers, releases at the end."""

    def __init__(self) -> None:
        self._lock: ProjectLock | None = None
        self._project_path: Path | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = Path(context.project_path)

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        names = list(catalog.keys()) if hasattr(catalog, "keys") else list(catalog.list())
        make_writes_atomic(catalog.get(name) for name in names)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._release()  # a previous run of this process that failed before its pipeline started
        project = self._project_path or Path(run_params.get("project_path") or Path.cwd())
        lock = ProjectLock(project)
        previous = lock.acquire()
        self._lock = lock
        if previous.get("pid") and previous.get("pid") != os.getpid():
            logger.warning("The previous run (process %s, `%s`, started %s) did not end cleanly (killed?); "
                           "cleaning up after it.", previous["pid"], previous.get("command", "?"),
                           previous.get("started", "?"))
        removed = sweep_leftovers(project / "data")
        if removed:
            logger.warning("Removed %d leftover(s) of killed runs: %s", len(removed),
                           ", ".join(str(p.relative_to(project)) for p in removed[:5])
                           + (" ..." if len(removed) > 5 else ""))

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def process_tags() -> dict[str, str]:
    """The tags that tell the next run whether this one's process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


class ProcessRunContext:
    """MLflow run-context provider (entry point ``mlflow.run_context_provider``): a run started while this
    process holds the project lock is created already tagged with its pid and host, so a run killed the
    moment after it started is still recognised as dead by the next one."""

    def in_context(self) -> bool:
        return bool(_HELD_LOCKS)

    def tags(self) -> dict[str, str]:
        return process_tags()


class KilledRunHooks:
    """Runs after kedro-mlflow has started the run: tags it with this process, closes runs of dead ones."""

    @hook_impl(trylast=True)
    def before_pipeline_run(self) -> None:
        try:
            import mlflow

            active = mlflow.active_run()
            if active is not None and PID_TAG not in active.data.tags:
                # without the run-context provider (package not reinstalled since it came): tag now
                mlflow.set_tags(process_tags())
            client = mlflow.MlflowClient()
            experiment_ids = [e.experiment_id for e in client.search_experiments()]
            closed = close_dead_mlflow_runs(client, experiment_ids, skip=[active.info.run_id] if active else [])
            if closed:
                logger.warning("Marked %d MLflow run(s) of killed processes as KILLED: %s", len(closed),
                               ", ".join(closed))
        except Exception as exc:  # bookkeeping must never stop a run
            logger.warning("Could not check MLflow for runs of killed processes: %s", exc)
