"""Reading CelebA layouts (folder, zip, Google Drive tree), image decoding and annotation parsers."""

from __future__ import annotations

import io
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from unmask.imaging import celeba
from unmask.imaging.celeba import (
    UnreadableImageError,
    aligned_face_region,
    decode_image,
    list_images,
    locate_celeba,
    read_bboxes,
    read_identities,
    read_image,
    read_image_size,
    read_landmarks,
    read_partitions,
    template_landmarks,
)
from unmask.imaging.demo_faces import generate_demo_celeba
from unmask.imaging.landmarks import LANDMARK_COLUMNS

ANNOTATIONS = ("list_landmarks_align_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return generate_demo_celeba(tmp_path_factory.mktemp("demo") / "celeba", 6, 2, seed=1)


def _zip_images(folder: Path, zip_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted((folder / "img_align_celeba").iterdir()):
            zf.write(p, f"img_align_celeba/{p.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return zip_path


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ layouts --


def test_folder_layout(demo):
    src = locate_celeba(demo)
    assert src.kind == "folder" and src.images == demo
    assert src.landmarks.path == demo / ANNOTATIONS[0]
    assert src.partitions.path == demo / ANNOTATIONS[1]
    assert src.identities.path == demo / ANNOTATIONS[2]
    members = list_images(src)
    assert members == [f"img_align_celeba/{k:06d}.jpg" for k in range(1, 7)]
    img = read_image(src, members[0])
    assert img.shape == (218, 178, 3) and img.dtype == np.uint8
    assert read_image_size(src, members[0]) == (178, 218)
    assert np.array_equal(read_image(str(demo), members[0]), img)  # a plain path works too


def test_zip_layout_reads_like_the_folder(demo, tmp_path):
    zip_path = _zip_images(demo, tmp_path / "img_align_celeba.zip")
    for name in ANNOTATIONS:
        shutil.copy(demo / name, tmp_path / name)
    folder = locate_celeba(demo)
    for where in (tmp_path, zip_path):  # the folder holding the zip, and the zip itself
        src = locate_celeba(where)
        assert src.kind == "zip" and src.images == zip_path
        assert src.landmarks.path == tmp_path / ANNOTATIONS[0] and src.landmarks.member is None
        assert list_images(src) == list_images(folder)
        for member in list_images(src):
            assert np.array_equal(read_image(src, member), read_image(folder, member))
        assert read_landmarks(src.landmarks).equals(read_landmarks(folder.landmarks))
    assert np.array_equal(read_image(str(zip_path), "img_align_celeba/000002.jpg"),
                          read_image(folder, "img_align_celeba/000002.jpg"))


def test_annotations_inside_the_zip(demo, tmp_path):
    extra = {f"Anno/{n}": (demo / n).read_bytes() for n in ANNOTATIONS}
    zip_path = _zip_images(demo, tmp_path / "img_align_celeba.zip", extra)
    src = locate_celeba(zip_path)
    assert src.landmarks.path == zip_path and src.landmarks.member == f"Anno/{ANNOTATIONS[0]}"
    assert "in " in str(src.landmarks)
    assert read_partitions(src.partitions).equals(read_partitions(demo / ANNOTATIONS[1]))
    assert all(m.startswith("img_align_celeba/") for m in list_images(src))


def test_google_drive_layout(demo, tmp_path):
    (tmp_path / "Img").mkdir()
    (tmp_path / "Anno").mkdir()
    (tmp_path / "Eval").mkdir()
    _zip_images(demo, tmp_path / "Img" / "img_align_celeba.zip")
    shutil.copy(demo / ANNOTATIONS[0], tmp_path / "Anno")
    shutil.copy(demo / ANNOTATIONS[2], tmp_path / "Anno")
    shutil.copy(demo / ANNOTATIONS[1], tmp_path / "Eval")
    for where in (tmp_path, tmp_path / "Img" / "img_align_celeba.zip"):
        src = locate_celeba(where)
        assert src.kind == "zip"
        assert src.landmarks.path == tmp_path / "Anno" / ANNOTATIONS[0]
        assert src.partitions.path == tmp_path / "Eval" / ANNOTATIONS[1]
        assert src.identities.path == tmp_path / "Anno" / ANNOTATIONS[2]


def test_image_folder_itself(demo):
    src = locate_celeba(demo / "img_align_celeba")
    assert src.kind == "folder" and list_images(src)[0] == "000001.jpg"
    assert src.landmarks.path == demo / ANNOTATIONS[0]


def _wild_tree(demo: Path, root: Path, image_dir: str = "img_celeba") -> Path:
    """An in-the-wild layout: the demo images in img_celeba/, Anno/ as on Google Drive (both
    landmark files, the boxes, identities) and Eval/."""
    shutil.copytree(demo / "img_align_celeba", root / image_dir)
    (root / "Anno").mkdir()
    (root / "Eval").mkdir()
    (root / "Anno" / "list_landmarks_celeba.txt").write_text(LANDMARK_TEXT)
    shutil.copy(demo / ANNOTATIONS[0], root / "Anno")  # the aligned file, which must not be used
    (root / "Anno" / "list_bbox_celeba.txt").write_text(BBOX_TEXT)
    shutil.copy(demo / ANNOTATIONS[2], root / "Anno")
    shutil.copy(demo / ANNOTATIONS[1], root / "Eval")
    return root


def test_wild_layout(demo, tmp_path):
    root = _wild_tree(demo, tmp_path / "celeba")
    for where, image_dir in ((root, "img_celeba"), (root / "img_celeba", "")):  # the root, the image folder
        src = locate_celeba(where)
        assert src.kind == "folder" and src.layout == "wild" and src.image_dir == image_dir
        assert src.landmarks.path == root / "Anno" / "list_landmarks_celeba.txt"
        assert src.bboxes.path == root / "Anno" / "list_bbox_celeba.txt"
        assert src.identities.path == root / "Anno" / ANNOTATIONS[2]
        assert src.partitions.path == root / "Eval" / ANNOTATIONS[1]
        assert src.to_dict()["layout"] == "wild" and src.to_dict()["bboxes"].endswith("list_bbox_celeba.txt")
        assert list_images(src)[0] == f"{image_dir + '/' if image_dir else ''}000001.jpg"
    # the aligned layout ignores the wild files, and wins when both image folders are there
    shutil.copytree(demo / "img_align_celeba", root / "img_align_celeba")
    src = locate_celeba(root)
    assert src.layout == "aligned" and src.image_dir == "img_align_celeba" and src.bboxes is None
    assert src.landmarks.path == root / "Anno" / ANNOTATIONS[0]
    # Google Drive's Img/img_celeba/, and a zip of img_celeba/ members
    drive = _wild_tree(demo, tmp_path / "drive", "Img/img_celeba")
    assert locate_celeba(drive).layout == "wild" and locate_celeba(drive).image_dir == "Img/img_celeba"
    zip_path = tmp_path / "drive" / "img_celeba.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted((drive / "Img" / "img_celeba").iterdir()):
            zf.write(p, f"img_celeba/{p.name}")
    shutil.rmtree(drive / "Img")
    for where in (drive, zip_path):
        src = locate_celeba(where)
        assert src.kind == "zip" and src.layout == "wild" and src.bboxes is not None
        assert list_images(src)[0] == "img_celeba/000001.jpg"
    assert locate_celeba(_zip_images(demo, tmp_path / "img_align_celeba.zip")).layout == "aligned"


def test_missing_path_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        locate_celeba(tmp_path / "nowhere")
    msg = str(err.value)
    for needle in ("does not exist", "data/01_raw/celeba/", "img_align_celeba/", "img_align_celeba.zip",
                   "list_landmarks_align_celeba.txt", "list_eval_partition.txt",
                   "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html", "Img/img_align_celeba.zip",
                   "Anno/list_landmarks_align_celeba.txt", "Eval/list_eval_partition.txt",
                   "non-commercial", "ingest.source: demo", "img_celeba/", "list_bbox_celeba.txt"):
        assert needle in msg, needle


def test_unusable_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        locate_celeba(tmp_path / "empty")
    (tmp_path / "img_align_celeba.zip").write_bytes(b"PK\x03\x04 half a download")
    with pytest.raises(FileNotFoundError, match="not a valid zip"):
        locate_celeba(tmp_path / "img_align_celeba.zip")
    with pytest.raises(FileNotFoundError, match="not a valid zip"):
        locate_celeba(tmp_path)


# ----------------------------------------------------------------------------------- decoding --


def test_conversions():
    gray = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    out = decode_image(_png(gray))
    assert out.shape == (20, 30, 3) and np.array_equal(out[..., 0], gray) and np.array_equal(out[..., 2], gray)
    rgba = np.dstack([np.full((8, 9, 3), 77, np.uint8), np.zeros((8, 9), np.uint8)])
    out = decode_image(_png(rgba))
    assert out.shape == (8, 9, 3) and (out == 77).all()  # alpha dropped, colour kept
    sixteen = np.full((5, 6), 65535, np.uint16)
    sixteen[0, 0] = 257 * 10
    buf = io.BytesIO()
    Image.fromarray(sixteen).save(buf, format="PNG")
    out = decode_image(buf.getvalue())
    assert out.dtype == np.uint8 and out.shape == (5, 6, 3) and out[1, 1, 0] == 255 and out[0, 0, 1] == 10
    palette = Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).convert("P")
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    assert decode_image(buf.getvalue()).shape == (4, 4, 3)


def test_cmyk_jpeg_and_grey_jpeg_decode_to_rgb():
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(128, 50, (6, 8, 3)), 0, 255).astype(np.uint8)
    rgb = cv2.resize(rgb, (64, 48), interpolation=cv2.INTER_LINEAR)  # smooth, so JPEG keeps it close
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG", quality=98)
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data, "cmyk.jpg")
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 4  # colours right (not inverted, not CMY as RGB)
    # OpenCV's decoder agrees (it converts CMYK to BGR too)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(int) - out).mean() < 3
    buf = io.BytesIO()
    Image.fromarray(rgb[..., 1]).save(buf, format="JPEG", quality=98)  # a greyscale JPEG
    grey = decode_image(buf.getvalue())
    assert grey.shape == (48, 64, 3) and (grey[..., 0] == grey[..., 2]).all()
    la = Image.fromarray(rgb[..., 0]).convert("LA")  # grey + alpha
    buf = io.BytesIO()
    la.save(buf, format="PNG")
    assert np.array_equal(decode_image(buf.getvalue())[..., 1], rgb[..., 0])


