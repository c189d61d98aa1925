"""`dinov2`: the DINOv2 ViT (TRELLIS's image condition: ViT-L/14 with registers at 518^2) defined
here, loading the official state dict (e.g. `dinov2_vitl14_reg4_pretrain.pth` from
facebookresearch/dinov2) from a local file. Nothing is downloaded: without a file the encoder is
unavailable and says so.

As TRELLIS uses it: images normalised with the ImageNet mean/std, every prenorm token of the last
block (class token, registers and patches: 1 + 4 + 37^2 = 1374 at 518^2) layer-normed without
affine. The architecture (width, depth, registers, patch size, native grid) is read off the
state dict's shapes; heads default to width / 64 as in every official model. Key names follow the
official layout: cls_token, register_tokens, mask_token, pos_embed, patch_embed.proj.*,
blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}.*, norm.*.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from focusing.flow.encoders.base import ImageEncoder

WEIGHTS_ENV = "FOCUSING_DINOV2_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LayerScale(nn.Module):
    """Per-channel scale `gamma` (official name)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x * gamma; [B,N,C]."""
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv Linear (official names qkv, proj)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,N,C] -> [B,N,C]."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1, GELU, fc2 (official names)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,N,C] -> [B,N,C]."""
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One pre-norm transformer block; [B,N,C]."""
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided conv `proj`: [B,3,H,W] -> [B,(H/p)(W/p),C]."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens in row-major order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2ViT(nn.Module):
    """The DINOv2 vision transformer (official parameter names); `prenorm_tokens` is what the
    flow uses."""

    def __init__(self, dim: int, depth: int, heads: int, patch: int, registers: int, grid: int,
                 mlp_hidden: int):
        super().__init__()
        self.patch, self.grid = patch, grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.patch_embed = PatchEmbed(patch, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def interpolate_pos_encoding(self, h_patches: int, w_patches: int) -> torch.Tensor:
        """Position embedding [1,1+h w,C] for an h x w patch grid (bicubic from the native grid,
        with DINOv2's 0.1 offset); the stored one when the grid is native."""
        if h_patches == w_patches == self.grid:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        dim = pos.shape[-1]
        m = self.grid
        patch_pos = F.interpolate(
            patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic", antialias=False,
            scale_factor=((h_patches + 0.1) / m, (w_patches + 0.1) / m))
        assert patch_pos.shape[-2:] == (h_patches, w_patches)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat([cls_pos, patch_pos], 1).to(self.pos_embed.dtype)

    def prenorm_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B,3,H,W] (H, W multiples of the patch) -> the last block's tokens
        before the final norm [B, 1 + registers + (H/p)(W/p), C]."""
        b, _, h, w = x.shape
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], 1)
        tokens = tokens + self.interpolate_pos_encoding(h // self.patch, w // self.patch)
        if self.register_tokens is not None:
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(b, -1, -1),
                                tokens[:, 1:]], 1)
        for block in self.blocks:
            tokens = block(tokens)
        return tokens


def _weights_path(weights: str | os.PathLike | None) -> Path | None:
    value = weights if weights else os.environ.get(WEIGHTS_ENV)
    return Path(value).expanduser() if value else None


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an official .pth (or a .safetensors) state dict file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def vit_from_state_dict(state: dict[str, torch.Tensor], heads: int | None = None) -> DinoV2ViT:
    """A DinoV2ViT shaped after an official state dict, with its weights loaded (strict)."""
    if any(".mlp.w12." in k for k in state):
        raise ValueError("dinov2: SwiGLU MLPs (ViT-g) are not supported; use ViT-S/B/L")
    dim = state["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    patch = state["patch_embed.proj.weight"].shape[-1]
    registers = state["register_tokens"].shape[1] if "register_tokens" in state else 0
    grid = math.isqrt(state["pos_embed"].shape[1] - 1)
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    vit = DinoV2ViT(dim, depth, heads or max(dim // 64, 1), patch, registers, grid, hidden)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    vit.load_state_dict(state, strict=True)
    return vit


class DinoV2Encoder(ImageEncoder):
    """Frozen DINOv2 from a local state dict file: [B,3,H,W] -> [B,1+reg+(S/p)^2,C], layer-normed
    prenorm tokens (TRELLIS: S = 518, ViT-L/14 reg4 -> [B,1374,1024])."""

    name: ClassVar[str] = "dinov2"
    trainable: ClassVar[bool] = False

    @classmethod
    def available(cls, weights: str | None = None, **params) -> tuple[bool, str]:
        """True when a weights file is given (parameter `weights` or $FOCUSING_DINOV2_WEIGHTS) and
        exists."""
        path = _weights_path(weights)
        if path is None:
            return False, ("no weights file: give the official DINOv2 state dict (e.g. "
                           "dinov2_vitl14_reg4_pretrain.pth) with "
                           f"--set encoder.params.weights=PATH or ${WEIGHTS_ENV}; nothing is "
                           "downloaded")
        if not path.is_file():
            return False, f"weights file {path} does not exist"
        return True, ""

    def __init__(self, weights: str | None = None, image_size: int = 518, heads: int | None = None):
        super().__init__()
        path = _weights_path(weights)
        if path is None or not path.is_file():
            raise FileNotFoundError(self.available(weights)[1])
        self.vit = vit_from_state_dict(load_state_dict_file(path), heads)
        if image_size % self.vit.patch:
            raise ValueError(f"dinov2: image_size {image_size} is not a multiple of the patch "
                             f"{self.vit.patch}")
        self.image_size = int(image_size)
        self.out_channels = int(self.vit.cls_token.shape[-1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B,3,H,W] in [0, 1] -> tokens [B,T,C], layer-normed without affine."""
        x = (self.resize(images) - self.mean) / self.std
        tokens = self.vit.prenorm_tokens(x)
        return F.layer_norm(tokens, tokens.shape[-1:])
