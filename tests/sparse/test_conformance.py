"""One conformance suite for every available sparse backend.

Each backend gets identical weights and inputs (surface voxels of real meshes, rows shuffled) and
must match the `torch` reference in forward outputs and input/weight/bias gradients within 1e-4
relative, for every operation, batch sizes 1 and 3, channels 1, 8 and 64. The `torch` reference
itself is held to an independent brute-force (Python dict) implementation in float64.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from focusing.core.plugin_system import get_registry
from focusing.core.sparse.tensor import SparseTensor

from ._data import brute_downsample, brute_submanifold, brute_upsample, mesh_batch

R = 32
BACKENDS = get_registry("sparse_backend").names(available_only=True)
BATCHES = {1: ("fandisk",), 3: ("bunny00", "blade", "armadillo")}
OPS = {"submanifold": 27, "downsample": 8, "upsample": 8}
BRUTE = {"submanifold": brute_submanifold, "downsample": brute_downsample,
         "upsample": brute_upsample}
RTOL = 1e-4


def _backend(name: str):
    return get_registry("sparse_backend").get(name)()


def _run(backend, op, coords, feats, weight, bias):
    fn = getattr(backend, f"{op}_conv")
    out = fn(SparseTensor(coords, feats, R), weight, bias)
    return out.coords, out.feats


@lru_cache(maxsize=None)
def _case(batch: int, c_in: int, op: str, dtype: torch.dtype):
    coords = mesh_batch(BATCHES[batch], R, shuffle_seed=batch)
    g = torch.Generator().manual_seed(1000 * batch + c_in)
    c_out = 8 if c_in != 8 else 5
    feats = torch.randn(coords.shape[0], c_in, generator=g, dtype=torch.float64).to(dtype)
    weight = (torch.randn(OPS[op], c_in, c_out, generator=g, dtype=torch.float64)
              / c_in**0.5).to(dtype)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64).to(dtype)
    return coords, feats, weight, bias


def _forward_backward(run, coords, feats, weight, bias, seed):
    """Output coords and feats and the gradients of <out, G> for a fixed random G."""
    f, w, b = (t.clone().requires_grad_() for t in (feats, weight, bias))
    out_coords, out = run(coords, f, w, b)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    grads = torch.autograd.grad((out * g.to(out.dtype)).sum(), (f, w, b))
    return out_coords, out.detach(), grads


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """|got - want| <= RTOL * max|want| elementwise, and the same in norm."""
    got, want = got.double(), want.double()
    scale = want.abs().max().clamp_min(1e-12)
    err = (got - want).abs().max()
    assert err <= RTOL * scale, f"{what}: max error {err:.3g} vs scale {scale:.3g}"
    assert (got - want).norm() <= RTOL * want.norm().clamp_min(1e-12), f"{what}: norm error"


@lru_cache(maxsize=None)
def _reference(op: str, batch: int, channels: int):
    """The torch backend's outputs and gradients for one case (computed once, shared)."""
    coords, feats, weight, bias = _case(batch, channels, op, torch.float32)
    ref = _backend("torch")
    return _forward_backward(
        lambda c, f, w, b: _run(ref, op, c, f, w, b), coords, feats, weight, bias, seed=7
    )


def _brute(op, c, f, w, b):
    out = BRUTE[op](c, f, w, b)
    return out if op != "submanifold" else (c, out)


@pytest.mark.parametrize("channels", [1, 8, 64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("name", BACKENDS)
def test_backend_conforms(name, op, batch, channels):
    coords, feats, weight, bias = _case(batch, channels, op, torch.float32)
    if name == "torch":
        got = _reference(op, batch, channels)
        # the reference itself against brute force, in float64
        want = _forward_backward(
            lambda c, f, w, b: _brute(op, c, f, w, b),
            coords, feats.double(), weight.double(), bias.double(), seed=7,
        )  # fmt: skip
    else:
        backend = _backend(name)
        got = _forward_backward(
            lambda c, f, w, b: _run(backend, op, c, f, w, b), coords, feats, weight, bias, seed=7
        )
        want = _reference(op, batch, channels)
    assert torch.equal(got[0], want[0]), f"{name} {op}: output coordinates or their order differ"
    _close(got[1], want[1], f"{name} {op} forward")
    for what, a, b in zip(("feats grad", "weight grad", "bias grad"), got[2], want[2]):
        _close(a, b, f"{name} {op} {what}")


def test_every_registered_backend_is_listed():
    names = get_registry("sparse_backend").names()
    assert "torch" in BACKENDS and {"torch", "spconv", "minkowski"} <= set(names)
