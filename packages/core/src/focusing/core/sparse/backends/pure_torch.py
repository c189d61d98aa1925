"""The `torch` sparse backend: the pure-PyTorch reference (CPU and GPU).

Neighbour maps come from sorted int64 coordinate keys (`focusing.core.sparse.hashing`) and are
cached on the SparseTensor (shared by every layer that runs on the same coords, and remapped by
`SparseTensor.index_select`). The convolutions are implicit GEMMs: for a chunk of output rows, the
input rows of all kernel offsets are gathered into one [rows, K*C_in] matrix (missing neighbours
read a zero row) and multiplied by the [K*C_in, C_out] weight in one GEMM. Chunks keep the gathered
matrix in cache; the autograd Functions save only the inputs, the weight and the map.

Why this shape (measured on the 2-core CPU, see benchmarks/results/sparse.md): a gather-GEMM-
scatter loop over the 27 offsets does a third of the FLOPs on surface shells but streams every
gathered and scattered row through memory, and CPU `index_add_` is slow; the implicit GEMM does
~2x the useful FLOPs (a surface voxel has ~14 of 27 neighbours) but only reads inputs and writes
each output row once. The submanifold neighbour relation is symmetric (j = nbr(i, k) iff
i = nbr(j, 26 - k)), so its input gradient is the same implicit GEMM on the same map with the
mirrored kernel, and the map costs only 4 binary searches per voxel: offsets (dx, dy, dz) with the
same (dx, dy) are adjacent keys (one search finds all three), and half the offsets are the mirror
images of the other half.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from focusing.core.sparse import hashing
from focusing.core.plugin_system.base import SparseBackend

if TYPE_CHECKING:
    from focusing.core.sparse.tensor import SparseTensor

_S = hashing.COORD_BITS
# bytes of gathered matrix per chunk: about the size of a core's L2 cache on the CPU
_CPU_CHUNK_BYTES = 1 << 20
_GPU_CHUNK_BYTES = 1 << 28


def _chunk_rows(width: int, elem: int, device: torch.device) -> int:
    """Rows per chunk so that a [rows, width] gathered matrix fits the chunk budget."""
    budget = _GPU_CHUNK_BYTES if device.type != "cpu" else _CPU_CHUNK_BYTES
    return max(64, budget // max(1, width * elem))


# ---------------------------------------------------------------------------- neighbour maps
class KernelMap:
    """Input row of each (kernel offset, output row): `nbr` LongTensor [K, M], `n_in` where
    absent."""

    def __init__(self, nbr: torch.Tensor, n_in: int) -> None:
        self.nbr = nbr
        self.n_in = n_in

    def index_select(self, idx: torch.Tensor, new_row: torch.Tensor) -> "KernelMap":
        """The map of the subset rows idx [M'] of a submanifold map (new_row [N]:
        old -> new or -1)."""
        n = self.n_in
        m = idx.numel()
        sub = self.nbr.index_select(1, idx)
        valid = sub < n
        remapped = new_row.index_select(0, sub.clamp_max(n - 1).reshape(-1)).view_as(sub)
        keep = valid & (remapped >= 0)
        out = torch.where(keep, remapped, torch.full_like(remapped, m))
        return KernelMap(out.to(sub.dtype), m)


def _sorted_keys(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sorted keys [N] of coords and the sorting permutation (None when already sorted)."""
    hashing.check_range(coords)
    keys = hashing.pack(coords)
    if keys.numel() < 2 or bool((keys[1:] > keys[:-1]).all()):
        return keys, None
    sk, order = torch.sort(keys)
    if bool((sk[1:] == sk[:-1]).any()):
        raise ValueError("torch backend: the SparseTensor has duplicate coordinates")
    return sk, order


