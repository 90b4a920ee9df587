"""unmask.models.train_state: early-stopping progress, checkpoint fingerprints, RNG states and old checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import base_params
from unmask.models import build_model, save_model, save_training_state
from unmask.models.train_state import (
    FINGERPRINT_DEFAULTS,
    Progress,
    checkpoint_state,
    fingerprint,
    load_initial_weights,
    restore,
)
from unmask.models.training import build_optimizer
from unmask.params import validated
from unmask.params.train import TrainParams


def _settings(**overrides) -> TrainParams:
    small = {"filters": [4, 8, 16], "checkpoint_dir": None}
    return validated(TrainParams, "train", base_params("train", **{**small, **overrides}))


def _modules(settings: TrainParams):
    net = build_model(settings.model, settings.filters)
    optimizer = build_optimizer(net, settings.learning_rate, torch.device("cpu"))
    return net, optimizer, torch.amp.GradScaler("cpu", enabled=False)


def test_progress_keeps_the_best_validated_weights_and_stops_after_patience_epochs():
    net = torch.nn.Linear(2, 1)
    progress = Progress()
    progress.record({"epoch": 1, "val_loss": 0.5}, True, net, patience=2)
    with torch.no_grad():
        net.weight.add_(1.0)
    progress.record({"epoch": 2, "val_loss": float("nan")}, False, net, patience=2)  # not validated: no verdict
    assert (progress.best_epoch, progress.stale_epochs, progress.stopped_early) == (1, 0, False)
    progress.record({"epoch": 3, "val_loss": 0.7}, True, net, patience=2)
    assert progress.epoch == 3 and len(progress.history) == 3
    assert (progress.best_epoch, progress.stale_epochs, progress.stopped_early) == (1, 2, True)
    assert not torch.equal(progress.best_state["weight"], net.weight)  # epoch 1's weights, a copy


def test_the_fingerprint_has_the_planned_epochs_only_for_the_cosine_schedule():
    assert "epochs" not in fingerprint(_settings(scheduler="none"), "digest")
    found = fingerprint(_settings(scheduler="cosine", epochs=7), "digest")
    assert found["epochs"] == 7 and found["filters"] == [4, 8, 16] and found["data"] == "digest"
    assert set(FINGERPRINT_DEFAULTS) <= set(found)


def test_a_checkpoint_restores_modules_progress_and_every_rng(tmp_path: Path):
    settings = _settings()
    torch.manual_seed(0)
    net, optimizer, scaler = _modules(settings)
    progress = Progress()
    progress.record({"epoch": 1, "val_loss": 0.25}, True, net, patience=5)
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    save_training_state(tmp_path / "last.pt", checkpoint_state(settings, "d", progress, net, optimizer, None, scaler))
    expected = torch.rand(3), random.random(), np.random.rand()

    torch.manual_seed(2)
    other, other_optimizer, other_scaler = _modules(settings)
    restored = restore(tmp_path / "last.pt", settings, "d", other, other_optimizer, None, other_scaler)
    assert torch.equal(torch.rand(3), expected[0])
    assert (random.random(), np.random.rand()) == expected[1:]
    assert restored.epoch == 1 and restored.best_loss == 0.25 and restored.history == progress.history
    for key, value in net.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_an_old_checkpoint_resumes_with_the_old_defaults_and_other_settings_are_refused(tmp_path: Path):
    settings = _settings()
    net, optimizer, scaler = _modules(settings)
    progress = Progress()
    progress.record({"epoch": 1, "val_loss": 0.25}, True, net, patience=5)
    state = checkpoint_state(settings, "d", progress, net, optimizer, None, scaler)
    for key in FINGERPRINT_DEFAULTS:  # written before these settings existed
        del state["fingerprint"][key]
    save_training_state(tmp_path / "last.pt", state)
    assert restore(tmp_path / "last.pt", settings, "d", net, optimizer, None, scaler).epoch == 1
    with pytest.raises(ValueError, match="data: checkpoint 'd', now 'other'"):
        restore(tmp_path / "last.pt", settings, "other", net, optimizer, None, scaler)
    with pytest.raises(ValueError, match="composite: checkpoint False, now True"):
        restore(tmp_path / "last.pt", _settings(composite=True), "d", net, optimizer, None, scaler)


def test_init_weights_load_a_model_of_the_same_architecture_only(tmp_path: Path):
    start = build_model("ra_unet", (4, 8, 16))
    save_model(start, tmp_path / "start.safetensors")
    net = build_model("ra_unet", (4, 8, 16))
    load_initial_weights(net, _settings(init_weights=str(tmp_path / "start.safetensors")))
    for key, value in start.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    with pytest.raises(ValueError, match="same architecture"):
        load_initial_weights(build_model("ra_unet", (4, 8, 8)),
                             _settings(filters=[4, 8, 8], init_weights=str(tmp_path / "start.safetensors")))
