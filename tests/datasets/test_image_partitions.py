"""ImagePartitionsDataset: PartitionedDataset's layout and loaded form, parallel and all-or-nothing saves."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset
from PIL import Image

from unmask.datasets import ImagePartitionsDataset, PngPartition


def pixels(seed: int, shape=(12, 10, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def picklable_job(seed: int, shape=(12, 10, 3)):
    """A picklable zero-argument callable returning an image, like the stages' jobs."""
    return functools.partial(pixels, seed, shape)


def fail_on_purpose() -> np.ndarray:
    raise ValueError("the source image is unreadable")


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_round_trip_keeps_pixels_modes_and_layout(tmp_path):
    folder = tmp_path / "layer"
    data = {
        "000001": Image.fromarray(pixels(1)),  # an image
        "000002": pixels(2, (12, 10)),  # a greyscale array
        "000003": lambda: Image.fromarray(pixels(3)),  # a lazy callable (not picklable)
        "sub/000004": picklable_job(4),  # nested ids are sub-folders, as in PartitionedDataset
        "000005": Image.fromarray(pixels(5, (12, 10)), mode="L"),
    }
    ImagePartitionsDataset(path=str(folder)).save(data)
    assert files(folder) == ["000001.png", "000002.png", "000003.png", "000005.png", "sub/000004.png"]

    loaded = ImagePartitionsDataset(path=str(folder)).load()
    assert list(loaded) == ["000001", "000002", "000003", "000005", "sub/000004"]
    expected = {"000001": pixels(1), "000002": pixels(2, (12, 10)), "000003": pixels(3),
                "sub/000004": pixels(4), "000005": pixels(5, (12, 10))}
    for key, loader in loaded.items():
        assert isinstance(loader, PngPartition)
        image = loader()
        assert isinstance(image, Image.Image) and image.mode == ("RGB" if expected[key].ndim == 3 else "L")
        np.testing.assert_array_equal(np.asarray(image), expected[key])
        np.testing.assert_array_equal(loader.read_array(), expected[key])
    # Kedro's own PartitionedDataset reads the folder the same way
    plain = PartitionedDataset(path=str(folder), dataset="pillow.ImageDataset", filename_suffix=".png").load()
    assert sorted(plain) == sorted(loaded)
    np.testing.assert_array_equal(np.asarray(plain["000001"]()), pixels(1))


def test_saving_again_replaces_the_folder(tmp_path):
    folder = tmp_path / "layer"
    dataset = ImagePartitionsDataset(path=str(folder))
    dataset.save({"a": pixels(1), "b": pixels(2)})
    dataset.save({"c": pixels(3)})
    assert files(folder) == ["c.png"]  # no stale partition
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer"]  # no staging folder left


def test_without_overwrite_partitions_are_added(tmp_path):
    folder = tmp_path / "layer"
    dataset = ImagePartitionsDataset(path=str(folder), overwrite=False)
    dataset.save({"a": pixels(1)})
    dataset.save({"b": pixels(2)})
    assert files(folder) == ["a.png", "b.png"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_image_leaves_the_previous_folder_intact(tmp_path, workers):
    folder = tmp_path / "layer"
    dataset = ImagePartitionsDataset(path=str(folder), workers=workers, parallel_from=1, chunk_size=2)
    dataset.save({"old": pixels(0)})
    jobs = {f"{i:03d}": picklable_job(i) for i in range(6)}
    jobs["004"] = fail_on_purpose
    with pytest.raises(DatasetError, match=r"'004.png'.*ValueError: the source image is unreadable"):
        dataset.save(jobs)
    assert files(folder) == ["old.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer"]


def test_worker_processes_write_the_same_files(tmp_path):
    jobs = {f"{i:03d}": picklable_job(i, (16, 16, 3)) for i in range(10)}
    ImagePartitionsDataset(path=str(tmp_path / "serial"), workers=1).save(jobs)
    ImagePartitionsDataset(path=str(tmp_path / "parallel"), workers=2, parallel_from=1, chunk_size=3).save(jobs)
    for name in jobs:
        serial = (tmp_path / "serial" / f"{name}.png").read_bytes()
        assert serial == (tmp_path / "parallel" / f"{name}.png").read_bytes()


def test_unpicklable_jobs_are_written_in_this_process(tmp_path, caplog):
    jobs = {f"{i:03d}": (lambda i=i: pixels(i)) for i in range(4)}
    with caplog.at_level("INFO"):
        ImagePartitionsDataset(path=str(tmp_path / "layer"), workers=2, parallel_from=1).save(jobs)
    assert "not picklable" in caplog.text
    assert len(files(tmp_path / "layer")) == 4


def test_bad_ids_suffix_and_missing_folder_are_clear_errors(tmp_path):
    dataset = ImagePartitionsDataset(path=str(tmp_path / "layer"))
    with pytest.raises(DatasetError, match="relative path"):
        dataset.save({"../escape": pixels(1)})
    with pytest.raises(DatasetError, match="png"):
        ImagePartitionsDataset(path=str(tmp_path / "x"), filename_suffix=".jpg")
    with pytest.raises(DatasetError, match="chunk_size"):
        ImagePartitionsDataset(path=str(tmp_path / "x"), chunk_size=0)
    with pytest.raises(DatasetError, match="No partitions"):
        ImagePartitionsDataset(path=str(tmp_path / "nothing")).load()
    with pytest.raises(DatasetError, match="uint8"):
        dataset.save({"a": np.zeros((4, 4, 3), np.float32)})


def test_loaders_pickle_small():
    import pickle

    loader = PngPartition("/data/03_primary/face_crops/000001.png")
    assert len(pickle.dumps(loader)) < 120
    assert pickle.loads(pickle.dumps(loader)).path == loader.path


def test_is_declared_for_every_image_layer_in_the_catalog():
    import yaml

    catalog = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf/base/catalog.yml").read_text())
    for name in ("face_crops", "masked_faces", "mask_maps"):
        assert catalog[name]["type"] == "unmask.datasets.ImagePartitionsDataset", name
