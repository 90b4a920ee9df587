"""A ``PartitionedDataset`` for an optional input: a missing or empty folder loads as ``{}``.

Kedro's ``PartitionedDataset`` raises "No partitions found" for an empty folder. Some inputs are
optional, such as the real mask cut-outs that training may mix in (``train.cutout_fraction``):
a project without them must still run, and the node decides whether their absence is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset

__all__ = ["OptionalPartitionedDataset"]


class OptionalPartitionedDataset(PartitionedDataset):
    """``PartitionedDataset`` whose missing or empty folder loads as ``{}`` instead of raising."""

    def load(self) -> dict[str, Callable[[], Any]]:
        try:
            return super().load()
        except DatasetError as exc:
            if "No partitions found" not in str(exc):
                raise
            return {}
