"""The `spconv` sparse backend: spconv 2.x (Native gather-GEMM-scatter) behind our contract.

Layout mapping (checked against dense `F.conv3d` in tests/sparse_backends):
- spconv indices are (b, d0, d1, d2) int32 with `spatial_shape` [R, R, R]; we pass our
  (b, x, y, z) as is, so spconv's spatial dims are our x, y, z;
- spconv weights are KRSC, [C_out, k, k, k, C_in], where index (i, j, l) of a submanifold
  kernel reads the input at offset (i - 1, j - 1, l - 1) and index o of the stride-2 kernel
  (and of the stride-2 transposed kernel) pairs parent p with child 2 p + o. Our [K, C_in, C_out]
  weights with dz fastest are therefore one reshape + permute away, done in autograd so that
  gradients reach the caller's weight tensor.

Two fixes for spconv 2.3 on the CPU, applied on first use (never at import of this module, so
that the registry can list this backend without importing spconv):
- its backward asks CUDA for a stream (`Torch not compiled with CUDA enabled`): without CUDA,
  `spconv.pytorch.ops.get_current_stream` returns 0;
- its multithreaded `SpconvOps.scatter_add_cpu` races: with more than one thread it returns
  wrong rows now and then (about one call in ten at 8 float64 channels, every call at 64), in
  forward and in the input gradient. The CPU path of spconv's ops module gets a scatter-add that
  does `index_add_` on the same memory instead; the CUDA path never calls it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

from focusing.core.sparse import hashing
from focusing.core.plugin_system.base import SparseBackend

if TYPE_CHECKING:
    from focusing.core.sparse.tensor import SparseTensor

# op -> (kernel, stride, padding, submanifold, transposed) of spconv's index-pair generation
_PAIR_OPS = {
    "subm3": (3, 1, 1, True, False),
    "down2": (2, 2, 0, False, False),
    "up2": (2, 2, 0, False, True),
}

INSTALL_HINT = "pip install spconv (CPU) or spconv-cuXXX (the CUDA build matching your torch)"


class _CpuScatterAddFix:
    """Stands in for spconv's `SpconvOps` in its ops module; only `scatter_add_cpu` differs."""

    _TORCH_OK = (torch.float16, torch.float32, torch.float64)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def scatter_add_cpu(self, out: Any, buffer: Any, indices: Any) -> None:
        """out[indices[r]] += buffer[r] for r < len(indices); tensorview CPU tensors, in place."""
        try:
            out_t = torch.from_numpy(out.numpy_view())
        except Exception:  # a dtype numpy lacks (bfloat16): only spconv's own scatter remains
            out_t = None
        if out_t is None or out_t.dtype not in self._TORCH_OK:
            return self._inner.scatter_add_cpu(out, buffer, indices)
        idx = torch.from_numpy(indices.numpy_view()).long()
        src = torch.from_numpy(buffer.numpy_view())[: idx.shape[0]]
        out_t.index_add_(0, idx, src)
        return None


@functools.lru_cache(maxsize=1)
def _spconv() -> tuple[Any, Any, Any]:
    """Import spconv once, apply the CPU fixes, return (ops module, functional module, ConvAlgo)."""
    import spconv.pytorch.ops as ops
    from spconv.core import ConvAlgo
    from spconv.pytorch import functional as fsp

    if not torch.cuda.is_available():
        ops.get_current_stream = lambda: 0
    if not isinstance(ops.SpconvOps, _CpuScatterAddFix):
        ops.SpconvOps = _CpuScatterAddFix(ops.SpconvOps)
    return ops, fsp, ConvAlgo


