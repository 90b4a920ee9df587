"""Ingest: find CelebA (or generate the embedded demo) and index every usable image.

Bad images never crash the run and never vanish silently: each one skipped goes to the
``quarantine`` table with its reason. Only systemic problems raise (nothing usable at all, an
annotation file that does not parse).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from unmask.imaging.celeba import (
    CelebASource,
    UnreadableImageError,
    image_id,
    list_images,
    locate_celeba,
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
    "workers": None,  # threads checking images (None: one per CPU, at most 8)
    "chunk_size": 512,  # images per progress-bar step
    "landmark_fallback": "template",  # where landmarks come from for images without annotation rows
}

INDEX_COLUMNS = ["image_id", "source", "member", "width", "height", "identity", "partition",
                 *LANDMARK_COLUMNS, "landmark_source"]
QUARANTINE_COLUMNS = ["image_id", "member", "reason", "detail"]

# quarantine reasons besides UnreadableImageError.reason
MISSING_FILE = "missing_file"
DUPLICATE_ID = "duplicate_id"
TOO_SMALL = "too_small"
LANDMARKS_OUTSIDE = "landmarks_outside_image"


def _option(params: dict, key: str):
    value = params.get(key)
    return OPTIONAL_PARAMS[key] if value is None else value


def _required(params: dict, key: str):
    if key not in params or params[key] is None:
        raise KeyError(f"ingest parameter '{key}' is missing (see conf/base/parameters_ingest.yml)")
    return params[key]


def locate_celeba_source(params: dict) -> dict:
    """Pick the data source from ``params`` (the ``ingest`` group): real CelebA or the demo.

    ``auto`` uses CelebA at ``celeba_path`` when usable, else the demo at ``demo_path``;
    ``celeba`` fails at once with instructions when CelebA is not there. Returns a JSON-able dict.
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
            missing = [k for k in ("landmarks", "partitions", "identities") if getattr(source, k) is None]
            logger.info("Using CelebA (%s) at %s (ingest.source=%s).", source.kind, source.location, choice)
            if missing:
                logger.warning("CelebA annotation files not found for: %s (looked beside the images, in Anno/, "
                               "Eval/ and inside the zip); images without annotations get template landmarks "
                               "and no identity/partition.", ", ".join(missing))
            return {"kind": source.kind, "path": celeba_path, "images": source.location, "dataset": "celeba"}

    demo_path = str(_required(params, "demo_path"))
    root = generate_demo_celeba(demo_path, n_images=int(_required(params, "demo_images")),
                                n_identities=int(_required(params, "demo_identities")),
                                seed=int(params.get("seed") or 0))
    source = locate_celeba(root)
    logger.info("Using the embedded demo dataset at %s: procedural faces in CelebA's format, not CelebA "
                "(results are not comparable with the paper). Switch with %s.", demo_path, switch)
    return {"kind": source.kind, "path": demo_path, "images": source.location, "dataset": "demo"}


# ------------------------------------------------------------------------------- landmarks --

