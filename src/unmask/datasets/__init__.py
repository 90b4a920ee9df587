"""Custom Kedro datasets for what kedro-datasets does not cover.

Imported lazily (PEP 562), so that worker processes saving images never import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImagePartitionsDataset": "unmask.datasets.image_partitions",
    "LazyPartitions": "unmask.datasets.lazy_partitions",
    "OptionalPartitionedDataset": "unmask.datasets.optional_partitions",
    "PngPartition": "unmask.datasets.image_partitions",
    "SafetensorsModelDataset": "unmask.datasets.safetensors_model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
