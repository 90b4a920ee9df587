"""Image-level building blocks shared by the pipelines and the inference command."""
