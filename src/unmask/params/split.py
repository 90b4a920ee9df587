"""Schema of ``params:split`` (defaults: ``conf/base/parameters_split.yml``): the test / train / validation split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unmask.params import ParamsModel

__all__ = ["SplitParams", "TestPick"]

TestPick = Literal["random", "last"]  # random (seeded), or last: the highest image ids


class SplitParams(ParamsModel):
    """The ``split`` group: test size and choice, validation share of the rest, seed, identity grouping."""

    test_count: int = Field(ge=1)
    test_pick: TestPick
    val_fraction: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)
    identity_disjoint: bool
