from kedro.framework.project import configure_project

from unmask.pipeline_registry import STAGES, register_pipelines


def test_default_pipeline_chains_every_stage():
    configure_project("unmask")
    pipelines = register_pipelines()
    assert set(STAGES) <= set(pipelines)
    default_nodes = {n.name for n in pipelines["__default__"].nodes}
    for stage in STAGES:
        assert {n.name for n in pipelines[stage].nodes} <= default_nodes
    # Each stage's inputs from earlier stages are persisted datasets, so any stage runs alone; the only
    # raw input besides the parameters is the optional folder of real mask cut-outs.
    assert pipelines["__default__"].inputs() == {f"params:{s}" for s in STAGES} | {"real_mask_cutouts"}
