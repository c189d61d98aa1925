"""The structure DiT: zero-initialised blocks start as the identity, the output at zero velocity;
samples never mix; t enters through the modulation."""

from __future__ import annotations

import torch

from focusing.flow.dit import StructureDiT
from focusing.flow.modules import ModulatedBlock, TimestepEmbedder, sinusoidal_position_3d


def test_fresh_blocks_are_the_identity_and_the_output_is_zero():
    torch.manual_seed(0)
    block = ModulatedBlock(32, 16, 4)
    x, emb, ctx = torch.randn(2 * 27, 32), torch.randn(2 * 27, 32), torch.randn(2, 5, 16)
    assert torch.equal(block(x, emb, ctx, [0, 27, 54]), x)
    model = StructureDiT(grid=3, in_channels=8, width=32, depth=2, heads=4, context_dim=16)
    v = model(torch.randn(2, 8, 3, 3, 3), torch.rand(2), ctx)
    assert v.shape == (2, 8, 3, 3, 3) and torch.equal(v, torch.zeros_like(v))


def test_trained_blocks_keep_samples_apart_and_depend_on_t_and_context():
    torch.manual_seed(1)
    model = StructureDiT(grid=3, in_channels=4, width=32, depth=2, heads=4, context_dim=16)
    for p in model.parameters():  # leave the zero init: random weights everywhere
        torch.nn.init.normal_(p, std=0.1)
    x, t, ctx = torch.randn(2, 4, 3, 3, 3), torch.tensor([0.2, 0.7]), torch.randn(2, 5, 16)
    both = model(x, t, ctx)
    for i in range(2):
        torch.testing.assert_close(both[i:i + 1], model(x[i:i + 1], t[i:i + 1], ctx[i:i + 1]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model(x, t.flip(0), ctx), both)
    assert not torch.allclose(model(x, t, ctx.flip(0)), both)


def test_embeddings_follow_trellis():
    emb = TimestepEmbedder(8)
    assert emb(torch.tensor([0.5, 1.0])).shape == (2, 8)
    pe = sinusoidal_position_3d(torch.tensor([[0, 0, 0], [1, 2, 3]]), 14)
    assert pe.shape == (2, 14) and torch.equal(pe[:, 12:], torch.zeros(2, 2))
    assert torch.equal(pe[0, :12], torch.tensor([0.0, 0, 1, 1] * 3))  # sin 0, cos 0 per axis
