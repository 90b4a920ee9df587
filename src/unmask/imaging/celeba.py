"""Reading CelebA's on-disk layouts: one code path for real CelebA and the embedded demo.

Accepted layouts (``locate_celeba``):

* aligned (``layout="aligned"``): a folder holding ``img_align_celeba/`` (the extracted images)
  or ``img_align_celeba.zip`` (the official archive, members ``img_align_celeba/000001.jpg``),
  also under ``Img/`` like the official Google Drive tree, or Kaggle's nested
  ``img_align_celeba/img_align_celeba/``;
* in the wild (``layout="wild"``): a folder holding ``img_celeba/`` (the extracted
  ``img_celeba.7z``; a zip ``img_celeba.zip`` with members ``img_celeba/...`` works too), also
  under ``Img/``;
* the zip file itself, or the image folder itself (a folder named ``img_celeba`` is "wild",
  any other folder of images "aligned").

When a folder holds both ``img_align_celeba`` and ``img_celeba``, the aligned images are used.

Annotation files are looked for beside the images, in ``Anno/`` and ``Eval/`` subfolders, and
inside the zip (Kaggle's ``.csv`` variants too): ``list_eval_partition.txt`` and
``identity_CelebA.txt`` for both layouts; the landmarks ``list_landmarks_align_celeba.txt``
(aligned) or ``list_landmarks_celeba.txt`` (wild, coordinates in the wild image) and, for the wild
layout only, the face boxes ``list_bbox_celeba.txt`` (``image_id x_1 y_1 width height``).

Images are read straight from the zip without extracting it; one open ``ZipFile`` is cached per
process and archive, and re-opened after a fork (DataLoader workers).
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from unmask.errors import DataError, MissingInputError
from unmask.imaging.landmarks import LANDMARK_COLUMNS

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGE_FOLDER = "img_align_celeba"
IMAGE_ZIP = "img_align_celeba.zip"
WILD_FOLDER = "img_celeba"
WILD_ZIP = "img_celeba.zip"
ALIGNED = "aligned"
WILD = "wild"
LAYOUTS = (ALIGNED, WILD)
#: Annotation files of the aligned layout (``img_align_celeba``).
ANNOTATION_FILES: dict[str, tuple[str, ...]] = {
    "landmarks": ("list_landmarks_align_celeba.txt", "list_landmarks_align_celeba.csv"),
    "partitions": ("list_eval_partition.txt", "list_eval_partition.csv"),
    "identities": ("identity_CelebA.txt", "identity_celeba.txt", "identity_CelebA.csv"),
}
#: Annotation files of the in-the-wild layout (``img_celeba``): its own landmarks, and face boxes.
WILD_ANNOTATION_FILES: dict[str, tuple[str, ...]] = {
    "landmarks": ("list_landmarks_celeba.txt", "list_landmarks_celeba.csv"),
    "bboxes": ("list_bbox_celeba.txt", "list_bbox_celeba.csv"),
    "partitions": ANNOTATION_FILES["partitions"],
    "identities": ANNOTATION_FILES["identities"],
}
ANNOTATION_KEYS = ("landmarks", "bboxes", "partitions", "identities")
#: Columns of ``list_bbox_celeba.txt`` (face box in the wild image, pixels).
BBOX_COLUMNS = ["x_1", "y_1", "width", "height"]
ANNOTATION_SUBFOLDERS = ("", "Anno", "Eval", "anno", "eval")

#: Size of aligned CelebA images (width, height).
CELEBA_ALIGNED_SIZE = (178, 218)
#: Mean landmarks of aligned CelebA (pixels in a 178 x 218 image, LANDMARK_COLUMNS order).
CELEBA_ALIGNED_MEAN_LANDMARKS = np.array(
    [69.0, 110.0, 108.0, 110.0, 89.0, 135.0, 72.0, 152.0, 106.0, 152.0], dtype=np.float64)
#: Where dlib's HOG detector puts the face box on aligned CelebA, as fractions of the image's
#: width and height (x0, y0, x1, y1): the median box on 1,484 aligned images (shared sample, ids
#: 1-1500; each side varies by about 0.03 of the image).
CELEBA_ALIGNED_FACE_BOX = (0.219, 0.378, 0.756, 0.816)

CELEBA_HELP = (
    "Put CelebA in data/01_raw/celeba/ (or point ingest.celeba_path at it): that folder holds "
    "img_align_celeba/ (the extracted .jpg images) or img_align_celeba.zip, and the annotation files "
    "list_landmarks_align_celeba.txt, list_eval_partition.txt and identity_CelebA.txt (directly, or "
    "in Anno/ and Eval/ as on Google Drive). Get them from the official CelebA page "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive: Img/img_align_celeba.zip, "
    "Anno/list_landmarks_align_celeba.txt, Anno/identity_CelebA.txt, Eval/list_eval_partition.txt); "
    "The in-the-wild layout works too: img_celeba/ (the extracted img_celeba.7z) with "
    "list_landmarks_celeba.txt and list_bbox_celeba.txt. "
    "CelebA is licensed for non-commercial research use only. To run without it, use the embedded "
    "procedural demo: set `ingest.source: demo` (or run with --params ingest.source=demo)."
)
ANNOTATION_HINT = ("Fix or re-download that annotation file (the official CelebA page: "
                   "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html).")

# Reasons carried by UnreadableImageError (and the quarantine table).
ZERO_BYTE = "zero_byte"
TRUNCATED = "truncated"
UNDECODABLE = "undecodable"
CORRUPT = "corrupt_archive_member"
IO_ERROR = "io_error"


class UnreadableImageError(ValueError):
    """An image file that cannot be turned into pixels: ``reason`` is a short code, e.g. ``truncated``."""

    def __init__(self, reason: str, member: str | None = None, detail: str | None = None):
        self.reason = reason
        self.member = member
        self.detail = detail or ""
        text = reason if not detail else f"{reason}: {detail}"
        super().__init__(f"{member}: {text}" if member else text)


@dataclass(frozen=True)
class AnnotationFile:
    """An annotation file on disk (``member`` None) or inside a zip archive at ``path``."""

    path: Path
    member: str | None = None

    def read_bytes(self) -> bytes:
        if self.member is None:
            return Path(self.path).read_bytes()
        return _zip(Path(self.path)).read(self.member)

    def __str__(self) -> str:
        return str(self.path) if self.member is None else f"{self.member} (in {self.path})"


@dataclass(frozen=True)
class CelebASource:
    """Where CelebA (or the demo) lives.

    ``kind`` is ``"folder"`` or ``"zip"``. ``images`` is the folder image members are relative to,
    or the zip file; ``image_dir`` the sub-folder holding the images (folder kind, may be ``""``);
    ``root`` the folder the dataset was found in. ``layout`` is ``"aligned"`` (``img_align_celeba``:
    faces already aligned and cropped) or ``"wild"`` (``img_celeba``: the original photos);
    ``bboxes`` (wild only) is ``list_bbox_celeba.txt``.
    """

    root: Path
    kind: str
    images: Path
    image_dir: str = ""
    landmarks: AnnotationFile | None = None
    partitions: AnnotationFile | None = None
    identities: AnnotationFile | None = None
    layout: str = ALIGNED
    bboxes: AnnotationFile | None = None

    @property
    def location(self) -> str:
        """The folder or zip that members are relative to, as recorded in the index."""
        return str(self.images)

    def to_dict(self) -> dict:
        """JSON-able description."""
        return {
            "kind": self.kind,
            "root": str(self.root),
            "images": str(self.images),
            "image_dir": self.image_dir,
            "layout": self.layout,
            **{name: (str(getattr(self, name)) if getattr(self, name) else None) for name in ANNOTATION_KEYS},
        }


# ------------------------------------------------------------------------------ zip caching --

_zip_lock = threading.Lock()
_zip_cache: dict[str, zipfile.ZipFile] = {}
_zip_pid = os.getpid()


def _zip(path: Path) -> zipfile.ZipFile:
    """The process-wide open ``ZipFile`` for ``path`` (re-opened in a forked child)."""
    global _zip_pid
    key = os.path.abspath(path)
    with _zip_lock:
        if os.getpid() != _zip_pid:  # forked: never share the parent's file offset
            _zip_cache.clear()
            _zip_pid = os.getpid()
        zf = _zip_cache.get(key)
        if zf is None:
            zf = zipfile.ZipFile(key)
            _zip_cache[key] = zf
        return zf


def close_archives() -> None:
    """Close every cached zip archive of this process."""
    with _zip_lock:
        for zf in _zip_cache.values():
            zf.close()
        _zip_cache.clear()


# --------------------------------------------------------------------------------- locating --


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith("._")


def _zip_member_ok(name: str) -> bool:
    return _is_image_name(name) and not name.startswith("__MACOSX/")


def _dir_has_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(e.is_file() and _is_image_name(e.name) for e in it)
    except OSError:
        return False


def _zip_has_images(path: Path) -> bool:
    return any(_zip_member_ok(n) for n in _zip(path).namelist())


def _zip_layout(path: Path) -> str:
    """``"wild"`` when the archive's images sit in an ``img_celeba/`` folder (and none in
    ``img_align_celeba/``), else ``"aligned"``."""
    parents = {n.rsplit("/", 2)[-2] if n.count("/") else "" for n in _zip(path).namelist() if _zip_member_ok(n)}
    return WILD if WILD_FOLDER in parents and IMAGE_FOLDER not in parents else ALIGNED


def _not_found(path: Path, why: str) -> MissingInputError:
    return MissingInputError(
        f"No usable CelebA at '{path}': {why}. Looked for an '{IMAGE_FOLDER}/' folder of .jpg/.png images "
        f"or '{IMAGE_ZIP}' there (also under 'Img/'), the in-the-wild '{WILD_FOLDER}/' folder (or "
        f"'{WILD_ZIP}'), or the path being that folder or zip itself. "
        + CELEBA_HELP)


def _find_annotations(dirs: list[Path], archive: Path | None, layout: str = ALIGNED
                      ) -> dict[str, AnnotationFile | None]:
    found: dict[str, AnnotationFile | None] = {}
    names_in_zip: dict[str, str] = {}
    if archive is not None:
        for n in _zip(archive).namelist():
            names_in_zip.setdefault(n.rsplit("/", 1)[-1], n)
    for key, names in (WILD_ANNOTATION_FILES if layout == WILD else ANNOTATION_FILES).items():
        found[key] = None
        for d in dirs:
            hit = next((d / n for n in names if (d / n).is_file()), None)
            if hit is not None:
                found[key] = AnnotationFile(hit)
                break
        if found[key] is None and archive is not None:
            hit = next((names_in_zip[n] for n in names if n in names_in_zip), None)
            if hit is not None:
                found[key] = AnnotationFile(archive, hit)
    return found


def _annotation_dirs(*bases: Path) -> list[Path]:
    dirs: list[Path] = []
    for base in bases:
        for sub in ANNOTATION_SUBFOLDERS:
            d = base / sub if sub else base
            if d not in dirs and d.is_dir():
                dirs.append(d)
    return dirs


def locate_celeba(path: str | Path) -> CelebASource:
    """Resolve ``path`` (folder or zip) to a ``CelebASource``; ``FileNotFoundError`` says how to get CelebA.

    The aligned layout (``img_align_celeba``) is looked for first, then the in-the-wild one
    (``img_celeba``); see the module doc.
    """
    p = Path(path)
    if not p.exists():
        raise _not_found(p, "the path does not exist")
    if p.is_file():
        if not zipfile.is_zipfile(p):
            raise _not_found(p, "it is a file but not a valid zip archive (incomplete download?)")
        if not _zip_has_images(p):
            raise _not_found(p, "the zip archive holds no .jpg/.png images")
        layout = _zip_layout(p)
        bases = [p.parent] + ([p.parent.parent] if p.parent.name.lower() == "img" else [])
        ann = _find_annotations(_annotation_dirs(*bases), p, layout)
        return CelebASource(root=p.parent, kind="zip", images=p, layout=layout, **ann)

    for folder, archive, layout in ((IMAGE_FOLDER, IMAGE_ZIP, ALIGNED), (WILD_FOLDER, WILD_ZIP, WILD)):
        for sub in (f"{folder}/{folder}", folder, f"Img/{folder}"):
            if _dir_has_images(p / sub):
                ann = _find_annotations(_annotation_dirs(p), None, layout)
                return CelebASource(root=p, kind="folder", images=p, image_dir=sub, layout=layout, **ann)
        for sub in (archive, f"Img/{archive}"):
            z = p / sub
            if z.is_file():
                if not zipfile.is_zipfile(z):
                    raise _not_found(p, f"'{z}' is not a valid zip archive (incomplete download?)")
                if _zip_has_images(z):
                    ann = _find_annotations(_annotation_dirs(p, z.parent), z, layout)
                    return CelebASource(root=p, kind="zip", images=z, layout=layout, **ann)
    if _dir_has_images(p):  # the image folder itself
        bases = [p]
        layout = WILD if p.name == WILD_FOLDER else ALIGNED
        if p.name in (IMAGE_FOLDER, WILD_FOLDER):  # annotations sit beside the image folder
            bases.append(p.parent)
            if p.parent.name in (p.name, "Img"):  # Kaggle's nested folder, Google Drive's Img/
                bases.append(p.parent.parent)
        ann = _find_annotations(_annotation_dirs(*bases), None, layout)
        return CelebASource(root=p, kind="folder", images=p, image_dir="", layout=layout, **ann)
    raise _not_found(p, "no images found there")


# ---------------------------------------------------------------------------------- listing --


def list_images(source: CelebASource) -> list[str]:
    """Sorted image member names (``.jpg``/``.jpeg``/``.png``), relative to ``source.images``."""
    if source.kind == "zip":
        return sorted(n for n in _zip(source.images).namelist() if _zip_member_ok(n))
    folder = source.images / source.image_dir if source.image_dir else source.images
    prefix = f"{source.image_dir}/" if source.image_dir else ""
    with os.scandir(folder) as it:
        return sorted(prefix + e.name for e in it if _is_image_name(e.name) and e.is_file())


def image_id(member: str) -> str:
    """CelebA image id of a file or member name: ``img_align_celeba/000001.jpg`` -> ``000001``."""
    return PurePosixPath(member.replace("\\", "/")).stem


# ---------------------------------------------------------------------------------- reading --


def _location(source: CelebASource | str | Path) -> tuple[str, Path]:
    if isinstance(source, CelebASource):
        return source.kind, Path(source.images)
    p = Path(source)
    return ("zip" if p.suffix.lower() == ".zip" else "folder"), p


def read_image_bytes(source: CelebASource | str | Path, member: str) -> bytes:
    """Raw bytes of one image; ``UnreadableImageError`` for archive/I-O failures."""
    kind, where = _location(source)
    try:
        if kind == "zip":
            return _zip(where).read(member)
        return (where / member).read_bytes()
    except KeyError as exc:
        raise FileNotFoundError(f"{member} is not in {where}") from exc
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UnreadableImageError(CORRUPT, member, str(exc)) from exc
    except OSError as exc:
        raise UnreadableImageError(IO_ERROR, member, str(exc)) from exc


def _open_pil(data: bytes, member: str | None) -> Image.Image:
    if len(data) == 0:
        raise UnreadableImageError(ZERO_BYTE, member, "file is empty (0 bytes)")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnreadableImageError(UNDECODABLE, member, "not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(UNDECODABLE, member, str(exc)) from exc


def decode_image(data: bytes, member: str | None = None) -> np.ndarray:
    """Decode image bytes to RGB uint8 (H, W, 3): grey -> 3 channels, alpha dropped, 16-bit -> 8-bit."""
    im = _open_pil(data, member)
    try:
        im.load()
    except OSError as exc:
        reason = TRUNCATED if "truncated" in str(exc).lower() else UNDECODABLE
        raise UnreadableImageError(reason, member, str(exc)) from exc
    except (SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(UNDECODABLE, member, str(exc)) from exc
    # Pillow may be configured (ImageFile.LOAD_TRUNCATED_IMAGES) to accept cut JPEGs: check the EOI marker.
    if im.format == "JPEG" and data.rfind(b"\xff\xd9") == -1:
        raise UnreadableImageError(TRUNCATED, member, "JPEG end-of-image marker missing")
    if im.mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if arr.dtype.kind == "f":
            arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255)
        elif arr.max(initial=0) > 255:
            arr = arr.astype(np.float64) / 257.0
        arr = np.rint(arr).clip(0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    # grey (L, LA, 1), palette, CMYK (Adobe-inverted JPEGs included), YCbCr, RGBA: alpha is dropped
    try:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise UnreadableImageError(UNDECODABLE, member, f"cannot convert mode {im.mode} to RGB: {exc}") from exc


def read_image(source: CelebASource | str | Path, member: str) -> np.ndarray:
    """One image as RGB uint8 (H, W, 3) from a folder or zip source (or its path).

    Raises ``UnreadableImageError`` (zero-byte, truncated, undecodable, corrupt archive member) and
    ``FileNotFoundError`` when the member is not there.
    """
    return decode_image(read_image_bytes(source, member), member)


def read_image_size(source: CelebASource | str | Path, member: str) -> tuple[int, int]:
    """(width, height) from the image header only (fast; does not detect truncation)."""
    im = _open_pil(read_image_bytes(source, member), member)
    return int(im.size[0]), int(im.size[1])


def template_landmarks(width: float, height: float) -> np.ndarray:
    """Mean aligned-CelebA landmarks scaled to a ``width`` x ``height`` image, shape (5, 2).

    Only meaningful for images aligned like ``img_align_celeba``.
    """
    w0, h0 = CELEBA_ALIGNED_SIZE
    pts = CELEBA_ALIGNED_MEAN_LANDMARKS.reshape(5, 2)
    return pts * np.array([width / w0, height / h0])


def aligned_face_region(width: float, height: float, margin: float) -> tuple[float, float, float, float]:
    """Where to look for the face in an aligned CelebA image of ``width`` x ``height``: the
    :data:`CELEBA_ALIGNED_FACE_BOX` grown by ``margin`` times its size on each side, as outer
    edges ``(x0, y0, x1, y1)`` in pixel-centre coordinates, clipped to the image."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    fx0, fy0, fx1, fy1 = CELEBA_ALIGNED_FACE_BOX
    mx, my = margin * (fx1 - fx0), margin * (fy1 - fy0)
    x0, x1 = max(0.0, fx0 - mx) * width, min(1.0, fx1 + mx) * width
    y0, y1 = max(0.0, fy0 - my) * height, min(1.0, fy1 + my) * height
    return x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5


