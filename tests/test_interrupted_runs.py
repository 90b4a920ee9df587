"""Real ``kedro run``s killed with SIGKILL, run twice at once, and resumed (issue 16), on a tiny project.

Each kill lands at a fixed point (tests/tiny_project.py): the previous outputs must be as they
were, the next run must remove what the killed one left, MLflow must say the killed runs were
killed and ``mlflow.db`` must stay readable. The tests share one project and run in file order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny_project import env, kedro, make_project

pytestmark = pytest.mark.slow

# (stage, where it is killed, the output it was writing then)
KILLS = [
    ("ingest", "pandas:DataFrame.to_parquet:1:after", "data/02_intermediate/celeba_index.parquet"),
    ("faces", "unmask.datasets.image_partitions:write_png:10", "data/03_primary/face_crops"),
    ("masks", "unmask.datasets.image_partitions:_swap_in:1", "data/04_feature/masked_faces"),
    ("split", "pandas:DataFrame.to_parquet:1:after", "data/05_model_input/data_split.parquet"),
    ("train", "torch:save:1:after", "data/06_models/checkpoints"),  # last.pt's temporary file is written
    ("evaluate", "pandas:DataFrame.to_csv:1:after", "data/08_reporting/per_image_metrics.csv"),
]
LEFTOVER = re.compile(r"^\..+(\.partial-\d+|\.old-\d+|\.\d+(\.[0-9a-f]+)?\.tmp)$|^\.ddp-")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = make_project(tmp_path_factory.mktemp("interrupted"))
    result = kedro(root)
    assert result.returncode == 0, result.stderr[-6000:]
    return root


def _digest(path: Path) -> str:
    if path.is_dir():
        files = sorted(p for p in path.rglob("[!.]*") if p.is_file())  # a write's temporary files aside
        return hashlib.sha256("".join(f"{p.relative_to(path)}:{_digest(p)}" for p in files).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outputs(project: Path) -> dict[str, str]:
    """Every output under data/ (an image folder counts as one), by path, with its digest."""
    found = {}
    for layer in sorted((project / "data").iterdir()):
        if layer.is_dir():
            for entry in layer.iterdir():
                if not entry.name.startswith("."):
                    found[entry.relative_to(project).as_posix()] = _digest(entry)
    return found


def _leftovers(project: Path) -> list[str]:
    return sorted(p.relative_to(project).as_posix() for p in (project / "data").rglob(".*") if LEFTOVER.match(p.name))


def _mlflow_statuses(project: Path) -> list[str]:
    database = sqlite3.connect(project / "mlflow.db")
    try:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [status for (status,) in database.execute("SELECT status FROM runs ORDER BY start_time")]
    finally:
        database.close()


def test_a_run_killed_in_any_writing_stage_keeps_the_outputs_and_the_next_run_cleans_up(project: Path) -> None:
    left_before: list[str] = []
    for stage, point, writing in KILLS:
        before = _outputs(project)
        result = kedro(project, f"--pipelines={stage}", kill_at=point)
        assert result.returncode == -signal.SIGKILL, (stage, result.stderr[-4000:])
        after = _outputs(project)
        assert after[writing] == before[writing], f"{stage}: {writing} changed by a killed run"
        assert set(after) == set(before), f"{stage}: outputs appeared or vanished"
        left = _leftovers(project)
        assert left, f"{stage}: the kill point left nothing behind; the test does not test the cleanup"
        assert not set(left) & set(left_before), f"{stage}'s run did not remove the previous kill's leftovers"
        left_before = left

    cleanup = kedro(project, "--pipelines=split")
    assert cleanup.returncode == 0, cleanup.stderr[-6000:]
    assert _leftovers(project) == []
    log = cleanup.stdout + cleanup.stderr  # Kedro's rich logging writes to stdout
    assert "did not end cleanly" in log and "Removed 1 leftover(s)" in log
    for path in ("data/02_intermediate/celeba_index.parquet", "data/05_model_input/data_split.parquet"):
        import pandas as pd

        assert len(pd.read_parquet(project / path)) > 0
    statuses = _mlflow_statuses(project)
    assert statuses.count("KILLED") == len(KILLS) and "RUNNING" not in statuses, statuses


def test_a_second_run_is_refused_at_once_and_a_killed_runs_lock_is_taken_over(project: Path) -> None:
    first = subprocess.Popen([sys.executable, "-m", "kedro", "run", "--env=test", "--pipelines=train"], cwd=project,
                             env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = project / "data" / ".unmask-run.lock"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            record = json.loads(lock.read_text() or "{}") if lock.exists() else {}
            if record.get("pid") == first.pid and record.get("running"):
                break
            assert first.poll() is None, "the first run ended before it could be caught holding the lock"
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGSTOP)  # holds the lock for as long as the test needs
        started = time.monotonic()
        second = kedro(project, "--pipelines=split", command=(sys.executable, "-m", "unmask", "run"))
        assert second.returncode == 1
        assert f"Another run of this project is in progress: process {first.pid} (`" in second.stderr
        assert "--pipelines=train" in second.stderr and f"kill {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        assert time.monotonic() - started < 120
    finally:
        first.kill()  # SIGKILL, even while stopped
        first.wait()
    third = kedro(project, "--pipelines=split")
    assert third.returncode == 0, third.stderr[-6000:]
    assert f"The previous run (process {first.pid}" in third.stdout + third.stderr
    assert "RUNNING" not in _mlflow_statuses(project)


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_training_killed_mid_epoch_or_mid_checkpoint_resumes_to_the_uninterrupted_weights(project: Path) -> None:
    reference = kedro(project, "--pipelines=train", "--params", "train.epochs=2,train.checkpoint_dir=data/ck_ref")
    assert reference.returncode == 0, reference.stderr[-6000:]
    expected = load_file(project / "data/06_models/model.safetensors")
    (project / "data/06_models/model.safetensors").unlink()
    params = "train.epochs=2,train.checkpoint_dir=data/ck"
    checkpoint = project / "data/ck/last.pt"

    # 4 steps an epoch (32 training faces, batches of 8): step 6 is in the middle of epoch 2
    mid_epoch = kedro(project, "--pipelines=train", "--params", params, kill_at="torch.optim.adam:Adam.step:6")
    assert mid_epoch.returncode == -signal.SIGKILL, mid_epoch.stderr[-4000:]
    assert _state(checkpoint)["epoch"] == 1

    # the resumed run is killed once the epoch-2 checkpoint is written but not yet in place
    mid_write = kedro(project, "--pipelines=train", "--params", params + ",train.resume=true",
                      kill_at="torch:save:1:after")
    assert mid_write.returncode == -signal.SIGKILL, mid_write.stderr[-4000:]
    assert "after epoch 1" in mid_write.stdout
    assert _state(checkpoint)["epoch"] == 1
    assert [p.name for p in checkpoint.parent.glob(".last.pt.*.tmp")], "the kill did not land in the write"

    resumed = kedro(project, "--pipelines=train", "--params", params + ",train.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-6000:]
    assert "Resuming from" in resumed.stdout and "after epoch 1" in resumed.stdout
    assert _state(checkpoint)["epoch"] == 2
    assert not list(checkpoint.parent.glob(".*.tmp"))
    weights = load_file(project / "data/06_models/model.safetensors")
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[key], expected[key]) for key in expected)
