"""Project pipelines: one per stage, and ``__default__`` running them all in data order."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

#: Stage order, also the order ``dvc.yaml`` runs them in.
STAGES = ("ingest", "faces", "masks", "split", "train", "evaluate")


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline under ``pipelines/`` and the default one that chains them."""
    # With `--pipelines=evaluate`, Kedro 1.x imports only the requested pipelines; the default one
    # is built only when all stages were loaded.
    pipelines = find_pipelines(raise_errors=True)
    if all(name in pipelines for name in STAGES):
        pipelines["__default__"] = sum((pipelines[name] for name in STAGES), Pipeline([]))
    return pipelines
