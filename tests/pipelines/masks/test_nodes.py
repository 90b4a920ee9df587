"""Masks stage: seeded, lazy, self-consistent synthetic masks over the face crops."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import base_params
from unmask.imaging.alignment import template_points
from unmask.imaging.landmarks import landmarks_to_columns
from unmask.imaging.mask_renderer import MASK_STYLES, rasterize_mask, sample_mask_spec
from unmask.pipelines.masks.nodes import (
    METADATA_COLUMNS,
    apply_synthetic_masks,
    image_seed,
)
from unmask.pipelines.masks.pipeline import create_pipeline

SIZE = 64
PARAMS = base_params("masks", seed=0, styles=list(MASK_STYLES))


def crop_image(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def make_inputs(n: int = 12, size_column: bool = True):
    """In-memory partitions shaped like the faces stage outputs, with call counters."""
    calls: dict[str, int] = {}
    crops = {}
    rows = []
    rng = np.random.default_rng(42)
    for i in range(1, n + 1):
        image_id = f"{i:06d}"
        calls[image_id] = 0

        def load(i=i, image_id=image_id):
            calls[image_id] += 1
            return Image.fromarray(crop_image(i))

        crops[image_id] = load
        points = template_points(SIZE) + rng.normal(0, 0.7, (5, 2))
        row = {"image_id": image_id, **landmarks_to_columns(points)}
        if size_column:
            row["size"] = SIZE
        rows.append(row)
    return crops, pd.DataFrame(rows), calls


def test_outputs_are_lazy_consistent_and_described():
    crops, table, calls = make_inputs()
    masked, maps, meta = apply_synthetic_masks(crops, table, PARAMS)
    assert sum(calls.values()) == 0  # nothing rendered or read yet
    assert list(masked) == list(maps) == table["image_id"].tolist() == meta["image_id"].tolist()
    assert list(meta.columns) == METADATA_COLUMNS
    assert set(meta["style"]) <= set(MASK_STYLES)
    assert meta["colour"].str.fullmatch(r"#[0-9a-f]{6}").all()
    for image_id in masked:
        face = crop_image(int(image_id))
        out = masked[image_id]()
        mask_img = maps[image_id]()
        assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (SIZE, SIZE)
        assert mask_img.mode == "L" and mask_img.size == (SIZE, SIZE)
        mask = np.asarray(mask_img)
        assert set(np.unique(mask)) <= {0, 255}
        changed = (np.asarray(out) != face).any(axis=2)
        # the mask map is exactly the set of hidden pixels
        assert not changed[mask == 0].any()
        assert changed[mask == 255].mean() > 0.97
        row = meta.set_index("image_id").loc[image_id]
        assert row["coverage"] == pytest.approx((mask == 255).mean())
        assert 0.12 < row["coverage"] < 0.45
    assert all(c == 1 for c in calls.values())


def test_masks_are_reproducible_per_image_and_seed():
    crops, table, _ = make_inputs()
    first = apply_synthetic_masks(crops, table, PARAMS)
    again = apply_synthetic_masks(crops, table, PARAMS)
    pd.testing.assert_frame_equal(first[2], again[2])
    for image_id in first[0]:
        assert first[0][image_id]().tobytes() == again[0][image_id]().tobytes()
        assert first[1][image_id]().tobytes() == again[1][image_id]().tobytes()
    # an image's mask does not depend on which other images are in the run, nor their order
    subset = table.iloc[::-1].iloc[:4].reset_index(drop=True)
    _, maps, meta = apply_synthetic_masks(crops, subset, PARAMS)
    for image_id in subset["image_id"]:
        assert maps[image_id]().tobytes() == first[1][image_id]().tobytes()
    # the recorded seed reproduces the spec
    row = first[2].iloc[0]
    points = table.iloc[0][[c for c in table.columns if c.endswith(("_x", "_y"))]].to_numpy(np.float32).reshape(5, 2)
    spec = sample_mask_spec(points, SIZE, np.random.default_rng(int(row["spec_seed"])), PARAMS["styles"])
    assert spec.style == row["style"]
    np.testing.assert_array_equal(rasterize_mask(spec) * 255, np.asarray(first[1][row["image_id"]]()))
    # another run seed gives other masks
    other = apply_synthetic_masks(crops, table, {**PARAMS, "seed": 1})
    assert (other[2]["spec_seed"] != first[2]["spec_seed"]).all()
    assert any(other[1][i]().tobytes() != first[1][i]().tobytes() for i in first[1])


def test_image_seed():
    assert image_seed(0, "000001") == image_seed(0, "000001")
    assert image_seed(0, "000001") != image_seed(1, "000001")
    assert image_seed(0, "000001") != image_seed(0, "000002")
    assert 0 <= image_seed(3, "not-a-number.jpg") < 2**63
    # variant 0 is the stored mask; other variants are other masks of the same face
    assert image_seed(0, "000001", variant=0) == image_seed(0, "000001")
    assert len({image_seed(0, "000001", variant=v) for v in range(4)}) == 4
    assert image_seed(0, "abc") == image_seed(0, "abc")


def test_styles_parameter_restricts_the_styles():
    crops, table, _ = make_inputs(20)
    _, _, meta = apply_synthetic_masks(crops, table, {**PARAMS, "styles": ["kn95", "bandana"]})
    assert set(meta["style"]) == {"kn95", "bandana"}
    _, _, meta = apply_synthetic_masks(crops, table, {**PARAMS, "styles": "n95"})
    assert set(meta["style"]) == {"n95"}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"styles": ["surgical", "gas-mask"]}, "masks.styles.1='gas-mask': Input should be 'surgical', 'n95'"),
        ({"styles": []}, "masks.styles=[]: List should have at least 1 item"),
        ({"seed": -1, "styles": ["n95"]}, "masks.seed=-1: Input should be greater than or equal to 0"),
        ({"seed": "0", "styles": ["n95"]}, "masks.seed='0': Input should be a valid integer"),
        ({"sead": 0}, "unknown parameter masks.sead"),
    ],
)
def test_bad_params_are_rejected(params, message):
    crops, table, _ = make_inputs(2)
    with pytest.raises(ValueError, match=re.escape(message)):
        apply_synthetic_masks(crops, table, {**PARAMS, **params})


def test_missing_crops_and_bad_landmarks_are_reported():
    crops, table, _ = make_inputs(3)
    del crops["000002"]
    with pytest.raises(ValueError, match="000002"):
        apply_synthetic_masks(crops, table, PARAMS)
    crops, table, _ = make_inputs(3)
    table.loc[1, "righteye_x"] = table.loc[1, "lefteye_x"]
    table.loc[1, "righteye_y"] = table.loc[1, "lefteye_y"]
    with pytest.raises(ValueError, match="000002"):
        apply_synthetic_masks(crops, table, PARAMS)


def test_suffixed_keys_plain_images_and_missing_size_column():
    crops, table, calls = make_inputs(3, size_column=False)
    plain = {f"{k}.png": Image.fromarray(crop_image(int(k))) for k in crops}  # already-loaded images
    masked, maps, meta = apply_synthetic_masks(plain, table, PARAMS)
    assert list(masked) == ["000001", "000002", "000003"]
    assert np.asarray(masked["000001"]()).shape == (SIZE, SIZE, 3)
    # without a size column the crop size is read from the first crop
    masked, _, _ = apply_synthetic_masks(crops, table, PARAMS)
    assert calls["000001"] == 1


def test_crop_of_the_wrong_size_is_reported():
    crops, table, _ = make_inputs(2)
    crops["000001"] = lambda: Image.new("RGB", (32, 32))
    masked, _, _ = apply_synthetic_masks(crops, table, PARAMS)
    with pytest.raises(ValueError, match="32x32"):
        masked["000001"]()


def test_outputs_stream_through_partitioned_datasets(tmp_path):
    from kedro_datasets.partitions import PartitionedDataset

    def dataset(name):
        return PartitionedDataset(
            path=str(tmp_path / name), dataset={"type": "pillow.ImageDataset"}, filename_suffix=".png"
        )

    crops, table, _ = make_inputs(4)
    masked, maps, meta = apply_synthetic_masks(crops, table, PARAMS)
    dataset("masked_faces").save(masked)
    dataset("mask_maps").save(maps)
    saved_masked, saved_maps = dataset("masked_faces").load(), dataset("mask_maps").load()
    assert sorted(saved_masked) == sorted(saved_maps) == sorted(masked)
    for image_id in masked:
        out = np.asarray(saved_masked[image_id]().convert("RGB"))
        mask = np.asarray(saved_maps[image_id]())
        assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
        face = crop_image(int(image_id))
        assert not (out != face).any(axis=2)[mask == 0].any()
        assert meta.set_index("image_id").loc[image_id, "coverage"] == pytest.approx((mask > 0).mean())


def test_pipeline_wiring():
    (node,) = create_pipeline().nodes
    assert node.name == "apply_synthetic_masks_node"
    assert node.inputs == ["face_crops", "face_landmarks", "params:masks"]
    assert node.outputs == ["masked_faces", "mask_maps", "mask_metadata"]
    assert node.func is apply_synthetic_masks


# --- geometry on generated faces ------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated_faces(tmp_path_factory):
    """Faces from the project's procedural generator, written as files and aligned by the faces
    stage, with where each face's chin really is (the lowest point of its drawn outline)."""
    from unmask.imaging import demo_faces
    from unmask.pipelines.faces.nodes import MATRIX_COLUMNS, crop_faces

    folder = tmp_path_factory.mktemp("generated") / "img_align_celeba"
    folder.mkdir()
    chins, poses = [], []
    draw_outline, pose_matrix = demo_faces._face_outline, demo_faces._pose_matrix

    def outline(cx, cy, ident, chin_y, n=72):
        chins.append((cx, chin_y))  # the outline's bottom point is (cx, chin_y), before the pose
        return draw_outline(cx, cy, ident, chin_y, n)

    def pose(rng):
        poses.append(pose_matrix(rng))
        return poses[-1]

    rows = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_faces, "_face_outline", outline)
        patch.setattr(demo_faces, "_pose_matrix", pose)
        for k in range(24):
            image, points = demo_faces.render_demo_face(identity_seed=k % 8, image_seed=1000 + k)
            image_id = f"{k + 1:06d}"
            Image.fromarray(image).save(folder / f"{image_id}.png")
            rows.append({"image_id": image_id, "source": str(folder.parent),
                         "member": f"img_align_celeba/{image_id}.png",
                         "width": image.shape[1], "height": image.shape[0], **landmarks_to_columns(points)})
    crops, table = crop_faces(pd.DataFrame(rows), {"size": 128, "border": "reflect"})
    chin_image = np.array([p @ [x, y, 1.0] for (x, y), p in zip(chins, poses)])
    matrices = table[MATRIX_COLUMNS].to_numpy().reshape(-1, 2, 3)
    chin_crop = np.einsum("nij,nj->ni", matrices[:, :, :2], chin_image) + matrices[:, :, 2]
    return crops, table, chin_crop


