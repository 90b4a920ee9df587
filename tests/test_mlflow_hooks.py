"""unmask.mlflow_hooks: a tiny `kedro run` in a temporary project names the MLflow run after the environment
and the model, tags the git commit and logs the trained network as an MLflow logged model, with no pickle."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch
import yaml
from kedro.pipeline import Node, Pipeline
from PIL import Image

from unmask.mlflow_hooks import (
    COMMIT_TAG,
    DIRTY_TAG,
    MODEL_DATASET,
    MlflowRunHooks,
    data_source,
    git_commit,
    run_name,
)
from unmask.models import build_model

REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN = {"train": {"filters": [4, 8], "batch_norm": True}}


def _tiny_network(train: dict) -> torch.nn.Module:
    """Stands in for training: the configured network, untrained."""
    torch.manual_seed(0)
    return build_model(train["model"], train["filters"], batch_norm=train["batch_norm"])


def register_pipelines() -> dict[str, Pipeline]:
    """The pipeline registry of the tiny run: one node that outputs the trained model."""
    tiny = Pipeline([Node(_tiny_network, "params:train", MODEL_DATASET, name="train_model_node")])
    return {"__default__": tiny}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """The project's conf/base plus a `smoke` environment, committed to a fresh git repository."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir()
    (root / "conf" / "smoke").mkdir()
    (root / "conf" / "smoke" / "parameters.yml").write_text(yaml.safe_dump(TINY_TRAIN))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "src").mkdir()
    (root / ".gitignore").write_text("data/\nmlflow.db\nmlartifacts/\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny")
    monkeypatch.chdir(root)  # mlflow.yml's sqlite store and artifact folder are relative paths
    # kedro-mlflow sets the store and the experiment process-wide (and in the environment): undone at teardown
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")  # recorded, so that teardown restores it (or its absence) ...
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")  # ... after mlflow.set_experiment set it
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    yield root
    while mlflow.active_run():  # kedro-mlflow re-enters its run per node and leaves one entry on the stack
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during the run: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _kedro_run(root: Path, env: str) -> mlflow.entities.Run:
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(root)
    pipelines.configure(__name__)
    try:
        with KedroSession.create(project_path=root, env=env) as session:
            session.run()
    finally:
        pipelines.configure("unmask.pipeline_registry")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("unmask").experiment_id])
    return run


@pytest.mark.slow
def test_a_tiny_run_is_named_tagged_and_logs_the_model(project, no_network, monkeypatch, tmp_path):
    run = _kedro_run(project, "smoke")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "smoke · demo · ra_unet 4-8 bn"
    assert run.data.tags[COMMIT_TAG] == _git(project, "rev-parse", "--short", "HEAD")
    assert run.data.tags[DIRTY_TAG] == "false"  # the run's outputs are untracked: the code is the commit

    client = mlflow.MlflowClient()
    (logged,) = client.search_logged_models([run.info.experiment_id])
    assert logged.name == MODEL_DATASET and logged.source_run_id == run.info.run_id
    files = Path(mlflow.artifacts.download_artifacts(logged.artifact_location, dst_path=str(tmp_path / "logged")))
    names = {path.relative_to(files).as_posix() for path in files.rglob("*") if path.is_file()}
    assert {"mlflow_model.py", "artifacts/network/model.safetensors", "artifacts/network/model.json"} <= names
    assert not [name for name in names if Path(name).suffix in {".pkl", ".pickle", ".pt", ".pth", ".bin"}], names

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # MLflow refuses a cloudpickled model
    restorer = mlflow.pyfunc.load_model(logged.model_uri)
    network = restorer.unwrap_python_model().network
    expected = _tiny_network({"model": "ra_unet", **TINY_TRAIN["train"]}).eval()
    for name, tensor in expected.state_dict().items():
        torch.testing.assert_close(network.state_dict()[name], tensor, rtol=0, atol=0)
    masked = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        restored = expected(torch.from_numpy(masked).permute(0, 3, 1, 2).float() / 255).permute(0, 2, 3, 1).numpy()
    as_floats = restorer.predict(masked.astype(np.float32) / 255)
    assert as_floats.dtype == np.float32 and as_floats.shape == masked.shape
    np.testing.assert_allclose(as_floats, restored, rtol=0, atol=1e-6)
    as_bytes = restorer.predict(masked)
    assert as_bytes.dtype == np.uint8 and as_bytes.shape == masked.shape
    assert np.abs(as_bytes.astype(int) - np.round(restored * 255)).max() <= 1  # one level: rounding on a tie

    requirements = (files / "requirements.txt").read_text()
    # pinned here, not inferred: torch as given (and MLflow's own pin, which it always adds)
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements.split()
    assert all("==" in line for line in requirements.split())


