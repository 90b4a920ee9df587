"""Tiny in-memory partitions shaped like the pipeline's PartitionedDatasets ({image_id: load})."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image


def _face(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.8 * (1 - yy), 0.5 + 0.3 * xx, 0.4 + 0.2 * yy], axis=-1)
    return (255 * np.clip(base + 0.1 * rng.random(3), 0, 1)).astype(np.uint8)


@pytest.fixture
def tiny_partitions():
    """40 clean crops, their masked versions (lower half painted), masks and landmarks, plus a split table."""
    rng = np.random.default_rng(0)
    size = 16
    ids = [f"{i:06d}" for i in range(1, 41)]
    crops, masked, masks = {}, {}, {}
    for image_id in ids:
        clean = _face(rng, size)
        mask = np.zeros((size, size), np.uint8)
        mask[size // 2 :, 2:-2] = 255
        dirty = clean.copy()
        dirty[mask > 0] = (40, 90, 200)
        crops[image_id] = (lambda a=clean: Image.fromarray(a))
        masked[image_id] = (lambda a=dirty: Image.fromarray(a))
        masks[image_id] = (lambda a=mask: Image.fromarray(a, mode="L"))
    split = pd.DataFrame(
        {"image_id": ids, "identity": pd.array([None] * 40, dtype="Int64"),
         "split": ["test"] * 8 + ["val"] * 8 + ["train"] * 24}
    )
    styles = pd.DataFrame({"image_id": ids, "style": ["surgical", "cloth"] * 20})
    # eyes, nose tip and mouth corners of a 16 px aligned face (x, y)
    points = {"lefteye": (5.0, 6.0), "righteye": (11.0, 6.0), "nose": (8.0, 9.0), "leftmouth": (6.0, 11.5),
              "rightmouth": (10.0, 11.5)}
    landmarks = pd.DataFrame({"image_id": ids, **{f"{name}_{axis}": [xy[k]] * len(ids)
                                                  for name, xy in points.items() for k, axis in enumerate("xy")}})
    return {"face_crops": crops, "masked_faces": masked, "mask_maps": masks, "mask_metadata": styles,
            "face_landmarks": landmarks, "data_split": split}
