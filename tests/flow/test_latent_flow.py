"""The structured-latent flow: packed shapes give the same outputs as each shape alone; the
mean-pool down step; fresh models predict zero velocity."""

from __future__ import annotations

import torch

from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.sparse.tensor import SparseTensor, collate
from focusing.flow.latent_flow import LatentFlowDiT, mean_pool

from meshdata import mesh_file


def _shape_latents(name: str, r: int, channels: int, seed: int) -> SparseTensor:
    active = dilate_voxels(surface_voxels(load_mesh(mesh_file(name)), r), r)
    coords = torch.cat([active.new_zeros(len(active), 1), active], 1)
    feats = torch.randn(len(active), channels, generator=torch.Generator().manual_seed(seed))
    return SparseTensor(coords, feats, r).sort()[0]


def _random_model(seed: int) -> LatentFlowDiT:
    torch.manual_seed(seed)
    model = LatentFlowDiT(in_channels=4, io_channels=8, width=32, depth=2, heads=4, context_dim=16)
    for p in model.parameters():  # replace the zero inits: every path must carry signal
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_two_packed_shapes_give_the_same_outputs_as_each_alone():
    a = _shape_latents("couplingdown", 8, 4, 0)
    b = _shape_latents("elephant-with-holes", 8, 4, 1)
    assert len(a) != len(b)  # variable lengths: nothing padded
    model = _random_model(2).eval()
    ctx = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        packed = model(collate([a, b]), t, ctx)
        alone = [model(a, t[:1], ctx[:1]), model(b, t[1:], ctx[1:])]
    n = len(a)
    assert torch.equal(packed.coords[:, 1:], torch.cat([a.coords[:, 1:], b.coords[:, 1:]]))
    torch.testing.assert_close(packed.feats[:n], alone[0].feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.feats[n:], alone[1].feats, atol=1e-5, rtol=1e-5)
    # each shape really has its own t and context
    with torch.no_grad():
        swapped = model(collate([a, b]), t.flip(0), ctx)
    assert not torch.allclose(swapped.feats[:n], packed.feats[:n])


def test_mean_pool_averages_children_per_shape():
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 1], [0, 2, 0, 0], [1, 0, 0, 1]])
    x = SparseTensor(coords, torch.tensor([[1.0], [3.0], [5.0], [7.0]]), 4)
    pooled, parent = mean_pool(x)
    assert pooled.resolution == 2
    assert pooled.coords.tolist() == [[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
    assert pooled.feats[:, 0].tolist() == [2.0, 5.0, 7.0] and parent.tolist() == [0, 0, 1, 2]


def test_a_fresh_model_predicts_zero_velocity():
    model = LatentFlowDiT(in_channels=4, io_channels=8, width=32, depth=1, heads=4, context_dim=16)
    x = _shape_latents("couplingdown", 8, 4, 0)
    v = model(x, torch.tensor([0.5]), torch.randn(1, 3, 16))
    assert v.feats.shape == x.feats.shape and torch.equal(v.feats, torch.zeros_like(v.feats))
