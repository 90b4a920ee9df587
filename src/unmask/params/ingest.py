"""Schema of ``params:ingest`` (defaults: ``conf/base/parameters_ingest.yml``): where the faces come from and
how every image is checked and given its landmarks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from unmask.params import ParamsModel

__all__ = ["DetectorParams", "IngestParams"]


class DetectorParams(ParamsModel):
    """``ingest.detector``: settings of :class:`unmask.imaging.landmark_detector.FaceLandmarkDetector`."""

    min_side: int = Field(ge=1)  # small images are upsampled to this short side for detection
    max_side: int = Field(ge=1)  # large photos are shrunk to this long side
    use_cnn: bool  # dlib's CNN where HOG finds nothing

    @model_validator(mode="after")
    def _sides_in_order(self) -> DetectorParams:
        if self.max_side < self.min_side:
            raise ValueError(f"max_side ({self.max_side}) must be >= min_side ({self.min_side})")
        return self


class IngestParams(ParamsModel):
    """The ``ingest`` group: the source (CelebA or the demo), the image checks, the landmark fallback and the pool."""

    source: Literal["auto", "demo", "celeba"]
    celeba_path: str
    demo_path: str
    demo_images: int = Field(ge=1)
    demo_identities: int = Field(ge=1)
    seed: int = Field(ge=0)
    limit: Annotated[int, Field(ge=1)] | None  # None: every image
    min_size: int = Field(ge=1)
    check: Literal["decode", "header"]
    workers: Annotated[int, Field(ge=0)] | None  # None or 0: one per core
    chunk_size: int = Field(ge=1)
    executor: Literal["auto", "process", "thread"]
    landmark_fallback: Literal["detector", "template"]
    aligned_region_margin: Annotated[float, Field(ge=0, le=2)] | None  # None: search the whole image at once
    aligned_cnn: bool
    detector: DetectorParams | None  # None: the detector's own settings
