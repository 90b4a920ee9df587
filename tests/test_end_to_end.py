"""The whole project on a tiny configuration: `kedro run`, then `kedro run --pipeline=evaluate` alone."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.tiny_project import copy_project

REPO = Path(__file__).resolve().parents[1]


def _kedro(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env=test", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project's configuration (its `test` environment: 48 demo images at 32x32, one epoch
    of a very narrow RA-UNet) in a temporary folder: the runs write their data there, not in the checkout."""
    return copy_project(tmp_path_factory.mktemp("unmask_project"))


@pytest.fixture(scope="module")
def default_run(project: Path) -> subprocess.CompletedProcess:
    result = _kedro(project)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return result


@pytest.mark.slow
def test_default_pipeline_produces_model_metrics_grid_and_mlflow_run(project: Path, default_run):
    from unmask.models.checkpoint import load_model

    model = load_model(project / "data/06_models/model.safetensors")
    assert model.config["filters"] == [4, 8, 16]

    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert metrics["n_images"] == 8
    for key in ("psnr", "psnr_mask", "input_psnr"):
        assert math.isfinite(metrics[key]) and 0 < metrics[key] < 100, (key, metrics[key])
    for key in ("ssim", "ssim_mask"):
        assert math.isfinite(metrics[key]) and -1 <= metrics[key] <= 1, (key, metrics[key])
    assert 0 < metrics["seconds_per_image_batch1_median"] < 60
    # The mask hides the face's lower half, so the unchanged input must be far from the truth there.
    assert metrics["input_psnr_mask"] < metrics["input_psnr"]
    # the baselines, given the true mask, beat leaving it there; breakdowns cover every test image
    for baseline in ("telea", "navier_stokes"):
        assert metrics[f"{baseline}_psnr_mask"] > metrics["input_psnr_mask"]
    assert sum(g["n_images"] for g in metrics["by_style"].values()) == 8
    assert sum(g["n_images"] for g in metrics["by_coverage"].values()) == 8
    assert metrics["device"] == "cpu" and metrics["device_name"]
    report = (project / "data/08_reporting/evaluation.md").read_text()
    assert "| Method | SSIM | PSNR (dB) |" in report and "OpenCV Telea" in report
    per_image = pd.read_csv(project / "data/08_reporting/per_image_metrics.csv", dtype={"image_id": str})
    assert len(per_image) == 8 and {"style", "coverage_bin", "telea_psnr_mask"} <= set(per_image.columns)

    assert (project / "data/08_reporting/restoration_grid.png").stat().st_size > 1000
    assert (project / "data/08_reporting/training_curves.png").exists()
    n_quarantined = len(pd.read_csv(project / "data/08_reporting/quarantine.csv"))
    assert len(list((project / "data/03_primary/face_crops").glob("*.png"))) == 48 - n_quarantined

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("unmask")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.model"] == "ra_unet"
    assert {"test.psnr", "test.ssim", "test.psnr_mask", "test.ssim_mask", "test.telea_psnr_mask",
            "test.navier_stokes_ssim_mask", "val_loss", "train_loss"} <= set(run.data.metrics)
    assert any(name.startswith("test.by_style.") for name in run.data.metrics)
    assert run.data.metrics["test.psnr"] == pytest.approx(metrics["psnr"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "evaluation", "training"} <= artifacts
    model_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model.safetensors", "model.json"} <= model_files
    evaluation_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"metrics.json", "evaluation.md", "per_image_metrics.csv", "restoration_grid.png"} <= evaluation_files


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--pipeline=evaluate", "--pipelines=evaluate"])
def test_evaluate_alone_reuses_the_model_and_split(project: Path, default_run, flag):
    model_file = project / "data/06_models/model.safetensors"
    split_file = project / "data/05_model_input/data_split.parquet"
    metrics_file = project / "data/08_reporting/metrics.json"
    before = {p: p.stat().st_mtime_ns for p in (model_file, split_file)}
    first_metrics = json.loads(metrics_file.read_text())
    metrics_file.unlink()

    result = _kedro(project, flag)
    assert result.returncode == 0, result.stderr[-8000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before, "evaluate must not retrain or re-split"
    again = json.loads(metrics_file.read_text())
    assert again["psnr"] == pytest.approx(first_metrics["psnr"], abs=1e-6)
    assert "train_model_node" not in result.stderr


@pytest.mark.slow
def test_evaluate_scores_another_checkpoint_by_parameter(project: Path, default_run, tmp_path: Path):
    from unmask.models import build_model, save_model

    other = tmp_path / "other.safetensors"
    save_model(build_model("unet", filters=[4, 8, 16]), other)
    reports = project / "data/08_reporting"
    shutil.copytree(reports, tmp_path / "reports")
    try:
        result = _kedro(project, "--pipelines=evaluate", "--params", f"evaluate.checkpoint={other}")
        assert result.returncode == 0, result.stderr[-8000:]
        metrics = json.loads((reports / "metrics.json").read_text())
        assert metrics["checkpoint"] == str(other) and metrics["architecture"] == "unet"
    finally:  # leave the module's project as the default run made it
        shutil.rmtree(reports)
        shutil.copytree(tmp_path / "reports", reports)


@pytest.mark.slow
def test_the_notebook_runs_on_the_latest_run(project: Path, default_run, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(REPO / "notebooks" / "latest_run.ipynb", as_version=4)
    monkeypatch.setenv("UNMASK_PROJECT", str(project))
    monkeypatch.setenv("KEDRO_ENV", "test")
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(project)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs if "data" in o)
    assert "| Method | SSIM | PSNR (dB) |" in markdown
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # curves, restorations, grid


def _masked_photo(path: Path) -> None:
    """Grace Hopper (matplotlib's sample photo) wearing the renderer's surgical mask, saved to ``path``."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image

    from unmask.imaging.alignment import estimate_alignment, template_points, warp_to_crop
    from unmask.imaging.blending import paste_crop
    from unmask.imaging.landmark_detector import FaceLandmarkDetector
    from unmask.imaging.mask_renderer import rasterize_mask, render_masked_face, seeded_mask_spec

    photo = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
                       .resize((256, 300)))
    face = FaceLandmarkDetector().detect_one(photo, masked=False)
    matrix = estimate_alignment(face.landmarks, 128)
    spec = seeded_mask_spec(template_points(128), 128, 3, ["surgical"])
    drawn = render_masked_face(warp_to_crop(photo, matrix, 128), spec)
    Image.fromarray(paste_crop(photo, drawn, matrix, rasterize_mask(spec, 128).astype(np.float32))).save(path)


@pytest.mark.slow
def test_unmask_predict_uses_the_shipped_model_unless_told_to_use_the_demo_one(project: Path, default_run,
                                                                                tmp_path: Path):
    from unmask.imaging.landmark_detector import available

    if not available():
        pytest.skip("the face detector (dlib-bin, face_recognition_models) is not installed")
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    _masked_photo(photo)
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}

    def predict(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "unmask", "predict", str(photo), "-o", str(tmp_path / "out"), *args]
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)

    # the project's model was trained on the procedural demo faces: never used on photos silently
    shipped = predict()
    assert shipped.returncode == 0, shipped.stderr[-4000:]
    assert "trained on the procedural demo faces; using the shipped CelebA model" in shipped.stderr
    assert "64x64 crops" in shipped.stderr and "1 of 1 photos restored" in shipped.stderr
    # asked for by path, the demo model runs at the crop size its training wrote into model.json
    demo = predict("--checkpoint", "data/06_models/model.safetensors")
    assert demo.returncode == 0, demo.stderr[-4000:]
    assert "32x32 crops (from model.json (crop_size)" in demo.stderr  # faces.size of conf/test, kept by train
    assert Image.open(tmp_path / "out" / "photo.png").size == (256, 300)


@pytest.mark.slow
def test_missing_celeba_fails_at_once_with_instructions(project: Path, tmp_path: Path):
    missing = f"ingest.source=celeba,ingest.celeba_path={tmp_path}/nope"
    result = _kedro(project, "--pipelines=ingest", "--params", missing)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "img_align_celeba" in output and "data/01_raw/celeba" in output
