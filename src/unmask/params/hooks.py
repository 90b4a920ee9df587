"""Check every parameter group a run's nodes read before the run starts, not when its node is reached."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

from unmask.params import schema_for, validated


def groups_read(pipeline: Any) -> list[str]:
    """The ``params:<group>`` groups the nodes of ``pipeline`` read, in name order."""
    names = (name.removeprefix("params:") for name in pipeline.datasets() if name.startswith("params:"))
    return sorted({name.split(".")[0] for name in names})


class ParamsCheckHooks:
    """Validates the groups the pipeline reads through their schemas, before any data is loaded."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        parameters = catalog.load("parameters")
        for group in groups_read(pipeline):
            if group in parameters:
                validated(schema_for(group), group, parameters[group])
