"""Tests for unmask.datasets.OptionalPartitionedDataset: an optional folder of images."""

from pathlib import Path

import numpy as np
import pytest
from kedro.io.core import DatasetError
from PIL import Image

from unmask.datasets import OptionalPartitionedDataset


def _dataset(path: Path) -> OptionalPartitionedDataset:
    return OptionalPartitionedDataset(path=str(path), dataset={"type": "pillow.ImageDataset"}, filename_suffix=".png")


def test_a_missing_or_empty_folder_loads_as_no_partitions(tmp_path: Path) -> None:
    assert _dataset(tmp_path / "missing").load() == {}
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".gitkeep").touch()
    assert _dataset(tmp_path / "empty").load() == {}


def test_rgba_images_load_with_their_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (10, 20, 30, 200)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "one.png")
    loaded = _dataset(tmp_path).load()
    assert list(loaded) == ["one"] and np.array_equal(np.asarray(loaded["one"]()), rgba)


def test_other_errors_still_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self):
        raise DatasetError("something else went wrong")

    monkeypatch.setattr("kedro_datasets.partitions.PartitionedDataset.load", broken)
    with pytest.raises(DatasetError, match="something else"):
        _dataset(tmp_path).load()
