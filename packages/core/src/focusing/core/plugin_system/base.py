"""The base class of every plugin kind, in one place, and the table that ties kind, base and hook.

A plugin is a class with a unique `name` and an honest `available()`; each kind adds the
methods that the toolkit calls. A reader who wants to write a backend, a renderer, a selector
or an upsampler starts here; `PLUGIN_KINDS` below lists every kind, its base class and the
pluggy hook that returns its classes (`focusing.core.plugin_system.hookspecs`). The data types the
methods exchange sit below this module: `RenderOutput`, `Selection`, `UpsampleOutput` and
`Stage` in `focusing.core.plugin_system.types`; `SparseTensor` (core.sparse.tensor) and `Camera`
(core.geometry.camera) are named in annotations only.

So this module imports nothing above it, and no module it names imports it back
(tests/test_import_rule.py checks the import graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from focusing.core.plugin_system.types import RenderOutput, Selection, Stage, UpsampleOutput

if TYPE_CHECKING:
    from focusing.core.geometry.camera import Camera
    from focusing.core.sparse.tensor import SparseTensor

__all__ = [
    "PLUGIN_KINDS",
    "FlowStage",
    "Plugin",
    "PluginKind",
    "Renderer",
    "SparseBackend",
    "Stage",
    "Upsampler",
    "VoxelSelector",
]


class Plugin:
    """Base of every plugin class; subclasses set `name` and may override `available`."""

    name: ClassVar[str] = ""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Return (usable here, reason or install hint when not)."""
        return True, ""


