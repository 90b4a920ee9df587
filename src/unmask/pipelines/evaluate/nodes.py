"""Evaluation on the test split: our blind model beside the baselines a user would otherwise pick.

Every method is scored by the same functions (:mod:`unmask.models.metrics`: RGB in [0, 1], data
range 1.0, float64; SSIM with an 11x11 Gaussian window, sigma 1.5) over the whole image and inside
the true mask only. The methods: our model (never given the mask), the masked input returned
unchanged (the floor), and OpenCV's Telea and Navier-Stokes inpainting given the true mask. With
``evaluate.identity``, every method is also scored by the distance of its dlib face-recognition
embedding to the ground truth's (:mod:`unmask.imaging.identity`). The test set streams through a
DataLoader in batches: only one batch of images and the per-image rows are held in memory.
"""

from __future__ import annotations

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

from unmask.imaging.classical_inpainting import INPAINT_METHODS, inpaint_with_mask
from unmask.imaging.grids import image_grid
from unmask.imaging.identity import SAME_PERSON_DISTANCE, IdentityEmbedder
from unmask.models import count_parameters, load_model
from unmask.models.data import PairedFaceDataset, image_to_tensor, tensor_to_image
from unmask.models.devices import device_name, precision_name
from unmask.models.inference import prepare_for_inference, restore
from unmask.models.metrics import masked_mae, masked_psnr, mean_absolute_error, psnr

logger = logging.getLogger(__name__)

#: Metrics reported per image and averaged, for every method.
METRIC_NAMES = ("psnr", "ssim", "psnr_mask", "ssim_mask", "l1", "l1_mask", "psnr_outside")
#: With ``evaluate.identity``: embedding distance to the ground truth, and 1.0 where it is under dlib's 0.6.
IDENTITY_NAMES = ("identity_distance", "same_person")
#: Column / key prefix of each method; our model keeps the bare names DVC and MLflow have always had.
METHOD_PREFIXES = {"model": "", "input": "input_", "telea": "telea_", "navier_stokes": "navier_stokes_"}
#: Row labels of the report table.
METHOD_LABELS = {
    "model": "Ours: {name}, blind",
    "input": "Masked input, unchanged",
    "telea": "OpenCV Telea, given the true mask",
    "navier_stokes": "OpenCV Navier-Stokes, given the true mask",
}
BASELINES = tuple(INPAINT_METHODS)
#: Methods whose identity distances the loader's workers compute (the model's restoration comes later).
_WORKER_METHODS = ("input", *BASELINES)
#: SSIM window, as in :mod:`unmask.models.metrics` (and the usual SSIM of Wang et al. 2004).
SSIM_KERNEL_SIZE, SSIM_SIGMA = 11, 1.5
#: PSNR of a perfect image is infinite; averages use this cap so one such image does not hide the rest.
PSNR_CAP = 100.0
#: The paper's Table I row for its RA-UNet (CelebA 256x256, RTX 2070): reported, not measured here.
PAPER_ROW = {"ssim": 0.94, "psnr": 33.83, "seconds": 0.24}

DEFAULTS: dict[str, Any] = {
    "checkpoint": None,
    "device": "auto",
    "precision": "auto",
    "batch_size": 16,
    "num_workers": 0,
    "limit": None,
    "timing_images": 20,
    "inpaint_radius": 3.0,
    "dilate_px": 0,
    "coverage_bins": [0.0, 0.2, 0.25, 0.3, 0.35, 1.0],
    "grid_images": 8,
    "grid_ids": None,
    "flip_average": False,
    "identity": True,
}


