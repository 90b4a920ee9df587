"""The training loop behind the ``train`` pipeline: one process, or several with DistributedDataParallel.

:func:`fit` trains with Adam on the configured loss, validates every ``validate_every`` epochs
(and after the last), keeps the best validation weights (early stopping on the validation loss)
and writes a resumable checkpoint at the end of every epoch. With ``devices: N > 1`` it spawns N worker processes itself (gloo on the
CPU, NCCL on CUDA), so ``kedro run`` needs no launcher; rank 0 validates the shared result,
logs, writes checkpoints and hands its weights back to the caller.

Determinism: the epoch order and flips come from :class:`~unmask.models.data.EpochSampler`
(a function of seed and epoch only) and the checkpoint holds the model, optimiser, scheduler,
loss scaler, early-stopping state and RNG states, so on the CPU an interrupted run resumed from
its last checkpoint ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoint import load_model, load_training_state, save_training_state
from .data import EpochSampler, FreshlyMaskedFaceDataset, FreshMasks, PairedFaceDataset
from .devices import (
    PRECISION_CHOICES,
    autocast,
    memory_format_for,
    precision_name,
    resolve_device,
    resolve_precision,
    retain_freed_memory,
)
from .inference import restoration_figure
from .losses import LOSS_NAMES, build_loss
from .metrics import psnr, ssim
from .networks import DEFAULT_FILTERS, MODEL_NAMES, build_model

__all__ = [
    "CHECKPOINT_NAME",
    "SCHEDULERS",
    "TrainSettings",
    "TrainingData",
    "TrainingResult",
    "active_mlflow_run",
    "build_optimizer",
    "fit",
    "training_step",
]

logger = logging.getLogger(__name__)

SCHEDULERS = ("none", "cosine", "plateau")
CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1
MlflowTarget = tuple[str, str]  # (tracking URI, run id)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The ``train`` parameters, validated; defaults are the paper's configuration."""

    model: str = "ra_unet"
    filters: tuple[int, ...] = DEFAULT_FILTERS
    composite: bool = False
    batch_norm: bool = False
    loss: str = "ssim_l1"
    loss_weight: float = 1.0
    mask_loss_weight: float = 0.0
    learning_rate: float = 1e-4
    batch_size: int = 8
    epochs: int = 40
    early_stopping_patience: int = 5
    validate_every: int = 1
    scheduler: str = "none"
    min_learning_rate: float = 0.0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    device: str = "auto"
    devices: int = 1
    precision: str = "auto"
    channels_last: str | bool = "auto"
    compile: bool = False
    num_workers: int = 0
    flip: bool = True
    seed: int = 0
    sample_count: int = 8
    checkpoint_dir: str | None = None
    resume: bool = False
    #: a saved model (.safetensors + .json) of the same architecture whose weights start the run (fine-tuning)
    init_weights: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainSettings:
        """Validate the ``train`` parameter dictionary; every message names the key and the fix."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"Unknown train parameter(s) {unknown}; valid keys: {', '.join(sorted(known))}.")
        values = dict(params)
        for key in ("batch_size", "epochs", "early_stopping_patience", "devices", "plateau_patience", "validate_every"):
            _check_int(values, key, minimum=1)
        for key in ("num_workers", "sample_count", "seed"):
            _check_int(values, key, minimum=0)
        for key in ("compile", "flip", "resume", "composite", "batch_norm"):
            if key in values and not isinstance(values[key], bool):
                raise ValueError(f"train.{key} must be true or false, got {values[key]!r}.")
        lr = values.get("learning_rate", cls.learning_rate)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"train.learning_rate must be a positive number, got {lr!r}.")
        for key in ("loss_weight", "min_learning_rate", "mask_loss_weight"):
            value = values.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"train.{key} must be a non-negative number, got {value!r}.")
        factor = values.get("plateau_factor", cls.plateau_factor)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ValueError(f"train.plateau_factor must be between 0 and 1 (exclusive), got {factor!r}.")
        choices = {"model": MODEL_NAMES, "loss": LOSS_NAMES, "scheduler": SCHEDULERS,
                   "precision": PRECISION_CHOICES, "channels_last": ("auto", True, False)}
        for key, allowed in choices.items():
            if key in values and values[key] not in allowed:
                raise ValueError(f"train.{key} must be one of {', '.join(map(str, allowed))}; got {values[key]!r}.")
        if "filters" in values:
            filters = values["filters"]
            if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence):
                raise ValueError(f"train.filters must be a list of channel counts, e.g. [64, 128, 256], got {filters!r}.")
            values["filters"] = tuple(filters)
            build_model(values.get("model", cls.model), values["filters"])  # validates with a clear message
        if values.get("validate_every", 1) > 1 and values.get("scheduler") == "plateau":
            raise ValueError("train.scheduler: plateau steps on every epoch's validation loss; "
                             "it needs train.validate_every: 1.")
        if values.get("mask_loss_weight") and not values.get("composite"):
            raise ValueError("train.mask_loss_weight > 0 needs train.composite: true (the mask head it trains).")
        for key in ("device", "checkpoint_dir", "init_weights"):
            if values.get(key) is not None and not isinstance(values[key], str):
                raise ValueError(f"train.{key} must be a string, got {values[key]!r}.")
        if values.get("init_weights") and not Path(values["init_weights"]).is_file():
            raise ValueError(f"train.init_weights: no model at {values['init_weights']}; give the path of a trained "
                             "model.safetensors (its .json beside it), or null to start from random weights.")
        for key in ("learning_rate", "loss_weight", "min_learning_rate", "plateau_factor", "mask_loss_weight"):
            if key in values:
                values[key] = float(values[key])
        settings = cls(**values)
        if settings.resume and not settings.checkpoint_dir:
            raise ValueError("train.resume is true but train.checkpoint_dir is not set: there is nothing to resume from.")
        return settings


def _check_int(values: dict, key: str, minimum: int) -> None:
    if key not in values:
        return
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ValueError(f"train.{key} must be {kind}, got {value!r}.")


@dataclasses.dataclass
class TrainingData:
    """Ids of the train and validation images and the lazy image partitions they live in."""

    train_ids: list[str]
    val_ids: list[str]
    masked_faces: Mapping[str, Callable[[], object]]
    face_crops: Mapping[str, Callable[[], object]]
    #: the true masks, only for a loss on a composite network's predicted mask (never its input);
    #: with ``fresh_masks`` the training images' drawn maps are used, and this only asks for them
    mask_maps: Mapping[str, Callable[[], object]] | None = None
    #: draw a new mask on every training face each epoch instead of the stored ``masked_faces``
    #: (validation keeps the stored masks, so its curve compares like with like)
    fresh_masks: FreshMasks | None = None

    def datasets(self) -> tuple[PairedFaceDataset | FreshlyMaskedFaceDataset, PairedFaceDataset]:
        """The train and validation datasets (checks that every id has its images)."""
        if self.fresh_masks is not None:
            train = FreshlyMaskedFaceDataset(self.train_ids, self.face_crops, self.fresh_masks,
                                             with_mask=self.mask_maps is not None)
        else:
            train = PairedFaceDataset(self.train_ids, self.masked_faces, self.face_crops, self.mask_maps)
        return train, PairedFaceDataset(self.val_ids, self.masked_faces, self.face_crops)

    def digest(self) -> str:
        """A fingerprint of the split (and of fresh masks), so a checkpoint is never resumed on other data."""
        text = "train\n" + "\n".join(self.train_ids) + "\nval\n" + "\n".join(self.val_ids)
        if self.fresh_masks is not None:
            text += "\n" + self.fresh_masks.digest_text()
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class TrainingResult:
    """The best-on-validation model (CPU, eval mode), one history row per epoch, one summary per rank."""

    model: nn.Module
    history: list[dict[str, float]]
    ranks: list[dict[str, Any]]


def active_mlflow_run() -> MlflowTarget | None:
    """(tracking URI, run id) of the active MLflow run, or None; workers log to it by id."""
    try:
        import mlflow
    except ImportError:
        return None
    run = mlflow.active_run()
    return None if run is None else (mlflow.get_tracking_uri(), run.info.run_id)


# --------------------------------------------------------------------------- entry point


def fit(settings: TrainSettings, data: TrainingData, mlflow_run: MlflowTarget | None = None) -> TrainingResult:
    """Train as ``settings`` say; with ``devices > 1`` in spawned DistributedDataParallel workers."""
    data.datasets()  # fail here, in the caller's process, when images are missing
    world = settings.devices
    if world == 1:
        summary = _run_rank(0, 1, settings, data, mlflow_run, None, None)
        ranks = [summary]
    else:
        _check_distributed_device(settings.device, world)
        scratch_parent = settings.checkpoint_dir or None
        if scratch_parent:
            Path(scratch_parent).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".ddp-", dir=scratch_parent) as scratch:
            init_method = f"tcp://127.0.0.1:{_free_port()}"
            logger.info("Starting %d DistributedDataParallel workers (%s).", world, init_method)
            torch.multiprocessing.spawn(
                _spawned_rank, args=(world, settings, data, mlflow_run, init_method, scratch),
                nprocs=world, join=True,
            )
            ranks = _collect_rank_results(scratch, world)
        summary = ranks[0]
    model = build_model(settings.model, settings.filters, composite=settings.composite,
                        batch_norm=settings.batch_norm)
    model.load_state_dict(summary["best_state"])
    return TrainingResult(model.eval(), summary["history"], [_public(r) for r in ranks])


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    """A rank summary without the state dictionaries (they are large)."""
    return {k: v for k, v in summary.items() if not k.endswith("_state")}


def _check_distributed_device(name: str, world: int) -> None:
    kind = name.split(":")[0]
    if ":" in name:
        raise ValueError(f"train.device={name!r} names one GPU but train.devices={world}; use device: cuda or auto.")
    if kind == "mps" or (kind == "auto" and not torch.cuda.is_available() and resolve_device("auto").type == "mps"):
        raise ValueError("DistributedDataParallel does not run on Apple MPS; set train.devices: 1.")
    if kind in ("cuda", "auto") and torch.cuda.is_available() and world > torch.cuda.device_count():
        raise ValueError(f"train.devices={world} but only {torch.cuda.device_count()} CUDA device(s) are visible.")


def _free_port() -> int:
    """A free TCP port on the loopback interface for the workers' rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawned_rank(rank: int, world: int, settings: TrainSettings, data: TrainingData,
                  mlflow_run: MlflowTarget | None, init_method: str, scratch: str) -> None:
    """Body of one spawned worker: train, then leave this rank's summary in ``scratch``."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s")
    summary = _run_rank(rank, world, settings, data, mlflow_run, init_method, scratch)
    save_training_state(Path(scratch) / f"rank{rank}.pt", summary)


def _collect_rank_results(scratch: str, world: int) -> list[dict[str, Any]]:
    """Load every rank's summary and check that the replicas ended with the same parameters."""
    ranks = [load_training_state(Path(scratch) / f"rank{r}.pt") for r in range(world)]
    reference = ranks[0]["final_state"]
    for summary in ranks[1:]:
        for name in summary["parameter_names"]:
            if not torch.equal(summary["final_state"][name], reference[name]):
                raise RuntimeError(
                    f"DistributedDataParallel replicas diverged: parameter {name!r} differs between rank 0 "
                    f"and rank {summary['rank']}. This is a bug; please report it with your train parameters."
                )
    return ranks


