"""The memory guard of `focusing train`: refuse a run whose start will not fit, before it allocates.

Why: `--set model.latent_resolution=256` (or 1024) was accepted, ran for a minute and a half up
to 15 GB and died with a traceback (`DefaultCPUAllocator: can't allocate memory`); without a
limit it would have taken the whole machine. The guard estimates, from the setup and the number
of meshes alone (no mesh is read, so it answers in milliseconds), the peak of the run's start:

- preparing one mesh (voxelisation at R, 2R and 4R, dilation, the TSDF corners): transient;
- then the prepared records of every mesh, held for the run, plus the first steps: the PointNet
  over its (point, voxel) pairs, the encoder over every latent voxel, the decoder over the
  decoded latents (the zoom's n_max, the warm-up crop, or all of them without a zoom), the
  renders, and the weights with their gradients and Adam moments.

A run whose estimate exceeds resources.memory_fraction of the memory available (MemAvailable,
or what a cgroup limit leaves; on a GPU the steps' share is set against the GPU's free memory)
is refused with an error naming the settings that drive the largest terms.
resources.memory_fraction = 0 turns the guard off.

The model: every voxel count is SURFACE_FACTOR * N^2 dilated active voxels at a resolution N,
and every term is a measured constant times a count. The constants were measured on the CPU
(float32, torch 2.13) with benchmarks/memory_guard.py: real `focusing train` runs of the default
`focusing` and `triposf` setups at latent 16, 32 and 64 on couplingdown (and fandisk), each in a
fresh process with an empty shape cache, with variations of points_per_shape, pointnet.reach,
image_size, zoom.n_max and the widths. SURFACE_FACTOR is couplingdown's (12.5), the largest of
the 15 example meshes: the guard over-estimates meshes with less surface (the median example
mesh has 60% of it, the thin blade 3%), and under-estimates one with more (many layers, much
interior surface). On the runs measured on couplingdown alone, each term came within -5% to +40%
of its measured figure; on runs of couplingdown and fandisk, whose steps fell on fandisk (60%
of couplingdown's surface), the steps were over-estimated by up to 60%. The README's default
run (latent 32, 9 meshes) is estimated at 1.6 GB, latent 256 at 25 GB, latent 1024 at 380 GB.
The encoder term counts every latent voxel, as steps did before `loss.encode_selected`: with it
(the default) a zoomed step encodes a region around its selection, so the term over-estimates
such runs at high resolution (at output 1024 the default model's step took 1.0 GB).
Not in the estimate: evaluations (train.eval_every), which decode every latent voxel of a mesh;
several processes of one host (torchrun), each holding its own records; bf16 on a GPU, which
needs less than these float32 constants say.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from focusing.core.config import ConfigError, Setup

MiB = 2.0**20
GiB = 2.0**30

SURFACE_FACTOR = 12.5             # dilated active voxels per N^2 at resolution N (couplingdown)
PREP_BASE = 30 * MiB              # preparing one mesh: fixed part
PREP_PER_VOXEL = 880.0            # ... per dilated voxel at 4R (voxelise, dilate, TSDF corners)
RECORD_PER_VOXEL = 140.0          # a prepared record per dilated voxel at 4R (active sets, corners)
STEP_BASE = 100 * MiB             # a training step: fixed part (allocator, autograd, threads)
POINTNET_PER_PAIR_CHANNEL = 36.0  # per (point, pooled voxel) pair per pointnet.hidden channel
ENCODER_PER_VOXEL_CHANNEL = 84.0  # per latent voxel per encoder.width channel per block
DECODE_PER_LATENT = 84 * 1024.0   # per decoded latent voxel (its 64 output cubes, meshed)
RENDER_PER_PIXEL = 1900.0         # per pixel of cameras.image_size^2 (both renders, losses)
BYTES_PER_PARAMETER = 16.0        # float32 weight, gradient and two Adam moments


class MemoryGuardError(ConfigError):
    """A run's estimated memory exceeds resources.memory_fraction of the available memory."""


