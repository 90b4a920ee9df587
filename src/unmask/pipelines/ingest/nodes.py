"""Ingest: find CelebA (or generate the embedded demo) and index every usable image.

Bad images never crash the run and never vanish silently: each one skipped goes to the
``quarantine`` table with its reason. Only systemic problems raise (nothing usable at all, an
annotation file that does not parse, the face detector missing when it is needed).

Landmarks
---------
Each index row says where its five landmarks come from (``landmark_source``):

* ``annotation``: the row of ``list_landmarks_align_celeba.txt`` (aligned layout) or
  ``list_landmarks_celeba.txt`` (in-the-wild layout);
* ``detector``: no annotation row, so the offline dlib detector
  (:class:`unmask.imaging.landmark_detector.FaceLandmarkDetector`) found the face; with several
  faces the largest, most central one is kept (in the wild layout: the one inside the annotated
  box of ``list_bbox_celeba.txt``, which also limits the search to the area around that box). On
  aligned images HOG first searches only where aligned CelebA puts the face
  (``aligned_region_margin``; 4x cheaper, the same landmarks on 99 % of faces) and the whole image
  only when that finds nothing, without dlib's CNN unless ``aligned_cnn`` (the template catches
  what HOG misses there; the CNN costs ~0.1 s per try, 1.5 ms per image on average);
* ``template``: the detector found no face on an already *aligned* image (``img_align_celeba``),
  so the mean aligned-CelebA landmarks scaled to the image are used. On in-the-wild images a
  failed detection quarantines the image (``no_face_found``) instead.

``landmark_fallback: template`` skips the detector: the template for every unannotated aligned
image (the old behaviour), and quarantine (``no_landmarks``) for unannotated wild images.

Speed and memory
----------------
Images are checked (decoded, measured) and, where needed, run through the detector in chunks by a
pool of workers: processes when many images need the detector (each process loads the detector
models once, lazily, on its first detection), threads otherwise (decoding releases the GIL). Only
a bounded number of chunks is in flight at a time and workers return sizes and landmarks, never
pixels, so memory does not grow with the number of images.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from unmask.imaging.celeba import (
    ALIGNED,
    WILD,
    CelebASource,
    UnreadableImageError,
    aligned_face_region,
    image_id,
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

logger = logging.getLogger(__name__)

SOURCES = ("auto", "demo", "celeba")

#: Optional ``ingest`` parameters and their defaults (the required ones have no default).
OPTIONAL_PARAMS: dict = {
    "limit": None,  # index only the first N images (sorted by name)
    "min_size": 32,  # images narrower or shorter than this (pixels) are quarantined
    "check": "decode",  # "decode": decode every image (catches truncation); "header": read sizes only
    "workers": None,  # parallel workers (None: one per CPU core available to this process)
    "chunk_size": 256,  # images per task handed to a worker (smaller when there are few images)
    "landmark_fallback": "detector",  # where landmarks come from for images without annotation rows
    "executor": "auto",  # "process", "thread" or "auto" (processes when >= PROCESS_MIN_IMAGES need the detector)
    "detector": None,  # FaceLandmarkDetector settings, e.g. {"use_cnn": false}
    "aligned_cnn": False,  # aligned images: try dlib's CNN where HOG finds nothing, before the template
}
#: Aligned images: HOG first scans only the aligned-CelebA face box grown by this fraction of its
#: size (``ingest.aligned_region_margin``; null in the parameters scans the whole image at once).
ALIGNED_REGION_MARGIN = 0.1

INDEX_COLUMNS = ["image_id", "source", "member", "width", "height", "identity", "partition",
                 *LANDMARK_COLUMNS, "landmark_source"]
QUARANTINE_COLUMNS = ["image_id", "member", "reason", "detail"]

#: Values of ``landmark_source``.
ANNOTATION, DETECTOR, TEMPLATE = "annotation", "detector", "template"
LANDMARK_SOURCES = (ANNOTATION, DETECTOR, TEMPLATE)
#: Values of ``landmark_fallback``: where landmarks come from for images without an annotation row.
LANDMARK_FALLBACKS = (DETECTOR, TEMPLATE)
EXECUTORS = ("auto", "process", "thread")
#: With ``executor: auto``, detection runs in a process pool from this many images on (below it,
#: starting the processes and loading the models in each costs more than it saves).
PROCESS_MIN_IMAGES = 200
#: In the wild layout, detection searches the annotated face box enlarged by this fraction of its
#: larger side on every side.
BBOX_MARGIN = 0.3

# quarantine reasons besides UnreadableImageError.reason
MISSING_FILE = "missing_file"
DUPLICATE_ID = "duplicate_id"
TOO_SMALL = "too_small"
LANDMARKS_OUTSIDE = "landmarks_outside_image"
NO_FACE = "no_face_found"
NO_LANDMARKS = "no_landmarks"
DETECTOR_ERROR = "detector_error"
UNREADABLE = "unreadable"


def _option(params: dict, key: str):
    value = params.get(key)
    return OPTIONAL_PARAMS[key] if value is None else value


def _required(params: dict, key: str):
    if key not in params or params[key] is None:
        raise KeyError(f"ingest parameter '{key}' is missing (see conf/base/parameters_ingest.yml)")
    return params[key]


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def locate_celeba_source(params: dict) -> dict:
    """Pick the data source from ``params`` (the ``ingest`` group): real CelebA or the demo.

    ``auto`` uses CelebA at ``celeba_path`` when usable, else the demo at ``demo_path``;
    ``celeba`` fails at once with instructions when CelebA is not there. Returns a JSON-able dict
    (``kind``, ``layout``, ``path``, ``images``, ``dataset``).
    """
    choice = params.get("source", "auto")
    if choice not in SOURCES:
        raise ValueError(f"ingest.source must be one of {', '.join(SOURCES)}; got {choice!r}")
    switch = "--params ingest.source=celeba,ingest.celeba_path=<folder or img_align_celeba.zip>"
    if choice in ("auto", "celeba"):
        celeba_path = str(_required(params, "celeba_path"))
        try:
            source = locate_celeba(celeba_path)
        except FileNotFoundError as exc:
            if choice == "celeba":
                raise
            level = logging.WARNING if Path(celeba_path).exists() else logging.INFO
            logger.log(level, "ingest.source=auto: no usable CelebA at %s (%s); using the embedded demo. "
                       "To use CelebA, put it there or run with %s.", celeba_path,
                       str(exc).split(". ")[0], switch)
        else:
            wanted = ("landmarks", "partitions", "identities") + (("bboxes",) if source.layout == WILD else ())
            missing = [k for k in wanted if getattr(source, k) is None]
            logger.info("Using CelebA (%s, %s layout) at %s (ingest.source=%s).", source.kind, source.layout,
                        source.location, choice)
            if missing:
                fallback = str(_option(params, "landmark_fallback"))
                how = ("get landmarks from the face detector" + (
                    " (the aligned-CelebA template where it finds no face)" if source.layout == ALIGNED else
                    " (quarantined where it finds no face)") if fallback == DETECTOR
                       else f"get {fallback} landmarks")
                logger.warning("CelebA annotation files not found for: %s (looked beside the images, in Anno/, "
                               "Eval/ and inside the zip); images without landmark annotations %s, and no "
                               "identity/partition.", ", ".join(missing), how)
            return {"kind": source.kind, "layout": source.layout, "path": celeba_path, "images": source.location,
                    "dataset": "celeba"}

    demo_path = str(_required(params, "demo_path"))
    root = generate_demo_celeba(demo_path, n_images=int(_required(params, "demo_images")),
                                n_identities=int(_required(params, "demo_identities")),
                                seed=int(params.get("seed") or 0))
    source = locate_celeba(root)
    logger.info("Using the embedded demo dataset at %s: procedural faces in CelebA's format, not CelebA "
                "(results are not comparable with the paper). Switch with %s.", demo_path, switch)
    return {"kind": source.kind, "layout": source.layout, "path": demo_path, "images": source.location,
            "dataset": "demo"}


# ------------------------------------------------------------------------------- detection --


def _box_of(det: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in det.box)
    return x0, y0, x1, y1


def pick_face(detections: Sequence[Any], width: float, height: float,
              bbox: tuple[float, float, float, float] | None = None) -> Any | None:
    """The detection of the image's face: the largest, most central one; None when there is none.

    ``detections`` have a ``box`` ``(x0, y0, x1, y1)``. Each is ranked by its size (square root of
    the box area) divided by ``1 + distance of its centre from the reference centre / size``: the
    reference is the image centre, or the centre of ``bbox`` (``(x0, y0, x1, y1)``, an annotated
    face box) when given, in which case only detections centred inside ``bbox`` count.
    """
    if bbox is not None:
        bx0, by0, bx1, by1 = bbox
        ref = ((bx0 + bx1) / 2, (by0 + by1) / 2)
    else:
        ref = (width / 2 - 0.5, height / 2 - 0.5)
    best, best_rank = None, -math.inf
    for det in detections:
        x0, y0, x1, y1 = _box_of(det)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if bbox is not None and not (bx0 <= cx <= bx1 and by0 <= cy <= by1):
            continue
        size = math.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0))
        if size <= 0:
            continue
        rank = size / (1.0 + math.hypot(cx - ref[0], cy - ref[1]) / size)
        if rank > best_rank:
            best, best_rank = det, rank
    return best


# a detector object may not be used by two threads at once (dlib's are not thread-safe)
_DETECT_LOCK = threading.Lock()

#: One result per image: (width, height, quarantine reason or None, detail, 10 landmark values or
#: None, landmark source or None, detection method or "").
Result = tuple[int, int, "str | None", str, "np.ndarray | None", "str | None", str]


@dataclass
class _Examiner:
    """Checks one image and, when it has no annotated landmarks, finds them. Picklable: the
    detector (a :class:`FaceLandmarkDetector` pickles as its settings) loads its models lazily in
    whichever process uses it."""

    source: CelebASource
    check: str
    min_size: int
    fallback: str
    detector: Any = None
    aligned_region_margin: float | None = None
    aligned_cnn: bool = False

    def __call__(self, item: tuple[str, bool, tuple | None]) -> Result:
        member, needs_landmarks, bbox = item
        try:
            return self._examine(member, needs_landmarks, bbox)
        except UnreadableImageError as exc:
            return 0, 0, exc.reason, exc.detail, None, None, ""
        except FileNotFoundError as exc:
            return 0, 0, MISSING_FILE, f"file vanished while indexing: {exc}", None, None, ""
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop a 200k-image run
            return 0, 0, UNREADABLE, f"{type(exc).__name__}: {exc}", None, None, ""

    def _examine(self, member: str, needs_landmarks: bool, bbox: tuple | None) -> Result:
        image = None
        if self.check == "header" and not (needs_landmarks and self.fallback == DETECTOR):
            w, h = read_image_size(self.source, member)
        else:
            image = read_image(self.source, member)
            h, w = image.shape[:2]
        if w < self.min_size or h < self.min_size:
            return w, h, TOO_SMALL, f"{w}x{h} is under min_size {self.min_size} px", None, None, ""
        if not needs_landmarks:
            return w, h, None, "", None, None, ""
        aligned = self.source.layout != WILD
        if self.fallback == TEMPLATE:
            if aligned:
                return w, h, None, "", template_landmarks(w, h).reshape(-1), TEMPLATE, ""
            return (w, h, NO_LANDMARKS, "no landmark annotation, and the template (landmark_fallback: template) "
                    "only fits aligned images", None, None, "")
        try:
            det = self._detect(image, bbox)
        except Exception as exc:  # noqa: BLE001
            return w, h, DETECTOR_ERROR, f"{type(exc).__name__}: {exc}", None, None, ""
        if det is not None:
            return w, h, None, "", det[0], DETECTOR, det[1]
        if aligned:
            return w, h, None, "", template_landmarks(w, h).reshape(-1), TEMPLATE, ""
        where = "inside or around the annotated face box" if bbox is not None else "in the image"
        return w, h, NO_FACE, f"the face detector found no face {where}", None, None, ""

    def _detect(self, image: np.ndarray, bbox: tuple | None) -> tuple[np.ndarray, str] | None:
        h, w = image.shape[:2]
        region, ox, oy, ref = image, 0, 0, None
        if bbox is not None:
            bx, by, bw, bh = (float(v) for v in bbox)
            if bw > 0 and bh > 0 and bx < w and by < h and bx + bw > 0 and by + bh > 0:
                m = BBOX_MARGIN * max(bw, bh)
                x0, y0 = max(0, math.floor(bx - m)), max(0, math.floor(by - m))
                x1, y1 = min(w, math.ceil(bx + bw + m)), min(h, math.ceil(by + bh + m))
                if x1 - x0 >= 8 and y1 - y0 >= 8:
                    region, ox, oy = image[y0:y1, x0:x1], x0, y0
                # the box's outer edges, in the region's pixel-centre coordinates
                ref = (bx - 0.5 - ox, by - 0.5 - oy, bx + bw - 0.5 - ox, by + bh - 0.5 - oy)
        aligned = self.source.layout != WILD  # (face boxes exist only in the wild layout)
        found = []
        with _DETECT_LOCK:
            if aligned and self.aligned_region_margin is not None:
                found = self.detector.detect_in_region(
                    image, aligned_face_region(w, h, self.aligned_region_margin), masked=False)
            if not found:
                # aligned images fall back to the template, so the CNN (~0.1 s a try) is optional there
                found = self.detector.detect(region, masked=False,
                                             use_cnn=False if aligned and not self.aligned_cnn else None)
        best = pick_face(found, region.shape[1], region.shape[0], ref)
        if best is None:
            return None
        pts = np.asarray(best.landmarks, dtype=np.float64).reshape(5, 2) + (ox, oy)
        return pts.reshape(-1), str(getattr(best, "method", DETECTOR))

    def run(self, items: Sequence[tuple]) -> list[Result]:
        return [self(item) for item in items]


_WORKER: _Examiner | None = None


def _init_worker(examiner: _Examiner) -> None:
    """Process-pool initializer: keep the examiner; one OpenCV thread per process."""
    global _WORKER
    _WORKER = examiner
    try:
        import cv2  # noqa: PLC0415

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def _run_in_worker(items: Sequence[tuple]) -> list[Result]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(items)


def _make_detector(settings: dict | None) -> Any:
    """The face landmark detector (dlib); ImportError with install instructions when missing."""
    from unmask.imaging.landmark_detector import INSTALL_HINT, FaceLandmarkDetector, available  # noqa: PLC0415

    if not available():
        raise ImportError(
            f"ingest.landmark_fallback=detector needs the face landmark detector, which is not installed: "
            f"{INSTALL_HINT}. Or set ingest.landmark_fallback=template (aligned images only).")
    try:
        return FaceLandmarkDetector(**dict(settings or {}))
    except TypeError as exc:
        raise ValueError(f"ingest.detector has an unknown setting: {exc}") from None


def _stream(pool: Executor, fn: Callable[[Any], Any], tasks: Iterable[tuple[Any, Any]], max_pending: int
            ) -> Iterator[tuple[Any, Any]]:
    """``(key, fn(payload))`` for ``(key, payload)`` tasks as they complete, with at most
    ``max_pending`` submitted and not yet read (so memory stays bounded)."""
    pending: dict[Future, Any] = {}
    tasks = iter(tasks)

    def fill() -> None:
        while len(pending) < max_pending:
            task = next(tasks, None)
            if task is None:
                return
            key, payload = task
            pending[pool.submit(fn, payload)] = key

    fill()
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            yield pending.pop(fut), fut.result()
        fill()


# ---------------------------------------------------------------------------------- index ----


def _check_params(params: dict) -> tuple[str, str, str]:
    check = str(_option(params, "check"))
    if check not in ("decode", "header"):
        raise ValueError(f"ingest.check must be 'decode' or 'header'; got {check!r}")
    fallback = str(_option(params, "landmark_fallback"))
    if fallback not in LANDMARK_FALLBACKS:
        raise ValueError(f"ingest.landmark_fallback must be one of {', '.join(LANDMARK_FALLBACKS)}; got {fallback!r}")
    executor = str(_option(params, "executor"))
    if executor not in EXECUTORS:
        raise ValueError(f"ingest.executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    return check, fallback, executor


def index_celeba_images(source_info: dict, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index every usable image of the source: (``celeba_index``, ``quarantine``).

    One index row per usable image with size, identity, partition and the five landmarks
    (``landmark_source``: ``annotation``, ``detector`` or ``template``, see the module doc);
    skipped inputs go to quarantine, sorted by image id.
    """
    check, fallback, executor = _check_params(params)
    source = locate_celeba(source_info["path"])
    members = list_images(source)
    landmarks = read_landmarks(source.landmarks) if source.landmarks else None
    partitions = read_partitions(source.partitions) if source.partitions else None
    identities = read_identities(source.identities) if source.identities else None
    bboxes = read_bboxes(source.bboxes) if source.layout == WILD and source.bboxes else None
    quarantine: list[dict] = []

    def skip(iid: str, member: str, reason: str, detail: str) -> None:
        quarantine.append({"image_id": iid, "member": member, "reason": reason, "detail": detail})

    # duplicate ids (e.g. 000001.jpg and 000001.png): keep the first in name order
    kept: dict[str, str] = {}
    for member in members:
        iid = image_id(member)
        if iid in kept:
            skip(iid, member, DUPLICATE_ID, f"image id {iid} already taken by {kept[iid]}")
        else:
            kept[iid] = member
    del members

    # annotation rows without an image file
    kept_index = pd.Index(list(kept), dtype=str)
    annotated: dict[str, list[str]] = {}
    for label, table in (("landmarks", landmarks), ("bbox", bboxes), ("partition", partitions),
                         ("identity", identities)):
        if table is not None:
            for iid in table.index.difference(kept_index):
                annotated.setdefault(iid, []).append(label)
    for iid in sorted(annotated):
        skip(iid, f"{iid}.jpg", MISSING_FILE, f"has {'/'.join(annotated[iid])} annotations but no image file")

    todo = list(kept.items())
    del kept, kept_index
    limit = _option(params, "limit")
    if limit is not None:
        todo = todo[: int(limit)]
    if not todo:
        raise ValueError(f"No images to index in {source.location}")

    todo_ids = pd.Index([iid for iid, _ in todo], dtype=str)
    has_row = (landmarks.reindex(todo_ids).notna().all(axis=1).to_numpy() if landmarks is not None
               else np.zeros(len(todo), dtype=bool))
    box_rows = bboxes.reindex(todo_ids).to_numpy() if bboxes is not None else None
    n_need = int((~has_row).sum())

    detector = None
    if n_need and fallback == DETECTOR:
        detector = _make_detector(_option(params, "detector"))
    margin = params.get("aligned_region_margin", ALIGNED_REGION_MARGIN)
    if margin is not None and not (isinstance(margin, (int, float)) and 0 <= margin <= 2):
        raise ValueError(f"ingest.aligned_region_margin must be a number from 0 to 2 (a fraction of the "
                         f"face box), or null to search the whole image; got {margin!r}")
    aligned_cnn = _option(params, "aligned_cnn")
    if not isinstance(aligned_cnn, bool):
        raise ValueError(f"ingest.aligned_cnn must be true or false, got {aligned_cnn!r}")
    examiner = _Examiner(source=source, check=check, min_size=int(_option(params, "min_size")),
                         fallback=fallback, detector=detector,
                         aligned_region_margin=None if margin is None else float(margin), aligned_cnn=aligned_cnn)
    workers = max(1, int(_option(params, "workers") or _cpu_count()))
    if executor == "auto":
        executor = "process" if detector is not None and workers > 1 and n_need >= PROCESS_MIN_IMAGES else "thread"
    if executor == "thread":
        workers = min(workers, 8)
    chunk = max(1, int(_option(params, "chunk_size")))
    chunk = max(1, min(chunk, math.ceil(len(todo) / (4 * workers))))

    def tasks() -> Iterator[tuple[range, list]]:
        for start in range(0, len(todo), chunk):
            part = range(start, min(start + chunk, len(todo)))
            yield part, [(todo[k][1], not has_row[k], tuple(box_rows[k].tolist())
                          if box_rows is not None and not np.isnan(box_rows[k]).any() else None) for k in part]

    ok = np.zeros(len(todo), dtype=bool)
    widths = np.zeros(len(todo), dtype=np.int64)
    heights = np.zeros(len(todo), dtype=np.int64)
    coords = np.full((len(todo), len(LANDMARK_COLUMNS)), np.nan)
    lm_source = np.full(len(todo), ANNOTATION, dtype=object)
    methods: Counter = Counter()
    by_source: Counter = Counter()

    if executor == "process":
        pool: Executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(examiner,))
        fn: Callable[[list], list] = _run_in_worker
    else:
        pool = ThreadPoolExecutor(max_workers=workers)
        fn = examiner.run
    if n_need:
        logger.info("%d of %d image(s) have no landmark annotation: landmarks from the %s (%s, %d %s).",
                    n_need, len(todo), "face detector" if fallback == DETECTOR else "template",
                    source.layout, workers, "processes" if executor == "process" else "threads")
    t0 = time.perf_counter()
    with pool, tqdm(total=len(todo), desc=f"Indexing {source_info.get('dataset', 'celeba')}", unit="img",
                    mininterval=1.0) as bar:
        for part, results in _stream(pool, fn, tasks(), 2 * workers):
            for k, (w, h, reason, detail, pts, src, method) in zip(part, results):
                if reason is not None:
                    skip(*todo[k], reason, detail)
                    continue
                ok[k] = True
                widths[k], heights[k] = w, h
                if pts is not None:
                    coords[k] = pts
                    lm_source[k] = src
                    if method:
                        methods[method] += 1
                by_source[lm_source[k]] += 1
            bar.update(len(part))
            bar.set_postfix(ok=int(ok.sum()), quarantined=len(quarantine),
                            **{k: v for k, v in by_source.items() if k != ANNOTATION}, refresh=False)
    seconds = time.perf_counter() - t0

    sel = np.flatnonzero(ok)
    ids = todo_ids[sel]
    index = pd.DataFrame({"image_id": pd.Series(ids, dtype=str), "source": source.location,
                          "member": pd.Series([todo[k][1] for k in sel], dtype=str),
                          "width": widths[sel], "height": heights[sel]})
    for col, table in (("identity", identities), ("partition", partitions)):
        values = table.reindex(ids) if table is not None else pd.Series(pd.NA, index=ids)
        index[col] = pd.array(values.to_numpy(dtype=object, na_value=pd.NA), dtype="Int64")
    if landmarks is not None and has_row[sel].any():
        rows = sel[has_row[sel]]
        coords[rows] = landmarks.reindex(todo_ids[rows]).to_numpy()
    coords = coords[sel]
    for k, col in enumerate(LANDMARK_COLUMNS):
        index[col] = coords[:, k]
    index["landmark_source"] = pd.Series(lm_source[sel], dtype=str)
    if landmarks is not None and n_need:
        logger.warning("%d image(s) have no row in %s: landmarks from the %s for them.", n_need, source.landmarks,
                       "face detector" if fallback == DETECTOR else fallback)
    elif landmarks is None:
        logger.warning("No landmark annotation file: landmarks from the %s for all %d images%s.",
                       "face detector" if fallback == DETECTOR else f"{fallback}", len(todo),
                       " (the template is valid only for aligned images)" if fallback == TEMPLATE else "")

    # landmarks must lie inside the image
    xs, ys = coords[:, 0::2], coords[:, 1::2]
    w_arr, h_arr = index["width"].to_numpy()[:, None], index["height"].to_numpy()[:, None]
    outside = ((xs < 0) | (ys < 0) | (xs > w_arr - 1) | (ys > h_arr - 1)).any(axis=1)
    for row in index.loc[outside, ["image_id", "member", "width", "height", "landmark_source"]].itertuples(index=False):
        hint = " (not an aligned image?)" if row.landmark_source == ANNOTATION and source.layout == ALIGNED else ""
        skip(row.image_id, row.member, LANDMARKS_OUTSIDE,
             f"{row.landmark_source} landmarks fall outside the {row.width}x{row.height} image{hint}")
    index = index.loc[~outside].sort_values("image_id", kind="stable").reset_index(drop=True)[INDEX_COLUMNS]

    quarantine_df = (pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS).astype(str)
                     .sort_values(["image_id", "member"], kind="stable").reset_index(drop=True))
    counts = Counter(quarantine_df["reason"])
    sources = Counter(index["landmark_source"])
    logger.info("Indexed %d usable image(s) from %s in %.1f s (%.0f images/s); quarantined %d%s.", len(index),
                source.location, seconds, len(todo) / max(seconds, 1e-9), len(quarantine_df),
                (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")") if counts else "")
    logger.info("Landmarks by source: %s%s.", ", ".join(f"{k}: {sources.get(k, 0)}" for k in LANDMARK_SOURCES),
                (" (detections by method: " + ", ".join(f"{k}: {v}" for k, v in sorted(methods.items())) + ")")
                if methods else "")
    if index.empty:
        raise ValueError(
            f"No usable image in {source.location}: all {len(todo)} checked image(s) were quarantined "
            f"({dict(counts)}); first: {quarantine_df.iloc[0].to_dict() if len(quarantine_df) else None}")
    return index, quarantine_df


