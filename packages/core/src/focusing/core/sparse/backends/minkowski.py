"""The `minkowski` sparse backend: MinkowskiEngine 0.5.4 behind our contract.

Build it with `hatch run build-minkowski` (scripts/build_minkowski.sh; docs/backends.md).

Mapping onto MinkowskiEngine (checked with one-hot weights and against dense `F.conv3d` in
tests/sparse_backends):
- coordinates go in as int32 (b, x, y, z) through a fresh `CoordinateManager`; its map may
  hold rows in another order than ours, so features enter as feats[unique_map] and results
  come back through inverse_map (both index ops, so autograd sees them);
- its kernel index runs x fastest (k = dx + 3 dy + 9 dz for kernel 3, ox + 2 oy + 4 oz for
  kernel 2) where ours runs z fastest: our weights are reordered with `index_select`;
- a kernel-3 conv reads the input at p + offset; the stride-2 kernel-2 conv writes parent p
  (kept by MinkowskiEngine at coordinate 2 p, tensor stride 2) from child 2 p + o;
- the upsampling is MinkowskiEngine's generative transposed conv: our voxels enter at
  tensor stride 2 (coordinates doubled) and every one yields its 8 children 2 p + o.

Python 3.10 removed `collections.Sequence` and friends, which the 0.5.4 sources import:
the names are put back (from collections.abc) before MinkowskiEngine is imported. The import
happens on first use, never at import of this module, so the registry can list the backend
without MinkowskiEngine installed.
"""

from __future__ import annotations

import collections
import collections.abc
import functools
import warnings
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch

from focusing.core.sparse import hashing
from focusing.core.plugin_system.base import SparseBackend

if TYPE_CHECKING:
    from focusing.core.sparse.tensor import SparseTensor

INSTALL_HINT = "run `hatch run build-minkowski` (builds MinkowskiEngine 0.5.4, CPU, OpenBLAS)"

_ABC_NAMES = ("Sequence", "Mapping", "MutableMapping", "Iterable", "Callable", "MutableSequence")


def _xfastest_to_ours(k: int) -> torch.Tensor:
    """perm with perm[j] = our (z-fastest) index of MinkowskiEngine's (x-fastest) kernel index j."""
    ours = torch.arange(k**3).reshape(k, k, k)  # [dx, dy, dz]
    return ours.permute(2, 1, 0).reshape(-1)  # MinkowskiEngine order: [dz, dy, dx]


_PERM3 = _xfastest_to_ours(3)
_PERM2 = _xfastest_to_ours(2)


@functools.lru_cache(maxsize=1)
def _me() -> SimpleNamespace:
    """Import MinkowskiEngine once (with the Python 3.11 fix) and return the pieces we use."""
    for name in _ABC_NAMES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    with warnings.catch_warnings():
        # a CPU-only build warns on every import that it is CPU-only
        warnings.filterwarnings("ignore", message=".*CPU_ONLY.*")
        import MinkowskiEngine as ME
        from MinkowskiEngineBackend._C import ConvolutionMode, CoordinateMapKey

    return SimpleNamespace(
        ME=ME,
        CoordinateManager=ME.CoordinateManager,
        CoordinateMapKey=CoordinateMapKey,
        CoordinateMapType=ME.CoordinateMapType,
        KernelGenerator=ME.KernelGenerator,
        conv=ME.MinkowskiConvolutionFunction,
        conv_t=ME.MinkowskiConvolutionTransposeFunction,
        mode=ConvolutionMode.DEFAULT,
    )


