"""Tests for unmask.models.networks: parameter counts (paper Table II / ablation), shapes, errors."""

from __future__ import annotations

import json

import pytest
import torch

from unmask.models import MODEL_NAMES, build_model, count_parameters

FILTERS_5 = (64, 128, 256, 512, 1024)
TINY = (4, 8, 16)

# (name, filters, exact count of this implementation, paper's figure in millions)
PARAM_COUNTS = [
    ("unet", FILTERS_5, 31_379_081, 31.38),
    ("attention_unet", FILTERS_5, 37_305_485, 37.31),
    ("ra_unet", FILTERS_5, 39_049_421, 39.05),
    ("ra_unet", (32, 64, 128), 585_451, 0.59),  # the paper prints 0.58 (truncated)
    ("ra_unet", (64, 128, 256, 512), 9_680_588, 9.68),
    ("ra_unet", (32, 64, 128, 256, 512, 1024), 39_135_854, 39.14),
    ("ra_unet", (64, 128, 256, 512, 1024, 2048), 156_507_342, 156.51),
]


@pytest.mark.parametrize(("name", "filters", "exact", "paper_m"), PARAM_COUNTS)
def test_parameter_counts_match_paper(name: str, filters: tuple[int, ...], exact: int, paper_m: float) -> None:
    with torch.device("meta"):  # no memory, no init cost
        model = build_model(name, filters)
    n = count_parameters(model)
    assert n == exact
    # Within 0.5 %, or within the paper's 2-decimal rounding for the tiny model.
    assert abs(n / 1e6 - paper_m) <= max(0.005 * paper_m, 0.005)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_shape_range_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, TINY)
    x = torch.rand(1, 3, 32, 32)
    y = model(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert bool(((y > 0) & (y < 1)).all())
    y.mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_variants_differ_structurally() -> None:
    counts = {n: count_parameters(build_model(n, TINY)) for n in MODEL_NAMES}
    assert counts["unet"] < counts["attention_unet"] < counts["ra_unet"]
    unet = build_model("unet", TINY)
    assert not any("gate" in k or "shortcut" in k for k, _ in unet.named_parameters())


def test_channels_last_and_bf16_autocast() -> None:
    model = build_model("ra_unet", TINY).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 16, 16).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (2, 3, 16, 16)
    assert torch.isfinite(y.float()).all()


def test_other_channel_counts_and_odd_input_size() -> None:
    model = build_model("attention_unet", (4, 8), in_channels=4, out_channels=1)
    assert model(torch.rand(1, 4, 6, 10)).shape == (1, 1, 6, 10)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_model("ra_unet", TINY)(torch.rand(1, 3, 30, 32))


def test_config_is_kept_and_rebuilds() -> None:
    model = build_model("RA_UNet", [4, 8, 16])
    assert model.config == {"name": "ra_unet", "filters": [4, 8, 16], "in_channels": 3, "out_channels": 3,
                            "composite": False, "batch_norm": False}
    rebuilt = build_model(**json.loads(json.dumps(model.config)))
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert count_parameters(rebuilt) == count_parameters(model)


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="unet, attention_unet, ra_unet"):
        build_model("resnet")


@pytest.mark.parametrize("filters", [(), (64,), (0, 8), (4, -8), (4, 8.0), "abc", 64])
def test_bad_filters(filters: object) -> None:
    with pytest.raises(ValueError, match="filters"):
        build_model("ra_unet", filters)  # type: ignore[arg-type]


def test_bad_channels() -> None:
    with pytest.raises(ValueError, match="in_channels"):
        build_model("unet", TINY, in_channels=0)


def test_dense_concat_gradients_equal_plain_cat_and_are_dense() -> None:
    torch.manual_seed(0)
    dense = build_model("ra_unet", TINY).to(memory_format=torch.channels_last)
    plain = build_model("ra_unet", TINY).to(memory_format=torch.channels_last)
    plain.load_state_dict(dense.state_dict())
    plain.dense_concat_grads = False
    x = torch.rand(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    for model in (dense, plain):
        model(x).square().mean().backward()
    for (name, a), b in zip(dense.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)

    from unmask.models.networks import concat_channels

    a = torch.rand(1, 2, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.rand(1, 3, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = concat_channels(a, b)
    assert torch.equal(out, torch.cat((a, b), dim=1))
    out.backward(torch.rand_like(out))
    assert a.grad.is_contiguous(memory_format=torch.channels_last)
    assert b.grad.is_contiguous(memory_format=torch.channels_last)


def test_composite_network_keeps_the_input_where_it_predicts_no_mask():
    torch.manual_seed(0)
    model = build_model("ra_unet", [4, 8, 16], composite=True).eval()
    assert model.config["composite"] is True
    plain = build_model("ra_unet", [4, 8, 16])
    assert count_parameters(model) == count_parameters(plain) + 4 + 1  # one 1x1 conv: 4 weights + bias
    x = torch.rand(2, 3, 16, 16)
    out, logits = model(x, with_mask=True)
    assert out.shape == x.shape and logits.shape == (2, 1, 16, 16)
    assert torch.equal(model(x), out)
    with torch.no_grad():  # a head sure there is no mask returns the input; sure there is one, the restoration
        model.mask_head.bias.fill_(-1e4)
        assert torch.equal(model(x), x)
        model.mask_head.bias.fill_(1e4)
        model.mask_head, head = None, model.mask_head
        restored = model(x)  # the restoration head alone
        model.mask_head = head
        assert torch.allclose(model(x), restored, atol=1e-6)
    with pytest.raises(ValueError, match="composite"):
        plain(x, with_mask=True)
    with pytest.raises(ValueError, match="composite"):
        build_model("ra_unet", [4, 8], composite="yes")


def test_batch_norm_blocks_normalise_every_convolution_and_keep_the_plain_layout_otherwise():
    torch.manual_seed(0)
    plain = build_model("ra_unet", TINY)
    normed = build_model("ra_unet", TINY, batch_norm=True)
    assert normed.config["batch_norm"] is True
    # the plain network's weights are unchanged (old checkpoints still load strictly)
    assert not any("norm" in k for k in plain.state_dict())
    blocks = [m for m in normed.modules() if type(m).__name__ == "ConvBlock"]
    assert len(blocks) == 2 * len(TINY) - 1
    for block in blocks:  # conv -> BN, biases dropped (BN cancels them), the shortcut normalised too
        assert block.conv1.bias is None and block.conv2.bias is None and block.shortcut.bias is None
        assert all(isinstance(n, torch.nn.BatchNorm2d) for n in (block.norm1, block.norm2, block.shortcut_norm))
    unet = build_model("unet", TINY, batch_norm=True)  # no shortcut, no shortcut norm
    assert not any(k.startswith("encoder.0.shortcut") for k in unet.state_dict())
    x = torch.rand(4, 3, 16, 16)
    y = normed.train()(x)
    y.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in normed.parameters())
    normed.eval()
    assert torch.equal(normed(x), normed(x))  # running statistics at eval: per-image, batch-independent
    assert torch.allclose(normed(x[:1]), normed(x)[:1], atol=1e-6)
    rebuilt = build_model(**json.loads(json.dumps(normed.config)))
    rebuilt.load_state_dict(normed.state_dict())
    with pytest.raises(ValueError, match="batch_norm"):
        build_model("ra_unet", TINY, batch_norm="yes")