@pytest.mark.parametrize("style", MASK_STYLES)
def test_on_generated_faces_the_mask_covers_nose_mouth_and_chin_and_leaves_the_eyes(style, generated_faces):
    from unmask.imaging.mask_renderer import face_frame

    crops, table, chins = generated_faces
    masked, maps, meta = apply_synthetic_masks(crops, table, {**PARAMS, "seed": 3, "styles": [style]})
    assert set(meta["style"]) == {style}
    size = 128
    yy, xx = np.mgrid[0:size, 0:size]
    for (image_id, row), chin in zip(table.set_index("image_id").iterrows(), chins):
        points = row[[c for c in table.columns if c.endswith(("_x", "_y"))]].to_numpy(np.float64).reshape(5, 2)
        d = face_frame(points)["d"]
        covered = np.asarray(maps[image_id]()) > 0
        for name, (x, y), radius in [("nose", points[2], 0.06 * d), ("left mouth corner", points[3], 0.06 * d),
                                     ("right mouth corner", points[4], 0.06 * d), ("chin", chin, 0.06 * d)]:
            near = (xx - x) ** 2 + (yy - y) ** 2 <= max(radius, 0.5) ** 2
            assert covered[near].all(), f"{style} on {image_id}: the {name} is not covered"
        for name, (x, y) in [("left eye", points[0]), ("right eye", points[1])]:
            near = (xx - x) ** 2 + (yy - y) ** 2 <= (0.15 * d) ** 2
            assert not covered[near].any(), f"{style} on {image_id}: the {name} is covered"
        # and the masked face shows the mask there, not the face
        face, out = np.asarray(crops[image_id]()), np.asarray(masked[image_id]())
        nose = tuple(np.round(points[2]).astype(int))[::-1]
        assert (face[nose] != out[nose]).any()


