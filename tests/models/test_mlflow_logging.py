"""unmask.models.mlflow_logging: per-epoch metrics by run id, finite values only, never fatal."""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import mlflow
import pytest

from unmask.models.mlflow_logging import active_mlflow_run, log_epoch


class _Client:
    batches: ClassVar[list] = []

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def log_batch(self, run_id: str, metrics: list) -> None:
        self.batches.append((self.tracking_uri, run_id, {m.key: (m.value, m.step) for m in metrics}))

    def log_figure(self, run_id: str, figure: object, path: str) -> None:
        self.batches.append((run_id, path))


def test_an_epoch_row_is_logged_at_its_epoch_without_the_unvalidated_values(monkeypatch):
    monkeypatch.setattr(mlflow, "MlflowClient", _Client)
    _Client.batches = []
    log_epoch(("file:/tmp/x", "run"), {"epoch": 3, "train_loss": 0.5, "val_loss": math.nan}, figure=object())
    assert _Client.batches == [("file:/tmp/x", "run", {"train_loss": (0.5, 3)}),
                               ("run", "training/samples/epoch_003.png")]
    log_epoch(None, {"epoch": 4, "train_loss": 0.4})  # no run: nothing to do
    assert len(_Client.batches) == 2


def test_a_failing_tracking_store_only_warns(monkeypatch, caplog: pytest.LogCaptureFixture):
    def broken(tracking_uri: str) -> None:
        raise ConnectionError("store down")

    monkeypatch.setattr(mlflow, "MlflowClient", broken)
    with caplog.at_level(logging.WARNING):
        log_epoch(("uri", "run"), {"epoch": 1, "train_loss": 0.5})
    assert "MLflow logging failed for epoch 1: store down" in caplog.text
    assert active_mlflow_run() is None  # no active run outside a kedro run