#: Fallbacks for images without an annotation row: name -> fn(widths, heights) -> (n, 10) array.
#: The template is only valid for aligned images; a face-landmark detector registers here later.
LandmarkFallback = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _template_fallback(widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Mean aligned-CelebA landmarks scaled to each image size (valid for aligned images only)."""
    out = np.empty((len(widths), len(LANDMARK_COLUMNS)))
    sizes = np.stack([widths, heights], axis=1)
    for w, h in np.unique(sizes, axis=0):
        out[(sizes == (w, h)).all(axis=1)] = template_landmarks(float(w), float(h)).reshape(-1)
    return out


LANDMARK_FALLBACKS: dict[str, LandmarkFallback] = {"template": _template_fallback}


# ---------------------------------------------------------------------------------- index ----


def _checker(source: CelebASource, mode: str) -> Callable[[str], tuple[int, int]]:
    if mode == "decode":
        def check(member: str) -> tuple[int, int]:
            h, w = read_image(source, member).shape[:2]
            return w, h
        return check
    if mode == "header":
        return lambda member: read_image_size(source, member)
    raise ValueError(f"ingest.check must be 'decode' or 'header'; got {mode!r}")


def _safe(check: Callable[[str], tuple[int, int]], member: str):
    try:
        return check(member)
    except UnreadableImageError as exc:
        return exc.reason, exc.detail
    except FileNotFoundError as exc:
        return MISSING_FILE, f"file vanished while indexing: {exc}"
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop a 200k-image run
        return "unreadable", f"{type(exc).__name__}: {exc}"


def index_celeba_images(source_info: dict, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index every usable image of the source: (``celeba_index``, ``quarantine``).

    One index row per usable image with size, identity, partition and the five landmarks
    (``landmark_source`` says ``annotation`` or the fallback used); skipped inputs go to quarantine.
    """
    source = locate_celeba(source_info["path"])
    members = list_images(source)
    landmarks = read_landmarks(source.landmarks) if source.landmarks else None
    partitions = read_partitions(source.partitions) if source.partitions else None
    identities = read_identities(source.identities) if source.identities else None
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

    # annotation rows without an image file
    annotated: dict[str, list[str]] = {}
    for label, table in (("landmarks", landmarks), ("partition", partitions), ("identity", identities)):
        if table is not None:
            for iid in table.index.difference(pd.Index(list(kept), dtype=table.index.dtype)):
                annotated.setdefault(iid, []).append(label)
    for iid in sorted(annotated):
        skip(iid, f"{iid}.jpg", MISSING_FILE, f"has {'/'.join(annotated[iid])} annotations but no image file")

    todo = list(kept.items())
    limit = _option(params, "limit")
    if limit is not None:
        todo = todo[: int(limit)]
    if not todo:
        raise ValueError(f"No images to index in {source.location}")

    min_size = int(_option(params, "min_size"))
    check = _checker(source, str(_option(params, "check")))
    workers = int(_option(params, "workers") or min(8, os.cpu_count() or 1))
    chunk = max(1, int(_option(params, "chunk_size")))
    ids, names, widths, heights = [], [], [], []
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
            total=len(todo), desc=f"Indexing {source_info.get('dataset', 'celeba')}", unit="img",
            mininterval=1.0) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start: start + chunk]
            for (iid, member), result in zip(part, pool.map(lambda m: _safe(check, m[1]), part)):
                if isinstance(result[0], str):
                    skip(iid, member, result[0], result[1])
                elif result[0] < min_size or result[1] < min_size:
                    skip(iid, member, TOO_SMALL, f"{result[0]}x{result[1]} is under min_size {min_size} px")
                else:
                    ids.append(iid)
                    names.append(member)
                    widths.append(result[0])
                    heights.append(result[1])
            bar.update(len(part))
            bar.set_postfix(ok=len(ids), quarantined=len(quarantine), refresh=False)

    index = pd.DataFrame({"image_id": pd.Series(ids, dtype=str), "source": source.location,
                          "member": pd.Series(names, dtype=str),
                          "width": np.asarray(widths, dtype=np.int64), "height": np.asarray(heights, dtype=np.int64)})
    id_index = pd.Index(ids, dtype=str)
    for col, table in (("identity", identities), ("partition", partitions)):
        values = table.reindex(id_index) if table is not None else pd.Series(pd.NA, index=id_index)
        index[col] = pd.array(values.to_numpy(dtype=object, na_value=pd.NA), dtype="Int64")

    coords = np.full((len(ids), len(LANDMARK_COLUMNS)), np.nan)
    lm_source = np.empty(len(ids), dtype=object)
    has_row = np.zeros(len(ids), dtype=bool)
    if landmarks is not None and len(ids):
        found = landmarks.reindex(id_index)
        has_row = found.notna().all(axis=1).to_numpy()
        coords[has_row] = found.to_numpy()[has_row]
        lm_source[has_row] = "annotation"
    fallback_name = str(_option(params, "landmark_fallback"))
    if fallback_name not in LANDMARK_FALLBACKS:
        raise ValueError(f"ingest.landmark_fallback must be one of {sorted(LANDMARK_FALLBACKS)}; got {fallback_name!r}")
    if (~has_row).any():
        w, h = index["width"].to_numpy()[~has_row], index["height"].to_numpy()[~has_row]
        coords[~has_row] = LANDMARK_FALLBACKS[fallback_name](w, h)
        lm_source[~has_row] = fallback_name
        if landmarks is not None:
            logger.warning("%d image(s) have no row in %s: using %s landmarks for them.",
                           int((~has_row).sum()), source.landmarks, fallback_name)
        else:
            logger.warning("No landmark annotation file: using %s landmarks for all %d images "
                           "(valid only for aligned images).", fallback_name, int((~has_row).sum()))
    for k, col in enumerate(LANDMARK_COLUMNS):
        index[col] = coords[:, k]
    index["landmark_source"] = pd.Series(lm_source, dtype=str)

    # annotated landmarks must lie inside the image
    xs, ys = coords[:, 0::2], coords[:, 1::2]
    w_arr, h_arr = index["width"].to_numpy()[:, None], index["height"].to_numpy()[:, None]
    outside = ((xs < 0) | (ys < 0) | (xs > w_arr - 1) | (ys > h_arr - 1)).any(axis=1)
    for row in index.loc[outside, ["image_id", "member", "width", "height"]].itertuples(index=False):
        skip(row.image_id, row.member, LANDMARKS_OUTSIDE,
             f"annotated landmarks fall outside the {row.width}x{row.height} image (not an aligned image?)")
    index = index.loc[~outside].sort_values("image_id", kind="stable").reset_index(drop=True)[INDEX_COLUMNS]

    quarantine_df = pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS).astype(str)
    counts = Counter(quarantine_df["reason"])
    logger.info("Indexed %d usable image(s) from %s; quarantined %d%s.", len(index), source.location,
                len(quarantine_df), (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")")
                if counts else "")
    if index.empty:
        raise ValueError(
            f"No usable image in {source.location}: all {len(todo)} checked image(s) were quarantined "
            f"({dict(counts)}); first: {quarantine_df.iloc[0].to_dict() if len(quarantine_df) else None}")
    return index, quarantine_df
