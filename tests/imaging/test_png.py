"""Fast PNG codec: lossless, readable by every PNG reader, and reads back other encoders' files."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from unmask.imaging.png import decode_png, encode_png, read_png, write_png


def smooth_image(height: int, width: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels is None else (height, width, channels)
    base = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 2.0)
    noise = rng.integers(-3, 4, shape)  # values near 0 and 255 exercise the modulo-256 filter
    return np.clip(base * 300 - 20 + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(17, 23, 3), (17, 23, None), (1, 1, 3), (1, 40, None), (40, 1, 3)])
def test_round_trip_is_exact_with_every_reader(shape):
    image = smooth_image(*shape)
    data = encode_png(image)
    np.testing.assert_array_equal(decode_png(data), image)
    with Image.open(io.BytesIO(data)) as pil:
        assert pil.mode == ("RGB" if image.ndim == 3 else "L")
        np.testing.assert_array_equal(np.asarray(pil), image)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[..., ::-1] if image.ndim == 3 else decoded, image)


def test_compresses_a_smooth_image():
    image = smooth_image(128, 128)
    assert len(encode_png(image)) < 0.8 * image.nbytes


def test_single_channel_arrays_are_greyscale():
    image = smooth_image(8, 9, None)
    np.testing.assert_array_equal(decode_png(encode_png(image[:, :, None])), image)


def test_other_encoders_files_are_decoded_too():
    rgb, grey = smooth_image(20, 30), smooth_image(20, 30, None)
    for image in (rgb, grey):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=6)  # adaptive per-row filters
        np.testing.assert_array_equal(decode_png(buffer.getvalue()), image)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    np.testing.assert_array_equal(decode_png(buffer.getvalue()), rgb)  # alpha dropped


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((0, 4), np.uint8), np.zeros(5, np.uint8)])
def test_unsupported_arrays_are_rejected(bad):
    with pytest.raises(ValueError, match="encode_png"):
        encode_png(bad)


def test_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(encode_png(smooth_image(8, 8))[:40])  # cut in the middle of the data
    with pytest.raises(ValueError, match="broken.png"):
        read_png(path)


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    image = smooth_image(16, 16)
    size = write_png(tmp_path / "a.png", image)
    assert size == (tmp_path / "a.png").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    np.testing.assert_array_equal(read_png(tmp_path / "a.png"), image)
