"""``params:evaluate``: what to score on the test split and how; defaults in conf/base/parameters_evaluate.yml."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from unmask.params import ParamsModel

PositiveInt = Annotated[int, Field(ge=1)]


class EvaluateParams(ParamsModel):
    """The evaluate pipeline's knobs: model, device, streaming, baselines, grid and identity scoring."""

    checkpoint: str | None
    device: str  # auto | cpu | cuda | cuda:N | mps, resolved by unmask.models.devices
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    batch_size: PositiveInt
    num_workers: int = Field(ge=0)
    limit: PositiveInt | None
    timing_images: PositiveInt
    inpaint_radius: float = Field(gt=0)
    dilate_px: int = Field(ge=0)
    coverage_bins: list[float] = Field(min_length=2)
    grid_images: PositiveInt
    grid_ids: list[str] | None
    flip_average: bool
    identity: bool

    @field_validator("coverage_bins")
    @classmethod
    def _increasing(cls, bins: list[float]) -> list[float]:
        if bins != sorted(set(bins)):
            raise ValueError("must be strictly increasing bin edges")
        return bins
