"""Schema of ``params:masks`` (defaults: ``conf/base/parameters_masks.yml``): the synthetic masks drawn on the faces.

The masks pipeline draws them once; ``train.fresh_masks`` draws new ones with the same seed and styles,
so both read their settings through :class:`MasksParams`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from unmask.imaging.mask_renderer import MASK_STYLES
from unmask.params import ParamsModel

__all__ = ["MaskStyle", "MasksParams"]

MaskStyle = Literal[MASK_STYLES]  # the renderer's styles: surgical, n95, kn95, cloth, bandana


class MasksParams(ParamsModel):
    """The ``masks`` group: seed, styles, and the worker pool that samples ``mask_metadata``."""

    seed: int = Field(ge=0)
    styles: list[MaskStyle] = Field(min_length=1)
    workers: Annotated[int, Field(ge=0)] | None  # None or 0: one per core
    chunk_size: int = Field(ge=1)
    parallel_from: int = Field(ge=1)

    @field_validator("styles", mode="before")
    @classmethod
    def _one_style_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value
