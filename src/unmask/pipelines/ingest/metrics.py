"""The ingestion counts: for the log, the ``ingest_report`` JSON and MLflow."""

from __future__ import annotations

import logging
from collections import Counter

import pandas as pd

from unmask.pipelines.ingest.examine import LANDMARK_SOURCES

logger = logging.getLogger(__name__)


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


def log_indexing(index: pd.DataFrame, quarantine: pd.DataFrame, location: str, n_checked: int, seconds: float,
                 methods: Counter) -> None:
    """Log how many images were indexed and how fast, why others were quarantined, and where landmarks came from."""
    counts = Counter(quarantine["reason"])
    sources = Counter(index["landmark_source"])
    reasons = (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")") if counts else ""
    logger.info("Indexed %d usable image(s) from %s in %.1f s (%.0f images/s); quarantined %d%s.", len(index),
                location, seconds, n_checked / max(seconds, 1e-9), len(quarantine), reasons)
    by_method = ", ".join(f"{k}: {v}" for k, v in sorted(methods.items()))
    logger.info("Landmarks by source: %s%s.", ", ".join(f"{k}: {sources.get(k, 0)}" for k in LANDMARK_SOURCES),
                f" (detections by method: {by_method})" if methods else "")
