"""Project hooks around kedro-mlflow's: runs named by environment and model, tagged with the git commit, and
the trained network logged as an MLflow logged model: its safetensors weights and the code of
:mod:`unmask.mlflow_model`, nothing pickled.

kedro-mlflow (registered through its plugin entry point) reads ``mlflow.yml`` in its own
``after_context_created`` and starts the run in its ``before_pipeline_run``. The two hooks here of the
same names are ``trylast``, so they run after it: the name goes into its configuration before it starts
the run, and the tags go onto the run it started. With MLflow off for a pipeline there is no active run,
and nothing here logs anything.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from unmask.imaging.celeba import locate_celeba

logger = logging.getLogger(__name__)

#: The catalog entry of the trained network, and its name among the run's logged models.
MODEL_DATASET = "trained_model"
#: Run tags of the code a run ran: the short commit sha, and "true" when tracked files differ from it.
COMMIT_TAG, DIRTY_TAG = "git_commit", "git_dirty"


def run_name(env: str, train_params: Mapping[str, Any] | None, data: str | None = None) -> str:
    """``local · demo · ra_unet 16-256``: the environment, the data (unless the environment names it), then the
    architecture, first-last filters and batch norm."""
    parts = [env] + ([data] if data and data not in env else [])
    train = train_params or {}
    if "model" in train:
        filters = list(train.get("filters") or [])
        model = str(train["model"]) + (f" {filters[0]}-{filters[-1]}" if filters else "")
        parts.append(model + (" bn" if train.get("batch_norm") else ""))
    return " · ".join(parts)


def data_source(ingest_params: Mapping[str, Any] | None, project_path: str | Path | None) -> str | None:
    """``"celeba"`` or ``"demo"``: what ``ingest`` reads with these parameters (``auto``: CelebA when it is there)."""
    ingest = ingest_params or {}
    source = ingest.get("source")
    if source != "auto":
        return source if source in ("celeba", "demo") else None
    path = Path(str(ingest.get("celeba_path", "")))
    if not path.is_absolute() and project_path is not None:
        path = Path(project_path) / path
    try:
        locate_celeba(path)
    except (FileNotFoundError, ValueError, OSError):
        return "demo"
    return "celeba"


def git_commit(project_path: str | Path | None) -> tuple[str, bool] | None:
    """The short sha of HEAD and whether tracked files changed since; ``None`` without git or a repository."""
    if project_path is None:
        return None
    try:
        sha = _git(project_path, "rev-parse", "--short", "HEAD")
        changes = _git(project_path, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git binary, not a repository, a hung git
        return None
    return sha, bool(changes)


def log_network(model: Any) -> None:
    """``model`` as an MLflow 3 logged model of the active run: code plus safetensors, no pickle, requirements
    pinned here (no lookup). Loading it runs :mod:`unmask.mlflow_model`, which reads the weights safely."""
    import mlflow.pyfunc
    import torch

    from unmask import mlflow_model
    from unmask.models.checkpoint import save_model

    # A "model from code": MLflow stores the module's source, not a cloudpickle of the model object, and the
    # network goes in as the files the catalog writes, saved afresh from the object the catalog was given.
    # Requirements given explicitly: MLflow would otherwise infer them by importing and resolving packages.
    with tempfile.TemporaryDirectory() as tmp:
        network = Path(tmp) / mlflow_model.NETWORK_ARTIFACT
        save_model(model, network / mlflow_model.WEIGHTS_FILE)
        mlflow.pyfunc.log_model(name=MODEL_DATASET, python_model=Path(mlflow_model.__file__),
                                artifacts={mlflow_model.NETWORK_ARTIFACT: str(network)},
                                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])


def _git(project_path: str | Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(project_path), *args], capture_output=True, text=True, timeout=10,
                          check=True)
    return done.stdout.strip()


class MlflowRunHooks:
    """Names each kedro-mlflow run, tags it with the commit, and logs the trained network as a model."""

    @hook_impl(trylast=True)
    def after_context_created(self, context: Any) -> None:
        """Name the run after the environment and the model, unless ``mlflow.yml`` names it."""
        config = getattr(context, "mlflow", None)  # kedro-mlflow's configuration; absent when it is disabled
        if config is None or config.tracking.run.name:
            return
        # the config loader's env: a renamed one (--env=cpu) already under its new name
        loader = context.config_loader
        env = getattr(loader, "env", None) or context.env or loader.default_run_env
        data = data_source(context.params.get("ingest"), getattr(context, "project_path", None))
        config.tracking.run.name = run_name(env, context.params.get("train"), data)

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        """Tag the run kedro-mlflow just started with the git commit of the project, when there is one."""
        import mlflow

        commit = git_commit(run_params.get("project_path")) if mlflow.active_run() else None
        if commit is not None:
            sha, dirty = commit
            mlflow.set_tags({COMMIT_TAG: sha, DIRTY_TAG: str(dirty).lower()})

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        """Log the trained network once it is on disk, so that a logging failure cannot cost the trained weights."""
        import mlflow

        if dataset_name == MODEL_DATASET and mlflow.active_run() is not None:
            log_network(data)
