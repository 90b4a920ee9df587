"""unmask.run_guard: the project lock, cleanup after killed runs, atomic saves, MLflow runs of killed processes.

The fast tests here drive the pieces directly; tests/test_interrupted_runs.py kills real ``kedro run``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from unmask.run_guard import (
    HOST_TAG,
    PID_TAG,
    AtomicLocalFileSystem,
    ProjectLock,
    RunLockedError,
    close_dead_mlflow_runs,
    make_writes_atomic,
    pid_alive,
    sweep_leftovers,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _holder(project: Path, fork_child: bool = False) -> tuple[subprocess.Popen, int | None]:
    """A process that takes the project lock (and optionally forks a child that outlives it), then waits;
    with the child's pid."""
    code = textwrap.dedent(f"""
        import os, sys, time
        sys.argv = ["kedro", "run", "--pipelines=train"]
        from unmask.run_guard import ProjectLock
        ProjectLock({str(project)!r}).acquire()
        child = os.fork() if {fork_child!r} else None
        if child == 0:
            os.write(1, b"forked\\n")  # the fork hooks have run in this child by now (one write: no interleaving)
            time.sleep(60)
            os._exit(0)
        os.write(1, f"locked {{child}}\\n".encode())
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": SRC})
    lines = [holder.stdout.readline().split() for _ in range(2 if fork_child else 1)]
    (word, child), = [line for line in lines if line[0] == "locked"]
    assert [line for line in lines if line[0] != "locked"] == ([["forked"]] if fork_child else [])
    return holder, None if child == "None" else int(child)


def test_a_second_run_is_refused_naming_the_first_and_a_killed_ones_lock_is_taken_over(tmp_path: Path) -> None:
    holder, _ = _holder(tmp_path)
    try:
        with pytest.raises(RunLockedError) as refused:
            ProjectLock(tmp_path).acquire()
        message = str(refused.value)
        assert f"process {holder.pid} (`kedro run --pipelines=train`" in message
        assert f"kill {holder.pid}" in message and "wait until it ends" in message
        assert isinstance(refused.value, ValueError)  # a user error: one sentence, no traceback
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = ProjectLock(tmp_path)
    previous = lock.acquire()  # the kernel dropped the dead holder's lock: taken over at once
    assert previous["pid"] == holder.pid and previous["running"] is True
    record = json.loads(lock.path.read_text())
    assert record["pid"] == os.getpid() and record["running"] is True
    lock.release()
    assert json.loads(lock.path.read_text())["running"] is False
    again = ProjectLock(tmp_path)
    assert again.acquire() == {}, "a run that released the lock ended cleanly: nothing to report"
    again.release()


def test_the_lock_goes_with_the_run_not_with_a_forked_worker_that_outlives_it(tmp_path: Path) -> None:
    holder, child = _holder(tmp_path, fork_child=True)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = ProjectLock(tmp_path)
    try:
        assert pid_alive(child)
        assert lock.acquire()["pid"] == holder.pid
    finally:
        lock.release()
        os.kill(child, signal.SIGKILL)


def test_sweep_removes_what_dead_writers_left_and_keeps_live_ones_and_outputs(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getpid()
    data = tmp_path / "data"
    layer = data / "03_primary"
    (layer / "face_crops").mkdir(parents=True)
    (layer / "face_crops" / "a.png").write_bytes(b"png")
    (layer / f".face_crops.partial-{dead}").mkdir()
    (layer / f".face_crops.partial-{dead}" / "a.png").write_bytes(b"half")
    (layer / f".face_crops.partial-{live}").mkdir()  # a write in progress: not ours to touch
    (layer / f".face_landmarks.parquet.{dead}.tmp").write_bytes(b"x")
    (layer / f".face_landmarks.parquet.{live}.tmp").write_bytes(b"x")
    checkpoints = data / "06_models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.pt").write_bytes(b"complete")
    (checkpoints / f".last.pt.{dead}.0123456789abcdef0123456789abcdef.tmp").write_bytes(b"half")
    (checkpoints / ".ddp-abc123").mkdir()
    # killed between the two renames of a folder swap: the previous folder is put back
    (data / "04_feature" / f".mask_maps.old-{dead}").mkdir(parents=True)
    (data / "04_feature" / f".mask_maps.old-{dead}" / "m.png").write_bytes(b"old")
    (data / "04_feature" / f".mask_maps.partial-{dead}").mkdir()
    (layer / "face_crops" / f".b.png.{dead}.tmp").write_bytes(b"x")  # inside an image folder

    removed = {p.relative_to(data).as_posix() for p in sweep_leftovers(data)}

    assert removed == {
        f"03_primary/.face_crops.partial-{dead}", f"03_primary/.face_landmarks.parquet.{dead}.tmp",
        f"06_models/checkpoints/.last.pt.{dead}.0123456789abcdef0123456789abcdef.tmp",
        "06_models/checkpoints/.ddp-abc123", f"04_feature/.mask_maps.partial-{dead}",
        f"03_primary/face_crops/.b.png.{dead}.tmp",
    }
    assert (layer / f".face_crops.partial-{live}").is_dir()
    assert (layer / f".face_landmarks.parquet.{live}.tmp").is_file()
    assert (data / "04_feature" / "mask_maps" / "m.png").read_bytes() == b"old"
    assert (layer / "face_crops" / "a.png").read_bytes() == b"png"
    assert (checkpoints / "last.pt").read_bytes() == b"complete"


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())
    assert not pid_alive(0)


@pytest.mark.parametrize("mode", ["wb", "w"])
def test_atomic_files_appear_whole_or_not_at_all(tmp_path: Path, mode: str) -> None:
    fs = AtomicLocalFileSystem(auto_mkdir=True)
    target = tmp_path / "sub" / "out.json"
    payload = (lambda s: s.encode()) if "b" in mode else (lambda s: s)
    with fs.open(str(target), mode) as file:
        file.write(payload("old"))
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError), fs.open(str(target), mode) as file:
        file.write(payload("half of the ne"))
        assert target.read_text() == "old", "nothing is visible before the file is closed"
        raise RuntimeError("a failing writer")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]
    with fs.open(str(target), mode) as file:
        file.write(payload("new"))
    assert target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_kedro_file_datasets_are_made_atomic(tmp_path: Path) -> None:
    import pandas as pd
    from kedro_datasets.json import JSONDataset
    from kedro_datasets.pandas import ParquetDataset

    from unmask.datasets import ImagePartitionsDataset

    parquet = ParquetDataset(filepath=str(tmp_path / "t.parquet"))
    document = JSONDataset(filepath=str(tmp_path / "d.json"))
    images = ImagePartitionsDataset(path=str(tmp_path / "images"))
    assert make_writes_atomic([parquet, document, images, object()]) == 2
    parquet.save(pd.DataFrame({"a": [1, 2]}))
    document.save({"k": 1})
    assert parquet.load()["a"].tolist() == [1, 2] and document.load() == {"k": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "t.parquet"]


class _FakeMlflow:
    """The part of ``mlflow.MlflowClient`` that close_dead_mlflow_runs uses (a real store takes 30 s to create;
    tests/test_interrupted_runs.py uses one)."""

    def __init__(self) -> None:
        self.runs: dict[str, SimpleNamespace] = {}

    def add(self, tags: dict[str, str], status: str = "RUNNING") -> str:
        run_id = f"run{len(self.runs)}"
        self.runs[run_id] = SimpleNamespace(info=SimpleNamespace(run_id=run_id, status=status),
                                            data=SimpleNamespace(tags=dict(tags)))
        return run_id

    def search_runs(self, experiment_ids: list[str], filter_string: str) -> list[SimpleNamespace]:
        assert experiment_ids == ["1"] and filter_string == "attributes.status = 'RUNNING'"
        return [run for run in self.runs.values() if run.info.status == "RUNNING"]

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.runs[run_id].data.tags[key] = value

    def set_terminated(self, run_id: str, status: str) -> None:
        self.runs[run_id].info.status = status


def test_mlflow_runs_of_dead_processes_are_marked_killed() -> None:
    client, host, dead = _FakeMlflow(), socket.gethostname(), _dead_pid()
    killed = client.add({PID_TAG: str(dead), HOST_TAG: host})
    alive = client.add({PID_TAG: str(os.getpid()), HOST_TAG: host})
    elsewhere = client.add({PID_TAG: str(dead), HOST_TAG: host + "-other"})
    untagged = client.add({})
    current = client.add({PID_TAG: str(dead), HOST_TAG: host})
    finished = client.add({PID_TAG: str(dead), HOST_TAG: host}, status="FINISHED")
    assert close_dead_mlflow_runs(client, ["1"], skip=[current]) == [killed]
    status = {run_id: run.info.status for run_id, run in client.runs.items()}
    assert status == {killed: "KILLED", alive: "RUNNING", elsewhere: "RUNNING", untagged: "RUNNING",
                      current: "RUNNING", finished: "FINISHED"}
    assert "killed" in client.runs[killed].data.tags["unmask.end"]
    assert close_dead_mlflow_runs(client, []) == []


def test_a_process_whose_run_failed_before_its_pipeline_started_can_run_again(tmp_path: Path) -> None:
    from unmask.run_guard import RunLockHooks

    hooks = RunLockHooks()
    hooks.after_context_created(SimpleNamespace(project_path=tmp_path))
    hooks.before_pipeline_run({})
    hooks.before_pipeline_run({})  # the first run never reached after_pipeline_run / on_pipeline_error
    hooks.on_pipeline_error()
    lock = ProjectLock(tmp_path)
    assert lock.acquire() == {}, "released cleanly"
    lock.release()


def test_an_mlflow_run_started_under_the_lock_is_created_tagged_with_its_process(tmp_path: Path) -> None:
    from mlflow.tracking.context.registry import resolve_tags

    assert PID_TAG not in resolve_tags()  # no lock held: other MLflow users of this environment are left alone
    lock = ProjectLock(tmp_path)
    lock.acquire()
    try:
        tags = resolve_tags()  # what mlflow.start_run writes with the new run, through the entry point
        assert tags[PID_TAG] == str(os.getpid()) and tags[HOST_TAG] == socket.gethostname()
    finally:
        lock.release()
