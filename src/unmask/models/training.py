"""The training loop behind the ``train`` pipeline: one process, or several with DistributedDataParallel.

:func:`fit` trains with Adam on the configured loss, validates every ``validate_every`` epochs
(and after the last), keeps the best validation weights (early stopping on the validation loss)
and writes a resumable checkpoint at the end of every epoch. With ``devices: N > 1`` it spawns N
worker processes itself (:mod:`.distributed`), so ``kedro run`` needs no launcher; rank 0 validates
the shared result, logs (:mod:`.mlflow_logging`), writes checkpoints (:mod:`.train_state`) and hands
its weights back to the caller.

Determinism: the epoch order and flips come from :class:`~unmask.models.data.EpochSampler`
(a function of seed and epoch only) and the checkpoint holds the model, optimiser, scheduler,
loss scaler, early-stopping state and RNG states, so on the CPU an interrupted run resumed from
its last checkpoint ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from unmask.params.train import TrainParams

from .checkpoint import save_training_state
from .data import EpochSampler, PairedFaceDataset, TrainingData
from .devices import (
    autocast,
    memory_format_for,
    precision_name,
    resolve_precision,
    retain_freed_memory,
)
from .distributed import (
    all_reduce_sum,
    check_device,
    process_group,
    rank_device,
    spawn_ranks,
)
from .inference import restoration_figure
from .losses import build_loss
from .metrics import psnr, ssim
from .mlflow_logging import MlflowTarget, log_epoch
from .networks import build_model
from .train_state import (
    CHECKPOINT_NAME,
    Progress,
    checkpoint_state,
    cpu_state,
    load_initial_weights,
    restore,
)

__all__ = ["TrainingResult", "build_optimizer", "fit", "training_step"]

logger = logging.getLogger(__name__)

VAL_KEYS = ("val_loss", "val_psnr", "val_ssim")


@dataclasses.dataclass
class TrainingResult:
    """The best-on-validation model (CPU, eval mode), one history row per epoch, one summary per rank."""

    model: nn.Module
    history: list[dict[str, float]]
    ranks: list[dict[str, Any]]


def fit(settings: TrainParams, data: TrainingData, mlflow_run: MlflowTarget | None = None) -> TrainingResult:
    """Train as ``settings`` say; with ``devices > 1`` in spawned DistributedDataParallel workers."""
    data.datasets()  # fail here, in the caller's process, when images are missing
    if settings.devices == 1:
        ranks = [_run_rank(settings, data, mlflow_run, 0, 1, None)]
    else:
        check_device(settings.device, settings.devices)
        worker = functools.partial(_run_rank, settings, data, mlflow_run)
        ranks = spawn_ranks(worker, settings.devices, settings.checkpoint_dir)
    model = build_model(settings.model, settings.filters, composite=settings.composite,
                        batch_norm=settings.batch_norm)
    model.load_state_dict(ranks[0]["best_state"])
    return TrainingResult(model.eval(), ranks[0]["history"], [_public(r) for r in ranks])


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    """A rank summary without the state dictionaries (they are large)."""
    return {k: v for k, v in summary.items() if not k.endswith("_state")}


def _run_rank(settings: TrainParams, data: TrainingData, mlflow_run: MlflowTarget | None, rank: int, world: int,
              init_method: str | None) -> dict[str, Any]:
    """Train on this rank (the only one when ``world == 1``); return its summary."""
    device = rank_device(settings.device, rank, world)
    with process_group(device, rank, world, init_method), retain_freed_memory(device.type == "cpu"):
        return _train(rank, world, device, settings, data, mlflow_run)


# --------------------------------------------------------------------------- the loop


def _train(rank: int, world: int, device: torch.device, settings: TrainParams, data: TrainingData,
           mlflow_run: MlflowTarget | None) -> dict[str, Any]:
    """One rank's run: set up, resume or start, then train and validate epoch by epoch; this rank's summary."""
    distributed, is_main = world > 1, rank == 0
    # the seed, the autocast dtype and the memory layout (fixed input size: cuDNN may pick its fastest kernels)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(settings.seed)
    dtype = resolve_precision(settings.precision, device, training=True)
    fmt = _memory_format(settings.channels_last, device)
    # the network, Adam, the schedule, the loss scaler (fp16 needs loss scaling; bf16 and fp32 do not), the loss
    net = build_model(settings.model, settings.filters, composite=settings.composite,
                      batch_norm=settings.batch_norm).to(device, memory_format=fmt)
    optimizer = build_optimizer(net, settings.learning_rate, device)
    scheduler = _build_scheduler(settings, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_fn = build_loss(settings.loss, settings.loss_weight)
    # continue from checkpoint_dir/last.pt, or start from init_weights or the seeded random weights
    checkpoint = Path(settings.checkpoint_dir) / CHECKPOINT_NAME if settings.checkpoint_dir else None
    progress = _resume_or_start(checkpoint, settings, data, net, optimizer, scheduler, scaler, is_main, mlflow_run)
    # DDP keeps the replicas in step; torch.compile (when asked) wraps what the steps run
    model: nn.Module = net
    if distributed:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    step_model = torch.compile(model) if settings.compile else model
    # this rank's share of every epoch, in an order and with flips drawn from (seed, epoch) alone
    train_set, val_set = data.datasets()
    sampler = EpochSampler(len(train_set), shuffle=True, flip=settings.flip, seed=settings.seed,
                           rank=rank, world=world, pad=True, with_epoch=data.fresh_masks is not None)
    val_sampler = EpochSampler(len(val_set), shuffle=False, flip=False, rank=rank, world=world)
    train_loader = _loader(train_set, sampler, settings.batch_size, settings.num_workers, device)
    val_loader = _loader(val_set, val_sampler, settings.batch_size, settings.num_workers, device)
    if is_main:
        _log_start(settings, world, device, dtype, fmt, data, len(train_set), len(val_set), progress.epoch + 1)

    first_epoch_ids: list[str] = []
    images_per_epoch = 0
    for epoch in range(progress.epoch + 1, settings.epochs + 1):
        if progress.stopped_early:
            break
        # this epoch's order, flips (and fresh masks)
        sampler.set_epoch(epoch)
        first_epoch_ids = first_epoch_ids or [train_set.image_ids[i] for i, *_ in sampler]
        images_per_epoch = len(sampler)
        # one optimisation step per batch of this rank's share, the loss summed over all ranks
        learning_rate = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        loss_total, seen_total = _train_epoch(step_model, train_loader, loss_fn, optimizer, scaler, device, dtype, fmt,
                                              settings.mask_loss_weight, f"epoch {epoch}/{settings.epochs}",
                                              is_main, world)
        train_seconds = time.perf_counter() - started
        # validate every validate_every epochs and always after the last: the run ends on a measured model
        validated = epoch % settings.validate_every == 0 or epoch == settings.epochs
        val = (_validate(net, val_loader, loss_fn, device, dtype, fmt, distributed) if validated
               else dict.fromkeys(VAL_KEYS, math.nan))
        row = {"epoch": epoch, "train_loss": loss_total / seen_total, **val, "learning_rate": learning_rate,
               "train_images_per_s": seen_total / train_seconds, "epoch_seconds": time.perf_counter() - started}
        # the schedule steps once an epoch (plateau: on the validation loss)
        if settings.scheduler == "plateau":
            scheduler.step(val["val_loss"])
        elif scheduler is not None:
            scheduler.step()
        # early stopping: keep the best validated weights, count the epochs since
        progress.record(row, validated, net, settings.early_stopping_patience)
        # rank 0 reports, logs to MLflow and writes the checkpoint; nobody races into the next epoch meanwhile
        if is_main:
            _report_epoch(row, validated, settings, net, val_set, mlflow_run)
            if checkpoint is not None:
                save_training_state(checkpoint, checkpoint_state(settings, data.digest(), progress, net, optimizer,
                                                                 scheduler, scaler))
        if distributed:
            dist.barrier()
        if progress.stopped_early:
            if is_main:
                logger.info("Early stopping after epoch %d: no validation improvement in %d epochs.",
                            epoch, progress.stale_epochs)
            break
    return _rank_summary(rank, device, dtype, images_per_epoch, first_epoch_ids, progress, net, distributed)


# --------------------------------------------------------------------------- steps of the loop


def build_optimizer(model: nn.Module, learning_rate: float, device: torch.device) -> torch.optim.Adam:
    """Adam over ``model``'s parameters; fused (one pass over each parameter) on CPU and CUDA.

    The fused kernel reads and writes every parameter and both moment buffers once per step
    instead of once per elementwise op. On 2 CPU cores, for the 9.8 M parameters of the
    ``conf/celeba_sample`` network: 6.5 ms per step against 19-24 ms for the default ``foreach`` path, and
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


