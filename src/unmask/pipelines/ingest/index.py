"""Building ``celeba_index`` and ``quarantine``: the steps of :func:`.nodes.index_celeba_images`.

Images are checked (decoded, measured) and, where needed, run through the detector in chunks by
:func:`unmask.parallel.map_chunks`: worker processes when many images need the detector (each
process loads the detector models once, on its first detection), threads otherwise (decoding
releases the GIL). Workers return sizes and landmarks, never pixels, so memory does not grow with
the number of images.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unmask.imaging.celeba import (
    ALIGNED,
    WILD,
    CelebASource,
    image_id,
    list_images,
    read_bboxes,
    read_identities,
    read_landmarks,
    read_partitions,
)
from unmask.imaging.celeba_landmarks import CelebALandmarkFinder
from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.parallel import chunked, map_chunks, resolve_workers
from unmask.params.ingest import IngestParams
from unmask.pipelines.ingest.examine import (
    ANNOTATION,
    DETECTOR,
    DUPLICATE_ID,
    LANDMARKS_OUTSIDE,
    MISSING_FILE,
    TEMPLATE,
    ImageExaminer,
    Result,
    Task,
    make_detector,
)

logger = logging.getLogger(__name__)

INDEX_COLUMNS = ["image_id", "source", "member", "width", "height", "identity", "partition",
                 *LANDMARK_COLUMNS, "landmark_source"]
QUARANTINE_COLUMNS = ["image_id", "member", "reason", "detail"]
#: With ``executor: auto``, detection runs in worker processes from this many images on (below it,
#: starting the processes and loading the models in each costs more than it saves).
PROCESS_MIN_IMAGES = 200
#: Threads only help while decoding releases the GIL: more than this many do not pay.
MAX_THREADS = 8


@dataclass(frozen=True)
class Annotations:
    """The annotation tables of a source (None where its file is missing), indexed by image id."""

    landmarks: pd.DataFrame | None
    partitions: pd.Series | None
    identities: pd.Series | None
    bboxes: pd.DataFrame | None

    @classmethod
    def read(cls, source: CelebASource) -> Annotations:
        """Parse every annotation file the source has (face boxes only in the wild layout)."""
        return cls(landmarks=read_landmarks(source.landmarks) if source.landmarks else None,
                   partitions=read_partitions(source.partitions) if source.partitions else None,
                   identities=read_identities(source.identities) if source.identities else None,
                   bboxes=read_bboxes(source.bboxes) if source.layout == WILD and source.bboxes else None)


@dataclass
class Quarantine:
    """The skipped inputs, each with its reason and a detail for people."""

    rows: list[dict] = field(default_factory=list)

    def add(self, iid: str, member: str, reason: str, detail: str) -> None:
        self.rows.append({"image_id": iid, "member": member, "reason": reason, "detail": detail})

    def table(self) -> pd.DataFrame:
        """The ``quarantine`` table, sorted by image id."""
        return (pd.DataFrame(self.rows, columns=QUARANTINE_COLUMNS).astype(str)
                .sort_values(["image_id", "member"], kind="stable").reset_index(drop=True))


def unique_images(source: CelebASource, quarantine: Quarantine) -> dict[str, str]:
    """``{image id: member}`` of every image file; of duplicate ids (000001.jpg and 000001.png) the first in name
    order is kept and the others quarantined."""
    kept: dict[str, str] = {}
    for member in list_images(source):
        iid = image_id(member)
        if iid in kept:
            quarantine.add(iid, member, DUPLICATE_ID, f"image id {iid} already taken by {kept[iid]}")
        else:
            kept[iid] = member
    return kept


def quarantine_orphans(kept: dict[str, str], annotations: Annotations, quarantine: Quarantine) -> None:
    """Quarantine the annotation rows that have no image file."""
    kept_index = pd.Index(list(kept), dtype=str)
    annotated: dict[str, list[str]] = {}
    for label, table in (("landmarks", annotations.landmarks), ("bbox", annotations.bboxes),
                         ("partition", annotations.partitions), ("identity", annotations.identities)):
        if table is not None:
            for iid in table.index.difference(kept_index):
                annotated.setdefault(iid, []).append(label)
    for iid in sorted(annotated):
        quarantine.add(iid, f"{iid}.jpg", MISSING_FILE, f"has {'/'.join(annotated[iid])} annotations but no image file")


@dataclass(frozen=True)
class Todo:
    """The images to examine, in id order, with what is known of them before reading them."""

    items: list[tuple[str, str]]  # (image id, member)
    ids: pd.Index
    has_row: np.ndarray  # bool: the image has a complete landmark annotation row
    box_rows: np.ndarray | None  # (x, y, w, h) annotated face box per image (NaN: none), wild layout only

    @classmethod
    def plan(cls, kept: dict[str, str], annotations: Annotations, limit: int | None) -> Todo:
        """The first ``limit`` (None: all) kept images and their annotation rows."""
        items = list(kept.items())
        if limit is not None:
            items = items[:limit]
        ids = pd.Index([iid for iid, _ in items], dtype=str)
        has_row = (annotations.landmarks.reindex(ids).notna().all(axis=1).to_numpy()
                   if annotations.landmarks is not None else np.zeros(len(items), dtype=bool))
        box_rows = annotations.bboxes.reindex(ids).to_numpy() if annotations.bboxes is not None else None
        return cls(items, ids, has_row, box_rows)

    @property
    def n_need(self) -> int:
        """How many images have no landmark annotation row."""
        return int((~self.has_row).sum())

    def tasks(self) -> Iterator[Task]:
        """One examiner task per image, in order."""
        for k, (_, member) in enumerate(self.items):
            box = self.box_rows[k] if self.box_rows is not None else None
            usable_box = box is not None and not np.isnan(box).any()
            yield member, not self.has_row[k], tuple(box.tolist()) if usable_box else None


def make_examiner(source: CelebASource, settings: IngestParams, todo: Todo) -> ImageExaminer:
    """The examiner for ``settings``; it loads the detector only when some image needs it."""
    finder = None
    if todo.n_need and settings.landmark_fallback == DETECTOR:
        margin = settings.aligned_region_margin
        finder = CelebALandmarkFinder(make_detector(settings.detector), aligned=source.layout != WILD,
                                      aligned_region_margin=None if margin is None else float(margin),
                                      aligned_cnn=settings.aligned_cnn)
    return ImageExaminer(source=source, check=settings.check, min_size=settings.min_size,
                         fallback=settings.landmark_fallback, finder=finder)


def pool_plan(settings: IngestParams, n_images: int, n_detect: int) -> tuple[int, int, bool]:
    """``(workers, chunk size, threads)`` for ``ingest.executor``: ``process``, ``thread`` (at most
    :data:`MAX_THREADS`), or ``auto``: processes once :data:`PROCESS_MIN_IMAGES` images need the detector."""
    workers = resolve_workers(settings.workers)
    executor = settings.executor
    if executor == "auto":
        executor = "process" if n_detect and workers > 1 and n_detect >= PROCESS_MIN_IMAGES else "thread"
    if executor == "thread":
        workers = min(workers, MAX_THREADS)
    chunk = max(1, min(settings.chunk_size, math.ceil(n_images / (4 * workers))))
    return workers, chunk, executor == "thread"


@dataclass
class Examined:
    """What examining every image of a :class:`Todo` found (arrays in its order)."""

    ok: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    coords: np.ndarray  # landmarks found by the examiner (NaN: from the annotation, or none)
    landmark_source: np.ndarray
    methods: Counter  # detections by method

    @classmethod
    def empty(cls, n: int) -> Examined:
        return cls(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
                   np.full((n, len(LANDMARK_COLUMNS)), np.nan), np.full(n, ANNOTATION, dtype=object), Counter())

    def record(self, k: int, result: Result) -> tuple[str, str] | None:
        """Store the result of image ``k``; its ``(reason, detail)`` when it is to be quarantined."""
        w, h, reason, detail, pts, src, method = result
        if reason is not None:
            return reason, detail
        self.ok[k] = True
        self.widths[k], self.heights[k] = w, h
        if pts is not None:
            self.coords[k] = pts
            self.landmark_source[k] = src
            if method:
                self.methods[method] += 1
        return None


def examine_all(todo: Todo, examiner: ImageExaminer, settings: IngestParams, desc: str,
                quarantine: Quarantine) -> Examined:
    """Examine every image in chunks (in worker processes or threads, see :func:`pool_plan`); quarantine the bad
    ones."""
    n_detect = todo.n_need if examiner.finder is not None else 0
    workers, chunk, threads = pool_plan(settings, len(todo.items), n_detect)
    if todo.n_need:
        logger.info("%d of %d image(s) have no landmark annotation: landmarks from the %s (%s, %d %s).",
                    todo.n_need, len(todo.items), "face detector" if examiner.fallback == DETECTOR else "template",
                    examiner.source.layout, workers, "threads" if threads else "processes")
    examined = Examined.empty(len(todo.items))
    results = map_chunks(examiner.run, chunked(todo.tasks(), chunk), workers=workers, total=len(todo.items),
                         desc=desc, threads=threads)
    for k, result in enumerate(itertools.chain.from_iterable(results)):
        problem = examined.record(k, result)
        if problem is not None:
            quarantine.add(*todo.items[k], *problem)
    return examined


def build_index(source: CelebASource, todo: Todo, examined: Examined, annotations: Annotations) -> pd.DataFrame:
    """One row per usable image (``INDEX_COLUMNS``): size, identity, partition and the five landmarks."""
    sel = np.flatnonzero(examined.ok)
    ids = todo.ids[sel]
    index = pd.DataFrame({"image_id": pd.Series(ids, dtype=str), "source": source.location,
                          "member": pd.Series([todo.items[k][1] for k in sel], dtype=str),
                          "width": examined.widths[sel], "height": examined.heights[sel]})
    for col, table in (("identity", annotations.identities), ("partition", annotations.partitions)):
        values = table.reindex(ids) if table is not None else pd.Series(pd.NA, index=ids)
        index[col] = pd.array(values.to_numpy(dtype=object, na_value=pd.NA), dtype="Int64")
    coords = examined.coords
    if annotations.landmarks is not None and todo.has_row[sel].any():
        rows = sel[todo.has_row[sel]]
        coords[rows] = annotations.landmarks.reindex(todo.ids[rows]).to_numpy()
    for k, col in enumerate(LANDMARK_COLUMNS):
        index[col] = coords[sel][:, k]
    index["landmark_source"] = pd.Series(examined.landmark_source[sel], dtype=str)
    return index


def drop_landmarks_outside(index: pd.DataFrame, layout: str, quarantine: Quarantine) -> pd.DataFrame:
    """The index without (and the quarantine with) the images whose landmarks fall outside them, sorted by id."""
    coords = index[LANDMARK_COLUMNS].to_numpy()
    xs, ys = coords[:, 0::2], coords[:, 1::2]
    w_arr, h_arr = index["width"].to_numpy()[:, None], index["height"].to_numpy()[:, None]
    outside = ((xs < 0) | (ys < 0) | (xs > w_arr - 1) | (ys > h_arr - 1)).any(axis=1)
    for row in index.loc[outside, ["image_id", "member", "width", "height", "landmark_source"]].itertuples(index=False):
        hint = " (not an aligned image?)" if row.landmark_source == ANNOTATION and layout == ALIGNED else ""
        quarantine.add(row.image_id, row.member, LANDMARKS_OUTSIDE,
                       f"{row.landmark_source} landmarks fall outside the {row.width}x{row.height} image{hint}")
    return index.loc[~outside].sort_values("image_id", kind="stable").reset_index(drop=True)[INDEX_COLUMNS]


def log_landmark_origin(annotations: Annotations, source: CelebASource, todo: Todo, fallback: str) -> None:
    """Warn when landmarks come from somewhere else than the annotation file for some images."""
    how = "face detector" if fallback == DETECTOR else fallback
    if annotations.landmarks is not None and todo.n_need:
        logger.warning("%d image(s) have no row in %s: landmarks from the %s for them.", todo.n_need,
                       source.landmarks, how)
    elif annotations.landmarks is None:
        logger.warning("No landmark annotation file: landmarks from the %s for all %d images%s.", how,
                       len(todo.items), " (the template is valid only for aligned images)" if fallback == TEMPLATE
                       else "")
