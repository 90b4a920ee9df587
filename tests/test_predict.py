"""`unmask predict` and the Unmasker behind it, with a tiny model and generated or bundled images.

The one real face is matplotlib's bundled ``grace_hopper.jpg`` sample (matplotlib is a project
dependency), put on a larger generated canvas; never the shared CelebA data. Tests that need the
face detector are skipped when dlib-bin / face_recognition_models are missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from unmask.commands import cli
from unmask.imaging.landmark_detector import INSTALL_HINT, available
from unmask.models import build_model, save_model
from unmask.predict import Unmasker, crop_size_for, read_photo

needs_detector = pytest.mark.skipif(not available(), reason=INSTALL_HINT)
CROP = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(build_model("ra_unet", filters=(4, 8)), path, metadata={"crop_size": CROP})
    return path


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real face (Grace Hopper, ~170 px wide) at the centre of a 420x360 generated canvas."""
    from matplotlib import cbook

    try:
        face = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"matplotlib sample image unavailable: {exc}")
    face = np.asarray(face.resize((200, 234), Image.BILINEAR))
    yy, xx = np.mgrid[0:360, 0:420]
    canvas = np.stack([(xx * 0.5) % 256, (yy * 0.6) % 256, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    canvas[60:294, 110:310] = face
    return canvas


def _box_far_from(shape, box, margin: float = 0.6) -> np.ndarray:
    """Pixels farther than ``margin`` box-widths from the detected face box."""
    x0, y0, x1, y1 = box
    w = x1 - x0
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx < x0 - margin * w) | (xx > x1 + margin * w) | (yy < y0 - margin * w) | (yy > y1 + margin * w)


@needs_detector
def test_a_face_is_restored_and_pixels_away_from_it_are_untouched(checkpoint, photo):
    unmasker = Unmasker(checkpoint, device="cpu", precision="fp32")
    assert unmasker.size == CROP and "crop_size" in unmasker.size_source
    result = unmasker.unmask(photo)
    assert len(result.faces) == 1
    assert result.image.shape == photo.shape and result.image.dtype == np.uint8
    changed = (result.image != photo).any(axis=2)
    assert changed.any(), "an untrained network changes the face"
    far = _box_far_from(photo.shape, result.faces[0].box)
    assert far.mean() > 0.3 and not changed[far].any()
    # every replaced pixel is in the reported region, give or take the feathered edge
    assert result.region.any() and changed[result.region].mean() > 0.5


class _Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, 1, 1))

    def forward(self, x):
        return x


@needs_detector
def test_a_model_that_changes_nothing_gives_the_photo_back_bit_for_bit(checkpoint, photo):
    unmasker = Unmasker(checkpoint, device="cpu", precision="fp32")
    unmasker.model = _Identity()
    result = unmasker.unmask(photo)
    assert len(result.faces) == 1 and not result.region.any()
    assert np.array_equal(result.image, photo)


def test_flip_averaging_is_on_by_default_and_can_be_turned_off(checkpoint):
    crop = np.random.default_rng(0).integers(0, 255, (CROP, CROP, 3), dtype=np.uint8)
    averaged = Unmasker(checkpoint, device="cpu", precision="fp32", detector=object())
    plain = Unmasker(checkpoint, device="cpu", precision="fp32", detector=object(), flip_average=False)
    assert averaged.flip_average and "flip averaging" in averaged.describe()
    assert not plain.flip_average and "flip averaging" not in plain.describe()
    assert not np.array_equal(averaged.restore_crop(crop), plain.restore_crop(crop))


def test_missing_checkpoint_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="kedro run"):
        Unmasker(tmp_path / "model.safetensors")


def test_crop_size_comes_from_metadata_then_the_project(tmp_path):
    model = build_model("ra_unet", filters=(4, 8))
    explicit = tmp_path / "a.safetensors"
    save_model(model, explicit, metadata={"crop_size": 48})
    assert crop_size_for(explicit)[0] == 48 and crop_size_for(explicit, 64) == (64, "--size")
    project = tmp_path / "project"
    weights = project / "data" / "06_models" / "model.safetensors"
    save_model(model, weights)
    with pytest.raises(ValueError, match="--size"):
        crop_size_for(weights)
    (project / "conf" / "base").mkdir(parents=True)
    (project / "conf" / "base" / "parameters_faces.yml").write_text("faces:\n  size: 96\n")
    assert crop_size_for(weights)[0] == 96
    crops = project / "data" / "03_primary" / "face_crops"
    crops.mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(crops / "000001.png")
    assert crop_size_for(weights)[0] == 40  # what it was trained on beats the current configuration