def _kernel_krsc(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Our [k^3, C_in, C_out] (dz fastest) to spconv's [C_out, k, k, k, C_in], differentiably."""
    c_in, c_out = weight.shape[1], weight.shape[2]
    return weight.reshape(k, k, k, c_in, c_out).permute(4, 0, 1, 2, 3).contiguous()


class SpconvBackend(SparseBackend):
    """Sparse convolutions through spconv 2.x (Native algorithm; CPU and CUDA)."""

    name = "spconv"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Return (True, "") when spconv imports, else (False, install hint and the error)."""
        try:
            _spconv()
        except ImportError as exc:
            return False, f"{INSTALL_HINT} ({exc})"
        except Exception as exc:  # a broken install must read as unavailable, with its cause
            return False, f"spconv failed to import: {type(exc).__name__}: {exc}. {INSTALL_HINT}"
        return True, ""

    @staticmethod
    def _indices(x: "SparseTensor") -> torch.Tensor:
        # spconv's C++ reads the raw buffer: it must be contiguous int32 (a transposed view,
        # e.g. straight from `nonzero()`, silently yields wrong neighbour pairs).
        return x.coords.to(torch.int32).contiguous()

    def _pairs(self, x: "SparseTensor", op: str) -> tuple:
        """spconv's (out ids, pairs, pair counts) for op on x's coords, cached in x.cache."""
        key = ("spconv", op)
        hit = x.cache.get(key)
        if hit is None:
            ops, _, algo = _spconv()
            k, stride, pad, subm, transpose = _PAIR_OPS[op]
            extent = x.resolution
            if op == "down2":  # even, so that no voxel of an odd-sized grid falls off the edge
                extent += x.resolution % 2
            hit = ops.get_indice_pairs(
                self._indices(x), x.batch_size, [extent] * 3, algo.Native,
                [k] * 3, [stride] * 3, [pad] * 3, [1] * 3, [0] * 3, subm, transpose,
            )  # fmt: skip
            x.cache[key] = hit
        return hit

    def _submanifold(self, x: "SparseTensor", weight: torch.Tensor) -> torch.Tensor:
        """Kernel-3 submanifold conv, rows in x's order; feats [N,C_in] -> [N,C_out]."""
        _, fsp, algo = _spconv()
        _, pairs, pair_num = self._pairs(x, "subm3")
        # submanifold output indices are the input's, row for row
        return fsp.indice_subm_conv(
            x.feats.contiguous(), _kernel_krsc(weight, 3), pairs, pair_num, x.num_voxels,
            algo.Native,
        )  # fmt: skip

    def _downsample(
        self, x: "SparseTensor", weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel-2 stride-2 conv: parents [M,4] sorted by (b, x, y, z) and feats [M,C_out]."""
        _, fsp, algo = _spconv()
        out_ids, pairs, pair_num = self._pairs(x, "down2")
        feats = fsp.indice_conv(
            x.feats.contiguous(), _kernel_krsc(weight, 2), pairs, pair_num,
            out_ids.shape[0], algo.Native,
        )  # fmt: skip
        out_coords = out_ids.long().to(x.coords.device)
        order = torch.argsort(hashing.pack(out_coords))
        return out_coords[order], feats.index_select(0, order.to(feats.device))

    def _upsample(
        self, x: "SparseTensor", weight: torch.Tensor, children: torch.Tensor
    ) -> torch.Tensor:
        """Generative transposed conv: feats [8N,C_out] of the children at rows 8 i + o."""
        _, fsp, algo = _spconv()
        # spconv's stride-2 transposed conv writes child 2 p + o of every input p; children of
        # distinct parents are distinct, so its output set is exactly the 8 N children.
        out_ids, pairs, pair_num = self._pairs(x, "up2")
        feats = fsp.indice_conv(
            x.feats.contiguous(), _kernel_krsc(weight, 2), pairs, pair_num,
            out_ids.shape[0], algo.Native,
        )  # fmt: skip
        # a tuple, never a bare Tensor: SparseTensor.index_select would call Tensor.index_select
        hit = x.cache.get(("spconv", "up2_rows"))
        if hit is None:
            hit = (self._children_rows(out_ids.long().to(children.device), children),)
            x.cache[("spconv", "up2_rows")] = hit
        return feats.index_select(0, hit[0].to(feats.device))