# --------------------------------------------------------------------------- one rank


@dataclasses.dataclass
class _Progress:
    """Everything about the run so far that a checkpoint must restore (besides module states)."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    stale_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_state: dict[str, Tensor] | None = None


def _rank_device(settings: TrainSettings, rank: int, world: int) -> torch.device:
    device = resolve_device(settings.device)
    if world > 1 and device.type == "cuda":
        return torch.device("cuda", rank)
    return device


def _use_channels_last(settings: TrainSettings, device: torch.device) -> torch.memory_format:
    if settings.channels_last == "auto":
        return memory_format_for(device)
    return torch.channels_last if settings.channels_last else torch.contiguous_format


#: Fingerprint keys added after the first checkpoints were written, with the value those runs had.
_FINGERPRINT_DEFAULTS: dict[str, Any] = {"composite": False, "mask_loss_weight": 0.0, "batch_norm": False,
                                         "init_weights": None}


def _fingerprint(settings: TrainSettings, data: TrainingData) -> dict[str, Any]:
    """What must not change between a checkpoint and the run that resumes it."""
    keys = ["model", "filters", "composite", "batch_norm", "mask_loss_weight", "loss", "loss_weight", "learning_rate", "batch_size", "devices", "scheduler",
            "min_learning_rate", "plateau_factor", "plateau_patience", "seed", "flip", "init_weights"]
    if settings.scheduler == "cosine":
        keys.append("epochs")  # the cosine curve spans the planned epochs
    found = {k: getattr(settings, k) for k in keys}
    found["filters"] = list(found["filters"])
    found["data"] = data.digest()
    return found


def _build_scheduler(settings: TrainSettings, optimizer: torch.optim.Optimizer) -> Any:
    if settings.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs,
                                                          eta_min=settings.min_learning_rate)
    if settings.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=settings.plateau_factor,
                                                          patience=settings.plateau_patience,
                                                          min_lr=settings.min_learning_rate)
    return None


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    """A detached, contiguous CPU copy of a state dict (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


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


def _checkpoint(settings: TrainSettings, data: TrainingData, progress: _Progress, net: nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler) -> dict[str, Any]:
    return {
        "format_version": CHECKPOINT_FORMAT,
        "fingerprint": _fingerprint(settings, data),
        "epoch": progress.epoch,
        "model": _cpu_state(net),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "early_stopping": {"best_loss": progress.best_loss, "best_epoch": progress.best_epoch,
                           "stale_epochs": progress.stale_epochs, "stopped_early": progress.stopped_early},
        "best_model": progress.best_state,
        "history": progress.history,
        "rng": _rng_states(),
    }


def _restore(path: Path, settings: TrainSettings, data: TrainingData, net: nn.Module,
             optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
             device: torch.device) -> _Progress:
    """Load the checkpoint at ``path`` into the modules and return the run's progress."""
    state = load_training_state(path)
    if state.get("format_version") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint of this version; set train.resume: false to start over.")
    expected = _fingerprint(settings, data)
    # checkpoints from before a setting existed ran with its default
    saved = {**_FINGERPRINT_DEFAULTS, **state["fingerprint"]}
    changed = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
    if changed:
        details = "; ".join(f"{k}: checkpoint {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise ValueError(
            f"Cannot resume from {path}: the run it belongs to had other settings or data ({details}). "
            "Put the parameters back, or set train.resume: false to start a new run (the checkpoint is replaced)."
        )
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
    return _Progress(epoch=int(state["epoch"]), best_loss=float(stopping["best_loss"]),
                     best_epoch=int(stopping["best_epoch"]), stale_epochs=int(stopping["stale_epochs"]),
                     stopped_early=bool(stopping["stopped_early"]), history=list(state["history"]),
                     best_state=state["best_model"])


def _all_reduce_sum(values: list[float], device: torch.device, distributed: bool) -> list[float]:
    if not distributed:
        return values
    buffer = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.tolist()


def _loader(dataset: PairedFaceDataset, sampler: EpochSampler, settings: TrainSettings,
            device: torch.device) -> DataLoader:
    workers = settings.num_workers
    return DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


@torch.no_grad()
def _validate(net: nn.Module, loader: DataLoader, loss_fn: Callable, device: torch.device, dtype: torch.dtype,
              fmt: torch.memory_format, distributed: bool) -> dict[str, float]:
    """Validation loss, PSNR and SSIM averaged over images (all ranks' shares together)."""
    net.eval()
    loss_sum = psnr_sum = ssim_sum = count = 0.0
    for masked, clean, *_ in loader:
        masked = masked.to(device, non_blocking=True).contiguous(memory_format=fmt)
        clean = clean.to(device, non_blocking=True)
        with autocast(device, dtype):
            restored = net(masked)
        restored = restored.float()
        n = masked.shape[0]
        loss_sum += float(loss_fn(restored, clean)) * n
        psnr_sum += float(psnr(restored, clean).clamp(max=100).sum())
        ssim_sum += float(ssim(restored, clean).sum())
        count += n
    loss_sum, psnr_sum, ssim_sum, count = _all_reduce_sum([loss_sum, psnr_sum, ssim_sum, count], device, distributed)
    return {"val_loss": loss_sum / count, "val_psnr": psnr_sum / count, "val_ssim": ssim_sum / count}


def _log_to_mlflow(target: MlflowTarget | None, metrics: dict[str, float], step: int, figure: Any = None) -> None:
    """Per-epoch logging by run id, so spawned workers log into the parent's run; never fatal."""
    if target is None:
        return
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


def build_optimizer(model: nn.Module, learning_rate: float, device: torch.device) -> torch.optim.Adam:
    """Adam over ``model``'s parameters; fused (one pass over each parameter) on CPU and CUDA.

    The fused kernel reads and writes every parameter and both moment buffers once per step
    instead of once per elementwise op. On 2 CPU cores, for the 9.8 M parameters of the
    ``conf/cpu`` network: 6.5 ms per step against 19-24 ms for the default ``foreach`` path, and
    7 ms against 34 ms with the optimizer state of a 22-epoch run (``benchmarks/bench_model.py``).
    """
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=device.type in ("cpu", "cuda") or None)