# ---------------------------------------------------------------------------------- parsing --

_SPLIT = re.compile(r"[\s,]+")


def _text_lines(source, name: str | None) -> tuple[list[str], str]:
    if isinstance(source, AnnotationFile):
        data, label = source.read_bytes(), str(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "<bytes>"
    else:
        data, label = Path(source).read_bytes(), str(source)
    label = name or label
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.splitlines(), label


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _parse_table(source, name: str | None, columns: list[str], kind: type, with_count: bool
                 ) -> tuple[list[str], list[list], str]:
    """Rows ``<image name> v1 .. vn`` -> (ids, values, label); ValueError names file and line."""
    lines, label = _text_lines(source, name)
    n_values = len(columns)
    ids: list[str] = []
    values: list[list] = []
    first_line: dict[str, int] = {}
    declared = None
    seen_data = False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        tokens = [t for t in _SPLIT.split(line) if t]
        if not seen_data:
            if with_count and declared is None and len(tokens) == 1 and tokens[0].isdigit():
                declared = int(tokens[0])
                continue
            # a header: the column names, optionally after an id column name (Kaggle's CSVs)
            if not all(_is_number(t) for t in tokens[1:]) and (
                    tokens[-n_values:] == columns or tokens == columns
                    or (len(tokens) == n_values + 1 and not _is_image_name(tokens[0]))):
                continue
        if len(tokens) != n_values + 1:
            raise DataError(
                f"{label}, line {lineno}: expected {n_values + 1} fields (image name and {', '.join(columns)}), "
                f"found {len(tokens)}: {raw.strip()!r}. {ANNOTATION_HINT}")
        row = []
        for tok in tokens[1:]:
            try:
                row.append(kind(tok) if kind is float else int(tok))
            except ValueError:
                raise DataError(f"{label}, line {lineno}: {tok!r} is not "
                                f"{'a number' if kind is float else 'an integer'} in {raw.strip()!r}. "
                                f"{ANNOTATION_HINT}") from None
        iid = image_id(tokens[0])
        if iid in first_line:
            raise DataError(f"{label}, line {lineno}: image {tokens[0]!r} is listed again (first on line "
                            f"{first_line[iid]}). {ANNOTATION_HINT}")
        first_line[iid] = lineno
        ids.append(iid)
        values.append(row)
        seen_data = True
    if not ids:
        raise DataError(f"{label}: no data rows found. {ANNOTATION_HINT}")
    if declared is not None and declared != len(ids):
        logger.warning("%s declares %d rows but holds %d (incomplete file?)", label, declared, len(ids))
    return ids, values, label


def read_landmarks(source: str | Path | bytes | AnnotationFile, name: str | None = None) -> pd.DataFrame:
    """Parse ``list_landmarks_align_celeba.txt`` (or the wild ``list_landmarks_celeba.txt``, same
    format): index ``image_id``, the 10 LANDMARK_COLUMNS as float."""
    ids, values, _ = _parse_table(source, name, LANDMARK_COLUMNS, float, with_count=True)
    return pd.DataFrame(np.asarray(values, dtype=np.float64), index=pd.Index(ids, name="image_id"),
                        columns=LANDMARK_COLUMNS)


def read_partitions(source: str | Path | bytes | AnnotationFile, name: str | None = None) -> pd.Series:
    """Parse ``list_eval_partition.txt``: int Series (0 train, 1 val, 2 test) indexed by ``image_id``."""
    ids, values, label = _parse_table(source, name, ["partition"], int, with_count=False)
    s = pd.Series(np.asarray(values, dtype=np.int64)[:, 0], index=pd.Index(ids, name="image_id"), name="partition")
    bad = s[~s.isin([0, 1, 2])]
    if len(bad):
        raise DataError(f"{label}: partition must be 0, 1 or 2; image {bad.index[0]!r} has {int(bad.iloc[0])}. "
                        f"{ANNOTATION_HINT}")
    return s


def read_identities(source: str | Path | bytes | AnnotationFile, name: str | None = None) -> pd.Series:
    """Parse ``identity_CelebA.txt``: int Series of identity numbers indexed by ``image_id``."""
    ids, values, _ = _parse_table(source, name, ["identity"], int, with_count=False)
    return pd.Series(np.asarray(values, dtype=np.int64)[:, 0], index=pd.Index(ids, name="image_id"), name="identity")


def read_bboxes(source: str | Path | bytes | AnnotationFile, name: str | None = None) -> pd.DataFrame:
    """Parse ``list_bbox_celeba.txt``: index ``image_id``, BBOX_COLUMNS (``x_1 y_1 width height``) as float.

    Rows with a non-positive width or height are kept; callers ignore such boxes.
    """
    ids, values, _ = _parse_table(source, name, BBOX_COLUMNS, float, with_count=True)
    return pd.DataFrame(np.asarray(values, dtype=np.float64), index=pd.Index(ids, name="image_id"),
                        columns=BBOX_COLUMNS)
