"""The project's conventions, as tests: pipelines share code through ``unmask.imaging`` / ``unmask.models``,
never through another pipeline's nodes; every ``params:<group>`` a node reads has its
``conf/base/parameters_<group>.yml``; every key in those files and in each environment's overrides is
declared by the group's schema ``unmask.params.<group>``, and the schema holds no defaults (the YAML does)."""

from __future__ import annotations

import ast
import importlib
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from unmask.params import ParamsModel, schema_for

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "src" / "unmask" / "pipelines"
CONF = ROOT / "conf"
PIPELINE_NAMES = sorted(p.name for p in PIPELINES.iterdir() if (p / "__init__.py").is_file())
GROUPS = sorted(p.stem.removeprefix("parameters_") for p in (CONF / "base").glob("parameters_*.yml"))
ENVIRONMENTS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("base", "local"))


# ---------------------------------------------------------------------------------- imports --


def _imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module and imported name of ``source``, the code of ``module``."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def cross_pipeline_node_imports(source: str, module: str) -> list[str]:
    """Imports in ``module`` (under ``unmask.pipelines.<a>``) of ``unmask.pipelines.<b>.nodes``, b != a."""
    own = module.split(".")[2]
    found = []
    for line, name in _imported_modules(source, module):
        parts = name.split(".")
        if parts[:2] == ["unmask", "pipelines"] and len(parts) > 3 and parts[2] != own and parts[3] == "nodes":
            found.append(f"{module}:{line} imports {'.'.join(parts[:4])}")
    return sorted(set(found))


def _pipeline_modules() -> Iterator[tuple[Path, str]]:
    for path in sorted(PIPELINES.glob("*/**/*.py")):
        yield path, ".".join(path.relative_to(PIPELINES.parents[1]).with_suffix("").parts)


@pytest.mark.parametrize(
    ("source", "module", "bad"),
    [
        ("from unmask.pipelines.masks.nodes import x", "unmask.pipelines.train.nodes", True),
        ("import unmask.pipelines.masks.nodes", "unmask.pipelines.train.nodes", True),
        ("from unmask.pipelines.masks import nodes", "unmask.pipelines.train.nodes", True),
        ("from ..masks.nodes import x", "unmask.pipelines.train.nodes", True),
        ("from ..masks import nodes", "unmask.pipelines.train.nodes", True),
        ("from ...masks.nodes.render import x", "unmask.pipelines.train.nodes.fit", True),
        ("def f():\n    from unmask.pipelines.masks.nodes import x", "unmask.pipelines.train.nodes", True),
        ("from unmask.pipelines.train.nodes import x", "unmask.pipelines.train.pipeline", False),
        ("from .nodes import x", "unmask.pipelines.train.pipeline", False),
        ("from unmask.imaging.masks import x", "unmask.pipelines.train.nodes", False),
    ],
)
def test_the_import_check_sees_every_form_of_import(source, module, bad):
    assert bool(cross_pipeline_node_imports(source, module)) is bad


def test_no_pipeline_imports_another_pipelines_nodes():
    """Shared code lives in unmask.imaging / unmask.models, so that each pipeline can change alone."""
    found = [hit for path, module in _pipeline_modules()
             for hit in cross_pipeline_node_imports(path.read_text(encoding="utf-8"), module)]
    assert not found, "move what these share out of the pipelines' nodes:\n" + "\n".join(found)


# ------------------------------------------------------------------------------- parameters --


def _node_param_groups() -> dict[str, set[str]]:
    """{group: names of the nodes reading ``params:<group>`` (or one of its keys)} over every pipeline."""
    groups: dict[str, set[str]] = {}
    for name in PIPELINE_NAMES:
        pipeline = importlib.import_module(f"unmask.pipelines.{name}.pipeline").create_pipeline()
        for node in pipeline.nodes:
            for dataset in node.inputs:
                if dataset.startswith("params:"):
                    groups.setdefault(dataset.removeprefix("params:").split(".")[0], set()).add(node.name)
    return groups


def test_every_params_group_a_node_reads_has_its_parameters_file():
    groups = _node_param_groups()
    assert groups, "no node reads params: (the pipelines were not found)"
    missing = {group: sorted(nodes) for group, nodes in groups.items()
               if not (CONF / "base" / f"parameters_{group}.yml").is_file()}
    assert not missing, f"nodes read params groups without conf/base/parameters_<group>.yml: {missing}"


@pytest.mark.parametrize("group", GROUPS)
def test_each_parameters_file_holds_its_group_only(group):
    params = yaml.safe_load((CONF / "base" / f"parameters_{group}.yml").read_text(encoding="utf-8"))
    assert list(params) == [group]


def _nested_schema(annotation: typing.Any) -> type[ParamsModel] | None:
    """The ParamsModel inside a field's annotation (``X``, ``X | None``, ``Optional[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, ParamsModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(filter(None, map(_nested_schema, typing.get_args(annotation))), None)
    return None


def unknown_keys(schema: type[ParamsModel], values: dict, prefix: str) -> list[str]:
    """Dotted keys of ``values`` that ``schema`` (and the schemas of its nested groups) does not declare."""
    unknown = []
    for key, value in values.items():
        field = schema.model_fields.get(key)
        if field is None:
            unknown.append(f"{prefix}.{key}")
        elif isinstance(value, dict) and (nested := _nested_schema(field.annotation)) is not None:
            unknown += unknown_keys(nested, value, f"{prefix}.{key}")
    return unknown


def _environment_overrides() -> Iterator[tuple[str, str, dict]]:
    """(file, group, overrides) of every parameters file of every environment but base."""
    for env in ENVIRONMENTS:
        for path in sorted((CONF / env).rglob("*.yml")):
            if "parameters" in path.relative_to(CONF / env).as_posix():
                for group, values in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items():
                    yield path.relative_to(ROOT).as_posix(), group, values


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_a_schema_with_no_defaults(group):
    schema = schema_for(group)
    assert issubclass(schema, ParamsModel)
    with_default = [name for name, field in schema.model_fields.items() if not field.is_required()]
    assert not with_default, f"defaults belong in conf/base/parameters_{group}.yml, not in the schema: {with_default}"


@pytest.mark.parametrize("group", GROUPS)
def test_every_base_parameter_is_declared_by_its_schema(group):
    values = yaml.safe_load((CONF / "base" / f"parameters_{group}.yml").read_text(encoding="utf-8"))[group]
    assert not unknown_keys(schema_for(group), values, group)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_override_is_declared_by_its_schema(env):
    overrides = [(file, group, values) for file, group, values in _environment_overrides()
                 if file.startswith(f"conf/{env}/")]
    unknown = [f"{file}: {key}" for file, group, values in overrides
               for key in ([group] if group not in GROUPS else unknown_keys(schema_for(group), values, group))]
    assert not unknown, "keys no schema declares (a typo, or a key the code does not read):\n" + "\n".join(unknown)


def test_the_key_check_recurses_into_nested_groups():
    class Inner(ParamsModel):
        depth: int

    class Outer(ParamsModel):
        inner: Inner | None
        plain: dict[str, int]

    values = {"inner": {"depth": 1, "width": 2}, "plain": {"anything": 1}, "extra": 0}
    assert unknown_keys(Outer, values, "g") == ["g.inner.width", "g.extra"]