def training_step(model: nn.Module, masked: Tensor, clean: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
                  optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, dtype: torch.dtype,
                  mask: Tensor | None = None, mask_loss_weight: float = 0.0) -> Tensor:
    """One optimisation step on a batch already on the device (autocast to ``dtype``); returns the loss.

    With ``mask`` (the true mask, N x 1 x H x W) and ``mask_loss_weight > 0``, a composite
    network's mask logits also get that weight times binary cross-entropy against it.
    """
    with autocast(masked.device, dtype):
        if mask is not None and mask_loss_weight > 0:
            restored, logits = model(masked, with_mask=True)
        else:
            restored, logits = model(masked), None
    # The loss runs in float32 whatever the autocast dtype: SSIM statistics are too coarse in bf16.
    loss = loss_fn(restored.float(), clean)
    if logits is not None:
        loss = loss + mask_loss_weight * nn.functional.binary_cross_entropy_with_logits(logits.float(), mask)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def _run_rank(rank: int, world: int, settings: TrainSettings, data: TrainingData,
              mlflow_run: MlflowTarget | None, init_method: str | None, scratch: str | None) -> dict[str, Any]:
    """Train on this rank (the only one when ``world == 1``); return its summary."""
    distributed = world > 1
    device = _rank_device(settings, rank, world)
    if distributed:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        else:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=init_method,
                                rank=rank, world_size=world)
    try:
        with retain_freed_memory(device.type == "cpu"):
            return _train(rank, world, device, settings, data, mlflow_run)
    finally:
        if distributed:
            dist.destroy_process_group()