def test_a_run_outside_git_has_no_commit_tag(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as active:
        MlflowRunHooks().before_pipeline_run({"project_path": str(tmp_path)})
    tags = mlflow.MlflowClient().get_run(active.info.run_id).data.tags
    assert COMMIT_TAG not in tags and DIRTY_TAG not in tags


def test_git_commit_sees_changed_tracked_files_and_survives_no_git(tmp_path, monkeypatch):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    assert git_commit(tmp_path) == (_git(tmp_path, "rev-parse", "--short", "HEAD"), False)
    (tmp_path / "b.txt").write_text("untracked")
    assert git_commit(tmp_path)[1] is False
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path)[1] is True
    assert git_commit(tmp_path / "missing") is None and git_commit(None) is None
    monkeypatch.setenv("PATH", "")  # no git binary at all
    assert git_commit(tmp_path) is None


@pytest.mark.parametrize(("env", "train", "name"), [
    ("cpu", {"model": "ra_unet", "filters": [32, 64, 512], "batch_norm": True}, "cpu · ra_unet 32-512 bn"),
    ("celeba", {"model": "unet", "filters": [64, 1024], "batch_norm": False}, "celeba · unet 64-1024"),
    ("local", None, "local"),
])
def test_run_name(env, train, name):
    assert run_name(env, train) == name


def test_the_run_name_says_which_data_unless_the_environment_does(tmp_path):
    train = {"model": "ra_unet", "filters": [16, 256]}
    assert run_name("local", train, "demo") == "local · demo · ra_unet 16-256"
    assert run_name("celeba_sample", train, "celeba") == "celeba_sample · ra_unet 16-256"
    assert data_source({"source": "demo"}, tmp_path) == "demo"
    assert data_source({"source": "celeba", "celeba_path": "nowhere"}, tmp_path) == "celeba"
    assert data_source({"source": "auto", "celeba_path": "data/01_raw/celeba"}, tmp_path) == "demo"
    images = tmp_path / "data" / "01_raw" / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    Image.new("RGB", (178, 218)).save(images / "000001.jpg")
    assert data_source({"source": "auto", "celeba_path": "data/01_raw/celeba"}, tmp_path) == "celeba"


def test_a_name_from_mlflow_yml_is_kept_and_no_env_is_the_default_run_env():
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig

    def context(env, name):
        config = KedroMlflowConfig.model_validate({"tracking": {"run": {"name": name}}})
        return SimpleNamespace(env=env, config_loader=SimpleNamespace(default_run_env="local"), mlflow=config,
                               params={"train": {"model": "unet", "filters": [8, 16]}})

    kept, unnamed = context("cpu", "my run"), context(None, None)
    MlflowRunHooks().after_context_created(kept)
    MlflowRunHooks().after_context_created(unnamed)
    assert kept.mlflow.tracking.run.name == "my run"
    assert unnamed.mlflow.tracking.run.name == "local · unet 8-16"
    MlflowRunHooks().after_context_created(SimpleNamespace(env="cpu"))  # kedro-mlflow disabled: nothing to name


def test_a_renamed_environment_names_the_run_by_its_new_name():
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig

    from unmask.settings import ConfigLoader

    loader = ConfigLoader(str(Path(__file__).resolve().parents[1] / "conf"), env="cpu", base_env="base",
                          default_run_env="local")
    context = SimpleNamespace(env="cpu", config_loader=loader, mlflow=KedroMlflowConfig(),
                              params={"train": {"model": "ra_unet", "filters": [32, 512], "batch_norm": True}})
    MlflowRunHooks().after_context_created(context)
    assert context.mlflow.tracking.run.name == "celeba_sample · ra_unet 32-512 bn"
