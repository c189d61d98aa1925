"""Image to mesh (paper sec. 3.5): the structure flow samples where the latent voxels are, the
latent flow samples what they hold, and the shape VAE's decoder (with its occupancy pruning)
turns them into a SparseFlex mesh. Inference lives here, beside the models, not in training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from focusing.core.geometry.mesh import Mesh
from focusing.core.geometry.meshio import load_mesh
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.sparseflex.field import sparseflex_from_features
from focusing.core.sparseflex.flexicubes import extract_mesh
from focusing.core.vae.calibration import load_calibrated_threshold
from focusing.core.vae.reconstruct import decode_halo, decode_in_chunks
from focusing.flow import rectified_flow as rf
from focusing.flow.config import FlowSetup
from focusing.flow.stages import (
    LatentStage, StructureStage, check_vae_identity, load_stage, load_vae,
)
from focusing.flow.structure_vae import occupied_coords
from focusing.flow.views import preprocess, render_rgba, view_camera, view_settings


@dataclass
class Generated:
    """A generated shape: the mesh (unit box), its latent voxels [K,3] at R, seconds taken."""

    mesh: Mesh
    structure: torch.Tensor
    seconds: float


class ImageTo3D:
    """The two trained stages and the shape VAE, ready to generate."""

    def __init__(self, structure_run: Path, latent_run: Path, allow_vae_change: bool = False):
        """Load both runs and the latent run's shape VAE; VAEChangedError when that VAE's
        weights are not those the latent flow was trained on (a warning with
        allow_vae_change). The structure flow learnt only where latent voxels are, which the
        VAE's weights do not change, so its record is not checked. Each run's typed setup
        (FlowSetup) and the VAE's (Setup) are kept: structure_setup, latent_setup, vae_setup."""
        self.structure, self.structure_setup = load_stage(structure_run, expect="structure")
        self.latent, self.latent_setup = load_stage(latent_run, expect="latent")
        self.vae, self.vae_setup, identity = load_vae(Path(self.latent_setup.vae_run))
        check_vae_identity(Path(latent_run), self.latent_setup, identity, allow_vae_change)
        calibrated = load_calibrated_threshold(Path(self.latent_setup.vae_run))
        # the VAE run's calibrated occupancy logit (calibration.json), else its setup's
        self.threshold = (self.vae_setup.inference.occupancy_threshold
                          if calibrated is None else calibrated)
        r_s, r_l = self.structure.resolution, self.latent.resolution
        r_vae = self.vae_setup.model.latent_resolution
        if r_s != r_l or r_l != r_vae:
            raise ValueError(f"the runs disagree on the latent resolution: structure {r_s}, "
                             f"latent {r_l}, VAE {r_vae}")

    def render_view(self, mesh_path: Path, k: int) -> torch.Tensor:
        """RGBA [4,H,W] of view k of a mesh (normalised to the unit box), as the runs' views are
        made."""
        mesh = load_mesh(mesh_path)
        camera = view_camera(k, view_settings(self.structure_setup.views))
        return render_rgba(torch.as_tensor(mesh.vertices).float(), torch.as_tensor(mesh.faces),
                           camera)

    def _tokens(self, stage, setup: FlowSetup, rgba: torch.Tensor) -> torch.Tensor:
        image = preprocess(rgba, setup.views.image_size)[None]
        return stage.encode_images(image)

    @torch.no_grad()
    def sample_structure(self, rgba: torch.Tensor, steps: int, cfg_strength: float,
                         seed: int) -> torch.Tensor:
        """Latent voxels [K,3] at R sampled for an image RGBA [4,H,W]."""
        model: StructureStage = self.structure
        s = self.structure_setup.sampler
        tokens = self._tokens(model, self.structure_setup, rgba)
        g = model.grid
        noise = torch.randn(1, model.svae.latent_channels, g, g, g,
                            generator=torch.Generator().manual_seed(seed))
        z = rf.euler_sample(lambda x, t, c: model.dit(x, torch.full((1,), t), c), noise, tokens,
                            torch.zeros_like(tokens), steps, s.rescale_t, cfg_strength,
                            s.cfg_interval)
        return occupied_coords(model.svae.decode(z))

    @torch.no_grad()
    def sample_latents(self, rgba: torch.Tensor, coords: torch.Tensor, steps: int,
                       cfg_strength: float, seed: int) -> SparseTensor:
        """VAE latents [K,C] on voxels coords [K,3] for an image (denormalised)."""
        model: LatentStage = self.latent
        s = self.latent_setup.sampler
        tokens = self._tokens(model, self.latent_setup, rgba)
        voxels = SparseTensor(torch.cat([coords.new_zeros(len(coords), 1), coords], 1),
                              torch.zeros(len(coords), 0), model.resolution).sort()[0]
        c = model.dit.in_channels
        noise = torch.randn(len(coords), c, generator=torch.Generator().manual_seed(seed + 1))
        feats = rf.euler_sample(
            lambda x, t, ctx: model.dit(voxels.replace(x), torch.full((1,), t), ctx).feats,
            noise, tokens, torch.zeros_like(tokens), steps, s.rescale_t, cfg_strength,
            s.cfg_interval)
        return voxels.replace(model.denormalize(feats))

    @torch.no_grad()
    def decode(self, z: SparseTensor, threshold: float | None = None) -> Mesh:
        """Shape VAE decode (pruned at `threshold`, default the VAE run's calibrated occupancy
        logit) and SparseFlex meshing; a unit-box Mesh."""
        thr = self.threshold if threshold is None else float(threshold)
        out = decode_in_chunks(self.vae, z, self.vae_setup.inference.chunk_voxels,
                               halo=decode_halo(self.vae_setup), threshold=thr)
        result = extract_mesh(sparseflex_from_features(out), training=False)
        return Mesh(result.vertices.double().numpy(), result.faces.numpy(), None)

    def generate(self, rgba: torch.Tensor, steps: int | None = None,
                 cfg_structure: float | None = None, cfg_latent: float | None = None,
                 seed: int = 0, threshold: float | None = None) -> Generated:
        """Image RGBA [4,H,W] (or RGB [3,H,W]) in [0, 1] -> a generated shape; deterministic by
        seed."""
        t0 = time.perf_counter()
        ss, sl = self.structure_setup.sampler, self.latent_setup.sampler
        coords = self.sample_structure(rgba, int(steps or ss.steps),
                                       float(ss.cfg_structure if cfg_structure is None
                                             else cfg_structure), seed)
        if len(coords) == 0:
            raise RuntimeError("the structure flow generated an empty structure (every voxel logit "
                               "<= 0): train the structure stage longer, or try another --seed")
        z = self.sample_latents(rgba, coords, int(steps or sl.steps),
                                float(sl.cfg_latent if cfg_latent is None else cfg_latent), seed)
        mesh = self.decode(z, threshold)
        return Generated(mesh, coords, time.perf_counter() - t0)