class MinkowskiBackend(SparseBackend):
    """Sparse convolutions through MinkowskiEngine 0.5.4 (CPU build; a CUDA build also works)."""

    name = "minkowski"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Return (True, "") when MinkowskiEngine imports, else (False, build hint + error)."""
        try:
            _me()
        except ImportError as exc:
            return False, f"{INSTALL_HINT} ({exc})"
        except Exception as exc:  # a broken build must read as unavailable, with its cause
            why = f"{type(exc).__name__}: {exc}"
            return False, f"MinkowskiEngine failed to import: {why}. {INSTALL_HINT}"
        return True, ""

    @staticmethod
    def _manager(me: SimpleNamespace, device: torch.device):
        """A fresh coordinate manager for `device` (GPU maps need a CUDA build)."""
        kind = me.CoordinateMapType.CUDA if device.type == "cuda" else me.CoordinateMapType.CPU
        return me.CoordinateManager(D=3, coordinate_map_type=kind)

    def _map(self, x: "SparseTensor", stride: int) -> tuple:
        """(manager, key, unique_map, inverse_map) of x's coords inserted at tensor stride
        `stride` (coordinates scaled by it), cached in x.cache; the manager also caches the
        kernel maps MinkowskiEngine builds on it."""
        cache_key = ("minkowski", "map", stride)
        hit = x.cache.get(cache_key)
        if hit is None:
            me = _me()
            manager = self._manager(me, x.feats.device)
            coords = x.coords.clone()
            coords[:, 1:] *= stride
            key, (unique_map, inverse_map) = manager.insert_and_map(
                coords.to(torch.int32).contiguous(), [stride] * 3, ""
            )
            n = x.coords.shape[0]
            if unique_map.shape[0] != n:
                raise ValueError(
                    f"minkowski: {n - unique_map.shape[0]} duplicate coordinates in the input"
                )
            dev = x.feats.device
            hit = (manager, key, unique_map.long().to(dev), inverse_map.long().to(dev))
            x.cache[cache_key] = hit
        return hit

    def _submanifold(self, x: "SparseTensor", weight: torch.Tensor) -> torch.Tensor:
        """Kernel-3 submanifold conv, rows in x's order; feats [N,C_in] -> [N,C_out]."""
        me = _me()
        manager, key, unique_map, inverse_map = self._map(x, 1)
        kgen = me.KernelGenerator(kernel_size=3, stride=1, dilation=1, dimension=3)
        kernel = weight.index_select(0, _PERM3.to(weight.device))
        # out key = in key: the output lives on the input's own coordinates (submanifold)
        out = me.conv.apply(
            x.feats.index_select(0, unique_map), kernel, kgen, me.mode, key, key, manager
        )
        return out.index_select(0, inverse_map)

    def _downsample(
        self, x: "SparseTensor", weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel-2 stride-2 conv: parents [M,4] sorted by (b, x, y, z) and feats [M,C_out]."""
        me = _me()
        manager, key, unique_map, _ = self._map(x, 1)
        kgen = me.KernelGenerator(kernel_size=2, stride=2, dilation=1, dimension=3)
        hit = x.cache.get(("minkowski", "down2"))
        out_key = me.CoordinateMapKey(4) if hit is None else hit[0]  # None: filled by the call
        out = me.conv.apply(
            x.feats.index_select(0, unique_map),
            weight.index_select(0, _PERM2.to(weight.device)),
            kgen, me.mode, key, out_key, manager,
        )  # fmt: skip
        if hit is None:
            # parents sit at coordinate 2 p (tensor stride 2) in MinkowskiEngine's map
            parents = manager.get_coordinates(out_key).long().to(x.coords.device)
            parents[:, 1:] = torch.div(parents[:, 1:], 2, rounding_mode="floor")
            order = torch.argsort(hashing.pack(parents))
            hit = (out_key, parents[order], order.to(out.device))
            x.cache[("minkowski", "down2")] = hit
        _, parents, order = hit
        return parents, out.index_select(0, order)

    def _upsample(
        self, x: "SparseTensor", weight: torch.Tensor, children: torch.Tensor
    ) -> torch.Tensor:
        """Generative transposed conv: feats [8N,C_out] of the children at rows 8 i + o."""
        me = _me()
        # our grid is MinkowskiEngine's tensor stride 2 of the output grid
        manager, key, unique_map, _ = self._map(x, 2)
        kgen = me.KernelGenerator(
            kernel_size=2, stride=2, dilation=1, is_transpose=True,
            expand_coordinates=True, dimension=3,
        )  # fmt: skip
        hit = x.cache.get(("minkowski", "up2"))
        out_key = me.CoordinateMapKey(4) if hit is None else hit[0]
        out = me.conv_t.apply(
            x.feats.index_select(0, unique_map),
            weight.index_select(0, _PERM2.to(weight.device)),
            kgen, me.mode, key, out_key, manager,
        )  # fmt: skip
        if hit is None:
            got = manager.get_coordinates(out_key).long().to(children.device)
            hit = (out_key, self._children_rows(got, children).to(out.device))
            x.cache[("minkowski", "up2")] = hit
        return out.index_select(0, hit[1])