def test_unreadable_images(demo):
    good = (demo / "img_align_celeba" / "000001.jpg").read_bytes()
    cases = {b"": "zero_byte", good[: len(good) // 2]: "truncated", b"not an image at all": "undecodable"}
    for data, reason in cases.items():
        with pytest.raises(UnreadableImageError) as err:
            decode_image(data, "x.jpg")
        assert err.value.reason == reason and "x.jpg" in str(err.value)
    # a cut JPEG still refused when Pillow is told to accept truncated files
    from PIL import ImageFile

    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(UnreadableImageError, match="truncated"):
            decode_image(good[: len(good) - 300])
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def test_unreadable_in_zip_and_missing_member(demo, tmp_path):
    zip_path = _zip_images(demo, tmp_path / "img_align_celeba.zip", {"img_align_celeba/000099.jpg": b""})
    with pytest.raises(UnreadableImageError) as err:
        read_image(zip_path, "img_align_celeba/000099.jpg")
    assert err.value.reason == "zero_byte"
    with pytest.raises(FileNotFoundError):
        read_image(zip_path, "img_align_celeba/123456.jpg")


def test_zip_threads_and_fork(demo, tmp_path, monkeypatch):
    zip_path = _zip_images(demo, tmp_path / "img_align_celeba.zip")
    src = locate_celeba(zip_path)
    members = list_images(src) * 5
    serial = [read_image(src, m) for m in members]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda m: read_image(src, m), members))
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel))
    first = celeba._zip(zip_path)
    assert celeba._zip(zip_path) is first  # cached
    monkeypatch.setattr(celeba.os, "getpid", lambda: -12345)  # as in a forked DataLoader worker
    assert celeba._zip(zip_path) is not first
    assert np.array_equal(read_image(src, members[0]), serial[0])