# --------------------------------------------------------------------------- sparse_backend
class SparseBackend(Plugin):
    """Three sparse convolutions behind one weight layout; subclasses register a unique `name`.

    Every backend takes the same weights, so one model can swap backends and the conformance
    suite can compare them against the `torch` reference:
    - offsets of the 3x3x3 kernel are `sparse.kernels.KERNEL3_OFFSETS` (dx, dy, dz each in
      -1, 0, 1, dz fastest); submanifold weights are [27, C_in, C_out] in that order;
    - the 2x2x2 kernels of the strided and transposed convolutions use `KERNEL2_OFFSETS`
      ((ox, oy, oz) in {0, 1}^3, oz fastest); their weights are [8, C_in, C_out].

    Output coordinate order is part of the contract:
    - submanifold: the input's order;
    - downsample (kernel 2, stride 2): parent coords (b, x // 2, y // 2, z // 2), unique,
      sorted lexicographically by (b, x, y, z);
    - upsample (generative transposed, kernel 2, stride 2): every input voxel i yields its 8
      children (b, 2x + ox, 2y + oy, 2z + oz) at rows 8 i + o (`SparseTensor.child_coords`).

    The public methods are template methods: they check the inputs, answer an empty input
    themselves, and call the `_submanifold` / `_downsample` / `_upsample` of the subclass with
    a non-empty, checked SparseTensor; the bias is added after the subclass returns.
    """

    def submanifold_conv(
        self, x: "SparseTensor", weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> "SparseTensor":
        """Kernel-3 submanifold conv: out[i] = sum_k x[nbr(i, k)] @ weight[k] (+ bias);
        [N,C_out]."""
        self._check(x, weight, 27, "submanifold_conv")
        if x.num_voxels == 0:
            return x.replace(_add_bias(x.feats @ weight[13], bias))
        return x.replace(_add_bias(self._submanifold(x, weight), bias))

    def downsample_conv(
        self, x: "SparseTensor", weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> "SparseTensor":
        """Kernel-2 stride-2 conv to the parent grid (resolution // 2); [M,C_out]."""
        from focusing.core.sparse.tensor import SparseTensor

        self._check(x, weight, 8, "downsample_conv")
        out_res = max(1, x.resolution // 2)
        if x.num_voxels == 0:
            return SparseTensor(
                x.coords.new_zeros((0, 4)), _add_bias(x.feats @ weight[0], bias), out_res,
                batch_size=x.batch_size,
            )  # fmt: skip
        coords, feats = self._downsample(x, weight)
        return SparseTensor(coords, _add_bias(feats, bias), out_res, batch_size=x.batch_size)

    def upsample_conv(
        self, x: "SparseTensor", weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> "SparseTensor":
        """Generative transposed conv: each voxel to its 8 children (resolution * 2); [8N,C_out]."""
        from focusing.core.sparse.tensor import SparseTensor

        self._check(x, weight, 8, "upsample_conv")
        children = x.child_coords()
        feats = x.feats @ weight[0] if x.num_voxels == 0 else self._upsample(x, weight, children)
        return SparseTensor(
            children, _add_bias(feats, bias), x.resolution * 2, batch_size=x.batch_size
        )

    # -- what a backend implements (inputs checked and non-empty) -------------------------
    def _submanifold(self, x: "SparseTensor", weight: torch.Tensor) -> torch.Tensor:
        """Feats [N,C_out] of the submanifold conv, rows in x's order (no bias)."""
        raise NotImplementedError

    def _downsample(
        self, x: "SparseTensor", weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Parent coords [M,4] sorted by (b, x, y, z) and their feats [M,C_out] (no bias)."""
        raise NotImplementedError

    def _upsample(
        self, x: "SparseTensor", weight: torch.Tensor, children: torch.Tensor
    ) -> torch.Tensor:
        """Feats [8N,C_out] of the children [8N,4] (rows 8 i + o) (no bias)."""
        raise NotImplementedError

    def _children_rows(self, got: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
        """Rows [8N] with got[rows] == children, for a library's output coords got [8N,4] that
        should hold the same set as children [8N,4]; a RuntimeError names the backend if not."""
        from focusing.core.sparse import hashing

        if got.shape[0] != children.shape[0]:
            raise RuntimeError(
                f"{self.name} upsample_conv produced {got.shape[0]} voxels for "
                f"{children.shape[0] // 8} inputs (expected {children.shape[0]}): duplicate input "
                "coordinates?"
            )
        got_sorted, got_order = torch.sort(hashing.pack(got))
        want_keys = hashing.pack(children)
        pos = torch.searchsorted(got_sorted, want_keys).clamp_max(got.shape[0] - 1)
        if not torch.equal(got_sorted[pos], want_keys):
            raise RuntimeError(
                f"{self.name} upsample_conv: output coordinates are not the 8 children")
        return got_order[pos]

    def _check(
        self, x: "SparseTensor", weight: torch.Tensor, kernel_volume: int, what: str
    ) -> None:
        """Raise a ValueError naming the backend and the fault when x and weight do not fit."""
        who = f"{self.name} {what}"
        if weight.ndim != 3 or weight.shape[0] != kernel_volume:
            raise ValueError(
                f"{who}: weight must be [{kernel_volume}, C_in, C_out], got {tuple(weight.shape)}"
            )
        if x.feats.ndim != 2 or x.feats.shape[1] != weight.shape[1]:
            raise ValueError(
                f"{who}: feats {tuple(x.feats.shape)} do not match C_in={weight.shape[1]}"
            )
        if x.feats.dtype != weight.dtype:
            raise ValueError(f"{who}: feats {x.feats.dtype} and weight {weight.dtype} differ")
        if x.coords.shape[0] != x.feats.shape[0]:
            raise ValueError(
                f"{who}: {x.coords.shape[0]} coords for {x.feats.shape[0]} feature rows")


def _add_bias(feats: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """feats [N,C] + bias [C] (kept in the autograd graph), or feats when there is no bias."""
    return feats if bias is None else feats + bias


# --------------------------------------------------------------------------------- renderer
class Renderer(Plugin):
    """Differentiable mesh renderer: gradients flow to vertex positions."""

    def render(
        self, vertices: torch.Tensor, faces: torch.Tensor, camera: "Camera | list[Camera]"
    ) -> "RenderOutput":
        """Render vertices [V,3] (float, world) and faces [F,3] (long) with one camera or a list."""
        raise NotImplementedError


# --------------------------------------------------------------------------- voxel_selector
class VoxelSelector(Plugin):
    """Chooses the voxels a training step decodes (latent stage) or meshes (output stage)."""

    default_stage: ClassVar[Stage] = "latent"

    def __init__(self, **params):
        self.params = params

    def select(
        self,
        voxels: "SparseTensor",
        camera: "Camera",
        ground_truth: "RenderOutput",
        rng: np.random.Generator,
    ) -> "Selection":
        """Return the indices of `voxels` to keep and the camera to render them with."""
        raise NotImplementedError


# -------------------------------------------------------------------------------- upsampler
class Upsampler(nn.Module, Plugin):
    """2x sparse upsampling module: SparseTensor at R -> SparseTensor at 2R.

    Built as `cls(c_in, c_out, backend=..., **params)`; `forward(x, target, prune, threshold)`
    returns an UpsampleOutput (children, occupancy logits and targets where it has a head)."""

    def forward(self, x: "SparseTensor", target: torch.Tensor | None = None, prune: bool = False,
                threshold: float = 0.0) -> "UpsampleOutput":
        """x at R -> children at 2R; `target` [K,4] GT active voxels at 2R; prune at inference."""
        raise NotImplementedError


# ------------------------------------------------------------------------------- flow_stage
class FlowStage(Plugin):
    """One trainable stage of the image-to-3D model (focusing-flow's `structure` and `latent`).

    `focusing train-flow --stage NAME` looks the stage up by name, asks `check(setup, vae)`
    before anything is written, builds its module with `build(setup, vae, encoder)` (setup: the
    typed flow setup, focusing.flow.config.FlowSetup, with the stage's tables such as
    setup.latent_flow; vae: the shape VAE's typed focusing.core.config.Setup; encoder: the image
    encoder plugin instance), runs `before_steps(trainer)` once (a sub-run such as the structure
    VAE, or statistics of the data), then trains the TrainStep that
    `train_step(setup, shapes, module, device)` returns on core's engine. `shape_keys` are the
    config keys that fix the module's parameter shapes (a resume that changes one is refused);
    `needs_latents` asks the trainer to encode the shape VAE's latent means of every shape.
    A new stage is one subclass plus its registration in the `focusing_flow_stages` hook.
    """

    shape_keys: ClassVar[tuple[str, ...]] = ()
    needs_latents: ClassVar[bool] = False

    def check(self, setup, vae) -> None:
        """Refuse (ConfigError) a setup this stage cannot build on this shape VAE; called before
        a run writes anything (every key's own rule is checked already)."""

    def build(self, setup, vae, encoder: Plugin) -> nn.Module:
        """A fresh module of this stage (what its run's checkpoints hold)."""
        raise NotImplementedError

    def before_steps(self, trainer) -> None:
        """Work before the stage's own steps, with the trainer's data and module ready."""

    def train_step(self, setup, shapes: list, module: nn.Module, device: torch.device):
        """The engine's TrainStep (focusing.core.engine.TrainStep) of this stage."""
        raise NotImplementedError

    def summary(self, trainer) -> dict:
        """Stage-specific entries of the run's summary.json."""
        return {}


# ------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class PluginKind:
    """One plugin kind: its registry key, the hook returning its objects, their base, a summary."""

    kind: str
    hook: str
    base: type | None  # None: the hook returns files or callables, not Plugin classes
    what: str


# The order is the order `focusing plugins` prints.
PLUGIN_KINDS: tuple[PluginKind, ...] = (
    PluginKind("sparse_backend", "focusing_sparse_backends", SparseBackend,
               "submanifold, strided and transposed sparse convolutions"),
    PluginKind("renderer", "focusing_renderers", Renderer,
               "differentiable mesh -> depth, normal, mask"),
    PluginKind("voxel_selector", "focusing_voxel_selectors", VoxelSelector,
               "which voxels a training step decodes or meshes"),
    PluginKind("upsampler", "focusing_upsamplers", Upsampler, "2x sparse upsampling modules"),
    PluginKind("image_encoder", "focusing_image_encoders", Plugin,
               "image conditions of the flow models (focusing-flow)"),
    PluginKind("flow_stage", "focusing_flow_stages", FlowStage,
               "trainable stages of the image-to-3D flow (focusing-flow)"),
    PluginKind("setup", "focusing_setups", None, "setup presets: TOML files named by their stem"),
    PluginKind("command", "focusing_commands", None, "typer subcommands of the `focusing` CLI"),
)  # fmt: skip
