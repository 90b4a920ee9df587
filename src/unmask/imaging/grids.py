"""Figures people look at rather than read: image grids and training curves."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are only ever saved
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def image_grid(columns: dict[str, Sequence[np.ndarray]], row_labels: Sequence[str] | None = None,
               max_rows: int = 8) -> plt.Figure:
    """One row per sample, one titled column per image kind (e.g. masked | restored | ground truth).

    More than ``max_rows`` samples wrap into side-by-side blocks of those columns, so a 16-face
    grid is 8 rows of two blocks rather than one strip 16 faces tall.
    """
    names = list(columns)
    n = len(columns[names[0]])
    blocks = max(1, -(-n // max(1, max_rows)))
    rows = -(-n // blocks)
    cols = len(names) * blocks
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.7 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k in range(n):
        r, block = k % rows, k // rows
        for c, name in enumerate(names):
            ax = axes[r][block * len(names) + c]
            ax.axis("on")
            ax.imshow(columns[name][k], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[k], fontsize=8)
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Loss, PSNR and SSIM per epoch for training and validation."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    panels = [("loss", ["train_loss", "val_loss"]), ("PSNR (dB)", ["val_psnr"]), ("SSIM", ["val_ssim"])]
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            if key in history:
                rows = history[["epoch", key]].dropna()  # epochs without validation have NaN val_*
                ax.plot(rows["epoch"], rows[key], marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
