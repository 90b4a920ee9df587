"""UNet, Attention UNet and Residual Attention UNet (the three rows of the paper's Table II).

The layout follows the authors' Keras code (``res_conv_block``, ``gating_signal``,
``attention_block``), which is the reading that reproduces the paper's parameter counts
(31.38 M / 37.31 M / 39.05 M for filters 64..1024). Tensors are NCHW; the network works
unchanged with ``channels_last`` memory format (the fast layout for oneDNN and cuDNN) and under
bf16/fp16 autocast or with its weights cast to bf16 for inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DEFAULT_FILTERS",
    "MODEL_NAMES",
    "AttentionGate",
    "ConvBlock",
    "InpaintingUNet",
    "build_model",
    "concat_channels",
    "count_parameters",
]

DEFAULT_FILTERS: tuple[int, ...] = (64, 128, 256, 512, 1024)

# name -> (residual shortcut in conv blocks, attention gates on skips)
_VARIANTS: dict[str, tuple[bool, bool]] = {
    "unet": (False, False),
    "attention_unet": (False, True),
    "ra_unet": (True, True),
}
MODEL_NAMES: tuple[str, ...] = tuple(_VARIANTS)


class ConvBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 (+ 1x1 shortcut when residual) -> ReLU.

    With ``batch_norm`` every convolution (the shortcut's too) is followed by batch
    normalisation, as in the authors' Keras ``res_conv_block(..., batch_norm=True)``; the
    convolutions then drop their bias, which the normalisation would cancel.
    """

    def __init__(self, in_channels: int, out_channels: int, residual: bool, batch_norm: bool = False) -> None:
        super().__init__()
        bias = not batch_norm
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias) if residual else None
        self.norm1 = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.norm2 = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.shortcut_norm = nn.BatchNorm2d(out_channels) if batch_norm and residual else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block; spatial size is kept."""
        # In-place ops are safe here: neither conv nor batch-norm backward needs its own output,
        # and they save one full-resolution activation per op.
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        y = self.norm2(self.conv2(y))
        if self.shortcut is not None:
            y = y.add_(self.shortcut_norm(self.shortcut(x)))
        return F.relu(y, inplace=True)


class AttentionGate(nn.Module):
    """Additive soft attention on a skip connection (Oktay et al.; authors' ``attention_block``).

    ``x`` is the skip feature (c channels, H x W); ``g`` the gating signal (c channels, H/2 x W/2).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.theta_x = nn.Conv2d(c, c, kernel_size=2, stride=2)
        self.phi_g = nn.Conv2d(c, c, kernel_size=1)
        # The Keras code uses stride = theta_x size // g size, which is always 1 in this
        # network (both live on the coarse grid); padding 1 keeps the size like 'same'.
        self.upsample_g = nn.ConvTranspose2d(c, c, kernel_size=3, stride=1, padding=1)
        self.psi = nn.Conv2d(c, 1, kernel_size=1)
        self.project = nn.Conv2d(c, c, kernel_size=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        """Return the gated, projected and batch-normalised skip feature (same shape as ``x``)."""
        theta = self.theta_x(x)
        phi = self.upsample_g(self.phi_g(g))
        # add's backward does not need its output, so ReLU may overwrite it.
        act = F.relu(theta + phi, inplace=True)
        coeff = torch.sigmoid(self.psi(act))
        # One coefficient per pixel; broadcasting over channels replaces Keras' repeat_elem.
        coeff = F.interpolate(coeff, size=x.shape[-2:], mode="nearest")
        return self.bn(self.project(x * coeff))


class _GatingSignal(nn.Module):
    """ReLU(conv1x1) that maps the coarser decoder feature to the skip's channel count."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Return the gating signal at the input's resolution."""
        return F.relu(self.conv(x), inplace=True)


class _CatDenseGrads(torch.autograd.Function):
    """``torch.cat((a, b), dim=1)`` whose backward hands each input a dense gradient.

    Plain ``cat`` backward returns channel slices of the incoming gradient. In channels_last those
    views are not dense, and two CPU kernels that receive them have no fast strided path:
    ``upsample_nearest2d_backward`` (about 19x slower than on a dense copy at the 256x256 level)
    and, behind the attention gate, ``native_batch_norm_backward`` (20-30x slower). One copy each
    is far cheaper (bf16 training step of ra_unet at 256x256, batch 8: 6.08 s -> 3.80 s here).
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        ctx.split = a.shape[1]
        return torch.cat((a, b), dim=1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        channels_last = grad.dim() == 4 and grad.is_contiguous(memory_format=torch.channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return grad[:, : ctx.split].contiguous(memory_format=fmt), grad[:, ctx.split :].contiguous(memory_format=fmt)


def concat_channels(a: Tensor, b: Tensor, dense_grads: bool = True) -> Tensor:
    """Concatenate on the channel axis; with gradients on, each input gets a dense gradient back."""
    if dense_grads and torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return _CatDenseGrads.apply(a, b)
    return torch.cat((a, b), dim=1)


class InpaintingUNet(nn.Module):
    """UNet family used by the paper: optional residual conv blocks and attention-gated skips.

    Input: N x in_channels x H x W with H, W divisible by 2**(len(filters) - 1).
    Output: N x out_channels x H x W in (0, 1) (sigmoid head).

    ``composite`` (beyond the paper) adds a second 1x1 head that predicts where the mask is, from
    the same last decoder features: the output is ``m * restored + (1 - m) * input`` with
    ``m = sigmoid(mask logit)``, so pixels the network judges unmasked come back as they went in
    (the model stays blind: the mask is predicted, never given). ``forward(x, with_mask=True)``
    also returns the mask logits (N x 1 x H x W) for a loss on them.

    ``batch_norm`` (beyond the paper's parameter counts) normalises every convolution of the
    encoder and decoder blocks. Without it, ReLU units of the deepest levels die early in
    training at Adam 1e-3 (two thirds of the 4x4 bottleneck's channels of the 32..512 network
    output zero for every face), and that capacity is lost.

    ``dense_concat_grads`` (default True) makes the decoder's concatenation return dense gradient
    slices (see :class:`_CatDenseGrads`); the maths is the same, only the memory layout of the
    gradients differs. It exists so benchmarks can measure the plain ``torch.cat`` path.
    """

    dense_concat_grads: bool = True

    def __init__(
        self,
        filters: Sequence[int],
        in_channels: int = 3,
        out_channels: int = 3,
        residual: bool = True,
        attention: bool = True,
        composite: bool = False,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if composite and in_channels != out_channels:
            raise ValueError(f"composite needs out_channels == in_channels, got {out_channels} and {in_channels}")
        filters = [int(f) for f in filters]
        self.filters = filters
        self.residual = residual
        self.attention = attention
        self.batch_norm = bool(batch_norm)
        self.divisor = 2 ** (len(filters) - 1)

        self.encoder = nn.ModuleList()
        prev = in_channels
        for f in filters:
            self.encoder.append(ConvBlock(prev, f, residual, self.batch_norm))
            prev = f

        # Decoder modules are stored coarse -> fine, i.e. in execution order.
        self.gates = nn.ModuleList()
        self.gate_signals = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(len(filters) - 2, -1, -1):
            # The coarser input is the bottleneck first, then the previous decoder output;
            # both have filters[i + 1] channels.
            c, coarse = filters[i], filters[i + 1]
            if attention:
                self.gate_signals.append(_GatingSignal(coarse, c))
                self.gates.append(AttentionGate(c))
            self.decoder.append(ConvBlock(coarse + c, c, residual, self.batch_norm))

        self.head = nn.Conv2d(filters[0], out_channels, kernel_size=1)
        self.head_bn = nn.BatchNorm2d(out_channels)
        self.composite = bool(composite)
        self.mask_head = nn.Conv2d(filters[0], 1, kernel_size=1) if composite else None
        self.config: dict[str, Any] = {}

    def forward(self, x: Tensor, with_mask: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Inpaint a batch of images; returns the same spatial size with values in (0, 1)
        (and the mask logits, with ``with_mask`` on a ``composite`` network)."""
        h, w = x.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(
                f"input height and width must be divisible by {self.divisor} "
                f"(2**(len(filters)-1)); got {h}x{w}"
            )
        inputs = x
        skips: list[Tensor] = []
        for level, block in enumerate(self.encoder):
            if level:
                x = F.max_pool2d(x, kernel_size=2)
            x = block(x)
            skips.append(x)

        d = skips.pop()  # bottleneck
        for step, block in enumerate(self.decoder):
            skip = skips.pop()
            if self.attention:
                g = self.gate_signals[step](d)
                skip = self.gates[step](skip, g)
            up = F.interpolate(d, scale_factor=2, mode="nearest")
            d = block(concat_channels(up, skip, self.dense_concat_grads))

        restored = torch.sigmoid(self.head_bn(self.head(d)))
        if self.mask_head is None:
            if with_mask:
                raise ValueError("with_mask=True needs a network built with composite=True")
            return restored
        logits = self.mask_head(d)
        # in the input's precision (float32 under autocast), so kept pixels come back exactly
        out = inputs + torch.sigmoid(logits).to(inputs.dtype) * (restored.to(inputs.dtype) - inputs)
        return (out, logits) if with_mask else out


def _keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, the Keras defaults the authors trained with."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _validate_filters(filters: Sequence[int]) -> list[int]:
    """Return filters as a list of ints or raise ValueError."""
    hint = f"expected at least 2 positive ints, e.g. {list(DEFAULT_FILTERS)}"
    if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence):
        raise ValueError(f"filters must be a sequence of ints; {hint}; got {filters!r}")
    out: list[int] = []
    for f in filters:
        if isinstance(f, bool) or not isinstance(f, int) or f <= 0:
            raise ValueError(f"invalid filters {list(filters)!r}: {hint}")
        out.append(int(f))
    if len(out) < 2:
        raise ValueError(f"invalid filters {list(filters)!r}: {hint}")
    return out


def build_model(
    name: str = "ra_unet",
    filters: Sequence[int] = DEFAULT_FILTERS,
    in_channels: int = 3,
    out_channels: int = 3,
    composite: bool = False,
    batch_norm: bool = False,
) -> nn.Module:
    """Build ``unet``, ``attention_unet`` or ``ra_unet`` (``composite``: with the mask head;
    ``batch_norm``: normalised conv blocks; see :class:`InpaintingUNet`); ``model.config`` holds
    the build kwargs."""
    key = str(name).strip().lower()
    if key not in _VARIANTS:
        raise ValueError(f"unknown model name {name!r}; valid choices: {', '.join(MODEL_NAMES)}")
    filt = _validate_filters(filters)
    for label, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{label} must be a positive int; got {value!r}")
    residual, attention = _VARIANTS[key]
    for label, flag in (("composite", composite), ("batch_norm", batch_norm)):
        if not isinstance(flag, bool):
            raise ValueError(f"{label} must be true or false; got {flag!r}")
    model = InpaintingUNet(filt, in_channels, out_channels, residual=residual, attention=attention,
                           composite=composite, batch_norm=batch_norm)
    model.apply(_keras_init)
    model.config = {
        "name": key,
        "filters": filt,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "composite": composite,
        "batch_norm": batch_norm,
    }
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BatchNorm running stats excluded); works on meta."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
