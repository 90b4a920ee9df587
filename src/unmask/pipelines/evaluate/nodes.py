"""Evaluation on the test split: our blind model beside the baselines a user would otherwise pick.

Every method is scored by the same functions (:mod:`unmask.models.metrics`: RGB in [0, 1], data
range 1.0, float64; SSIM with an 11x11 Gaussian window, sigma 1.5) over the whole image and inside
the true mask only. The methods: our model (never given the mask), the masked input returned
unchanged (the floor), and OpenCV's Telea and Navier-Stokes inpainting given the true mask. With
``evaluate.identity``, every method is also scored by the distance of its dlib face-recognition
embedding to the ground truth's (:mod:`unmask.imaging.identity`). The test set streams through a
DataLoader in batches: only one batch of images and the per-image rows are held in memory.
The Markdown report and the grid figure are built in :mod:`unmask.pipelines.evaluate.report`.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.image import structural_similarity_index_measure
from tqdm.auto import tqdm

from unmask.errors import ParamsError, UserError
from unmask.imaging.classical_inpainting import inpaint_with_mask
from unmask.imaging.identity import SAME_PERSON_DISTANCE, IdentityEmbedder
from unmask.models import count_parameters, load_model
from unmask.models.data import PairedFaceDataset, image_to_tensor, tensor_to_image
from unmask.models.devices import device_name, precision_name
from unmask.models.inference import prepare_for_inference, restore
from unmask.models.metrics import masked_mae, masked_psnr, mean_absolute_error, psnr
from unmask.params import validated
from unmask.params.evaluate import EvaluateParams
from unmask.pipelines.evaluate.methods import BASELINES, IDENTITY_NAMES, METHOD_PREFIXES, METRIC_NAMES, PSNR_CAP
from unmask.pipelines.evaluate.report import restoration_grid

logger = logging.getLogger(__name__)

__all__ = ["BASELINES", "IDENTITY_NAMES", "METHOD_PREFIXES", "METRIC_NAMES", "PSNR_CAP", "comparison_grid",
           "metrics_for_mlflow", "score_test_set", "select_model", "summarise_evaluation"]

#: Methods whose identity distances the loader's workers compute (the model's restoration comes later).
_WORKER_METHODS = ("input", *BASELINES)
#: SSIM window, as in :mod:`unmask.models.metrics` (and the usual SSIM of Wang et al. 2004).
SSIM_KERNEL_SIZE, SSIM_SIGMA = 11, 1.5


def select_model(trained_model: nn.Module, params: dict) -> tuple[nn.Module, dict[str, Any]]:
    """The network to evaluate (``evaluate.checkpoint``, else the latest trained model) and a description of it."""
    p = validated(EvaluateParams, "evaluate", params)
    model, source = _chosen_model(trained_model, p.checkpoint)
    return model, _model_info(model, source, p.flip_average)


def score_test_set(
    evaluation_model: nn.Module,
    face_crops: Mapping[str, Callable],
    masked_faces: Mapping[str, Callable],
    mask_maps: Mapping[str, Callable],
    data_split: pd.DataFrame,
    mask_metadata: pd.DataFrame,
    params: dict,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-image metrics of the model and every baseline on the test split, and the timings."""
    p = validated(EvaluateParams, "evaluate", params)
    model, dtype = prepare_for_inference(evaluation_model, p.device, p.precision)
    test_ids = _test_ids(data_split, p.limit)
    pairs = PairedFaceDataset(test_ids, masked_faces, face_crops, mask_maps)
    embedder = IdentityEmbedder().load() if p.identity else None
    per_image, model_seconds = _score_batches(model, dtype, pairs, test_ids, embedder, p)
    per_image = _with_groups(per_image, mask_metadata, p.coverage_bins)
    return per_image, _timing(model, dtype, pairs, model_seconds, p)


def summarise_evaluation(per_image_metrics: pd.DataFrame, evaluation_timing: dict, model_info: dict) -> dict[str, Any]:
    """Means over the test split for every method, by mask style and by coverage, with timing and provenance."""
    return {
        "n_images": len(per_image_metrics),
        **_method_means(per_image_metrics),
        **evaluation_timing,
        **model_info,
        "by_style": _breakdown(per_image_metrics, "style"),
        "by_coverage": _breakdown(per_image_metrics, "coverage_bin"),
    }


