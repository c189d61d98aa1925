"""Inference (`focusing reconstruct`): encode a mesh, decode every latent voxel (in spatial
chunks if asked), prune by occupancy, extract the SparseFlex mesh and map it back to the
input's frame. It reads a run folder (config.json and checkpoints) and nothing of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from focusing.core.config import ConfigError, Setup, setup_from_run
from focusing.core.engine.checkpoint import load_weights
from focusing.core.engine.runfolder import read_run_config
from focusing.core.geometry.mesh import Mesh, normalize_mesh
from focusing.core.geometry.meshio import check_mesh_output, load_mesh, save_mesh
from focusing.core.geometry.sampling import sample_surface
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.sparse.hashing import CoordIndex
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.sparseflex.field import sparseflex_from_features
from focusing.core.sparseflex.flexicubes import extract_mesh
from focusing.core.vae.calibration import load_calibrated_threshold
from focusing.core.vae.model import ShapeVAE


def load_model(run_dir: Path, step: int | None = None) -> tuple[ShapeVAE, Setup]:
    """The model of a run folder with its setup, weights of `step` (default: newest intact)."""
    setup = setup_from_run(read_run_config(run_dir))
    model = ShapeVAE(setup.to_dict())
    load_weights(Path(run_dir), model, step)
    model.eval()
    return model, setup


def _chunks(coords: torch.Tensor, chunk_voxels: int) -> list[torch.Tensor]:
    """Split latent voxels [N,3] into spatial blocks of at most ~chunk_voxels rows each."""
    if chunk_voxels <= 0 or len(coords) <= chunk_voxels:
        return [torch.arange(len(coords))]
    # cubic blocks, sized so that an average block holds about chunk_voxels voxels
    extent = int(coords.max()) + 1
    n_blocks = max(int(np.ceil(len(coords) / chunk_voxels)), 1)
    side = max(int(np.ceil(extent / round(n_blocks ** (1 / 3) + 0.5))), 1)
    block = coords // side
    keys = (block[:, 0] * (extent + 1) + block[:, 1]) * (extent + 1) + block[:, 2]
    return [torch.nonzero(keys == k).squeeze(1) for k in torch.unique(keys)]


def decode_halo(setup: Setup | dict) -> int:
    """Latent voxels of context around a chunk that make chunked decoding exact: depth x
    (window - 1) + 1.

    Attention windows are fixed on absolute coordinates, so a voxel's block output depends on
    voxels at most window - 1 away (per axis); `depth` blocks chain that. The two upsamplers'
    3x3x3 submanifold convs, at 2R and 4R, reach one latent voxel further. A halo of the
    window alone is exact only for a one-block decoder. Measured on fandisk at latent 32 with
    the default decoder (two blocks, window 8; untrained weights, 7,634 latents in 8 chunks):
    a halo of 8 left features off by up to 1.1e-2 (mean |feature| 3.4e-2), a halo of
    decode_halo = 15 by 1.5e-7, float32 rounding (tests/train/test_reconstruct.py)."""
    dec = Setup.from_dict(setup).decoder
    return dec.depth * (dec.window - 1) + 1


@torch.no_grad()
def decode_in_chunks(model: ShapeVAE, z: SparseTensor, chunk_voxels: int, halo: int,
                     threshold: float) -> SparseTensor:
    """Decode latents z at R into pruned SparseFlex features at 4R, `chunk_voxels` latent voxels
    at a time (0: all at once). Each chunk decodes its own voxels plus a halo of `halo` latent
    voxels and keeps only its own voxels' descendants, so chunks never overlap; with halo >=
    decode_halo(setup) the result equals the unchunked decode."""
    active = z.coords[:, 1:]
    feats, coords = [], []
    for own in _chunks(active, chunk_voxels):
        lo, hi = active[own].min(0).values - halo, active[own].max(0).values + halo
        ctx = ((active >= lo) & (active <= hi)).all(1).nonzero().squeeze(1)
        out = model.decode(z.index_select(ctx), prune=True, threshold=threshold).features
        if len(own) < len(active):
            parent = out.coords.clone()
            parent[:, 1:] //= 4
            own_index = CoordIndex(z.coords[own])
            out = out.index_select((own_index.lookup(parent) >= 0).nonzero().squeeze(1))
        feats.append(out.feats)
        coords.append(out.coords)
    return SparseTensor(torch.cat(coords), torch.cat(feats), 4 * z.resolution)


@torch.no_grad()
def reconstruct_mesh(model: ShapeVAE, setup: Setup | dict, mesh: Mesh, chunk_voxels: int = 0,
                     threshold: float | None = None, latent_resolution: int | None = None
                     ) -> Mesh:
    """Reconstruct a normalised mesh with the VAE; returns the mesh in the same (unit-box) frame.

    latent_resolution: encode and decode on this latent grid (output 4x that) instead of the
    trained one; a power-of-two multiple of it (see ShapeVAE.encode). The surface samples grow
    with the square of the ratio, so each voxel holds as many points as in training.
    Chunks decode with decode_halo's context, so chunking changes nothing but memory."""
    setup = Setup.from_dict(setup)
    trained = setup.model.latent_resolution
    r = trained if latent_resolution is None else int(latent_resolution)
    thr = setup.inference.occupancy_threshold if threshold is None else float(threshold)
    n_points = setup.model.points_per_shape * (r // trained) ** 2
    points, normals = sample_surface(mesh, n_points, seed=0)
    active = dilate_voxels(surface_voxels(mesh, r), r)
    voxels = SparseTensor(torch.cat([active.new_zeros(len(active), 1), active], 1),
                          torch.zeros(len(active), 0), r)
    mean, _ = model.encode(torch.as_tensor(points, dtype=torch.float32),
                           torch.as_tensor(normals, dtype=torch.float32), voxels)
    out = decode_in_chunks(model, voxels.replace(mean), chunk_voxels,
                           halo=decode_halo(setup), threshold=thr)
    field = sparseflex_from_features(out)
    result = extract_mesh(field, training=False)
    return Mesh(result.vertices.double().numpy(), result.faces.numpy(), None)


def output_to_latent_resolution(setup: Setup, output_resolution: int | None) -> int | None:
    """The latent grid of an output resolution (4x), checked against the trained one; None
    stays None (the trained grid). ConfigError naming what is accepted."""
    if output_resolution is None:
        return None
    trained = 4 * setup.model.latent_resolution
    ratio = output_resolution / trained
    if output_resolution % 4 or ratio < 1 or ratio != int(ratio) or int(ratio) & (int(ratio) - 1):
        raise ConfigError(f"--resolution {output_resolution}: the run was trained at output "
                         f"{trained}; give {trained} or a power-of-two multiple of it "
                         f"({', '.join(str(trained * 2 ** k) for k in range(1, 4))}, ...)")
    return output_resolution // 4


def reconstruct_file(run_dir: Path, mesh_path: Path, out_path: Path,
                     chunk_voxels: int | None = None,
                     step: int | None = None, threshold: float | None = None,
                     resolution: int | None = None) -> dict:
    """`focusing reconstruct`: reconstruct a mesh file and save it in the input's frame; the
    occupancy threshold defaults to the run's calibrated one (calibration.json), else the
    setup's inference.occupancy_threshold; resolution: the output grid (default the trained
    one; a power-of-two multiple of it decodes finer than training)."""
    check_mesh_output(out_path, "-o")  # a bad -o is said before any work
    model, setup = load_model(run_dir, step)
    latent = output_to_latent_resolution(setup, resolution)
    raw = load_mesh(mesh_path, normalize=False)
    mesh, center, scale = normalize_mesh(raw)
    chunk = setup.inference.chunk_voxels if chunk_voxels is None else int(chunk_voxels)
    if threshold is None:
        threshold = load_calibrated_threshold(run_dir)
    rec = reconstruct_mesh(model, setup, mesh, chunk, threshold, latent)
    if len(rec.faces) == 0:
        used = setup.inference.occupancy_threshold if threshold is None else threshold
        raise RuntimeError(
            f"the model reconstructed an empty surface for {mesh_path} (occupancy threshold "
            f"{used:g}): the run is too short to have learnt this shape; train longer")
    rec = Mesh(rec.vertices / scale + center, rec.faces, None)
    save_mesh(rec, out_path)
    return {"vertices": int(len(rec.vertices)), "faces": int(len(rec.faces)), "out": str(out_path)}
