"""The sparse structure VAE: shapes, zero-initialised res blocks, pixel shuffle, Dice/KL, and that
it learns the occupancy of a real mesh's latent voxels (IoU)."""

from __future__ import annotations

import torch

from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.flow import structure_vae as sv

from meshdata import mesh_file


def test_shapes_and_factor():
    model = sv.StructureVAE(channels=[4, 8, 8], latent_channels=8, blocks_per_level=1)
    occ = torch.zeros(2, 1, 16, 16, 16)
    mean, logvar = model.encode(occ)
    assert mean.shape == logvar.shape == (2, 8, 4, 4, 4) and model.factor == 4
    assert model.decode(mean).shape == (2, 1, 16, 16, 16)


def test_res_blocks_start_as_identity_and_pixel_shuffle_places_sub_voxels():
    block = sv.ResBlock3d(4)
    x = torch.randn(1, 4, 5, 5, 5)
    assert torch.equal(block(x), x)
    y = torch.arange(8.0).view(1, 8, 1, 1, 1)
    out = sv.pixel_shuffle_3d(y)
    assert out.shape == (1, 1, 2, 2, 2)
    # channel index (i, j, k) -> sub-voxel (i, j, k)
    assert out[0, 0, 1, 0, 1] == 5 and out[0, 0, 0, 1, 1] == 3


def test_losses_and_iou():
    t = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert sv.dice_loss(torch.tensor([-50.0, 50.0, 50.0, -50.0]), t) < 1e-6
    assert sv.kl_loss(torch.zeros(3), torch.zeros(3)) == 0
    assert sv.iou(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 1, 0])) == 1 / 3
    grid = sv.occupancy_grid(torch.tensor([[0, 1, 2], [3, 3, 3]]), 4)
    assert torch.equal(sv.occupied_coords(grid * 2 - 1), torch.tensor([[0, 1, 2], [3, 3, 3]]))


def test_learns_the_latent_occupancy_of_a_real_mesh():
    torch.manual_seed(0)
    r = 16
    coords = dilate_voxels(surface_voxels(load_mesh(mesh_file("couplingdown")), r), r)
    occ = sv.occupancy_grid(coords, r)[None]
    model = sv.StructureVAE(channels=[8, 16], latent_channels=4, blocks_per_level=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(80):
        loss, terms = sv.structure_vae_loss(model, occ, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mean, _ = model.encode(occ)
        pred = model.decode(mean) > 0
    assert sv.iou(pred, occ) > 0.85, sv.iou(pred, occ)
