"""The evaluation report: the Markdown tables of ``evaluation_metrics`` and the restoration grid figure.

Pure formatting: everything here reads numbers and images the nodes computed and scores nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from unmask.imaging.grids import image_grid
from unmask.imaging.identity import SAME_PERSON_DISTANCE
from unmask.pipelines.evaluate.methods import METHOD_PREFIXES, PSNR_CAP

#: Row labels of the report table.
METHOD_LABELS = {
    "model": "Ours: {name}, blind",
    "input": "Masked input, unchanged",
    "telea": "OpenCV Telea, given the true mask",
    "navier_stokes": "OpenCV Navier-Stokes, given the true mask",
}
#: The paper's Table I row for its RA-UNet (CelebA 256x256, RTX 2070): reported, not measured here.
PAPER_ROW = {"ssim": 0.94, "psnr": 33.83, "seconds": 0.24}
#: Column titles of the restoration grid, left to right.
GRID_COLUMNS = ("masked", "ours (blind)", "Telea (true mask)", "ground truth")


def evaluation_table(evaluation_metrics: dict) -> str:
    """A Markdown report: the paper's Table I (with in-mask columns), then breakdowns by style and coverage."""
    m = evaluation_metrics
    name = _model_name(m)
    lines = [*_header(m, name), *_method_table(m, name)]
    for key, title in (("by_style", "mask style"), ("by_coverage", "mask coverage (fraction of the crop hidden)")):
        lines += _breakdown_section(m[key], title)
    if "identity_distance" in m:
        lines += _identity_section(m)
    return "\n".join(lines) + "\n"


def restoration_grid(masked: Sequence[np.ndarray], restored: Sequence[np.ndarray], telea: Sequence[np.ndarray],
                     truth: Sequence[np.ndarray], ids: Sequence[str]) -> plt.Figure:
    """One row per test id: masked | ours | Telea | ground truth."""
    return image_grid(dict(zip(GRID_COLUMNS, (list(masked), list(restored), list(telea), list(truth)))),
                      row_labels=list(ids))


def _model_name(m: dict) -> str:
    """``ra_unet + batch norm + mask head, composited + flip averaging``: the variant that was scored."""
    name = m.get("architecture", "model") + (" + batch norm" if m.get("batch_norm") else "")
    name += " + mask head, composited" if m.get("composite") else ""
    return name + (" + flip averaging" if m.get("flip_average") else "")


def _short_label(method: str) -> str:
    """``Ours`` / ``Masked input`` / ``OpenCV Telea`` ...: the label up to its first comma or colon."""
    return METHOD_LABELS[method].split(",")[0].split(":")[0]


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


def _header(m: dict, name: str) -> list[str]:
    """Title, what was scored on what hardware, and how the metrics are defined."""
    size = m.get("image_size")
    return [
        "# Evaluation on the test split",
        "",
        (f"{m['n_images']} test images{f' at {size}x{size}' if size else ''}; model `{m.get('checkpoint')}` "
        f"({name}, filters {m.get('filters')}, {m.get('parameters', 0) / 1e6:.2f} M parameters); "
        f"{m['precision']} on {m['device']} ({m['device_name']}, {m['threads']} threads)."),
        "Metrics on RGB in [0, 1] (data range 1.0); SSIM: 11x11 Gaussian window, sigma 1.5; \"in mask\": over",
        "the pixels the synthetic mask hides. Our model never sees the mask; the OpenCV baselines are given it.",
        "Prediction time: median seconds per image at batch 1 (warm); the OpenCV baselines run on one core.",
        "",
    ]


def _method_table(m: dict, name: str) -> list[str]:
    """The paper's Table I with in-mask columns: one row per method, then the paper's own row, then throughput."""
    lines = [
        ("| Method | SSIM | PSNR (dB) | SSIM in mask | PSNR in mask (dB) | L1 in mask | PSNR outside mask (dB) "
        "| Prediction time |"),
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
    return lines


def _breakdown_section(groups: dict[str, dict], title: str) -> list[str]:
    """In-mask PSNR / SSIM of every method, one row per group (mask style or coverage bin)."""
    lines = ["", f"## Inside the mask, by {title}", "",
             "| Group | Images | " + " | ".join(f"{_short_label(k)} PSNR / SSIM" for k in METHOD_PREFIXES) + " |",
             "| --- | ---: |" + " ---: |" * len(METHOD_PREFIXES)]
    for group, g in groups.items():
        cells = " | ".join(f"{_fmt(g[p + 'psnr_mask'], 2)} / {_fmt(g[p + 'ssim_mask'], 4)}"
                           for p in METHOD_PREFIXES.values())
        lines.append(f"| {group} | {g['n_images']} | {cells} |")
    return lines


def _identity_cell(values: dict, prefix: str) -> str:
    share = values[prefix + "same_person"]
    return f"{_fmt(values[prefix + 'identity_distance'], 3)} / {_fmt(100 * share, 1)} %"


def _identity_section(m: dict) -> list[str]:
    """Report lines: each method's mean embedding distance to the ground truth and same-person share, by style."""
    methods = [k for k in METHOD_PREFIXES if METHOD_PREFIXES[k] + "identity_distance" in m]
    lines = [
        "", "## Identity: does the person stay the person?", "",
        "Euclidean distance between the dlib face-recognition embeddings (ResNet, 128-d) of each restoration",
        "and of its ground truth, both cut as the same 150x150 chip at the ground truth's landmarks; under",
        f"{SAME_PERSON_DISTANCE} dlib takes two faces for the same person. Each cell: the mean distance / the share",
        f"of test faces under {SAME_PERSON_DISTANCE}.",
        "",
        "| Group | Images | " + " | ".join(_short_label(k) for k in methods) + " |",
        "| --- | ---: |" + " ---: |" * len(methods),
        f"| all | {m['n_images']} | " + " | ".join(_identity_cell(m, METHOD_PREFIXES[k]) for k in methods) + " |",
    ]
    for group, g in m["by_style"].items():
        lines.append(f"| {group} | {g['n_images']} | "
                     + " | ".join(_identity_cell(g, METHOD_PREFIXES[k]) for k in methods) + " |")
    return lines
