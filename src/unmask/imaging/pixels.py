"""One way to turn a stored or computed image into pixels, for every stage that reads partitions."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

__all__ = ["image_array"]


def image_array(value: Any) -> np.ndarray | Image.Image:
    """The pixels of a partition value: a job is run (``render_array`` when it has one), a loader
    read (``read_array``), a PIL image in a mode PNG stores losslessly as 8-bit RGB or grey
    converted to an array; any other PIL image is returned as it is."""
    if hasattr(value, "render_array"):
        return value.render_array()
    if hasattr(value, "read_array"):
        return value.read_array()
    if callable(value):
        value = value()
    if isinstance(value, Image.Image):
        if value.mode in ("RGB", "L"):
            return np.asarray(value)
        if value.mode == "1":
            return np.asarray(value.convert("L"))
        return value
    return np.asarray(value)