def test_aligned_face_region_holds_the_template_and_stays_in_the_image():
    x0, y0, x1, y1 = aligned_face_region(178, 218, 0.1)
    pts = template_landmarks(178, 218)
    assert (pts[:, 0] > x0).all() and (pts[:, 0] < x1).all() and (pts[:, 1] > y0).all() and (pts[:, 1] < y1).all()
    bx0, by0, bx1, by1 = aligned_face_region(178, 218, 0.0)
    assert x0 < bx0 and y0 < by0 and x1 > bx1 and y1 > by1  # the margin grows it
    assert aligned_face_region(89, 109, 5.0) == (-0.5, -0.5, 88.5, 108.5)  # clipped to the image edges
    with pytest.raises(ValueError, match="margin"):
        aligned_face_region(89, 109, -0.1)


def test_template_landmarks():
    assert template_landmarks(178, 218).tolist() == [[69, 110], [108, 110], [89, 135], [72, 152], [106, 152]]
    assert np.allclose(template_landmarks(356, 436), 2 * template_landmarks(178, 218))


# ------------------------------------------------------------------------------------ parsers --

LANDMARK_TEXT = (
    "2\n"
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
    "000001.jpg    69  109  106  113   77  142   73  152  108  154\n"
    "000002.jpg    69  110  107  112   81  135   70  151  108  153\n"
)


