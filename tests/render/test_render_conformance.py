"""Every registered renderer against the `torch` reference: same meshes, same cameras."""

from __future__ import annotations

import pytest
import torch
from _render_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from _render_helpers import iou, mesh_tensors, views

from focusing.core.plugin_system import get_registry
from focusing.render.renderers import TorchRenderer

NAMES = get_registry("renderer").names()
MESHES = ["armadillo", "mannequin-devil"]  # closed and open


def _instance(name):
    entry = get_registry("renderer").entry(name)
    ok, why = entry.availability()
    if not ok:
        pytest.skip(f"renderer {name!r} unavailable here: {why}")
    return entry.obj()


@pytest.fixture(scope="module")
def reference():
    out = {}
    for mesh in MESHES:
        v, f = mesh_tensors(mesh)
        cams = views(3, 128, seed=11)
        x = v.clone().requires_grad_(True)
        r = TorchRenderer().render(x, f, cams)
        w = torch.randn(r.depth.shape, generator=torch.Generator().manual_seed(0))
        grad = torch.autograd.grad((w * r.depth).sum() + (w * r.mask).sum(), x)[0]
        out[mesh] = (v, f, cams, r.detach(), w, grad)
    return out


@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("name", NAMES)
def test_renderer_conforms_to_torch(name, mesh, reference):
    renderer = _instance(name)
    v, f, cams, ref, w, ref_grad = reference[mesh]
    device = torch.device(getattr(type(renderer), "devices", ("cpu",))[0])
    x = v.detach().to(device).clone().requires_grad_(True)
    out = renderer.render(x, f.to(device), cams)
    assert out.depth.shape == ref.depth.shape and out.normal.shape == ref.normal.shape
    assert out.mask.shape == ref.mask.shape and out.triangle_id.shape == ref.triangle_id.shape
    cov = out.triangle_id.cpu() >= 0
    ref_cov = ref.triangle_id >= 0
    assert iou(cov, ref_cov) >= 0.99
    mask = out.mask.detach().cpu()
    assert iou(mask > 0.5, ref.mask > 0.5) >= 0.98
    assert float((mask - ref.mask).abs().mean()) < 0.01
    both = cov & ref_cov
    derr = (out.depth.detach().cpu() - ref.depth)[both].abs()
    assert float(derr.median()) < 1e-4 and float((derr < 1e-3).float().mean()) > 0.99
    cos = (out.normal.detach().cpu()[both] * ref.normal[both]).sum(-1)
    assert float((cos > 0.999).float().mean()) > 0.99
    # gradients of the same depth + mask loss point the same way
    wd = w.to(device)
    grad = torch.autograd.grad((wd * out.depth).sum() + (wd * out.mask).sum(), x)[0].cpu()
    cosine = torch.nn.functional.cosine_similarity(grad.reshape(-1), ref_grad.reshape(-1), dim=0)
    assert float(cosine) > 0.95
