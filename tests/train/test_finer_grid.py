"""Reconstruction above the training resolution (issue 23, S3): the VAE is local, so a run
encodes and decodes on a finer latent grid; and chunked decoding at output 256 equals the
whole decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focusing.core.config import load_setup, setup_from_run
from focusing.core.engine import read_run_config
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.sampling import sample_surface
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.vae.model import ShapeVAE
from focusing.core.vae.reconstruct import (
    decode_halo, decode_in_chunks, output_to_latent_resolution, reconstruct_file,
)

from _training_fixtures import TINY, _isolated_cache  # noqa: F401 (autouse fixture)
from meshdata import mesh_file


def test_a_finer_grid_keeps_the_inputs_frame_and_decodes_finer(tmp_path, surface_run):
    """Trained at output 32: reconstructing at 64 gives a mesh in the input's frame (bounds
    within one trained output voxel plus the dilation) with more, smaller faces."""
    src = mesh_file("couplingdown")
    raw = load_mesh(src, normalize=False)
    lo, hi = raw.bounds
    extent = float((hi - lo).max())
    meshes = {}
    for res in (None, 64):
        out = tmp_path / f"rec-{res}.ply"
        reconstruct_file(surface_run, src, out, threshold=-100.0, resolution=res)
        meshes[res] = load_mesh(out, normalize=False)
    coarse, fine = meshes[None], meshes[64]
    # the frame: the finer mesh stays in the input's box grown by at most the dilation
    # (one latent voxel at the finer grid, 1/16 of the extent) plus the deformation
    margin = extent * 2.0 / 16
    assert (fine.bounds[0] >= lo - margin).all() and (fine.bounds[1] <= hi + margin).all()
    # and it spans the input: each side of its box within one trained latent voxel (1/8)
    np.testing.assert_allclose(fine.bounds, raw.bounds, atol=extent / 8)
    assert fine.num_faces > 2 * coarse.num_faces

    def edge(m):
        return float(np.linalg.norm(m.vertices[m.faces[:, 0]] - m.vertices[m.faces[:, 1]],
                                    axis=1).mean())

    assert edge(fine) < 0.75 * edge(coarse)


def test_the_output_resolution_must_be_a_power_of_two_multiple(surface_run):
    setup = setup_from_run(read_run_config(surface_run))  # trained at output 32
    assert output_to_latent_resolution(setup, None) is None
    assert output_to_latent_resolution(setup, 32) == 8
    assert output_to_latent_resolution(setup, 128) == 32
    for bad in (16, 48, 96, 30):
        with pytest.raises(ValueError, match="power-of-two multiple"):
            output_to_latent_resolution(setup, bad)


@torch.no_grad()
def test_chunked_decode_at_output_256_equals_whole_decode():
    """A two-block decoder (the default depth) trained at latent 8, encoding fandisk on the
    latent-64 grid (output 256): spatial chunks with decode_halo's context give the whole
    decode's pruned voxels."""
    cfg = load_setup("focusing", TINY)
    torch.manual_seed(0)
    model = ShapeVAE(cfg).eval()
    mesh = load_mesh(mesh_file("fandisk"))
    r = 64
    pts, nrm = sample_surface(mesh, 4096 * 64, seed=0)
    active = dilate_voxels(surface_voxels(mesh, r), r)
    vox = SparseTensor(torch.cat([active.new_zeros(len(active), 1), active], 1),
                       torch.zeros(len(active), 0), r)
    mean, _ = model.encode(torch.as_tensor(pts).float(), torch.as_tensor(nrm).float(), vox)
    z = vox.replace(mean)
    halo = decode_halo(cfg)
    whole = decode_in_chunks(model, z, 0, halo=halo, threshold=0.0)
    chunked = decode_in_chunks(model, z, len(z) // 6, halo=halo, threshold=0.0)
    assert whole.resolution == chunked.resolution == 256
    assert 0 < len(whole) == len(chunked)
    wo, co = whole.sort()[1], chunked.sort()[1]
    assert torch.equal(whole.coords[wo], chunked.coords[co])
    torch.testing.assert_close(whole.feats[wo], chunked.feats[co], rtol=1e-4, atol=1e-5)


def test_encoding_off_the_grid_family_is_refused():
    cfg = load_setup("focusing", TINY)
    model = ShapeVAE(cfg).eval()
    vox = SparseTensor(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 0), 12)
    with pytest.raises(ValueError, match="power-of-two multiple"):
        model.encode(torch.zeros(1, 3), torch.zeros(1, 3), vox)


def test_reconstruct_cli_takes_a_finer_resolution_and_refuses_a_bad_one(tmp_path, surface_run):
    from typer.testing import CliRunner

    from focusing.core import cli

    src, out = mesh_file("couplingdown"), tmp_path / "fine.ply"
    app = cli.get_app()
    res = CliRunner().invoke(app, ["reconstruct", str(surface_run), str(src), "-o", str(out),
                                   "--threshold", "-100", "--resolution", "64"])
    assert res.exit_code == 0, res.output
    assert load_mesh(out, normalize=False).num_faces > 0
    bad = tmp_path / "bad.ply"
    res = CliRunner().invoke(app, ["reconstruct", str(surface_run), str(src), "-o", str(bad),
                                   "--resolution", "48"])
    assert res.exit_code == 2 and "power-of-two multiple" in res.output
    assert not bad.exists()
