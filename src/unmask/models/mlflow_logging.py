"""Per-epoch MLflow logging of the training loop, by run id so that spawned DDP workers log into the parent's run."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

__all__ = ["MlflowTarget", "active_mlflow_run", "log_epoch"]

logger = logging.getLogger(__name__)

MlflowTarget = tuple[str, str]  # (tracking URI, run id)


def active_mlflow_run() -> MlflowTarget | None:
    """(tracking URI, run id) of the active MLflow run, or None; workers log to it by id."""
    try:
        import mlflow
    except ImportError:
        return None
    run = mlflow.active_run()
    return None if run is None else (mlflow.get_tracking_uri(), run.info.run_id)


def log_epoch(target: MlflowTarget | None, row: dict[str, float], figure: Any = None) -> None:
    """Log a history row's metrics (and the sample grid) at step ``row["epoch"]``; never fatal."""
    if target is None:
        return
    step = int(row["epoch"])
    metrics = {k: v for k, v in row.items() if k != "epoch"}
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        client = MlflowClient(tracking_uri=target[0])
        stamp = int(time.time() * 1000)
        client.log_batch(target[1], metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()
                                             if isinstance(v, (int, float)) and math.isfinite(v)])
        if figure is not None:
            client.log_figure(target[1], figure, f"training/samples/epoch_{step:03d}.png")
    except Exception as exc:  # a flaky tracking store must not end a long training run
        logger.warning("MLflow logging failed for epoch %d: %s", step, exc)