BBOX_TEXT = (
    "2\n"
    "image_id x_1 y_1 width height\n"
    "000001.jpg    95  71 226 313\n"
    "000002.jpg    72  94 221 306\n"
)


def test_read_bboxes():
    boxes = read_bboxes(BBOX_TEXT.encode())
    assert list(boxes.index) == ["000001", "000002"] and list(boxes.columns) == ["x_1", "y_1", "width", "height"]
    assert boxes.loc["000001"].tolist() == [95, 71, 226, 313] and (boxes.dtypes == np.float64).all()
    kaggle = "image_id,x_1,y_1,width,height\n000001.jpg,95,71,226,313\n000002.jpg,72,94,221,306\n"
    assert read_bboxes(kaggle.encode()).equals(boxes)
    with pytest.raises(ValueError, match="line 3: expected 5 fields"):
        read_bboxes(b"1\nimage_id x_1 y_1 width height\n000001.jpg 95 71 226\n")


def test_read_landmarks_formats(tmp_path):
    lm = read_landmarks(LANDMARK_TEXT.encode())
    assert list(lm.index) == ["000001", "000002"] and lm.index.name == "image_id"
    assert list(lm.columns) == LANDMARK_COLUMNS and (lm.dtypes == np.float64).all()
    assert lm.loc["000001", "nose_y"] == 142.0
    messy = LANDMARK_TEXT.replace("\n", "  \r\n") + "\r\n\r\n   \n"
    path = tmp_path / "list_landmarks_align_celeba.txt"
    path.write_bytes(messy.encode())
    assert read_landmarks(path).equals(lm)
    kaggle = ("image_id," + ",".join(LANDMARK_COLUMNS) + "\n000001.jpg,69,109,106,113,77,142,73,152,108,154\n"
              "000002.jpg,69,110,107,112,81,135,70,151,108,153\n")
    assert read_landmarks(kaggle.encode()).equals(lm)


@pytest.mark.parametrize(
    ("row", "needle"),
    [("000002.jpg 69 110 107 112 81 135 70 151 108", "expected 11 fields"),
     ("000002.jpg 69 110 107 112 81 135 70 151 108 x5", "'x5' is not a number"),
     ("000001.jpg 69 110 107 112 81 135 70 151 108 153", "listed again")],
)
def test_read_landmarks_errors_name_file_and_line(tmp_path, row, needle):
    path = tmp_path / "list_landmarks_align_celeba.txt"
    path.write_text(LANDMARK_TEXT.splitlines(keepends=True)[0] + "".join(LANDMARK_TEXT.splitlines(keepends=True)[1:3])
                    + row + "\n")
    with pytest.raises(ValueError) as err:
        read_landmarks(path)
    assert str(path) in str(err.value) and "line 4" in str(err.value) and needle in str(err.value)
    with pytest.raises(ValueError, match=r"mine\.txt, line 4"):
        read_landmarks(path.read_bytes(), name="mine.txt")


def test_read_partitions_and_identities(tmp_path):
    p = read_partitions(b"000001.jpg 0\r\n000002.jpg 2 \n\n")
    assert p.to_dict() == {"000001": 0, "000002": 2} and p.dtype == np.int64 and p.name == "partition"
    i = read_identities(b"000001.jpg 2880\n000002.jpg 2937\n")
    assert i.to_dict() == {"000001": 2880, "000002": 2937} and i.name == "identity"
    assert read_partitions(b"image_id,partition\n000001.jpg,0\n").to_dict() == {"000001": 0}
    path = tmp_path / "list_eval_partition.txt"
    path.write_text("000001.jpg 0\n000002.jpg 1 7\n")
    with pytest.raises(ValueError, match=r"list_eval_partition\.txt, line 2: expected 2 fields"):
        read_partitions(path)
    path.write_text("000001.jpg 0\n000002.jpg one\n")
    with pytest.raises(ValueError, match=r"line 2: 'one' is not an integer"):
        read_partitions(path)
    with pytest.raises(ValueError, match="0, 1 or 2"):
        read_partitions(b"000001.jpg 5\n")
    with pytest.raises(ValueError, match="no data rows"):
        read_identities(b"\n\n")
