"""Figures people look at rather than read: image grids and training curves."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are only ever saved
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def image_grid(columns: dict[str, Sequence[np.ndarray]], row_labels: Sequence[str] | None = None) -> plt.Figure:
    """One row per sample, one titled column per image kind (e.g. masked | restored | ground truth)."""
    names = list(columns)
    n_rows = len(columns[names[0]])
    fig, axes = plt.subplots(n_rows, len(names), figsize=(2.0 * len(names), 2.0 * n_rows), squeeze=False)
    for r in range(n_rows):
        for c, name in enumerate(names):
            ax = axes[r][c]
            ax.imshow(columns[name][r], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=8)
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Loss, PSNR and SSIM per epoch for training and validation."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    panels = [("loss", ["train_loss", "val_loss"]), ("PSNR (dB)", ["val_psnr"]), ("SSIM", ["val_ssim"])]
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            if key in history:
                ax.plot(history["epoch"], history[key], marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