@dataclass
class MemoryEstimate:
    """Estimated bytes of a run's start: `prepare` (one mesh, transient) and the `held` terms
    (records and the first steps, together), each with the settings that drive it."""

    prepare: float
    held: dict[str, float] = field(default_factory=dict)
    settings: dict[str, tuple[str, ...]] = field(default_factory=dict)  # what to lower, first first
    labels: dict[str, str] = field(default_factory=dict)  # a term's words in an error
    on_device: tuple[str, ...] = ()  # the held terms that live on the GPU when training on one

    @property
    def peak(self) -> float:
        """The estimated peak in bytes: the larger of preparing a mesh and the held terms."""
        return max(self.prepare, sum(self.held.values()))

    def as_dict(self) -> dict:
        """The estimate in MiB, by term (for logs and benchmarks)."""
        out = {"prepare": self.prepare / MiB, **{k: v / MiB for k, v in self.held.items()}}
        return {**{k: round(v, 1) for k, v in out.items()}, "peak": round(self.peak / MiB, 1)}


def voxels(resolution: int) -> float:
    """Estimated dilated active voxels of one mesh at a resolution (SURFACE_FACTOR * N^2)."""
    return SURFACE_FACTOR * float(resolution) ** 2


def _decoded_latents(setup: Setup, latents: float) -> tuple[float, tuple[str, ...]]:
    """Latent voxels decoded by the largest step and the settings that bound them."""
    crop = setup.loss.warmup_latents
    warmup = min(crop, latents) if crop > 0 else latents
    if setup.loss.tsdf_steps <= 0 or setup.loss.warmup_render:
        warmup = 0.0
    if "zoom" in setup.selectors.latent:
        zoom = float(setup.selectors.params.get("zoom", {}).get("n_max", 256))
        rendered = (min(zoom, latents), ("selectors.params.zoom.n_max", "model.latent_resolution"))
    else:  # every latent voxel is decoded, the output selectors come after
        rendered = (latents, ("model.latent_resolution",))
    return max(rendered, (warmup, ("loss.warmup_latents",)), key=lambda d: d[0])


def estimate_training_memory(setup: Setup | dict, meshes: int) -> MemoryEstimate:
    """Estimated memory (bytes, see the module) of a run's start with `meshes` meshes."""
    setup = Setup.from_dict(setup)
    r = setup.model.latent_resolution
    out_voxels = voxels(4 * r)
    latents = voxels(r)
    image = setup.cameras.image_size ** 2
    record = (RECORD_PER_VOXEL * out_voxels + 24.0 * setup.model.points_per_shape
              + 4.0 * setup.loss.tsdf_views * image)
    pairs = setup.model.points_per_shape * (2 * setup.pointnet.reach + 1) ** 3
    decoded, bound = _decoded_latents(setup, latents)
    enc, dec = setup.encoder, setup.decoder
    params = 12.0 * (enc.width ** 2 * enc.depth + dec.width ** 2 * dec.depth)
    held = {
        "records": meshes * record,
        "pointnet": POINTNET_PER_PAIR_CHANNEL * pairs * setup.pointnet.hidden,
        "encoder": ENCODER_PER_VOXEL_CHANNEL * latents * enc.width * enc.depth,
        "decoder": DECODE_PER_LATENT * decoded,
        "renders": RENDER_PER_PIXEL * image,
        "weights": BYTES_PER_PARAMETER * params,
        "base": STEP_BASE,
    }
    settings = {
        "prepare": ("model.latent_resolution",),
        "records": ("model.latent_resolution", "the number of meshes"),
        "pointnet": ("model.points_per_shape", "pointnet.reach", "pointnet.hidden"),
        "encoder": ("model.latent_resolution", "encoder.width", "encoder.depth"),
        "decoder": bound,
        "renders": ("cameras.image_size",),
        "weights": ("encoder.width", "decoder.width"),
        "base": (),
    }
    labels = {"prepare": "preparing one mesh", "records": f"the {meshes} prepared meshes",
              "pointnet": f"the PointNet over {pairs:,} (point, voxel) pairs",
              "encoder": f"the encoder over {latents:,.0f} latent voxels",
              "decoder": f"the decoder over {decoded:,.0f} latent voxels"}
    prepare = PREP_BASE + PREP_PER_VOXEL * out_voxels + float(4 * r + 1) ** 3
    return MemoryEstimate(prepare, held, settings, labels,
                          on_device=("pointnet", "encoder", "decoder", "renders", "weights",
                                     "base"))


