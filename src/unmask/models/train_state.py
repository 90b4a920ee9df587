"""What a training run must carry across an interruption: its progress, the resumable checkpoint and the RNGs.

A checkpoint (``checkpoint_dir/last.pt``) holds the model, optimiser, scheduler, loss scaler,
early-stopping state, history, best weights and every RNG state, with a fingerprint of the settings
and data that must not change before it is resumed. Checkpoints written before a setting existed
resume as runs with that setting's old value (:data:`FINGERPRINT_DEFAULTS`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unmask.errors import ParamsError, UserError
from unmask.params.train import TrainParams

from .checkpoint import load_model, load_training_state

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "FINGERPRINT_DEFAULTS", "Progress", "checkpoint_state",
           "cpu_state", "fingerprint", "load_initial_weights", "restore"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1

#: Fingerprint keys added after the first checkpoints were written, with the value those runs had.
FINGERPRINT_DEFAULTS: dict[str, Any] = {"composite": False, "mask_loss_weight": 0.0, "batch_norm": False,
                                        "init_weights": None}


@dataclasses.dataclass
class Progress:
    """Everything about the run so far that a checkpoint must restore (besides module states)."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    stale_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_state: dict[str, Tensor] | None = None

    def record(self, row: dict[str, float], validated: bool, net: nn.Module, patience: int) -> None:
        """Add an epoch's row; on a validated epoch keep the best weights and count epochs without improvement."""
        epoch = int(row["epoch"])
        self.epoch = epoch
        self.history.append(row)
        if not validated:
            return
        if row["val_loss"] < self.best_loss:
            self.best_loss, self.best_epoch = row["val_loss"], epoch
            self.best_state = cpu_state(net)
        self.stale_epochs = epoch - self.best_epoch  # epochs, whichever were validated
        self.stopped_early = self.stale_epochs >= patience


def cpu_state(module: nn.Module) -> dict[str, Tensor]:
    """A detached, contiguous CPU copy of a state dict (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def fingerprint(settings: TrainParams, data_digest: str) -> dict[str, Any]:
    """What must not change between a checkpoint and the run that resumes it."""
    keys = ["model", "filters", "composite", "batch_norm", "mask_loss_weight", "loss", "loss_weight", "learning_rate",
            "batch_size", "devices", "scheduler", "min_learning_rate", "plateau_factor", "plateau_patience", "seed",
            "flip", "init_weights"]
    if settings.scheduler == "cosine":
        keys.append("epochs")  # the cosine curve spans the planned epochs
    found = {k: getattr(settings, k) for k in keys}
    found["filters"] = list(found["filters"])
    found["data"] = data_digest
    return found


def _rng_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def checkpoint_state(settings: TrainParams, data_digest: str, progress: Progress, net: nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler) -> dict[str, Any]:
    """The resumable state of the run after ``progress.epoch`` (saved with ``save_training_state``)."""
    return {
        "format_version": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint(settings, data_digest),
        "epoch": progress.epoch,
        "model": cpu_state(net),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "early_stopping": {"best_loss": progress.best_loss, "best_epoch": progress.best_epoch,
                           "stale_epochs": progress.stale_epochs, "stopped_early": progress.stopped_early},
        "best_model": progress.best_state,
        "history": progress.history,
        "rng": _rng_states(),
    }


def restore(path: Path, settings: TrainParams, data_digest: str, net: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Any, scaler: torch.amp.GradScaler) -> Progress:
    """Load the checkpoint at ``path`` into the modules and RNGs and return the run's progress."""
    state = load_training_state(path)
    if state.get("format_version") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a training checkpoint of this version; set train.resume: false to start over.")
    _check_fingerprint(path, {**FINGERPRINT_DEFAULTS, **state["fingerprint"]}, fingerprint(settings, data_digest))
    net.load_state_dict(state["model"])
    kernels = [(group["fused"], group["foreach"]) for group in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    # a checkpoint written on another device (or before fused Adam) carries that run's kernel choice
    for group, (fused, foreach) in zip(optimizer.param_groups, kernels):
        group["fused"], group["foreach"] = fused, foreach
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_states(state["rng"])
    stopping = state["early_stopping"]
    return Progress(epoch=int(state["epoch"]), best_loss=float(stopping["best_loss"]),
                    best_epoch=int(stopping["best_epoch"]), stale_epochs=int(stopping["stale_epochs"]),
                    stopped_early=bool(stopping["stopped_early"]), history=list(state["history"]),
                    best_state=state["best_model"])


def _check_fingerprint(path: Path, saved: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a checkpoint of other settings or data (``saved`` already has the old runs' defaults filled in)."""
    changed = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
    if changed:
        details = "; ".join(f"{k}: checkpoint {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise UserError(
            f"Cannot resume from {path}: the run it belongs to had other settings or data ({details}). "
            "Put the parameters back, or set train.resume: false to start a new run (the checkpoint is replaced)."
        )


def load_initial_weights(net: nn.Module, settings: TrainParams) -> None:
    """Start from ``train.init_weights`` (same architecture) instead of random weights, when set."""
    if not settings.init_weights:
        return
    start = load_model(settings.init_weights)
    wanted = {"name": settings.model, "filters": list(settings.filters), "composite": settings.composite,
              "batch_norm": settings.batch_norm}
    config = start.config
    found = {"name": config.get("name"), "filters": list(config.get("filters", [])),
             "composite": config.get("composite", False), "batch_norm": config.get("batch_norm", False)}
    if found != wanted:
        raise ParamsError(f"train.init_weights {settings.init_weights} is a {found} network; this run trains {wanted}. "
                         "Fine-tuning needs the same architecture.")
    net.load_state_dict(start.state_dict())
    logger.info("Starting from the weights of %s (train.init_weights).", settings.init_weights)