def comparison_grid(
    evaluation_model: nn.Module,
    face_crops: Mapping[str, Callable],
    masked_faces: Mapping[str, Callable],
    mask_maps: Mapping[str, Callable],
    data_split: pd.DataFrame,
    params: dict,
) -> plt.Figure:
    """masked | ours | Telea | ground truth for fixed test ids (``grid_ids``, else the first ``grid_images``)."""
    p = validated(EvaluateParams, "evaluate", params)
    ids = _grid_ids(_test_ids(data_split, None), p)
    model, dtype = prepare_for_inference(evaluation_model, p.device, p.precision)
    pairs = PairedFaceDataset(ids, masked_faces, face_crops, mask_maps)
    samples = [pairs[i] for i in range(len(pairs))]
    restored = restore(model, torch.stack([t[0] for t in samples]), dtype, p.flip_average).cpu()
    telea = [inpaint_with_mask(tensor_to_image(m), k[0].numpy() > 0.5, "telea", p.inpaint_radius, p.dilate_px)
             for m, _, k in samples]
    return restoration_grid([tensor_to_image(t[0]) for t in samples], [tensor_to_image(t) for t in restored],
                            telea, [tensor_to_image(t[1]) for t in samples], ids)


def metrics_for_mlflow(evaluation_metrics: dict) -> dict[str, dict[str, float]]:
    """The numeric metrics, breakdowns flattened with dots, in kedro-mlflow's ``{name: {"value", "step"}}`` form."""
    return {
        name.replace(" ", "_"): {"value": float(value), "step": 0}
        for name, value in _flatten(evaluation_metrics).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    }


def _test_ids(data_split: pd.DataFrame, limit: int | None) -> list[str]:
    ids = sorted(data_split.loc[data_split["split"] == "test", "image_id"].astype(str))
    if not ids:
        raise UserError("The split has no test images: re-run `kedro run --pipelines=split`.")
    return ids[:limit] if limit else ids


def _grid_ids(test_ids: list[str], p: EvaluateParams) -> list[str]:
    """``grid_ids`` (each must be a test image), else the first ``grid_images`` test ids."""
    ids = list(p.grid_ids) if p.grid_ids else test_ids[: p.grid_images]
    unknown = sorted(set(ids) - set(test_ids))
    if unknown:
        raise ParamsError(f"evaluate.grid_ids {unknown} are not test images of the current split.")
    return ids


def _chosen_model(trained_model: nn.Module, checkpoint: str | None) -> tuple[nn.Module, str]:
    """``checkpoint`` loaded when given, else the latest trained model; with where it came from."""
    if not checkpoint:
        return trained_model, "trained_model (data/06_models/model.safetensors)"
    path = Path(checkpoint)
    if path.suffix != ".safetensors":
        raise ParamsError(f"evaluate.checkpoint must be a .safetensors file (with its .json beside it), got {path}.")
    logger.info("Evaluating the checkpoint %s instead of the latest trained model.", path)
    return load_model(path), str(path)


def _model_info(model: nn.Module, source: str, flip_average: bool) -> dict[str, Any]:
    """Provenance and architecture of the scored network, as the metrics and report name it."""
    config = getattr(model, "config", {}) or {}
    return {
        "checkpoint": source,
        "architecture": str(config.get("name", type(model).__name__)),
        "filters": list(config.get("filters", [])),
        "composite": bool(config.get("composite", False)),
        "batch_norm": bool(config.get("batch_norm", False)),
        "flip_average": flip_average,
        "parameters": int(count_parameters(model)),
    }


class _TestSamples(Dataset):
    """``(masked, clean, mask, baselines, identity)`` per test id, made in the loader's workers.

    The OpenCV baselines run here; with an embedder, so do the identity distances of the masked
    input and the baselines: ``identity`` holds the ground truth's dlib ``landmarks`` and
    ``truth`` embedding (for the model's restoration later) and the ``distances`` of
    ``_WORKER_METHODS``; it is empty without an embedder.
    """

    def __init__(self, pairs: PairedFaceDataset, radius: float, dilate_px: int,
                 embedder: IdentityEmbedder | None) -> None:
        self.pairs, self.radius, self.dilate_px, self.embedder = pairs, radius, dilate_px, embedder

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        masked, clean, mask = self.pairs[index]
        image, hidden = tensor_to_image(masked), mask[0].numpy() > 0.5
        filled = [inpaint_with_mask(image, hidden, m, self.radius, self.dilate_px) for m in BASELINES]
        identity = {}
        if self.embedder is not None:
            truth = tensor_to_image(clean)
            landmarks = self.embedder.landmarks(truth)
            vector, distances = self.embedder.distances(truth, [image, *filled], landmarks)
            identity = {"landmarks": torch.from_numpy(landmarks), "truth": torch.from_numpy(vector),
                        "distances": torch.from_numpy(distances)}
        return masked, clean, mask, torch.stack([image_to_tensor(f) for f in filled]), identity