def _load_initial_weights(net: nn.Module, settings: TrainSettings) -> None:
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
        raise ValueError(f"train.init_weights {settings.init_weights} is a {found} network; this run trains {wanted}. "
                         "Fine-tuning needs the same architecture.")
    net.load_state_dict(start.state_dict())
    logger.info("Starting from the weights of %s (train.init_weights).", settings.init_weights)


def _train(rank: int, world: int, device: torch.device, settings: TrainSettings, data: TrainingData,
           mlflow_run: MlflowTarget | None) -> dict[str, Any]:
    distributed, is_main = world > 1, rank == 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    torch.manual_seed(settings.seed)
    dtype = resolve_precision(settings.precision, device, training=True)
    fmt = _use_channels_last(settings, device)

    net = build_model(settings.model, settings.filters, composite=settings.composite,
                      batch_norm=settings.batch_norm).to(device, memory_format=fmt)
    optimizer = build_optimizer(net, settings.learning_rate, device)
    scheduler = _build_scheduler(settings, optimizer)
    # fp16 needs loss scaling to keep small gradients representable; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_fn = build_loss(settings.loss, settings.loss_weight)

    checkpoint = Path(settings.checkpoint_dir) / CHECKPOINT_NAME if settings.checkpoint_dir else None
    progress = _Progress()
    if settings.resume and checkpoint is not None and checkpoint.is_file():
        progress = _restore(checkpoint, settings, data, net, optimizer, scheduler, scaler, device)
        if is_main:
            logger.info("Resuming from %s after epoch %d (best val_loss %.4f at epoch %d).",
                        checkpoint, progress.epoch, progress.best_loss, progress.best_epoch)
            for row in progress.history:  # this MLflow run gets the whole curve, not only the new epochs
                _log_to_mlflow(mlflow_run, {k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))
    else:
        _load_initial_weights(net, settings)
        if is_main and settings.resume:
            logger.info("train.resume is set but %s does not exist yet: starting a new run.", checkpoint)
        elif is_main and checkpoint is not None and checkpoint.is_file():
            logger.warning("%s exists and train.resume is false: starting over; it is replaced after epoch 1.",
                           checkpoint)

    model: nn.Module = net
    if distributed:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    step_model = torch.compile(model) if settings.compile else model

    train_set, val_set = data.datasets()
    sampler = EpochSampler(len(train_set), shuffle=True, flip=settings.flip, seed=settings.seed,
                           rank=rank, world=world, pad=True, with_epoch=data.fresh_masks is not None)
    val_sampler = EpochSampler(len(val_set), shuffle=False, flip=False, rank=rank, world=world)
    train_loader = _loader(train_set, sampler, settings, device)
    val_loader = _loader(val_set, val_sampler, settings, device)
    if is_main:
        logger.info(
            "Training %s %s on %d x %s (%s, %s): %d train / %d val images (%s), batch %d per device, epochs %d..%d",
            settings.model, list(settings.filters), world, device, precision_name(dtype),
            "channels_last" if fmt == torch.channels_last else "NCHW", len(train_set), len(val_set),
            "a fresh mask per face each epoch" if data.fresh_masks is not None else "the stored masks",
            settings.batch_size, progress.epoch + 1, settings.epochs,
        )

    first_epoch_ids: list[str] = []
    images_per_epoch = 0
    for epoch in range(progress.epoch + 1, settings.epochs + 1):
        if progress.stopped_early:
            break
        sampler.set_epoch(epoch)
        if not first_epoch_ids:
            first_epoch_ids = [train_set.image_ids[i] for i, *_ in sampler]
        images_per_epoch = len(sampler)
        learning_rate = optimizer.param_groups[0]["lr"]
        step_model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{settings.epochs}", unit="batch", leave=False,
                   disable=not is_main)
        for step, (masked, clean, *rest) in enumerate(bar, 1):
            masked = masked.to(device, non_blocking=True).contiguous(memory_format=fmt)
            clean = clean.to(device, non_blocking=True)
            mask = rest[0].to(device, non_blocking=True) if rest else None
            loss = training_step(step_model, masked, clean, loss_fn, optimizer, scaler, dtype,
                                 mask, settings.mask_loss_weight)
            loss_sum += loss * masked.shape[0]
            seen += masked.shape[0]
            if is_main and (step % 10 == 0 or step == len(train_loader) or device.type == "cpu"):
                rate = seen * world / (time.perf_counter() - started)
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", img_s=f"{rate:.1f}")
        bar.close()
        loss_total, seen_total = _all_reduce_sum([float(loss_sum), float(seen)], device, distributed)
        train_seconds = time.perf_counter() - started
        # the last epoch is always validated: the run ends on a measured model
        validated = epoch % settings.validate_every == 0 or epoch == settings.epochs
        val = (_validate(net, val_loader, loss_fn, device, dtype, fmt, distributed) if validated
               else dict.fromkeys(("val_loss", "val_psnr", "val_ssim"), math.nan))

        row = {"epoch": epoch, "train_loss": loss_total / seen_total, **val, "learning_rate": learning_rate,
               "train_images_per_s": seen_total / train_seconds, "epoch_seconds": time.perf_counter() - started}
        if settings.scheduler == "plateau":
            scheduler.step(val["val_loss"])
        elif scheduler is not None:
            scheduler.step()
        progress.epoch = epoch
        progress.history.append(row)
        if validated:
            if val["val_loss"] < progress.best_loss:
                progress.best_loss, progress.best_epoch = val["val_loss"], epoch
                progress.best_state = _cpu_state(net)
            progress.stale_epochs = epoch - progress.best_epoch  # epochs, whichever were validated
            progress.stopped_early = progress.stale_epochs >= settings.early_stopping_patience

        if is_main:
            if validated:
                logger.info(
                    "epoch %d: train_loss %.4f val_loss %.4f val_psnr %.2f dB val_ssim %.4f lr %.2e (%.1f img/s)",
                    epoch, row["train_loss"], row["val_loss"], row["val_psnr"], row["val_ssim"], learning_rate,
                    row["train_images_per_s"],
                )
            else:
                logger.info("epoch %d: train_loss %.4f lr %.2e (%.1f img/s; validated every %d epochs)",
                            epoch, row["train_loss"], learning_rate, row["train_images_per_s"],
                            settings.validate_every)
            figure = (restoration_figure(net, val_set, settings.sample_count)
                      if settings.sample_count and validated else None)
            _log_to_mlflow(mlflow_run, {k: v for k, v in row.items() if k != "epoch"}, epoch, figure)
            if figure is not None:
                import matplotlib.pyplot as plt

                plt.close(figure)
            if checkpoint is not None:
                save_training_state(checkpoint, _checkpoint(settings, data, progress, net, optimizer, scheduler, scaler))
        if distributed:
            dist.barrier()  # nobody races into the next epoch while rank 0 writes
        if progress.stopped_early:
            if is_main:
                logger.info("Early stopping after epoch %d: no validation improvement in %d epochs.",
                            epoch, progress.stale_epochs)
            break

    if progress.best_state is None:
        raise RuntimeError("No epoch was trained: train.epochs is not above the checkpoint's epoch.")
    summary: dict[str, Any] = {
        "rank": rank, "device": str(device), "precision": precision_name(dtype),
        "images_per_epoch": images_per_epoch, "first_epoch_ids": first_epoch_ids,
        "history": progress.history, "best_epoch": progress.best_epoch,
    }
    if is_main:
        summary["best_state"] = progress.best_state
    if distributed:
        summary["final_state"] = _cpu_state(net)
        summary["parameter_names"] = [name for name, _ in net.named_parameters()]
    return summary