def _memory_format(channels_last: str | bool, device: torch.device) -> torch.memory_format:
    if channels_last == "auto":
        return memory_format_for(device)
    return torch.channels_last if channels_last else torch.contiguous_format


def _build_scheduler(settings: TrainParams, optimizer: torch.optim.Optimizer) -> Any:
    if settings.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs,
                                                          eta_min=settings.min_learning_rate)
    if settings.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=settings.plateau_factor,
                                                          patience=settings.plateau_patience,
                                                          min_lr=settings.min_learning_rate)
    return None


def _resume_or_start(checkpoint: Path | None, settings: TrainParams, data: TrainingData, net: nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler, is_main: bool,
                     mlflow_run: MlflowTarget | None) -> Progress:
    """The run's progress: restored from ``checkpoint`` with ``train.resume``, else new (``init_weights`` loaded)."""
    if settings.resume and checkpoint is not None and checkpoint.is_file():
        progress = restore(checkpoint, settings, data.digest(), net, optimizer, scheduler, scaler)
        if is_main:
            logger.info("Resuming from %s after epoch %d (best val_loss %.4f at epoch %d).",
                        checkpoint, progress.epoch, progress.best_loss, progress.best_epoch)
            for row in progress.history:  # this MLflow run gets the whole curve, not only the new epochs
                log_epoch(mlflow_run, row)
        return progress
    load_initial_weights(net, settings)
    if is_main and settings.resume:
        logger.info("train.resume is set but %s does not exist yet: starting a new run.", checkpoint)
    elif is_main and checkpoint is not None and checkpoint.is_file():
        logger.warning("%s exists and train.resume is false: starting over; it is replaced after epoch 1.", checkpoint)
    return Progress()