def _ssim_and_masked_ssim(pred: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-image and in-mask SSIM exactly as :mod:`unmask.models.metrics` defines them, from one float32 pass.

    The models' functions compute the SSIM map in float64, where PyTorch's CPU convolutions have no
    fast path: 0.35 s per 256x256 image against 0.014 s in float32 (25x), i.e. hours instead of
    minutes for 4 methods x 10,000 test images. float32 changes SSIM by < 1e-5 (a test checks it).
    """
    whole, full = structural_similarity_index_measure(
        pred.float(), clean.float(), gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL_SIZE,
        data_range=1.0, reduction="none", return_full_image=True,
    )
    hidden = (mask > 0.5).to(full.dtype)
    in_mask = (full * hidden).sum(dim=(1, 2, 3)) / (hidden.sum(dim=(1, 2, 3)) * full.shape[1])
    return whole.double(), in_mask.double()


def _image_metrics(pred: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor, prefix: str) -> dict[str, np.ndarray]:
    whole_ssim, mask_ssim = _ssim_and_masked_ssim(pred, clean, mask)
    values = {
        "psnr": psnr(pred, clean),
        "ssim": whole_ssim,
        "psnr_mask": masked_psnr(pred, clean, mask),
        "ssim_mask": mask_ssim,
        "l1": mean_absolute_error(pred, clean),
        "l1_mask": masked_mae(pred, clean, mask),
        # what a blind model changes where there is no mask (infinite for an unchanged pixel set)
        "psnr_outside": masked_psnr(pred, clean, (mask <= 0.5).to(mask.dtype)),
    }
    return {f"{prefix}{k}": v.cpu().numpy() for k, v in values.items()}


def _identity_columns(embedder: IdentityEmbedder, restored: torch.Tensor, identity: dict[str, torch.Tensor]
                      ) -> dict[str, np.ndarray]:
    """Identity distance and same-person flag per method: the model's computed here, the others' in the workers."""
    chips = [embedder.chip(tensor_to_image(x), p) for x, p in zip(restored, identity["landmarks"].numpy())]
    model = np.linalg.norm(embedder.embed_chips(chips) - identity["truth"].numpy(), axis=1)
    columns = {}
    for method, distance in zip(("model", *_WORKER_METHODS), [model, *identity["distances"].numpy().T]):
        columns[f"{METHOD_PREFIXES[method]}identity_distance"] = distance
        columns[f"{METHOD_PREFIXES[method]}same_person"] = (distance < SAME_PERSON_DISTANCE).astype(np.float64)
    return columns


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds_per_image_batch1(model: nn.Module, dtype: torch.dtype, inputs: list[torch.Tensor],
                              device: torch.device, flip_average: bool) -> list[float]:
    """Warm seconds per image at batch 1, as a user restoring one photo would see."""
    restore(model, inputs[0].unsqueeze(0), dtype, flip_average)  # warm-up: allocation and kernel selection
    timings = []
    for x in inputs:
        x = x.unsqueeze(0).to(device)
        _synchronize(device)
        started = time.perf_counter()
        restore(model, x, dtype, flip_average)
        _synchronize(device)
        timings.append(time.perf_counter() - started)
    return timings


def _seconds_per_baseline(samples: list[tuple[torch.Tensor, ...]], p: EvaluateParams) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {m: [] for m in BASELINES}
    for masked, _, mask in samples:
        image, hidden = tensor_to_image(masked), mask[0].numpy() > 0.5
        for method in BASELINES:
            started = time.perf_counter()
            inpaint_with_mask(image, hidden, method, p.inpaint_radius, p.dilate_px)
            timings[method].append(time.perf_counter() - started)
    return timings




def _score_batches(model: nn.Module, dtype: torch.dtype, pairs: PairedFaceDataset, test_ids: list[str],
                   embedder: IdentityEmbedder | None, p: EvaluateParams) -> tuple[pd.DataFrame, float]:
    """One row of metrics per test image for every method, streamed batch by batch; and the model's seconds."""
    device = next(model.parameters()).device
    loader = DataLoader(_TestSamples(pairs, p.inpaint_radius, p.dilate_px, embedder),
                        batch_size=p.batch_size, shuffle=False, num_workers=p.num_workers)
    frames, model_seconds, offset = [], 0.0, 0
    with tqdm(total=len(pairs), desc="evaluate", unit="img") as progress:
        for masked, clean, mask, baselines, identity in loader:
            _synchronize(device)
            started = time.perf_counter()
            restored = restore(model, masked, dtype, p.flip_average)
            _synchronize(device)
            model_seconds += time.perf_counter() - started
            restored = restored.cpu()
            columns = {"image_id": test_ids[offset : offset + len(masked)]}
            columns.update(_image_metrics(restored, clean, mask, METHOD_PREFIXES["model"]))
            columns.update(_image_metrics(masked, clean, mask, METHOD_PREFIXES["input"]))
            for k, method in enumerate(BASELINES):
                columns.update(_image_metrics(baselines[:, k], clean, mask, METHOD_PREFIXES[method]))
            if embedder is not None:
                columns.update(_identity_columns(embedder, restored, identity))
            columns["mask_coverage"] = mask.flatten(1).mean(1).numpy()
            frames.append(pd.DataFrame(columns))
            offset += len(masked)
            progress.update(len(masked))
    return pd.concat(frames, ignore_index=True), model_seconds


def _with_groups(per_image: pd.DataFrame, mask_metadata: pd.DataFrame, bins: list[float]) -> pd.DataFrame:
    """``per_image`` with each image's mask ``style`` and ``coverage_bin`` as its second and third columns."""
    styles = mask_metadata.assign(image_id=mask_metadata["image_id"].astype(str)).set_index("image_id")["style"]
    per_image.insert(1, "style", per_image["image_id"].map(styles).fillna("unknown").astype(str))
    labels = [f"{lo:.2f}-{hi:.2f}" for lo, hi in itertools.pairwise(bins)]
    per_image.insert(2, "coverage_bin", pd.cut(per_image["mask_coverage"], bins, labels=labels, right=False)
                     .astype(str).replace("nan", "outside bins"))
    return per_image


def _timing(model: nn.Module, dtype: torch.dtype, pairs: PairedFaceDataset, model_seconds: float,
            p: EvaluateParams) -> dict[str, Any]:
    """Seconds per image at batch 1 (ours and the baselines), batched throughput, and the hardware it ran on."""
    device = next(model.parameters()).device
    timing_samples = [pairs[i] for i in range(min(p.timing_images, len(pairs)))]
    batch1 = _seconds_per_image_batch1(model, dtype, [t[0] for t in timing_samples], device, p.flip_average)
    per_baseline = _seconds_per_baseline(timing_samples, p)
    return {
        "seconds_per_image_batch1_median": float(np.median(batch1)),
        "seconds_per_image_batch1_p95": float(np.percentile(batch1, 95)),
        "images_per_second_batched": float(len(pairs) / model_seconds) if model_seconds > 0 else math.nan,
        "batch_size": p.batch_size,
        **{f"{METHOD_PREFIXES[m]}seconds_per_image_median": float(np.median(v)) for m, v in per_baseline.items()},
        "device": device.type if device.index is None else f"{device.type}:{device.index}",
        "device_name": device_name(device),
        "precision": precision_name(dtype),
        "threads": torch.get_num_threads(),
        "image_size": int(timing_samples[0][0].shape[-1]),
    }


def _mean(column: pd.Series) -> float:
    values = column.replace([np.inf], PSNR_CAP) if "psnr" in str(column.name) else column
    value = float(values.mean(skipna=True))
    return value if math.isfinite(value) else math.nan


def _method_means(rows: pd.DataFrame) -> dict[str, float]:
    names = [f"{prefix}{name}" for prefix in METHOD_PREFIXES.values() for name in METRIC_NAMES + IDENTITY_NAMES]
    return {name: _mean(rows[name]) for name in names if name in rows}


def _breakdown(per_image: pd.DataFrame, column: str) -> dict[str, dict[str, float]]:
    return {
        str(group): {"n_images": len(rows), **_method_means(rows)}
        for group, rows in per_image.groupby(column, sort=True, observed=True)
    }


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