def _settings(params: dict) -> dict[str, Any]:
    """The ``evaluate`` parameters with defaults filled in, checked, with messages that name the key."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown evaluate parameter(s) {unknown}; known: {sorted(DEFAULTS)}.")
    s = {**DEFAULTS, **params}
    for key in ("batch_size", "timing_images", "grid_images"):
        if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 1:
            raise ValueError(f"evaluate.{key} must be a positive integer, got {s[key]!r}.")
    for key in ("num_workers", "dilate_px"):
        if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 0:
            raise ValueError(f"evaluate.{key} must be a non-negative integer, got {s[key]!r}.")
    if s["limit"] is not None and (not isinstance(s["limit"], int) or isinstance(s["limit"], bool) or s["limit"] < 1):
        raise ValueError(f"evaluate.limit must be null or a positive integer, got {s['limit']!r}.")
    if not isinstance(s["inpaint_radius"], (int, float)) or s["inpaint_radius"] <= 0:
        raise ValueError(f"evaluate.inpaint_radius must be a positive number, got {s['inpaint_radius']!r}.")
    bins = s["coverage_bins"]
    if (not isinstance(bins, (list, tuple)) or len(bins) < 2
            or any(not isinstance(b, (int, float)) for b in bins) or list(bins) != sorted(set(bins))):
        raise ValueError(f"evaluate.coverage_bins must be at least two increasing numbers, got {bins!r}.")
    for key in ("flip_average", "identity"):
        if not isinstance(s[key], bool):
            raise ValueError(f"evaluate.{key} must be true or false, got {s[key]!r}.")
    if s["grid_ids"] is not None and not isinstance(s["grid_ids"], (list, tuple)):
        raise ValueError(f"evaluate.grid_ids must be null or a list of test image ids, got {s['grid_ids']!r}.")
    return s


def _test_ids(data_split: pd.DataFrame, limit: int | None) -> list[str]:
    ids = sorted(data_split.loc[data_split["split"] == "test", "image_id"].astype(str))
    if not ids:
        raise ValueError("The split has no test images: re-run `kedro run --pipelines=split`.")
    return ids[:limit] if limit else ids


def select_model(trained_model: nn.Module, params: dict) -> tuple[nn.Module, dict[str, Any]]:
    """The network to evaluate (``evaluate.checkpoint``, else the latest trained model) and a description of it."""
    settings = _settings(params)
    checkpoint = settings["checkpoint"]
    model, source = trained_model, "trained_model (data/06_models/model.safetensors)"
    if checkpoint:
        path = Path(str(checkpoint))
        if path.suffix != ".safetensors":
            raise ValueError(f"evaluate.checkpoint must be a .safetensors file (with its .json beside it), got {path}.")
        model, source = load_model(path), str(path)
        logger.info("Evaluating the checkpoint %s instead of the latest trained model.", path)
    config = getattr(model, "config", {}) or {}
    info = {
        "checkpoint": source,
        "architecture": str(config.get("name", type(model).__name__)),
        "filters": list(config.get("filters", [])),
        "composite": bool(config.get("composite", False)),
        "batch_norm": bool(config.get("batch_norm", False)),
        "flip_average": settings["flip_average"],
        "parameters": int(count_parameters(model)),
    }
    return model, info


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


def _seconds_per_baseline(samples: list[tuple[torch.Tensor, ...]], settings: dict) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {m: [] for m in BASELINES}
    for masked, _, mask in samples:
        image, hidden = tensor_to_image(masked), mask[0].numpy() > 0.5
        for method in BASELINES:
            started = time.perf_counter()
            inpaint_with_mask(image, hidden, method, settings["inpaint_radius"], settings["dilate_px"])
            timings[method].append(time.perf_counter() - started)
    return timings


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
    s = _settings(params)
    model, dtype = prepare_for_inference(evaluation_model, s["device"], s["precision"])
    device = next(model.parameters()).device
    test_ids = _test_ids(data_split, s["limit"])
    pairs = PairedFaceDataset(test_ids, masked_faces, face_crops, mask_maps)
    embedder = IdentityEmbedder().load() if s["identity"] else None
    loader = DataLoader(_TestSamples(pairs, float(s["inpaint_radius"]), s["dilate_px"], embedder),
                        batch_size=s["batch_size"], shuffle=False, num_workers=s["num_workers"])
    frames, model_seconds, offset = [], 0.0, 0
    with tqdm(total=len(pairs), desc="evaluate", unit="img") as progress:
        for masked, clean, mask, baselines, identity in loader:
            _synchronize(device)
            started = time.perf_counter()
            restored = restore(model, masked, dtype, s["flip_average"])
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
    per_image = pd.concat(frames, ignore_index=True)

    styles = mask_metadata.assign(image_id=mask_metadata["image_id"].astype(str)).set_index("image_id")["style"]
    per_image.insert(1, "style", per_image["image_id"].map(styles).fillna("unknown").astype(str))
    bins = [float(b) for b in s["coverage_bins"]]
    labels = [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(bins[:-1], bins[1:])]
    per_image.insert(2, "coverage_bin", pd.cut(per_image["mask_coverage"], bins, labels=labels, right=False)
                     .astype(str).replace("nan", "outside bins"))

    timing_samples = [pairs[i] for i in range(min(s["timing_images"], len(pairs)))]
    batch1 = _seconds_per_image_batch1(model, dtype, [t[0] for t in timing_samples], device, s["flip_average"])
    per_baseline = _seconds_per_baseline(timing_samples, s)
    timing = {
        "seconds_per_image_batch1_median": float(np.median(batch1)),
        "seconds_per_image_batch1_p95": float(np.percentile(batch1, 95)),
        "images_per_second_batched": float(len(pairs) / model_seconds) if model_seconds > 0 else math.nan,
        "batch_size": s["batch_size"],
        **{f"{METHOD_PREFIXES[m]}seconds_per_image_median": float(np.median(v)) for m, v in per_baseline.items()},
        "device": device.type if device.index is None else f"{device.type}:{device.index}",
        "device_name": device_name(device),
        "precision": precision_name(dtype),
        "threads": torch.get_num_threads(),
        "image_size": int(timing_samples[0][0].shape[-1]),
    }
    return per_image, timing


def _mean(column: pd.Series) -> float:
    values = column.replace([np.inf], PSNR_CAP) if "psnr" in str(column.name) else column
    value = float(values.mean(skipna=True))
    return value if math.isfinite(value) else math.nan


def _method_means(rows: pd.DataFrame) -> dict[str, float]:
    names = [f"{prefix}{name}" for prefix in METHOD_PREFIXES.values() for name in METRIC_NAMES + IDENTITY_NAMES]
    return {name: _mean(rows[name]) for name in names if name in rows}


def _breakdown(per_image: pd.DataFrame, column: str) -> dict[str, dict[str, float]]:
    return {
        str(group): {"n_images": int(len(rows)), **_method_means(rows)}
        for group, rows in per_image.groupby(column, sort=True, observed=True)
    }


def summarise_evaluation(per_image_metrics: pd.DataFrame, evaluation_timing: dict, model_info: dict) -> dict[str, Any]:
    """Means over the test split for every method, by mask style and by coverage, with timing and provenance."""
    return {
        "n_images": int(len(per_image_metrics)),
        **_method_means(per_image_metrics),
        **evaluation_timing,
        **model_info,
        "by_style": _breakdown(per_image_metrics, "style"),
        "by_coverage": _breakdown(per_image_metrics, "coverage_bin"),
    }


def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _outside(value: float | None) -> str:
    """Mean PSNR outside the mask; ``exact`` when every image comes back bit-identical there (the cap)."""
    if value is not None and math.isfinite(value) and value >= PSNR_CAP:
        return "exact"
    return _fmt(math.nan if value is None else value, 2)


def _seconds(metrics: dict, method: str) -> str:
    if method == "model":
        return f"{metrics['seconds_per_image_batch1_median']:.3f} s/sample"
    if method == "input":
        return "0"
    return f"{metrics[METHOD_PREFIXES[method] + 'seconds_per_image_median']:.3f} s/sample"


def evaluation_table(evaluation_metrics: dict) -> str:
    """A Markdown report: the paper's Table I (with in-mask columns), then breakdowns by style and coverage."""
    m = evaluation_metrics
    name = m.get("architecture", "model") + (" + batch norm" if m.get("batch_norm") else "")
    name += " + mask head, composited" if m.get("composite") else ""
    name += " + flip averaging" if m.get("flip_average") else ""
    size = m.get("image_size")
    lines = [
        "# Evaluation on the test split",
        "",
        f"{m['n_images']} test images{f' at {size}x{size}' if size else ''}; model `{m.get('checkpoint')}` "
        f"({name}, filters {m.get('filters')}, {m.get('parameters', 0) / 1e6:.2f} M parameters); "
        f"{m['precision']} on {m['device']} ({m['device_name']}, {m['threads']} threads).",
        "Metrics on RGB in [0, 1] (data range 1.0); SSIM: 11x11 Gaussian window, sigma 1.5; \"in mask\": over",
        "the pixels the synthetic mask hides. Our model never sees the mask; the OpenCV baselines are given it.",
        "Prediction time: median seconds per image at batch 1 (warm); the OpenCV baselines run on one core.",
        "",
        "| Method | SSIM | PSNR (dB) | SSIM in mask | PSNR in mask (dB) | L1 in mask | PSNR outside mask (dB) "
        "| Prediction time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method, prefix in METHOD_PREFIXES.items():
        label = METHOD_LABELS[method].format(name=name)
        lines.append(
            f"| {label} | {_fmt(m[prefix + 'ssim'], 4)} | {_fmt(m[prefix + 'psnr'], 2)} | "
            f"{_fmt(m[prefix + 'ssim_mask'], 4)} | {_fmt(m[prefix + 'psnr_mask'], 2)} | "
            f"{_fmt(m[prefix + 'l1_mask'], 4)} | {_outside(m.get(prefix + 'psnr_outside'))} | {_seconds(m, method)} |"
        )
    lines.append(
        f"| The paper's RA-UNet (reported, CelebA 256x256, RTX 2070) | {PAPER_ROW['ssim']:.2f} | "
        f"{PAPER_ROW['psnr']:.2f} | n/a | n/a | n/a | n/a | {PAPER_ROW['seconds']:.2f} s/sample |"
    )
    lines.append("")
    lines.append(f"Throughput of our model at batch {m['batch_size']}: {m['images_per_second_batched']:.1f} images/s.")
    for key, title in (("by_style", "mask style"), ("by_coverage", "mask coverage (fraction of the crop hidden)")):
        lines += ["", f"## Inside the mask, by {title}", "",
                  "| Group | Images | " + " | ".join(f"{METHOD_LABELS[k].split(',')[0].split(':')[0]} PSNR / SSIM"
                                                       for k in METHOD_PREFIXES) + " |",
                  "| --- | ---: |" + " ---: |" * len(METHOD_PREFIXES)]
        for group, g in m[key].items():
            cells = " | ".join(f"{_fmt(g[p + 'psnr_mask'], 2)} / {_fmt(g[p + 'ssim_mask'], 4)}"
                               for p in METHOD_PREFIXES.values())
            lines.append(f"| {group} | {g['n_images']} | {cells} |")
    if "identity_distance" in m:
        lines += _identity_section(m)
    return "\n".join(lines) + "\n"


def _identity_cell(values: dict, prefix: str) -> str:
    share = values[prefix + "same_person"]
    return f"{_fmt(values[prefix + 'identity_distance'], 3)} / {_fmt(100 * share, 1)} %"


def _identity_section(m: dict) -> list[str]:
    """Report lines: each method's mean embedding distance to the ground truth and same-person share, by style."""
    methods = [k for k in METHOD_PREFIXES if METHOD_PREFIXES[k] + "identity_distance" in m]
    short = {k: METHOD_LABELS[k].split(",")[0].split(":")[0] for k in methods}
    lines = [
        "", "## Identity: does the person stay the person?", "",
        "Euclidean distance between the dlib face-recognition embeddings (ResNet, 128-d) of each restoration",
        "and of its ground truth, both cut as the same 150x150 chip at the ground truth's landmarks; under",
        f"{SAME_PERSON_DISTANCE} dlib takes two faces for the same person. Each cell: the mean distance / the share",
        f"of test faces under {SAME_PERSON_DISTANCE}.",
        "",
        "| Group | Images | " + " | ".join(short[k] for k in methods) + " |",
        "| --- | ---: |" + " ---: |" * len(methods),
        f"| all | {m['n_images']} | " + " | ".join(_identity_cell(m, METHOD_PREFIXES[k]) for k in methods) + " |",
    ]
    for group, g in m["by_style"].items():
        lines.append(f"| {group} | {g['n_images']} | "
                     + " | ".join(_identity_cell(g, METHOD_PREFIXES[k]) for k in methods) + " |")
    return lines


def comparison_grid(
    evaluation_model: nn.Module,
    face_crops: Mapping[str, Callable],
    masked_faces: Mapping[str, Callable],
    mask_maps: Mapping[str, Callable],
    data_split: pd.DataFrame,
    params: dict,
) -> plt.Figure:
    """masked | ours | Telea | ground truth for fixed test ids (``grid_ids``, else the first ``grid_images``)."""
    s = _settings(params)
    test_ids = _test_ids(data_split, None)
    ids = [str(i) for i in s["grid_ids"]] if s["grid_ids"] else test_ids[: s["grid_images"]]
    unknown = sorted(set(ids) - set(test_ids))
    if unknown:
        raise ValueError(f"evaluate.grid_ids {unknown} are not test images of the current split.")
    model, dtype = prepare_for_inference(evaluation_model, s["device"], s["precision"])
    pairs = PairedFaceDataset(ids, masked_faces, face_crops, mask_maps)
    samples = [pairs[i] for i in range(len(pairs))]
    restored = restore(model, torch.stack([t[0] for t in samples]), dtype, s["flip_average"]).cpu()
    telea = [inpaint_with_mask(tensor_to_image(m), k[0].numpy() > 0.5, "telea", s["inpaint_radius"], s["dilate_px"])
             for m, _, k in samples]
    return image_grid(
        {
            "masked": [tensor_to_image(t[0]) for t in samples],
            "ours (blind)": [tensor_to_image(t) for t in restored],
            "Telea (true mask)": telea,
            "ground truth": [tensor_to_image(t[1]) for t in samples],
        },
        row_labels=ids,
    )


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def metrics_for_mlflow(evaluation_metrics: dict) -> dict[str, dict[str, float]]:
    """The numeric metrics, breakdowns flattened with dots, in kedro-mlflow's ``{name: {"value", "step"}}`` form."""
    return {
        name.replace(" ", "_"): {"value": float(value), "step": 0}
        for name, value in _flatten(evaluation_metrics).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    }
