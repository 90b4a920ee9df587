"""Faces stage: crop_faces aligns lazily, computes crop landmarks eagerly, validates its inputs."""

from __future__ import annotations

import sys
import types
from typing import get_args

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unmask.imaging.alignment import BORDER_MODES, template_points, transform_points
from unmask.imaging.landmarks import LANDMARK_COLUMNS, landmarks_from_row, landmarks_to_columns
from unmask.params.faces import BorderMode
from unmask.pipelines.faces.nodes import MATRIX_COLUMNS, crop_faces
from unmask.pipelines.faces.pipeline import create_pipeline

CELEBA_MEAN = np.array([[69, 111], [108, 111], [89, 135], [72, 152], [106, 152]], dtype=np.float64)
PARAMS = {"size": 64, "border": "reflect"}


def blob_image(width: int, height: int, points: np.ndarray, radius: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.full((height, width, 3), 20.0)
    for x, y in points:
        img += 220.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius**2))[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def blob_centroid(img: np.ndarray, centre: np.ndarray, window: int = 3) -> np.ndarray:
    lum = img.astype(np.float64).sum(axis=2)
    x0, y0 = np.round(centre).astype(int) - window
    patch = np.clip(lum[y0 : y0 + 2 * window + 1, x0 : x0 + 2 * window + 1] - np.median(lum), 0, None)
    yy, xx = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]]
    return np.array([(xx * patch).sum() / patch.sum() + x0, (yy * patch).sum() / patch.sum() + y0])


def rotate_about(points: np.ndarray, angle_deg: float, centre=(89.0, 109.0)) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - centre) @ rot.T + centre


def make_index(landmark_sets: dict[str, np.ndarray], source: str = "fake.zip", width=178, height=218) -> pd.DataFrame:
    rows = []
    for image_id, pts in landmark_sets.items():
        rows.append(
            {
                "image_id": image_id,
                "source": source,
                "member": f"img_align_celeba/{image_id}.jpg",
                "width": width,
                "height": height,
                **landmarks_to_columns(pts),
                "landmark_source": "annotation",
                "partition": 0,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def fake_celeba(monkeypatch):
    """Stand-in for ``unmask.imaging.celeba``: images are drawn from a dict, calls are counted."""
    images: dict[tuple[str, str], np.ndarray] = {}
    calls = {"locate": 0, "read": 0}

    def locate_celeba(path):
        calls["locate"] += 1
        return ("located", str(path))

    def read_image(source, member):
        calls["read"] += 1
        return images[(str(source), member)]

    module = types.ModuleType("unmask.imaging.celeba")
    module.locate_celeba = locate_celeba
    module.read_image = read_image
    monkeypatch.setitem(sys.modules, "unmask.imaging.celeba", module)
    return types.SimpleNamespace(images=images, calls=calls)


def test_crops_are_lazy_and_land_the_landmarks_on_the_template(fake_celeba):
    sets = {"000001": CELEBA_MEAN, "000002": rotate_about(CELEBA_MEAN, 15) + [3, -4], "000003": CELEBA_MEAN * 0.9 + 8}
    index = make_index(sets)
    for image_id, pts in sets.items():
        fake_celeba.images[("fake.zip", f"img_align_celeba/{image_id}.jpg")] = blob_image(178, 218, pts)

    crops, table = crop_faces(index, PARAMS)
    assert fake_celeba.calls == {"locate": 0, "read": 0}  # nothing read yet
    assert list(crops) == list(sets) and table["image_id"].tolist() == list(sets)
    assert list(table.columns) == ["image_id", *LANDMARK_COLUMNS, *MATRIX_COLUMNS, "size"]
    assert (table["size"] == 64).all()

    target = template_points(64)
    for image_id, load in crops.items():
        row = table.set_index("image_id").loc[image_id]
        np.testing.assert_allclose(landmarks_from_row(row), target, atol=0.5)
        matrix = row[MATRIX_COLUMNS].to_numpy(dtype=np.float64).reshape(2, 3)
        np.testing.assert_allclose(transform_points(sets[image_id], matrix), target, atol=0.5)
        crop = load()
        assert isinstance(crop, Image.Image) and crop.mode == "RGB" and crop.size == (64, 64)
        for point in target:
            assert np.linalg.norm(blob_centroid(np.asarray(crop), point) - point) < 0.5
    # each crop reads its own image straight from the indexed source (no per-process source state)
    assert fake_celeba.calls == {"locate": 0, "read": 3}


def test_landmarks_given_for_another_image_size_are_rescaled(fake_celeba):
    index = make_index({"000007": CELEBA_MEAN}, width=178, height=218)
    # the file on disk is half the size the index (and its landmarks) describe
    half = blob_image(89, 109, (CELEBA_MEAN + 0.5) / 2 - 0.5, radius=1.5)
    fake_celeba.images[("fake.zip", "img_align_celeba/000007.jpg")] = half
    crops, _ = crop_faces(index, PARAMS)
    crop = np.asarray(crops["000007"]())
    for point in template_points(64):
        assert np.linalg.norm(blob_centroid(crop, point) - point) < 0.6


def test_border_parameter_is_used(fake_celeba):
    # a face so close to the corner that the crop reaches outside the image
    pts = CELEBA_MEAN * 0.5 - [10, 30]
    index = make_index({"000001": pts})
    fake_celeba.images[("fake.zip", "img_align_celeba/000001.jpg")] = np.full((218, 178, 3), 200, np.uint8)
    constant = np.asarray(crop_faces(index, {"size": 64, "border": "constant"})[0]["000001"]())
    reflect = np.asarray(crop_faces(index, {"size": 64, "border": "reflect"})[0]["000001"]())
    assert (constant == 0).all(axis=2).any() and (reflect == 200).all()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"size": 100, "border": "reflect"}, "faces.size=100: .*divisible by 16"),
        ({"size": 8, "border": "reflect"}, "faces.size=8: .*greater than or equal to 16"),
        ({"size": "256", "border": "reflect"}, "faces.size='256': .*integer"),
        ({"size": 64.0, "border": "reflect"}, "faces.size=64.0: .*integer"),
        ({"size": True, "border": "reflect"}, "faces.size=True: .*integer"),
        ({"size": 64, "border": "wrap"}, "faces.border='wrap': .*'reflect', 'replicate' or 'constant'"),
        ({"size": 64}, "faces.border is missing"),
        ({"size": 64, "border": "reflect", "side": 64}, "unknown parameter faces.side"),
    ],
)
def test_bad_params_are_rejected(params, message):
    with pytest.raises(ValueError, match=message):
        crop_faces(make_index({"000001": CELEBA_MEAN}), params)