def build_kernel3_map(coords: torch.Tensor) -> KernelMap:
    """Submanifold 3x3x3 map of coords [N,4]: nbr [27, N], nbr[k, i] = row of
    coords[i] + offset k."""
    n = coords.shape[0]
    device = coords.device
    sk, order = _sorted_keys(coords)
    # int32 rows halve the map's memory traffic; column n is a scratch slot for absent pairs
    idt = torch.int32 if n < 2**31 - 1 else torch.long
    nbr = torch.full((27, n + 1), n, dtype=idt, device=device)
    if n == 0:
        return KernelMap(nbr[:, :n], n)
    ar = torch.arange(n, device=device, dtype=idt)
    none = torch.full((), n, dtype=idt, device=device)
    for dx in (-1, 0):
        for dy in (-1, 0, 1):
            if dx == 0 and dy == 1:
                break  # the remaining (dx, dy) are mirror images of those done
            base = 9 * (dx + 1) + 3 * (dy + 1)
            q = sk + ((dx << (2 * _S)) + (dy << _S) - 1)  # key of (x+dx, y+dy, z-1)
            if dx == 0 and dy == 0:
                # own column: z - 1 is the previous key when present
                prev = (ar - 1).clamp_min(0)
                p = ar - ((sk[prev] == q) & (ar > 0)).to(idt)
            else:
                p = torch.searchsorted(sk, q, out_int32=idt == torch.int32)
            # keys of (.., z-1), (.., z), (.., z+1) are consecutive in sk when present
            for dz in range(3):
                pc = p.clamp_max(n - 1)
                hit = sk[pc] == q + dz
                nbr[base + dz, :n] = torch.where(hit, pc, none)
                p = p + hit.to(idt)
    for k in range(14, 27):  # mirror: j = nbr(i, 26 - k)  =>  nbr(j, k) = i (absent -> scratch)
        nbr[k].index_put_((nbr[26 - k, :n],), ar)
    nbr = nbr[:, :n]
    if order is not None:
        # sorted position s is row order[s]: nbr_rows[k, order[s]] = order[nbr[k, s]]
        order_pad = torch.cat([order, order.new_full((1,), n)]).to(idt)
        rows = order_pad[nbr.reshape(-1).long()].view(27, n)
        nbr = torch.empty_like(rows)
        nbr[:, order] = rows
    return KernelMap(nbr, n)


def _cached_map(x: "SparseTensor", key: tuple, build):
    """x.cache[key], built from x.coords by `build` on first use or after a device move."""
    m = x.cache.get(key)
    if m is None or m.nbr.device != x.coords.device:
        m = build(x.coords)
        x.cache[key] = m
    return m


def kernel3_map(x: "SparseTensor") -> KernelMap:
    """The cached submanifold map of x (built on first use)."""
    return _cached_map(x, ("kernel3",), build_kernel3_map)


class DownsampleMap:
    """Parents of a stride-2 conv: parent coords [M,4] (sorted), child map [8, M], parent of each
    input [N] and its child offset index [N]."""

    def __init__(self, coords: torch.Tensor) -> None:
        """Build from input coords [N,4]."""
        n = coords.shape[0]
        parents = coords.clone()
        parents[:, 1:] = coords[:, 1:] // 2
        off = coords[:, 1:] - 2 * parents[:, 1:]
        self.offset = off[:, 0] * 4 + off[:, 1] * 2 + off[:, 2]  # KERNEL2_OFFSETS index
        pkeys, self.parent = torch.unique(hashing.pack(parents), sorted=True, return_inverse=True)
        self.coords = hashing.unpack(pkeys)
        m = pkeys.numel()
        self.nbr = torch.full((8, m), n, dtype=torch.long, device=coords.device)
        self.nbr[self.offset, self.parent] = torch.arange(n, device=coords.device)
        if n and int((self.nbr < n).sum()) != n:
            raise ValueError("torch backend: the SparseTensor has duplicate coordinates")
        self.n_in = n


def downsample_map(x: "SparseTensor") -> DownsampleMap:
    """The cached stride-2 map of x (built on first use)."""
    return _cached_map(x, ("down2",), DownsampleMap)


# ---------------------------------------------------------------------------- implicit GEMMs
def _gather_mm(x: torch.Tensor, nbr: torch.Tensor, wflat: torch.Tensor) -> torch.Tensor:
    """out[i] = concat_k x_pad[nbr[k, i]] @ wflat for x [N,C], nbr [K,M], wflat [K*C, C_out];
    [M,C_out]."""
    k, m = nbr.shape
    c = x.shape[1]
    x_pad = torch.cat([x, x.new_zeros((1, c))])
    out = x.new_empty((m, wflat.shape[1]))
    step = _chunk_rows(k * c, x.element_size(), x.device)
    for a in range(0, m, step):
        b = min(m, a + step)
        idx = nbr[:, a:b].t().reshape(-1)
        g = x_pad.index_select(0, idx).view(b - a, k * c)
        torch.mm(g, wflat, out=out[a:b])
    return out