def _loader(dataset: PairedFaceDataset, sampler: EpochSampler, batch_size: int, workers: int,
            device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


def _log_start(settings: TrainParams, world: int, device: torch.device, dtype: torch.dtype,
               fmt: torch.memory_format, data: TrainingData, n_train: int, n_val: int, first_epoch: int) -> None:
    logger.info(
        "Training %s %s on %d x %s (%s, %s): %d train / %d val images (%s), batch %d per device, epochs %d..%d",
        settings.model, list(settings.filters), world, device, precision_name(dtype),
        "channels_last" if fmt == torch.channels_last else "NCHW", n_train, n_val,
        "a fresh mask per face each epoch" if data.fresh_masks is not None else "the stored masks",
        settings.batch_size, first_epoch, settings.epochs,
    )


def _train_epoch(model: nn.Module, loader: DataLoader, loss_fn: Callable, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, device: torch.device, dtype: torch.dtype, fmt: torch.memory_format,
                 mask_loss_weight: float, label: str, is_main: bool, world: int) -> tuple[float, float]:
    """One pass over ``loader`` with :func:`training_step`; ``(loss sum, image count)`` over all ranks."""
    model.train()
    started = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    bar = tqdm(loader, desc=label, unit="batch", leave=False, disable=not is_main)
    for step, (masked, clean, *rest) in enumerate(bar, 1):
        masked = masked.to(device, non_blocking=True).contiguous(memory_format=fmt)
        clean = clean.to(device, non_blocking=True)
        mask = rest[0].to(device, non_blocking=True) if rest else None
        loss = training_step(model, masked, clean, loss_fn, optimizer, scaler, dtype, mask, mask_loss_weight)
        loss_sum += loss * masked.shape[0]
        seen += masked.shape[0]
        if is_main and (step % 10 == 0 or step == len(loader) or device.type == "cpu"):
            rate = seen * world / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", img_s=f"{rate:.1f}")
    bar.close()
    loss_total, seen_total = all_reduce_sum([float(loss_sum), float(seen)], device, world > 1)
    return loss_total, seen_total


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
    loss_sum, psnr_sum, ssim_sum, count = all_reduce_sum([loss_sum, psnr_sum, ssim_sum, count], device, distributed)
    return {"val_loss": loss_sum / count, "val_psnr": psnr_sum / count, "val_ssim": ssim_sum / count}


def _report_epoch(row: dict[str, float], validated: bool, settings: TrainParams, net: nn.Module,
                  val_set: PairedFaceDataset, mlflow_run: MlflowTarget | None) -> None:
    """Log the epoch's row, and log it with a grid of restored validation faces to MLflow."""
    if validated:
        logger.info("epoch %d: train_loss %.4f val_loss %.4f val_psnr %.2f dB val_ssim %.4f lr %.2e (%.1f img/s)",
                    row["epoch"], row["train_loss"], row["val_loss"], row["val_psnr"], row["val_ssim"],
                    row["learning_rate"], row["train_images_per_s"])
    else:
        logger.info("epoch %d: train_loss %.4f lr %.2e (%.1f img/s; validated every %d epochs)",
                    row["epoch"], row["train_loss"], row["learning_rate"], row["train_images_per_s"],
                    settings.validate_every)
    figure = restoration_figure(net, val_set, settings.sample_count) if settings.sample_count and validated else None
    log_epoch(mlflow_run, row, figure)
    if figure is not None:
        import matplotlib.pyplot as plt

        plt.close(figure)


def _rank_summary(rank: int, device: torch.device, dtype: torch.dtype, images_per_epoch: int,
                  first_epoch_ids: list[str], progress: Progress, net: nn.Module, distributed: bool) -> dict[str, Any]:
    """What this rank hands back: history and best weights (rank 0), final weights to compare (under DDP)."""
    if progress.best_state is None:
        raise RuntimeError("No epoch was trained: train.epochs is not above the checkpoint's epoch.")
    summary: dict[str, Any] = {
        "rank": rank, "device": str(device), "precision": precision_name(dtype),
        "images_per_epoch": images_per_epoch, "first_epoch_ids": first_epoch_ids,
        "history": progress.history, "best_epoch": progress.best_epoch,
    }
    if rank == 0:
        summary["best_state"] = progress.best_state
    if distributed:
        summary["final_state"] = cpu_state(net)
        summary["parameter_names"] = [name for name, _ in net.named_parameters()]
    return summary
