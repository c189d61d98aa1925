"""Conditioning views: rendered by our renderer, cropped to the object, cached, held-out views
differ from the training views."""

from __future__ import annotations

import torch

from focusing.core.geometry.meshio import load_mesh
from focusing.flow.views import cached_views, preprocess, view_camera

from meshdata import mesh_file

SETTINGS = {"version": 1, "count": 3, "held_out": 1, "render_size": 64, "image_size": 32,
            "fov_y_deg": 40.0, "radius": 2.0, "seed": 0}


def test_views_are_object_centred_normal_renders_and_cached(tmp_path):
    path = mesh_file("couplingdown")
    mesh = load_mesh(path)
    v, f = torch.as_tensor(mesh.vertices).float(), torch.as_tensor(mesh.faces)
    views = cached_views(path, v, f, SETTINGS, tmp_path)
    assert views.shape == (4, 3, 32, 32) and views.min() >= 0 and views.max() <= 1
    # the crop leaves a black border of about 10% and the object fills the middle
    for img in views:
        covered = img.sum(0) > 0
        assert covered[12:20, 12:20].float().mean() > 0.3
        assert not covered[0].any() and not covered[-1].any()
    # every view looks from elsewhere
    assert all(not torch.allclose(views[i], views[j]) for i in range(4) for j in range(i))
    files = list(tmp_path.glob("couplingdown-*.pt"))
    assert len(files) == 1
    assert torch.equal(cached_views(path, v, f, SETTINGS, tmp_path), views)
    assert not torch.equal(view_camera(3, SETTINGS).world_to_view,
                           view_camera(0, SETTINGS).world_to_view)


def test_preprocess_premultiplies_and_crops_to_the_alpha_box():
    rgba = torch.zeros(4, 40, 40)
    rgba[:, 10:20, 5:25] = 1.0  # a white 10 x 20 box
    rgba[:3, 30:, 30:] = 1.0  # colour without alpha: black after premultiplying
    out = preprocess(rgba, 24)
    assert out.shape == (3, 24, 24)
    # the box spans 20 / 24 = 1 / 1.2 of the width, centred
    row = out[0, 12]
    assert row[0] == 0 and row[-1] == 0 and (row[3:21] > 0.99).all()
    assert out[:, :3].max() == 0 and out[:, -3:].max() == 0