def _gather_t_mm(x: torch.Tensor, nbr: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """sum_i concat_k x_pad[nbr[k, i]]^T grad[i] for x [N,C], nbr [K,M], grad [M,C_out];
    [K*C, C_out]."""
    k, m = nbr.shape
    c = x.shape[1]
    x_pad = torch.cat([x, x.new_zeros((1, c))])
    acc = grad.new_zeros((k * c, grad.shape[1]))
    step = _chunk_rows(k * c, x.element_size(), x.device)
    for a in range(0, m, step):
        b = min(m, a + step)
        idx = nbr[:, a:b].t().reshape(-1)
        g = x_pad.index_select(0, idx).view(b - a, k * c)
        acc.addmm_(g.t(), grad[a:b])
    return acc


def _subm_backward_fused(
    x: torch.Tensor, nbr: torch.Tensor, grad: torch.Tensor, w_mirror: torch.Tensor, need_x: bool,
    need_w: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Input and weight gradients of the submanifold implicit GEMM in one pass over the chunks."""
    k, m = nbr.shape
    c_in, c_out = x.shape[1], grad.shape[1]
    x_pad = torch.cat([x, x.new_zeros((1, c_in))]) if need_w else None
    g_pad = torch.cat([grad, grad.new_zeros((1, c_out))]) if need_x else None
    gx = x.new_empty((m, c_in)) if need_x else None
    gw = grad.new_zeros((k * c_in, c_out)) if need_w else None
    step = _chunk_rows(k * max(c_in, c_out), x.element_size(), x.device)
    for a in range(0, m, step):
        b = min(m, a + step)
        idx = nbr[:, a:b].t().reshape(-1)
        if need_x:
            gg = g_pad.index_select(0, idx).view(b - a, k * c_out)
            torch.mm(gg, w_mirror, out=gx[a:b])
        if need_w:
            gx_in = x_pad.index_select(0, idx).view(b - a, k * c_in)
            gw.addmm_(gx_in.t(), grad[a:b])
    return gx, gw


class _SubmanifoldConv(torch.autograd.Function):
    """out = implicit GEMM over the 27-offset map; saves only feats, weight and the map."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        k, c_in, c_out = weight.shape
        ctx.save_for_backward(feats, weight)
        ctx.nbr = nbr
        return _gather_mm(feats, nbr, weight.reshape(k * c_in, c_out))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        feats, weight = ctx.saved_tensors
        k, c_in, c_out = weight.shape
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # grad_x[j] = sum_k grad[nbr(j, k)] @ W[26 - k]^T: same map, mirrored kernel
        w_mirror = weight.flip(0).transpose(1, 2).reshape(k * c_out, c_in) if need_x else None
        gx, gw = _subm_backward_fused(
            feats, ctx.nbr, grad.contiguous(), w_mirror, need_x, need_w
        )
        return gx, (gw.view(k, c_in, c_out) if gw is not None else None), None


class _DownsampleConv(torch.autograd.Function):
    """out[p] = sum_o x[child(p, o)] @ W[o]; every input has exactly one parent."""

    @staticmethod
    def forward(ctx, feats, weight, nbr, parent, offset):
        k, c_in, c_out = weight.shape
        ctx.save_for_backward(feats, weight, nbr, parent, offset)
        return _gather_mm(feats, nbr, weight.reshape(k * c_in, c_out))

    @staticmethod
    def backward(ctx, grad):
        feats, weight, nbr, parent, offset = ctx.saved_tensors
        k, c_in, c_out = weight.shape
        grad = grad.contiguous()
        gx = gw = None
        if ctx.needs_input_grad[0]:
            # z[p, o] = grad[p] @ W[o]^T, read at (parent(i), offset(i))
            z = grad @ weight.permute(2, 0, 1).reshape(c_out, k * c_in)
            gx = z.view(-1, c_in).index_select(0, parent * k + offset)
        if ctx.needs_input_grad[1]:
            gw = _gather_t_mm(feats, nbr, grad).view(k, c_in, c_out)
        return gx, gw, None, None, None


class TorchBackend(SparseBackend):
    """Pure-PyTorch sparse convolutions: hashed kernel maps cached on the tensor, implicit GEMM."""

    name = "torch"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Always available (pure PyTorch)."""
        return True, ""

    def _submanifold(self, x: "SparseTensor", weight: torch.Tensor) -> torch.Tensor:
        """Kernel-3 submanifold conv, rows in x's order; feats [N,C_in] -> [N,C_out]."""
        kmap = kernel3_map(x)
        return _SubmanifoldConv.apply(x.feats.contiguous(), weight, kmap.nbr)

    def _downsample(
        self, x: "SparseTensor", weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel-2 stride-2 conv: parents [M,4] sorted by (b, x, y, z) and feats [M,C_out]."""
        dmap = downsample_map(x)
        feats = _DownsampleConv.apply(
            x.feats.contiguous(), weight, dmap.nbr, dmap.parent, dmap.offset
        )
        return dmap.coords, feats

    def _upsample(
        self, x: "SparseTensor", weight: torch.Tensor, children: torch.Tensor
    ) -> torch.Tensor:
        """Generative transposed conv: feats [8N,C_out] of the children at rows 8 i + o."""
        k, c_in, c_out = weight.shape
        # every child has exactly one parent: one dense GEMM, rows 8 i + o come out in place
        return (x.feats @ weight.permute(1, 0, 2).reshape(c_in, k * c_out)).view(-1, c_out)
