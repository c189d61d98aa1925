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
        torch.testing.assert_close(both[i:i + 1], model(x[i:i + 1], t[i:i + 1], ctx[i:i + 1]),
                                   atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model(x, t.flip(0), ctx), both)
    assert not torch.allclose(model(x, t, ctx.flip(0)), both)


def test_embeddings_follow_trellis():
    emb = TimestepEmbedder(8)
    assert emb(torch.tensor([0.5, 1.0])).shape == (2, 8)
    pe = sinusoidal_position_3d(torch.tensor([[0, 0, 0], [1, 2, 3]]), 14)
    assert pe.shape == (2, 14) and torch.equal(pe[:, 12:], torch.zeros(2, 2))
    assert torch.equal(pe[0, :12], torch.tensor([0.0, 0, 1, 1] * 3))  # sin 0, cos 0 per axis


def _train_to_follow_images(images: torch.Tensor, targets: torch.Tensor, steps: int = 300,
                            blind: bool = False) -> list[float]:
    """Train a tiny cnn + structure DiT on image i -> target i; the sampled latents' squared
    distance to their own target over that to the other, per image (cfg 0)."""
    from focusing.flow import rectified_flow as rf
    from focusing.flow.encoders import build_encoder

    torch.manual_seed(0)
    enc = build_encoder("cnn", {"width": 32, "image_size": 32, "levels": 3})
    dit = StructureDiT(grid=4, in_channels=4, width=64, depth=2, heads=2, context_dim=32)
    params = [*enc.parameters(), *dit.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, 2, (4,), generator=g)
        x0, eps, t = (targets[idx], torch.randn(4, *targets.shape[1:], generator=g),
                      rf.sample_t(4, g))
        tokens = enc(images[idx]) * (0.0 if blind else 1.0)
        loss = rf.flow_loss(dit(rf.interpolate(x0, eps, t), t, tokens), x0, eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ratios = []
    with torch.no_grad():
        for i in range(2):
            tokens = enc(images[i:i + 1])
            z = rf.euler_sample(lambda x, t, c: dit(x, torch.full((1,), t), c),
                                torch.randn(1, *targets.shape[1:], generator=g), tokens, None, 12)
            d = [(z[0] - targets[j]).pow(2).mean().item() for j in range(2)]
            ratios.append(d[i] / d[1 - i])
    return ratios


def test_the_structure_flow_learns_to_follow_its_image():
    # two real views, two latent targets: after a short fit each image's sample lands on its own
    # target (distance ratio about 0.04); with the image blanked it cannot (about 1)
    from meshdata import first_views

    images = first_views(["couplingdown", "fandisk"], 32)
    targets = torch.randn(2, 4, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    assert max(_train_to_follow_images(images, targets)) < 0.3
    assert min(_train_to_follow_images(images, targets, blind=True)) > 0.5