def _gpu_free_bytes() -> float | None:
    """Free memory of the GPU this process will train on, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(int(os.environ.get("LOCAL_RANK", "0")))
    return float(free)


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= 0.1 * GiB else f"{n / MiB:.0f} MiB"


def _refusal(est: MemoryEstimate, terms: dict[str, float], need: float, avail: float,
             fraction: float, where: str, resolution: int) -> MemoryGuardError:
    """The error naming the need, the limit and the settings of the two largest terms."""
    top = sorted(((k, v) for k, v in terms.items() if est.settings[k]), key=lambda kv: -kv[1])[:2]
    parts = ", ".join(f"{est.labels.get(name, 'the ' + name)} {_gib(size)}" for name, size in top)
    lower = list(dict.fromkeys(s for name, _ in top for s in est.settings[name]))
    others = f" (or {', '.join(lower[1:])})" if len(lower) > 1 else ""
    return MemoryGuardError(
        f"this run would need about {_gib(need)} of memory at its start ({parts}; "
        f"model.latent_resolution = {resolution}, output {4 * resolution}^3), more than "
        f"resources.memory_fraction = {fraction:g} of the {_gib(avail)} {where}; lower {lower[0]}"
        f"{others}, or set resources.memory_fraction=0 to skip this estimate "
        "(focusing.core.vae.train.memory)")


def check_training_memory(setup: Setup | dict, meshes: int, available: float | None = None,
                          gpu_free: float | None = None) -> MemoryEstimate:
    """The estimate, or MemoryGuardError when it exceeds resources.memory_fraction of the available
    memory (bytes; default: measured now). On a GPU the step terms are set against its free
    memory and the rest against the host's."""
    from focusing.core.engine.memory import available_memory_bytes

    setup = Setup.from_dict(setup)
    est = estimate_training_memory(setup, meshes)
    fraction = setup.resources.memory_fraction
    if fraction <= 0:
        return est
    host = available_memory_bytes() if available is None else float(available)
    # given `available` (tests), no GPU is consulted unless gpu_free is given too
    gpu = _gpu_free_bytes() if gpu_free is None and available is None else gpu_free
    held = dict(est.held)
    if gpu is not None:
        device = {k: held.pop(k) for k in est.on_device}
        if sum(device.values()) > fraction * gpu:
            raise _refusal(est, device, sum(device.values()), gpu, fraction, "free on the GPU",
                           setup.model.latent_resolution)
    host_terms = {"prepare": est.prepare} if est.prepare > sum(held.values()) else held
    need = sum(host_terms.values())
    if need > fraction * host:
        raise _refusal(est, host_terms, need, host, fraction, "available",
                       setup.model.latent_resolution)
    return est


def check_run_memory(setup: Setup | dict, data_dir, eval_dir=None) -> MemoryEstimate:
    """check_training_memory for a run on the meshes of data_dir (and eval_dir): counted, not
    read, so that a run that cannot fit is refused in milliseconds, before anything is written
    (a prepared set counts the records it holds in memory: none when streamed)."""
    from pathlib import Path

    from focusing.core.data.dataset import held_shapes

    setup = Setup.from_dict(setup)
    if setup.resources.memory_fraction <= 0:
        return estimate_training_memory(setup, 0)
    meshes = held_shapes(Path(data_dir), setup)
    meshes += held_shapes(Path(eval_dir), setup) if eval_dir is not None else 0
    return check_training_memory(setup, meshes)