def test_crop_size_must_suit_the_network(checkpoint):
    with pytest.raises(ValueError, match="multiple of 2"):
        Unmasker(checkpoint, size=33)


def test_read_photo_formats(tmp_path):
    grey16 = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    rgb = read_photo(tmp_path / "grey16.png")
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 and rgb.max() > 200 and rgb[0, 0, 0] == 0
    Image.new("RGBA", (30, 20), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    assert read_photo(tmp_path / "alpha.png")[0, 0].tolist() == [10, 20, 30]
    tall = Image.new("RGB", (30, 20))
    exif = tall.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    tall.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_photo(tmp_path / "rotated.jpg").shape == (30, 20, 3)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="cannot read"):
        read_photo(tmp_path / "broken.jpg")


# ------------------------------------------------------------------------------------- command


def _run(*args: str, cwd: Path | None = None):
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, list(args), catch_exceptions=False)
    with runner.isolated_filesystem(temp_dir=cwd):
        return runner.invoke(cli, list(args), catch_exceptions=False)


@needs_detector
def test_predict_command_on_a_folder(checkpoint, photo, tmp_path):
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(inputs / "person.jpg", quality=95)
    Image.fromarray(photo[:, ::-1].copy()).save(inputs / "sub" / "mirrored.png")
    Image.fromarray(np.full((50, 70, 3), 120, np.uint8)).save(inputs / "wall.png")
    (inputs / "broken.jpg").write_bytes(b"not an image")
    (inputs / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    result = _run("predict", str(inputs), "-o", str(out), "--checkpoint", str(checkpoint), "--save-mask",
                  "--device", "cpu")
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["person.mask.png", "person.png", "sub/mirrored.mask.png", "sub/mirrored.png",
                       "wall.mask.png", "wall.png"]
    assert Image.open(out / "person.png").size == (photo.shape[1], photo.shape[0])
    mask = np.asarray(Image.open(out / "person.mask.png"))
    assert mask.shape == photo.shape[:2] and set(np.unique(mask)) <= {0, 255} and mask.any()
    assert np.array_equal(np.asarray(Image.open(out / "wall.png")), np.full((50, 70, 3), 120, np.uint8))
    lines = result.output.splitlines()
    assert sum("warning:" in line for line in lines) == 2
    assert any("broken.jpg: skipped, cannot read" in line for line in lines)
    assert any("wall.png: no face found" in line for line in lines)
    assert "2 of 4 photos restored (2 faces)" in result.output
    assert "1 without a face found, 1 unreadable" in result.output


def test_predict_exits_non_zero_when_nothing_was_restored(checkpoint, tmp_path):
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "blank.png")
    (tmp_path / "bad.png").write_bytes(b"")
    result = _run("predict", str(tmp_path / "blank.png"), str(tmp_path / "bad.png"), str(tmp_path / "missing.jpg"),
                  "-o", str(tmp_path / "out"), "--checkpoint", str(checkpoint))
    assert result.exit_code == 1
    assert "0 of 3 photos restored" in result.output and "2 unreadable" in result.output


def test_predict_without_a_model_explains_how_to_train(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    result = _run("predict", str(tmp_path / "x.png"), "-o", "out", cwd=tmp_path)
    assert result.exit_code != 0
    assert "No trained model at data/06_models/model.safetensors" in result.output and "kedro run" in result.output


def test_predict_never_overwrites_an_input(checkpoint, tmp_path):
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    _run("predict", str(tmp_path / "a.png"), "-o", str(tmp_path), "--checkpoint", str(checkpoint))
    assert (tmp_path / "a.png").read_bytes() == before and (tmp_path / "a_2.png").exists()


def test_unmask_without_a_command_is_kedro_run():
    result = _run("--help")
    assert "predict" in result.output and "run" in result.output
    result = _run("run", "--help")
    assert "--pipelines" in result.output
    result = _run("--pipelines=evaluate", "--help")  # old style: options go to `kedro run`
    assert "--pipelines" in result.output


def test_the_console_script_is_installed():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "unmask"]
    assert script.value == "unmask.__main__:main"
