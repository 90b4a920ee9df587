"""`unmask predict` and the Unmasker behind it, with a tiny model and generated or bundled images.

The one real face is matplotlib's bundled ``grace_hopper.jpg`` sample (matplotlib is a project
dependency), put on a larger generated canvas; never the shared CelebA data. Tests that need the
face detector are skipped when dlib-bin / face_recognition_models are missing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

import unmask.predict as predict_module
from unmask.commands import cli
from unmask.imaging.alignment import transform_points
from unmask.imaging.landmark_detector import INSTALL_HINT, CELEBA_TEMPLATE_178x218, Detection, available
from unmask.models import build_model, save_model
from unmask.models.inference import restore
from unmask.predict import SHIPPED_CHECKPOINT, Unmasker, choose_checkpoint, crop_size_for, read_photo

needs_detector = pytest.mark.skipif(not available(), reason=INSTALL_HINT)
CROP = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(build_model("ra_unet", filters=(4, 8)), path, metadata={"crop_size": CROP})
    return path


@pytest.fixture(scope="module")
def composite_checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained network with a mask head."""
    path = tmp_path_factory.mktemp("composite") / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(build_model("ra_unet", filters=(4, 8), composite=True), path, metadata={"crop_size": CROP})
    return path


@pytest.fixture(autouse=True)
def no_shipped_model(monkeypatch, tmp_path_factory):
    """Tests choose their own models: the repository's shipped one is out of the way unless a test puts one there."""
    nothing = tmp_path_factory.mktemp("nothing_shipped") / "none.safetensors"
    monkeypatch.setattr(predict_module, "SHIPPED_CHECKPOINT", nothing)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real face (Grace Hopper, ~170 px wide) at the centre of a 420x360 generated canvas."""
    from matplotlib import cbook

    try:
        face = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    except Exception as exc:
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


def test_restore_can_return_the_flip_averaged_mask_probabilities(composite_checkpoint, checkpoint):
    from unmask.models import load_model

    model = load_model(composite_checkpoint)
    x = torch.rand(2, 3, CROP, CROP, generator=torch.Generator().manual_seed(1))
    out, mask = restore(model, x, flip_average=True, with_mask=True)
    assert out.shape == x.shape and mask.shape == (2, 1, CROP, CROP) and mask.dtype == torch.float32
    with torch.no_grad():
        _, plain = model(x, with_mask=True)
        _, mirrored = model(x.flip(-1), with_mask=True)
    torch.testing.assert_close(mask, (torch.sigmoid(plain) + torch.sigmoid(mirrored).flip(-1)) / 2)
    torch.testing.assert_close(out, restore(model, x, flip_average=True))  # the restoration is the same
    assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0
    with pytest.raises(ValueError, match="composite"):
        restore(load_model(checkpoint), x, with_mask=True)


def _set_mask_head(unmasker: Unmasker, bias: float) -> None:
    """Make the mask head predict the same probability everywhere: sigmoid(bias)."""
    with torch.no_grad():
        unmasker.model.mask_head.weight.zero_()
        unmasker.model.mask_head.bias.fill_(bias)


@needs_detector
def test_a_face_the_mask_head_sees_no_mask_on_is_left_alone(composite_checkpoint, photo):
    unmasker = Unmasker(composite_checkpoint, device="cpu", precision="fp32")
    assert unmasker.has_mask_head and "mask head" in unmasker.describe()
    _set_mask_head(unmasker, -20.0)
    result = unmasker.unmask(photo)
    (face,) = result.faces
    assert not face.restored and face.mask_fraction == 0.0 and face.changed_fraction == 0.0
    assert np.array_equal(result.image, photo) and not result.region.any()
    _set_mask_head(unmasker, 20.0)  # mask everywhere: restored
    result = unmasker.unmask(photo)
    assert result.faces[0].restored and result.faces[0].mask_fraction == 1.0 and result.region.any()
    assert not np.array_equal(result.image, photo)


class _OneFace:
    """A detector that always finds the face of the aligned-CelebA template in a 178x218 photo."""

    def detect(self, image):
        return [Detection(box=(40.0, 80.0, 140.0, 180.0), landmarks=CELEBA_TEMPLATE_178x218.astype(np.float32),
                          score=1.0, method="stub", masked=True)]


def test_the_restoration_is_confined_to_the_predicted_mask_and_gated_by_its_size(composite_checkpoint):
    photo = np.random.default_rng(0).integers(60, 200, (218, 178, 3), dtype=np.uint8)
    unmasker = Unmasker(composite_checkpoint, device="cpu", precision="fp32", detector=_OneFace())
    lower_half = np.zeros((CROP, CROP), np.float32)
    lower_half[CROP // 2:] = 0.9
    # a model that changes the whole crop but sees a mask only on its lower half
    unmasker.restore_crop_with_mask = lambda crop: (crop // 2, lower_half)
    result = unmasker.unmask(photo)
    (face,) = result.faces
    assert face.restored and face.mask_fraction == 0.5 and 0.5 < face.changed_fraction < 0.7
    _, _, matrix = predict_module.align_face(photo, CELEBA_TEMPLATE_178x218, CROP)
    rows, cols = np.nonzero((result.image != photo).any(axis=2))
    crop_y = transform_points(np.stack([cols, rows], axis=1).astype(np.float64), matrix)[:, 1]
    assert len(crop_y) and crop_y.min() > CROP // 2 - 4  # the mask grown by S/32 and feathered, no more
    gated = Unmasker(composite_checkpoint, device="cpu", precision="fp32", detector=_OneFace(), min_mask_fraction=0.6)
    gated.restore_crop_with_mask = unmasker.restore_crop_with_mask
    result = gated.unmask(photo)
    assert not result.faces[0].restored and np.array_equal(result.image, photo)
    with pytest.raises(ValueError, match="min_mask_fraction"):
        Unmasker(composite_checkpoint, min_mask_fraction=1.5)


def _tiny_model(path: Path, **metadata) -> Path:
    save_model(build_model("ra_unet", filters=(4, 8)), path, metadata={"crop_size": CROP, **metadata})
    return path


def test_which_model_runs_without_a_checkpoint(tmp_path):
    shipped = _tiny_model(tmp_path / "models" / "unmask_ra_unet_64.safetensors", trained_on="celeba")
    project = tmp_path / "project" / "data" / "06_models" / "model.safetensors"
    explicit = _tiny_model(tmp_path / "mine.safetensors")
    missing = tmp_path / "nowhere" / "model.safetensors"

    path, why = choose_checkpoint(project=project, shipped=shipped)
    assert path == shipped and "no model of this project" in why and "shipped CelebA model" in why
    _tiny_model(project, trained_on="demo")
    path, why = choose_checkpoint(project=project, shipped=shipped)
    assert path == shipped and "trained on the procedural demo faces" in why and "--checkpoint" in why
    _tiny_model(project)  # no trained_on at all
    path, why = choose_checkpoint(project=project, shipped=shipped)
    assert path == shipped and "does not say it was trained on CelebA" in why
    _tiny_model(project, trained_on="CelebA")
    path, why = choose_checkpoint(project=project, shipped=shipped)
    assert path == project and "trained on CelebA" in why
    assert choose_checkpoint(explicit, project=project, shipped=shipped)[0] == explicit  # always wins
    _tiny_model(project, trained_on="demo")
    path, why = choose_checkpoint(project=project, shipped=missing)
    assert path == project and "is missing" in why
    with pytest.raises(FileNotFoundError, match="kedro run"):
        choose_checkpoint(project=missing, shipped=missing)


def test_the_shipped_model_is_found_from_any_working_directory(tmp_path, monkeypatch):
    import unmask

    assert SHIPPED_CHECKPOINT.is_absolute()
    assert SHIPPED_CHECKPOINT == Path(unmask.__file__).resolve().parents[2] / "models" / "unmask_ra_unet_64.safetensors"
    shipped = _tiny_model(tmp_path / "repo" / "models" / "unmask_ra_unet_64.safetensors", trained_on="celeba")
    monkeypatch.setattr(predict_module, "SHIPPED_CHECKPOINT", shipped)
    monkeypatch.chdir(tmp_path)  # no data/06_models here
    unmasker = Unmasker(device="cpu", detector=object())
    assert unmasker.checkpoint == shipped and "shipped CelebA model" in unmasker.checkpoint_reason


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


def test_predict_says_which_model_runs_and_takes_the_mask_fraction(composite_checkpoint, tmp_path, monkeypatch):
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "blank.png")
    monkeypatch.setattr(predict_module, "SHIPPED_CHECKPOINT", composite_checkpoint)
    result = _run("predict", str(tmp_path / "blank.png"), "-o", str(tmp_path / "out"), "--min-mask-fraction", "0.2",
                  cwd=tmp_path)
    assert "no model of this project" in result.output and "using the shipped CelebA model" in result.output
    assert "faces with >= 20% of the crop masked" in result.output
    result = _run("predict", str(tmp_path / "blank.png"), "-o", str(tmp_path / "out"), "--min-mask-fraction", "1.5")
    assert result.exit_code == 2 and "1.5" in result.output


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


def test_a_face_cut_by_the_photo_edge_is_not_mirrored_into_the_crop(composite_checkpoint):
    # the lower half of the photo missing: the aligned crop reaches past its bottom edge
    photo = np.random.default_rng(1).integers(60, 200, (218, 178, 3), dtype=np.uint8)[:120]
    photo[-12:] = 250  # a bright bottom band, so repeated edge pixels are easy to tell from a mirror
    unmasker = Unmasker(composite_checkpoint, device="cpu", precision="fp32", detector=_OneFace())
    seen = []
    unmasker.restore_crop_with_mask = lambda crop: (seen.append(crop) or crop, np.zeros((CROP, CROP), np.float32))
    unmasker.unmask(photo)
    (crop,) = seen
    _, _, matrix = predict_module.align_face(photo, CELEBA_TEMPLATE_178x218, CROP)
    to_photo = cv2.invertAffineTransform(matrix)
    bottom = transform_points(np.array([[CROP / 2, CROP - 1.0]]), to_photo)[0]
    assert bottom[1] > photo.shape[0] + 4  # the crop's bottom row lies below the photo
    assert (crop[-1, CROP // 2] >= 240).all()  # repeats the bright edge row, no mirror of the rows above it


class _NoFace:
    def detect(self, image):
        return []


class _WideFace:
    """Finds a face as wide as the whole 178-px photo (judged unmasked by the head, so left alone)."""

    def detect(self, image):
        return [Detection(box=(0.0, 0.0, 178.0, 218.0), landmarks=CELEBA_TEMPLATE_178x218.astype(np.float32),
                          score=1.0, method="stub", masked=False)]


@needs_detector
def test_a_photo_with_no_face_found_is_tried_as_a_face_crop_when_it_could_be_one(composite_checkpoint, photo,
                                                                                 monkeypatch):
    unmasker = Unmasker(composite_checkpoint, device="cpu", precision="fp32", detector=_NoFace())
    portrait = np.ascontiguousarray(photo[60:294, 110:310])  # the face alone, 200 x 234
    _set_mask_head(unmasker, 20.0)  # the head sees a mask everywhere: the gate lets the frame's face through
    (face,) = unmasker.unmask(portrait).faces
    assert face.method == "frame" and face.restored
    landscape = np.ascontiguousarray(np.concatenate([portrait, portrait], axis=1))
    assert unmasker.unmask(landscape).faces == []  # too wide for a face crop
    assert Unmasker(composite_checkpoint, device="cpu", precision="fp32", detector=_NoFace(),
                    frame_fallback=False).unmask(portrait).faces == []
    _set_mask_head(unmasker, -20.0)  # no mask seen: the frame's face is gated like any other
    (face,) = unmasker.unmask(portrait).faces
    assert face.method == "frame" and not face.restored


def test_a_wide_face_found_and_left_alone_is_trusted_over_the_frame(composite_checkpoint):
    photo = np.random.default_rng(2).integers(60, 200, (218, 178, 3), dtype=np.uint8)
    unmasker = Unmasker(composite_checkpoint, device="cpu", precision="fp32", detector=_WideFace())
    calls = []
    unmasker.restore_crop_with_mask = lambda crop: (calls.append(1) or crop, np.zeros((CROP, CROP), np.float32))
    result = unmasker.unmask(photo)
    assert [face.method for face in result.faces] == ["stub"] and len(calls) == 1
    assert np.array_equal(result.image, photo)


@needs_detector
def test_of_the_frames_faces_the_one_with_the_most_mask_is_restored(composite_checkpoint, photo):
    portrait = np.ascontiguousarray(photo[60:294, 110:310])
    unmasker = Unmasker(composite_checkpoint, device="cpu", precision="fp32", detector=_NoFace())
    fractions = iter([0.0, 0.1, 0.5, 0.2])  # one per FRAME_BOXES face; the best one's look is reused

    def head(crop):
        mask = np.zeros((CROP, CROP), np.float32)
        mask[: round(next(fractions) * CROP)] = 0.9
        return crop // 2, mask

    unmasker.restore_crop_with_mask = head
    (face,) = unmasker.unmask(portrait).faces
    expected = predict_module.frame_face(portrait, *predict_module.FRAME_BOXES[2])
    assert face.method == "frame" and face.restored and face.box == expected.box and face.mask_fraction == 0.5