def test_worker_processes_give_the_same_masks_metadata_and_files(tmp_path):
    from unmask.datasets import ImagePartitionsDataset, PngPartition

    def dataset(name, workers):
        return ImagePartitionsDataset(path=str(tmp_path / name), workers=workers, parallel_from=1, chunk_size=3)

    crops, table, _ = make_inputs(10)
    dataset("face_crops", 1).save(crops)
    saved_crops = dataset("face_crops", 1).load()
    assert all(isinstance(v, PngPartition) for v in saved_crops.values())
    serial = apply_synthetic_masks(saved_crops, table, {**PARAMS, "workers": 1})
    parallel = apply_synthetic_masks(saved_crops, table, {**PARAMS, "workers": 2, "parallel_from": 1, "chunk_size": 3})
    pd.testing.assert_frame_equal(serial[2], parallel[2])
    for k, name in ((0, "masked_faces"), (1, "mask_maps")):
        dataset(f"{name}_serial", 1).save(serial[k])
        dataset(f"{name}_parallel", 2).save(parallel[k])
        for image_id in serial[k]:
            first = (tmp_path / f"{name}_serial" / f"{image_id}.png").read_bytes()
            assert first == (tmp_path / f"{name}_parallel" / f"{image_id}.png").read_bytes()
            # what was written is what the lazy job computes
            np.testing.assert_array_equal(
                dataset(f"{name}_parallel", 1).load()[image_id].read_array(), np.asarray(serial[k][image_id]()))


@pytest.mark.parametrize("knob, value", [("workers", -1), ("chunk_size", 0), ("parallel_from", "x")])
def test_bad_pool_settings_are_rejected(knob, value):
    crops, table, _ = make_inputs(2)
    with pytest.raises(ValueError, match=re.escape(f"masks.{knob}={value!r}")):
        apply_synthetic_masks(crops, table, {**PARAMS, knob: value})
