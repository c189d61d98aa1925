"""Inference: chunked decoding equals the whole decode; bad input gets clear errors."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.sampling import sample_surface
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.config import load_setup
from focusing.core.vae.reconstruct import _chunks, decode_halo, decode_in_chunks
from focusing.core.vae.model import ShapeVAE

from _training_fixtures import TINY, _isolated_cache  # noqa: F401 (autouse fixture)
from meshdata import mesh_file


def _latents(cfg, model, name="fandisk"):
    r = cfg["model"]["latent_resolution"]
    mesh = load_mesh(mesh_file(name))
    pts, nrm = sample_surface(mesh, 4096, seed=0)
    active = dilate_voxels(surface_voxels(mesh, r), r)
    vox = SparseTensor(torch.cat([active.new_zeros(len(active), 1), active], 1),
                       torch.zeros(len(active), 0), r)
    mean, _ = model.encode(torch.as_tensor(pts).float(), torch.as_tensor(nrm).float(), vox)
    return vox.replace(mean)


def test_chunks_partition_the_voxels_into_compact_blocks():
    coords = surface_voxels(load_mesh(mesh_file("armadillo")), 32)
    parts = _chunks(coords, 300)
    rows = torch.cat(parts)
    assert len(rows) == len(coords) and len(torch.unique(rows)) == len(coords)
    assert len(parts) > 1
    for p in parts:  # spatial blocks: each spans at most the block side on every axis
        span = coords[p].max(0).values - coords[p].min(0).values
        assert int(span.max()) < 32


@torch.no_grad()
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_chunked_decode_equals_whole_decode_with_the_decode_halo(depth):
    cfg = load_setup("focusing", TINY + ["model.latent_resolution=32", f"decoder.depth={depth}"])
    torch.manual_seed(0)
    model = ShapeVAE(cfg).eval()
    z = _latents(cfg, model)
    halo = decode_halo(cfg)
    assert halo == depth * (4 - 1) + 1  # window 4
    whole = decode_in_chunks(model, z, 0, halo=halo, threshold=float("-inf"))
    chunked = decode_in_chunks(model, z, len(z) // 8, halo=halo, threshold=float("-inf"))
    assert len(whole) == 64 * len(z) == len(chunked)
    wo, co = whole.sort()[1], chunked.sort()[1]
    assert torch.equal(whole.coords[wo], chunked.coords[co])
    torch.testing.assert_close(whole.feats[wo], chunked.feats[co], rtol=1e-4, atol=1e-5)
    if depth > 1:  # one window of context, enough for one block, is not for more
        short = decode_in_chunks(model, z, len(z) // 8, halo=cfg["decoder"]["window"],
                                 threshold=float("-inf"))
        so = short.sort()[1]
        assert not torch.allclose(whole.feats[wo], short.feats[so], rtol=1e-4, atol=1e-5)


def test_reconstruct_reports_bad_input_and_writes_nothing(tmp_path, tiny_run):
    bad = mesh_file("fandisk").parents[2] / "tests" / "data" / "bad_meshes" / "nan_vertex.off"
    out = tmp_path / "out.ply"
    res = CliRunner().invoke(cli.get_app(),
                             ["reconstruct", str(tiny_run), str(bad), "-o", str(out)])
    assert res.exit_code == 2 and "nan_vertex.off" in res.output and not out.exists()
    res = CliRunner().invoke(cli.get_app(), ["reconstruct", str(tmp_path / "nope"),
                                             str(mesh_file("fandisk")), "-o", str(out)])
    assert res.exit_code == 2 and "not a run folder" in res.output and not out.exists()


def test_reconstruct_writes_a_mesh_in_the_inputs_frame(tmp_path, surface_run):
    src = mesh_file("couplingdown")
    out = tmp_path / "rec.ply"
    res = CliRunner().invoke(cli.get_app(), ["reconstruct", str(surface_run), str(src),
                                             "-o", str(out), "--threshold", "-100"])
    assert res.exit_code == 0, res.output
    rec, raw = load_mesh(out, normalize=False), load_mesh(src, normalize=False)
    assert rec.num_faces > 0
    # decoded cubes lie within the (dilated) active voxels: the output stays in the input's box,
    # grown by at most the dilation (1 latent voxel) plus the deformation, in the input's units
    lo, hi = raw.bounds
    margin = (hi - lo).max() * 2.0 / 8
    assert (rec.bounds[0] >= lo - margin).all() and (rec.bounds[1] <= hi + margin).all()
