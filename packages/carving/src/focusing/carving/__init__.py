"""focusing.carving: voxel selectors (depth carving, zoom, frustum, far-plane) for any sparse VAE.

The selectors are plugins of kind "voxel_selector"; get one by name through the registry,
`focusing.core.plugin_system.get("voxel_selector", name)(**params)`, or `build_selector(name)`.
Each is a `focusing.core.plugin_system.base.VoxelSelector` whose one method is

    select(voxels, camera, ground_truth, rng) -> Selection

- voxels: one shape's voxels, `focusing.core.sparse.SparseTensor` with coords [N,4] long
  (batch, x, y, z), every row one batch index, x, y, z in [0, R); voxel (i, j, k) spans
  [-0.5 + i/R, -0.5 + (i+1)/R] per axis. Only coords and resolution are read, never features:
  `one_shape_voxels(xyz [N,3], R)` builds one from plain coordinates.
- camera: `focusing.core.geometry.Camera` (OpenGL conventions, view depth = -z_view).
- ground_truth: `focusing.core.plugin_system.types.RenderOutput` of the ground-truth mesh seen by
  that camera, one view: depth [H,W] (view depth, 0 on background) matching camera's image
  size; depth-carving-tight reads its normal [H,W,3] too. `focusing.core.geometry.raycast`
  makes one.
- rng: numpy Generator (zoom draws from it; the others ignore it).
- returns `focusing.core.plugin_system.types.Selection(index, camera, camera_changed)`: rows [K]
  (long, sorted, unique) into voxels, the camera to render the kept voxels with, and whether
  it is new (zoom, far-plane): then re-render the ground truth with it before the next
  selector or the loss.

`run_selectors(selectors, voxels, camera, ground_truth, rng, render=...)` runs a chain as the
Focusing trainer does (composed rows, re-rendering after a camera change). Nothing here
depends on a model; examples/carving_in_another_vae/ trains a VAE written outside the project
with it. The package README lists every selector and its parameters.
"""

from focusing.carving.chain import ChainResult, build_selector, one_shape_voxels, run_selectors

__version__ = "0.1.0"

__all__ = ["ChainResult", "build_selector", "one_shape_voxels", "run_selectors"]
