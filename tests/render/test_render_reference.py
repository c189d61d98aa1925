"""The `torch` and `embree` renderers against the Embree ray-cast oracle on real meshes."""

from __future__ import annotations

import pytest
import torch
from _render_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from _render_helpers import iou, mesh_tensors, views

from focusing.core.geometry.raycast import raycast
from focusing.core.plugin_system import get_registry
from focusing.render import default_renderer_name, make_renderer
from focusing.render.renderers import EmbreeRenderer, TorchRenderer
from focusing.render.shading import edge_neighbours

MESHES = ["armadillo", "fandisk", "bunny00", "blade", "elephant-with-holes"]


@pytest.mark.parametrize("name", MESHES)
@pytest.mark.parametrize("renderer_cls", [TorchRenderer, EmbreeRenderer], ids=["torch", "embree"])
def test_depth_and_mask_match_embree_raycast(name, renderer_cls):
    ok, why = renderer_cls.available()
    if not ok:
        pytest.skip(why)
    v, f = mesh_tensors(name)
    cams = views(3, 128, seed=7)
    ref = raycast(v, f, cams)
    out = renderer_cls().render(v, f, cams)
    assert out.depth.shape == (3, 128, 128) and out.normal.shape == (3, 128, 128, 3)
    covered = out.triangle_id >= 0
    ref_cov = ref.mask > 0.5
    for b in range(3):
        assert iou(covered[b], ref_cov[b]) >= 0.99
    # the antialiased mask only moves silhouette pixels: its 0.5 level set stays close too
    assert iou(out.mask > 0.5, ref_cov) >= 0.98
    both = covered & ref_cov
    err = (out.depth - ref.depth)[both].abs()
    assert float(err.median()) < 1e-3  # the unit box has extent 1
    assert float((err < 1e-3).float().mean()) > 0.99
    assert bool((out.depth[~covered] == 0).all()) and bool((out.normal[~covered] == 0).all())
    # unit world normals, same winding as the oracle's face normals
    n = out.normal[both]
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(n)), atol=1e-5)
    agree = (n * ref.normal[both]).sum(-1) > 0.999
    assert float(agree.float().mean()) > 0.99


def test_single_camera_gives_unbatched_maps():
    v, f = mesh_tensors("fandisk")
    cam = views(1, 64, seed=3)[0]
    out = TorchRenderer().render(v, f, cam)
    ref = raycast(v, f, cam)
    assert out.depth.shape == (64, 64) and out.mask.shape == (64, 64)
    assert out.triangle_id.dtype == torch.long
    assert iou(out.triangle_id >= 0, ref.mask > 0.5) >= 0.99


def test_antialiased_mask_is_closer_to_true_coverage_than_binary():
    """8x8-supersampled Embree coverage is the truth; analytic AA must beat the binary mask."""
    v, f = mesh_tensors("fandisk")
    cams = views(3, 96, seed=1)
    big = raycast(v, f, [c.with_size(768, 768) for c in cams])
    coverage = torch.nn.functional.avg_pool2d(big.mask[:, None].double(), 8)[:, 0]
    out = TorchRenderer().render(v, f, cams)
    binary = (out.triangle_id >= 0).double()
    err_binary = float((binary - coverage).abs().sum())
    err_aa = float((out.mask.double() - coverage).abs().sum())
    assert err_aa < 0.85 * err_binary
    assert float(out.mask.min()) >= 0.0 and float(out.mask.max()) <= 1.0


def test_near_plane_clips_per_pixel_and_behind_camera_is_ignored():
    """A quad through the camera: only the part beyond the near plane shows, at exact depth."""
    from focusing.core.geometry.camera import Camera

    cam = Camera.looking_at((0.0, 0.0, 0.0), (0.0, 0.0, -1.0), fov_y_deg=60.0,
                            width=64, height=64, near=0.5, far=10.0)
    # a floor plane y = -0.5 running from z = +3 (behind the camera) to z = -6
    v = torch.tensor([[-4, -0.5, 3], [4, -0.5, 3], [4, -0.5, -6], [-4, -0.5, -6]],
                     dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rendered = {}
    for cls in (TorchRenderer, EmbreeRenderer):
        out = cls().render(v, f, cam)
        covered = out.triangle_id >= 0
        # analytic: a pixel ray d (view depth 1) hits y = -0.5 at depth 0.5 / -d_y if d_y < 0
        _, dirs = cam.pixel_rays(torch.float64)
        scale = cam.ray_depth_scale(torch.float64)
        dy = dirs[..., 1] / scale
        depth_true = torch.where(dy < 0, 0.5 / -dy.clamp(max=-1e-12), torch.zeros_like(dy))
        inside = (depth_true >= 0.5) & (depth_true <= 6.0)  # beyond near, before z = -6
        assert bool((covered == inside).all()), cls.name
        assert torch.allclose(out.depth[covered], depth_true[covered], rtol=1e-9, atol=1e-9)
        rendered[cls.name] = covered
    assert bool((rendered["torch"] == rendered["embree"]).all())
    # core's ray caster clips the same way when asked, and not by default
    clipped = raycast(v, f, cam, dtype=torch.float64, clip=True)
    assert bool(((clipped.triangle_id >= 0) == rendered["embree"]).all())
    assert torch.allclose(clipped.depth[rendered["embree"]], depth_true[rendered["embree"]],
                          rtol=1e-9, atol=1e-9)
    unclipped = raycast(v, f, cam, dtype=torch.float64)
    assert bool(((unclipped.triangle_id >= 0) == ((dy < 0) & (depth_true <= 6.0))).all())


def test_bad_input_is_rejected_clearly():
    v, f = mesh_tensors("fandisk")
    cam = views(1, 32)[0]
    r = TorchRenderer()
    with pytest.raises(ValueError, match=r"\[V,3\]"):
        r.render(v[:, :2], f, cam)
    with pytest.raises(ValueError, match="face indices"):
        r.render(v, f + len(v), cam)
    with pytest.raises(ValueError, match="image size"):
        r.render(v, f, [cam, cam.with_size(16, 16)])
    bad = v.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        r.render(bad, f, cam)


def test_empty_mesh_renders_background():
    cam = views(1, 16)[0]
    out = TorchRenderer().render(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.long), cam)
    assert bool((out.triangle_id == -1).all()) and float(out.mask.abs().sum()) == 0.0


def test_edge_neighbours_against_brute_force():
    v, f = mesh_tensors("elephant-with-holes")  # open: has boundary edges
    nbr = edge_neighbours(f)
    faces = f.tolist()
    owners: dict = {}
    for i, face in enumerate(faces):
        for k in range(3):
            e = frozenset((face[(k + 1) % 3], face[(k + 2) % 3]))
            owners.setdefault(e, []).append(i)
    expect = []
    for i, face in enumerate(faces):
        row = []
        for k in range(3):
            own = owners[frozenset((face[(k + 1) % 3], face[(k + 2) % 3]))]
            other = [o for o in own if o != i]
            row.append(-2 if len(own) > 2 else -1 if len(own) == 1 else other[0])
        expect.append(row)
    assert nbr.tolist() == expect
    assert int((nbr == -1).sum()) > 0  # the holes


def test_registry_and_default():
    reg = get_registry("renderer")
    assert {"torch", "embree", "nvdiffrast"} <= set(reg.names())
    ok, why = reg.entry("nvdiffrast").availability()
    if not ok:
        assert "nvdiffrast not installed" in why or "CUDA not available" in why
    name = default_renderer_name("cpu")
    assert name == ("embree" if EmbreeRenderer.available()[0] else "torch")
    assert make_renderer(device="cpu").name == name
