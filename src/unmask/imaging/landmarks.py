"""The five CelebA landmarks: names, column layout and conversions shared by every stage."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: CelebA's order, as in ``list_landmarks_align_celeba.txt``.
LANDMARK_NAMES: tuple[str, ...] = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")

#: Flat column names used in every table of the project (``lefteye_x, lefteye_y, ...``).
LANDMARK_COLUMNS: list[str] = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]


def landmarks_from_row(row: pd.Series | dict) -> np.ndarray:
    """Return the five landmarks of one table row as a float32 array of shape (5, 2)."""
    return np.array([row[c] for c in LANDMARK_COLUMNS], dtype=np.float32).reshape(5, 2)


def landmarks_to_columns(points: np.ndarray) -> dict[str, float]:
    """Flatten a (5, 2) landmark array into ``{column: value}`` for a table row."""
    flat = np.asarray(points, dtype=np.float64).reshape(-1)
    return {c: float(v) for c, v in zip(LANDMARK_COLUMNS, flat)}
