"""benchmarks/gpu_check.py (`make gpu-check`) in its tiny CPU mode: the GPU check cannot rot between GPU sessions."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
STEPS = ["faces", "train_bf16", "train_fp16_scaler", "inference", "throughput", "train_node_resume",
         "evaluate", "predict", "ddp", "train_compile"]
# Steps that run on the CPU in tiny mode, and those that need CUDA and say so.
RUN_ON_CPU = STEPS[:8]
NEED_CUDA = ["ddp", "train_compile"]


def _check(tmp_path: Path, *extra: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    # One thread: with two threads on a 2-core machine that something else is using, every parallel
    # region can wait a scheduler tick.
    cmd = [sys.executable, str(SCRIPT), "--cpu-tiny", "--threads", "1", "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SCRIPT.parents[1] / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    """The script imported as a module (its environment defaults restored afterwards)."""
    saved = {k: os.environ.get(k) for k in ("TQDM_DISABLE", "KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up there
    try:
        spec.loader.exec_module(loaded)
        yield loaded
    finally:
        sys.modules.pop(spec.name, None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.slow
def test_cpu_tiny_mode_runs_every_step_and_says_what_needs_cuda(tmp_path):
    done, doc = _check(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert doc["ok"] is True and doc["failed"] == [] and doc["mode"] == "cpu-tiny"
    steps = {s["name"]: s for s in doc["steps"]}
    assert list(steps) == STEPS
    assert set(doc["budgets_s"]) == set(STEPS)
    for name in RUN_ON_CPU:
        step = steps[name]
        assert step["status"] == "ok", (name, step["summary"])
        assert 0 < step["seconds"] and step["budget_s"] > 0
        assert any(line.startswith("[ ok ] " + name) for line in out.splitlines()), out
    for name in NEED_CUDA:
        assert steps[name]["status"] == "skipped" and steps[name]["summary"].startswith("skipped: no CUDA"), name
        assert any(line.startswith("[skip] " + name) and "skipped: no CUDA" in line for line in out.splitlines())
    for name in ("evaluate", "predict"):  # they run on the CPU, and say the CUDA run was skipped
        assert "skipped: no CUDA" in steps[name]["summary"]

    # the project's training step, in both precisions, on real or demo faces: the loss fell
    for name in ("train_bf16", "train_fp16_scaler"):
        data = steps[name]["data"]
        assert data["loss_last"] < 0.9 * data["loss_first"] and all(math.isfinite(v) for v in data["losses"])
    assert steps["train_fp16_scaler"]["data"]["scale"] >= 1
    # interrupted in epoch 2 and resumed: on the CPU exactly the uninterrupted run's weights
    resume = steps["train_node_resume"]["data"]
    assert resume["max_abs_difference_final"] == 0 and resume["max_abs_difference_best"] == 0
    assert resume["history"]["epoch"] == [1, 2]
    assert steps["evaluate"]["data"]["device"] == "cpu" and steps["evaluate"]["data"]["n_images"] == 4
    assert steps["predict"]["data"]["output"].startswith("3 of 3 photos restored")

    figures = doc["figures"]
    for name in ("train_images_per_s_b8", "train_images_per_s_max_batch", "infer_s_per_image_b1_bf16",
                 "infer_s_per_image_b8_bf16", "infer_s_per_image_b1_fp32", "infer_s_per_image_b8_fp32",
                 "celeba_epoch_minutes_b8", "paper_40_epochs_hours_b8", "celeba_epoch_minutes_max_batch"):
        assert figures[name]["value"] > 0, name
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name  # one line a figure
    assert figures["largest_training_batch"]["value"] == 32  # the tiny mode's cap
    assert figures["paper_40_epochs_hours_b8"]["value"] == pytest.approx(
        162_770 * 40 / figures["train_images_per_s_b8"]["value"] / 3600, rel=0.01)
    assert figures["peak_gpu_memory_gib"]["value"] == "skipped: no CUDA"
    assert "gpu-check passed" in out


def test_a_failing_step_is_named_and_fails_the_run(tmp_path):
    done, doc = _check(tmp_path, "--only", "train_bf16", "--fail-step", "train_bf16", timeout=300)
    assert done.returncode == 1
    assert "gpu-check FAILED: train_bf16" in done.stdout
    assert any(line.startswith("[FAIL] train_bf16") for line in done.stdout.splitlines())
    assert "step train_bf16 FAILED" in done.stderr
    assert doc["ok"] is False and doc["failed"] == ["train_bf16"]
    statuses = {s["name"]: s["status"] for s in doc["steps"]}
    assert statuses["faces"] == "ok" and statuses["inference"] == "skipped"


def test_nan_and_a_flat_loss_fail_the_checks(module):
    with pytest.raises(module.CheckFailed, match="non-finite"):
        module.loss_falls([1.0, 0.9, float("nan"), 0.5])
    with pytest.raises(module.CheckFailed, match="did not fall"):
        module.loss_falls([1.0] * 10)
    assert module.loss_falls([1.0, 1.0, 0.8, 0.5, 0.5]) == (1.0, 0.5)
    with pytest.raises(module.CheckFailed, match="weights"):
        module.check_finite("weights", torch.tensor([0.0, float("inf")]))
    module.check_finite("metrics", {"psnr": 20.0, "rows": [1.0, 2.0]})
    a = {"w": torch.zeros(3), "n": torch.tensor(2)}
    assert module.max_abs_difference(a, {"w": torch.tensor([0.0, -0.5, 0.25]), "n": torch.tensor(2)}) == 0.5


def test_demo_faces_stand_in_when_there_is_no_celeba(module):
    faces = module.load_faces(3, 32, None)
    assert faces.clean.shape == faces.masked.shape == (3, 32, 32, 3) and faces.masks.shape == (3, 32, 32)
    assert "demo" in faces.source and set(faces.styles) <= {"surgical", "n95", "kn95", "cloth", "bandana"}
    changed = (faces.clean != faces.masked).any(axis=-1)
    assert changed.any() and not changed[faces.masks == 0].any()  # the renderer touched only its mask
    masked, clean = faces.tensors(torch.device("cpu"))
    assert masked.shape == (3, 3, 32, 32) and 0 <= float(clean.min()) and float(clean.max()) <= 1
