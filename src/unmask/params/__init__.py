"""Declared parameter schemas, one module per ``params:<group>`` (pydantic v2).

Each default lives in the group's ``conf/base/parameters_<group>.yml``; a schema declares types,
ranges and allowed values only, and rejects keys it does not know. Nodes call :func:`validated`
first, so a bad value fails before any work with a message naming the key, the value and what is
allowed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from unmask.errors import ParamsError

__all__ = ["ParamsModel", "schema_for", "validated"]


class ParamsModel(BaseModel):
    """Base of every parameter schema: strict about unknown keys, no coercion (``true`` is not 1, "1" is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True)


Schema = TypeVar("Schema", bound=ParamsModel)


def _key(group: str, loc: tuple) -> str:
    return ".".join([group, *(str(part) for part in loc)])


def _describe(group: str, error: Mapping[str, Any]) -> str:
    key = _key(group, error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown parameter {key}"
    if error["type"] == "missing":
        return f"{key} is missing"
    return f"{key}={error['input']!r}: {error['msg']}"


def validated(schema: type[Schema], group: str, params: Mapping[str, Any] | None) -> Schema:
    """Check ``params`` (the ``params:<group>`` dict) against ``schema``; ``ParamsError`` (a ``ValueError``)
    naming each bad key."""
    try:
        return schema.model_validate(dict(params or {}))
    except ValidationError as exc:
        problems = "; ".join(_describe(group, error) for error in exc.errors())
        known = ", ".join(sorted(schema.model_fields))
        raise ParamsError(
            f"Bad parameters in {group}: {problems}. Known keys: {known}; "
            f"defaults are in conf/base/parameters_{group}.yml."
        ) from None


def schema_for(group: str) -> type[ParamsModel]:
    """The schema of ``params:<group>``: ``<Group>Params`` of ``unmask.params.<group>``."""
    module = importlib.import_module(f"unmask.params.{group}")
    return getattr(module, f"{group.capitalize()}Params")
