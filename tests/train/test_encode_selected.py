"""loss.encode_selected: a rendered step that encodes only the latents its selectors keep, and
the encoder's reach around them, gives those latents their whole-shape features, and the step
the same losses (all but the KL term, which then covers the region), at a cost set by the
selection rather than by the shape."""

from __future__ import annotations

import pytest
import torch

from focusing.core.config import load_setup
from focusing.core.geometry.voxelize import near_voxels
from focusing.core.vae.train.trainer import Trainer, selected_region
from test_warmup_crop import encoded_fandisk

from _training_fixtures import TINY, _isolated_cache  # noqa: F401 (fixture)


def test_near_voxels_against_a_brute_force_distance_matrix():
    g = torch.Generator().manual_seed(0)
    query = torch.randint(0, 20, (500, 3), generator=g)
    centres = torch.randint(0, 20, (17, 3), generator=g)
    dist = (query[:, None, :].double() - centres[None].double()).abs().amax(2).amin(1)
    for radius in (0, 1, 3, 7):
        assert torch.equal(near_voxels(query, centres, radius), dist <= radius)
    assert not near_voxels(query, centres[:0], 2).any()
    assert near_voxels(query[:0], centres, 2).shape == (0,)


@pytest.mark.parametrize("reach,window,depth", [(0, 4, 2), (1, 4, 2), (1, 3, 3)])
def test_a_scattered_selection_encoded_from_its_region_equals_the_whole_shape(reach, window,
                                                                             depth):
    r = 32
    model, record, active, voxels, whole = encoded_fandisk(reach, window, depth, r)
    # a scattered selection (not one compact cluster), in the selectors' own (unsorted) order
    rows = torch.randperm(len(active), generator=torch.Generator().manual_seed(1))[:5]
    halo = depth * (window - 1)
    region, near = selected_region(active, rows, record.points, r, halo, reach)
    assert torch.equal(region, region.sort().values) and len(region) < len(active)
    assert 0 < int(near.sum()) < len(record.points)
    at = torch.searchsorted(region, rows)
    assert torch.equal(region[at], rows)
    with torch.no_grad():
        part, _ = model.encode(record.points[near], record.normals[near],
                               voxels.index_select(region))
    torch.testing.assert_close(part[at], whole[rows], atol=1e-5, rtol=1e-5)
    # without the halo the kept latents lose their context and change
    region, near = selected_region(active, rows, record.points, r, 0, reach)
    with torch.no_grad():
        part, _ = model.encode(record.points[near], record.normals[near],
                               voxels.index_select(region))
    assert not torch.allclose(part[torch.searchsorted(region, rows)], whole[rows], atol=1e-5)
    # nothing kept: the whole shape (a view that sees nothing still has a KL term)
    region, near = selected_region(active, rows[:0], record.points, r, halo, reach)
    assert torch.equal(region, torch.arange(len(active))) and bool(near.all())


def test_a_rendered_step_that_encodes_the_selection_gives_the_whole_shape_steps_losses(
        tiny_data, tmp_path):
    # latent 16 with a one-voxel encoder reach: the region is a part of the shape
    small = TINY + ["model.latent_resolution=16", "encoder.window=2", "encoder.depth=1",
                    "train.seed=0"]
    whole = Trainer(load_setup("focusing", small + ["loss.encode_selected=false"]), tiny_data,
                    tmp_path / "whole", progress=False)
    part = Trainer(load_setup("focusing", small + ["loss.encode_selected=true"]), tiny_data,
                   tmp_path / "part", progress=False)
    try:
        for (k, a), b in zip(whole.model.state_dict().items(), part.model.state_dict().values()):
            assert torch.equal(a, b), k  # the same initial weights (train.seed)
        smaller = 0
        with torch.no_grad():
            for step in range(3):
                for record in whole.data.records:
                    _, ra = whole.shape_loss(record, step, 0)
                    _, rb = part.shape_loss(record, step, 0)
                    assert ra.counts["latent_kept"] == rb.counts["latent_kept"] > 0
                    assert ra.counts["latent_all"] == rb.counts["latent_all"]
                    assert rb.counts["latent_kept"] <= rb.counts["latent_encoded"] \
                        <= rb.counts["latent_all"]
                    smaller += rb.counts["latent_encoded"] < rb.counts["latent_all"]
                    assert "latent_encoded" not in ra.counts
                    assert ra.counts["output_all"] == rb.counts["output_all"]
                    assert ra.counts["triangles"] == rb.counts["triangles"]
                    assert set(ra.terms) == set(rb.terms)
                    for name in set(ra.terms) - {"kl", "total"}:
                        assert rb.terms[name] == pytest.approx(ra.terms[name], rel=1e-4,
                                                               abs=1e-6), name
                    torch.testing.assert_close(rb.mesh[0], ra.mesh[0], atol=1e-5, rtol=1e-4)
        assert smaller > 0  # the region was a part of the shape, not all of it
    finally:
        whole.close()
        part.close()