# -------------------------------------------------------------------------------- metrics ----


def ingest_metrics(celeba_index: pd.DataFrame, quarantine: pd.DataFrame) -> dict[str, float]:
    """Counts for MLflow: ``ingest.images``, ``ingest.landmarks.<source>`` (all three sources),
    ``ingest.quarantined`` and ``ingest.quarantined.<reason>`` (reasons that occur)."""
    metrics: dict[str, float] = {"ingest.images": float(len(celeba_index))}
    sources = Counter(celeba_index["landmark_source"].astype(str)) if "landmark_source" in celeba_index else Counter()
    for name in (*LANDMARK_SOURCES, *sorted(set(sources) - set(LANDMARK_SOURCES))):
        metrics[f"ingest.landmarks.{name}"] = float(sources.get(name, 0))
    metrics["ingest.quarantined"] = float(len(quarantine))
    for reason, n in sorted(Counter(quarantine["reason"].astype(str)).items()):
        metrics[f"ingest.quarantined.{reason}"] = float(n)
    return metrics


def report_ingest(celeba_index: pd.DataFrame, quarantine: pd.DataFrame
                  ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Log the ingestion counts and return them twice: as the ``ingest_report`` JSON and in
    kedro-mlflow's ``{name: {"value", "step"}}`` form (``ingest_mlflow_metrics``, prefixed ``ingest.``)."""
    metrics = ingest_metrics(celeba_index, quarantine)
    logger.info("Ingestion: %s", ", ".join(f"{k.removeprefix('ingest.')}={int(v)}" for k, v in metrics.items()))
    for_mlflow = {k.removeprefix("ingest."): {"value": v, "step": 0} for k, v in metrics.items()}
    return metrics, for_mlflow
