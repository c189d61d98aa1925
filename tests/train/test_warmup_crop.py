"""The warm-up crop encodes only its region, and its latents equal those of the whole shape."""

import pytest
import torch

from focusing.core.config import load_setup
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.data.records import build_record, cache_settings
from focusing.core.vae.train.trainer import warmup_crop
from focusing.core.vae.model import ShapeVAE
from meshdata import mesh_file


def encoded_fandisk(reach: int, window: int, depth: int, r: int):
    """(model, record, active [N,3], voxels, whole-shape latent means [N,C]) of fandisk at latent
    r with a small random encoder of that reach, window and depth (eval mode, seed 0)."""
    cfg = load_setup("focusing", [
        f"model.latent_resolution={r}", "model.points_per_shape=4096", "pointnet.hidden=8",
        "pointnet.out=8", f"pointnet.reach={reach}", "encoder.width=16", "encoder.heads=2",
        f"encoder.window={window}", f"encoder.depth={depth}", "loss.tsdf_views=2",
    ])
    torch.manual_seed(0)
    model = ShapeVAE(cfg).eval()
    record = build_record(mesh_file("fandisk"), cache_settings(cfg) | {"tsdf_image": 32})
    active = record.active[r]
    voxels = SparseTensor(torch.cat([active.new_zeros(len(active), 1), active], 1),
                          torch.zeros(len(active), 0), r)
    with torch.no_grad():
        whole, _ = model.encode(record.points, record.normals, voxels)
    return model, record, active, voxels, whole


@pytest.mark.parametrize("reach,window,depth", [(0, 4, 2), (1, 4, 2), (1, 3, 3)])
def test_the_crop_encoded_from_its_region_equals_the_whole_shape_encoding(reach, window, depth):
    r = 16
    model, record, active, voxels, whole = encoded_fandisk(reach, window, depth, r)
    gen = torch.Generator().manual_seed(3)
    crop = warmup_crop(active, 60, depth * (window - 1), gen)
    assert len(crop.crop) == 60 and len(crop.region) < len(active)
    assert torch.equal(crop.region[crop.crop_in_region], crop.crop)
    near = crop.holds_needed_points(record.points, r, reach)
    assert 0 < int(near.sum()) < len(record.points)
    with torch.no_grad():
        part, _ = model.encode(record.points[near], record.normals[near],
                               voxels.index_select(crop.region))
    torch.testing.assert_close(part[crop.crop_in_region], whole[crop.crop], atol=1e-5, rtol=1e-5)
    # without the halo the crop's border latents lose their context and change
    short = warmup_crop(active, 60, 0, torch.Generator().manual_seed(3))
    near = short.holds_needed_points(record.points, r, reach)
    with torch.no_grad():
        part, _ = model.encode(record.points[near], record.normals[near],
                               voxels.index_select(short.region))
    assert not torch.allclose(part[short.crop_in_region], whole[short.crop], atol=1e-5)


def test_a_crop_no_smaller_than_the_shape_is_the_whole_shape():
    coords = torch.tensor([[0, 0, 0], [1, 0, 0], [5, 5, 5]])
    crop = warmup_crop(coords, 0, 3, torch.Generator().manual_seed(0))
    assert torch.equal(crop.crop, torch.arange(3)) and torch.equal(crop.region, torch.arange(3))
    crop = warmup_crop(coords, 2, 0, torch.Generator().manual_seed(0))
    assert len(crop.crop) == 2
