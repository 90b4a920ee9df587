"""Ingest: find CelebA (or generate the embedded demo) and index every usable image.

Bad images never crash the run and never vanish silently: each one skipped goes to the
``quarantine`` table with its reason. Only systemic problems raise (nothing usable at all, an
annotation file that does not parse, the face detector missing when it is needed).

Landmarks
---------
Each index row says where its five landmarks come from (``landmark_source``):

* ``annotation``: the row of ``list_landmarks_align_celeba.txt`` (aligned layout) or
  ``list_landmarks_celeba.txt`` (in-the-wild layout);
* ``detector``: no annotation row, so the offline dlib detector found the face
  (:mod:`unmask.imaging.celeba_landmarks`: where CelebA puts it, the largest, most central one);
* ``template``: the detector found no face on an already *aligned* image (``img_align_celeba``),
  so the mean aligned-CelebA landmarks scaled to the image are used. On in-the-wild images a
  failed detection quarantines the image (``no_face_found``) instead.

``landmark_fallback: template`` skips the detector: the template for every unannotated aligned
image (the old behaviour), and quarantine (``no_landmarks``) for unannotated wild images.
The steps of indexing are in :mod:`~unmask.pipelines.ingest.index`, the check of one image in
:mod:`~unmask.pipelines.ingest.examine`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from unmask.errors import DataError
from unmask.imaging.celeba import ALIGNED, WILD, locate_celeba
from unmask.imaging.demo_faces import generate_demo_celeba
from unmask.params import validated
from unmask.params.ingest import IngestParams
from unmask.pipelines.ingest.examine import DETECTOR, LANDMARK_SOURCES
from unmask.pipelines.ingest.index import (
    Annotations,
    Quarantine,
    Todo,
    build_index,
    drop_landmarks_outside,
    examine_all,
    log_landmark_origin,
    make_examiner,
    quarantine_orphans,
    unique_images,
)
from unmask.pipelines.ingest.metrics import ingest_metrics, log_indexing

# LANDMARK_SOURCES and ingest_metrics: for benchmarks/bench_ingest.py, which runs these nodes without Kedro
__all__ = ["LANDMARK_SOURCES", "index_celeba_images", "ingest_metrics", "locate_celeba_source", "report_ingest"]

logger = logging.getLogger(__name__)

_SWITCH = "--params ingest.source=celeba,ingest.celeba_path=<folder or img_align_celeba.zip>"


def _celeba_source(settings: IngestParams) -> dict | None:
    """CelebA at ``celeba_path`` as a ``celeba_source`` dict; None (logged) when ``auto`` finds none there."""
    try:
        source = locate_celeba(settings.celeba_path)
    except FileNotFoundError as exc:
        if settings.source == "celeba":
            raise
        level = logging.WARNING if Path(settings.celeba_path).exists() else logging.INFO
        logger.log(level, "ingest.source=auto: no usable CelebA at %s (%s); using the embedded demo. "
                   "To use CelebA, put it there or run with %s.", settings.celeba_path, str(exc).split(". ")[0],
                   _SWITCH)
        return None
    logger.info("Using CelebA (%s, %s layout) at %s (ingest.source=%s).", source.kind, source.layout,
                source.location, settings.source)
    wanted = ("landmarks", "partitions", "identities") + (("bboxes",) if source.layout == WILD else ())
    missing = [k for k in wanted if getattr(source, k) is None]
    if missing:
        logger.warning("CelebA annotation files not found for: %s (looked beside the images, in Anno/, "
                       "Eval/ and inside the zip); images without landmark annotations %s, and no "
                       "identity/partition.", ", ".join(missing), _fallback_words(settings.landmark_fallback,
                                                                                  source.layout))
    return {"kind": source.kind, "layout": source.layout, "path": settings.celeba_path, "images": source.location,
            "dataset": "celeba"}


def _fallback_words(fallback: str, layout: str) -> str:
    if fallback != DETECTOR:
        return f"get {fallback} landmarks"
    return "get landmarks from the face detector" + (
        " (the aligned-CelebA template where it finds no face)" if layout == ALIGNED else
        " (quarantined where it finds no face)")


def _demo_source(settings: IngestParams) -> dict:
    """The embedded demo at ``demo_path`` (generated when missing) as a ``celeba_source`` dict."""
    root = generate_demo_celeba(settings.demo_path, n_images=settings.demo_images,
                                n_identities=settings.demo_identities, seed=settings.seed)
    source = locate_celeba(root)
    logger.info("Using the embedded demo dataset at %s: procedural faces in CelebA's format, not CelebA "
                "(results are not comparable with the paper). Switch with %s.", settings.demo_path, _SWITCH)
    return {"kind": source.kind, "layout": source.layout, "path": settings.demo_path, "images": source.location,
            "dataset": "demo"}


def locate_celeba_source(params: dict) -> dict:
    """Pick the data source from ``params`` (the ``ingest`` group): real CelebA or the demo.

    ``auto`` uses CelebA at ``celeba_path`` when usable, else the demo at ``demo_path``;
    ``celeba`` fails at once with instructions when CelebA is not there. Returns a JSON-able dict
    (``kind``, ``layout``, ``path``, ``images``, ``dataset``).
    """
    settings = validated(IngestParams, "ingest", params)
    found = _celeba_source(settings) if settings.source in ("auto", "celeba") else None
    return found if found is not None else _demo_source(settings)


def index_celeba_images(source_info: dict, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index every usable image of the source: (``celeba_index``, ``quarantine``).

    One index row per usable image with size, identity, partition and the five landmarks
    (``landmark_source``: ``annotation``, ``detector`` or ``template``, see the module doc);
    skipped inputs go to quarantine, sorted by image id.
    """
    settings = validated(IngestParams, "ingest", params)
    source = locate_celeba(source_info["path"])
    annotations = Annotations.read(source)
    quarantine = Quarantine()
    kept = unique_images(source, quarantine)
    quarantine_orphans(kept, annotations, quarantine)
    todo = Todo.plan(kept, annotations, settings.limit)
    if not todo.items:
        raise DataError(f"No images to index in {source.location}")
    examiner = make_examiner(source, settings, todo)
    start = time.perf_counter()
    examined = examine_all(todo, examiner, settings, f"Indexing {source_info.get('dataset', 'celeba')}", quarantine)
    seconds = time.perf_counter() - start
    index = build_index(source, todo, examined, annotations)
    log_landmark_origin(annotations, source, todo, settings.landmark_fallback)
    index = drop_landmarks_outside(index, source.layout, quarantine)
    table = quarantine.table()
    log_indexing(index, table, source.location, len(todo.items), seconds, examined.methods)
    if index.empty:
        _raise_nothing_usable(source.location, len(todo.items), table)
    return index, table


def _raise_nothing_usable(location: str, n_checked: int, quarantine: pd.DataFrame) -> None:
    first = quarantine.iloc[0].to_dict() if len(quarantine) else None
    raise DataError(f"No usable image in {location}: all {n_checked} checked image(s) were quarantined "
                     f"({dict(Counter(quarantine['reason']))}); first: {first}")


def report_ingest(celeba_index: pd.DataFrame, quarantine: pd.DataFrame
                  ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Log the ingestion counts and return them twice: as the ``ingest_report`` JSON and in
    kedro-mlflow's ``{name: {"value", "step"}}`` form (``ingest_mlflow_metrics``, prefixed ``ingest.``)."""
    metrics = ingest_metrics(celeba_index, quarantine)
    logger.info("Ingestion: %s", ", ".join(f"{k.removeprefix('ingest.')}={int(v)}" for k, v in metrics.items()))
    for_mlflow = {k.removeprefix("ingest."): {"value": v, "step": 0} for k, v in metrics.items()}
    return metrics, for_mlflow
