"""unmask: blind masked-face inpainting with a Residual Attention UNet."""

__version__ = "0.1.0"