def test_border_modes_are_the_warps():
    assert set(get_args(BorderMode)) == set(BORDER_MODES)


def test_degenerate_landmarks_name_the_image():
    bad = CELEBA_MEAN.copy()
    bad[1] = bad[0]
    index = make_index({"000001": CELEBA_MEAN, "000002": bad, "000003": np.full((5, 2), np.nan)})
    with pytest.raises(ValueError, match="000002") as info:
        crop_faces(index, PARAMS)
    assert "000003" in str(info.value)


def test_missing_columns_and_duplicates_are_rejected():
    index = make_index({"000001": CELEBA_MEAN})
    with pytest.raises(ValueError, match="member"):
        crop_faces(index.drop(columns=["member"]), PARAMS)
    with pytest.raises(ValueError, match="duplicate"):
        crop_faces(pd.concat([index, index]), PARAMS)


def test_nullable_columns_and_empty_index(fake_celeba):
    index = make_index({"000001": CELEBA_MEAN})
    index["width"] = pd.array([pd.NA], dtype="Int64")
    index["height"] = pd.array([pd.NA], dtype="Int64")
    fake_celeba.images[("fake.zip", "img_align_celeba/000001.jpg")] = blob_image(178, 218, CELEBA_MEAN)
    crops, _ = crop_faces(index, PARAMS)
    assert crops["000001"]().size == (64, 64)
    crops, table = crop_faces(index.iloc[:0], PARAMS)
    assert crops == {} and len(table) == 0 and "m12" in table.columns


def test_crops_stream_through_a_partitioned_dataset(fake_celeba, tmp_path):
    from kedro_datasets.partitions import PartitionedDataset

    sets = {f"{i:06d}": rotate_about(CELEBA_MEAN, 4 * i) for i in range(1, 4)}
    for image_id, pts in sets.items():
        fake_celeba.images[("fake.zip", f"img_align_celeba/{image_id}.jpg")] = blob_image(178, 218, pts)
    crops, _ = crop_faces(make_index(sets), PARAMS)
    dataset = PartitionedDataset(
        path=str(tmp_path / "face_crops"),
        dataset={"type": "pillow.ImageDataset"},  # the format follows the .png suffix
        filename_suffix=".png",
    )
    dataset.save(crops)
    loaded = dataset.load()
    assert sorted(loaded) == sorted(sets)
    for image_id, load in loaded.items():
        np.testing.assert_array_equal(np.asarray(load().convert("RGB")), np.asarray(crops[image_id]()))


def test_reads_a_real_folder_with_the_celeba_reader(tmp_path):
    celeba = pytest.importorskip("unmask.imaging.celeba")
    if not hasattr(celeba, "locate_celeba") or not hasattr(celeba, "read_image"):
        pytest.skip("unmask.imaging.celeba is not complete yet")
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    Image.fromarray(blob_image(178, 218, CELEBA_MEAN, radius=2.5)).save(folder / "000001.jpg", quality=98)
    index = make_index({"000001": CELEBA_MEAN}, source=str(tmp_path / "celeba"))
    crops, _ = crop_faces(index, PARAMS)
    crop = np.asarray(crops["000001"]())
    for point in template_points(64):
        assert np.linalg.norm(blob_centroid(crop, point) - point) < 0.75


def test_pipeline_wiring():
    pipeline = create_pipeline()
    (node,) = pipeline.nodes
    assert node.name == "crop_faces_node"
    assert node.inputs == ["celeba_index", "params:faces"]
    assert node.outputs == ["face_crops", "face_landmarks"]
    assert node.func is crop_faces


def test_worker_processes_write_the_crops_the_jobs_compute(tmp_path):
    from unmask.datasets import ImagePartitionsDataset, LazyPartitions

    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    sets = {f"{i:06d}": rotate_about(CELEBA_MEAN, 3 * i) for i in range(1, 9)}
    for image_id, pts in sets.items():
        Image.fromarray(blob_image(178, 218, pts)).save(folder / f"{image_id}.png")
    index = make_index(sets, source=str(tmp_path / "celeba"))
    index["member"] = index["member"].str.replace(".jpg", ".png")
    crops, _ = crop_faces(index, PARAMS)
    assert isinstance(crops, LazyPartitions)
    ImagePartitionsDataset(path=str(tmp_path / "crops"), workers=2, parallel_from=1, chunk_size=3).save(crops)
    saved = ImagePartitionsDataset(path=str(tmp_path / "crops")).load()
    assert sorted(saved) == sorted(sets)
    for image_id, loader in saved.items():
        np.testing.assert_array_equal(loader.read_array(), np.asarray(crops[image_id]()))
