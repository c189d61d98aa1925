"""Which stage limits image-to-3D: each stage's ceiling on the training meshes' held-out views.

For each mesh: the structure VAE's own reconstruction IoU (encode the true latent occupancy,
decode its mean: what a perfect structure flow could reach), the structure flow's sampled IoU,
and the F@0.01 of the latent flow sampled on the *true* structure (what a perfect structure
stage would give), beside the shape VAE's reconstruction F@0.01 (the ceiling of both).

Run: hatch run python benchmarks/flow_stage_ceilings.py --structure RUN --latent RUN
     [--data examples/meshes] [--cfg 0] [--steps 12]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structure", type=Path, required=True)
    ap.add_argument("--latent", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT / "examples" / "meshes")
    ap.add_argument("--cfg", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()

    from focusing.core.geometry.mesh import Mesh
    from focusing.core.data.dataset import ShapeDataset
    from focusing.core.vae.reconstruct import reconstruct_mesh
    from focusing.core.metrics import evaluate
    from focusing.flow.generate import ImageTo3D
    from focusing.flow.structure_vae import iou, occupancy_grid, occupied_coords
    from focusing.flow.views import held_out_views

    pipe = ImageTo3D(args.structure, args.latent)
    dataset = ShapeDataset(args.data, pipe.vae_setup, progress=False)
    r = pipe.latent.resolution
    held_out = held_out_views(pipe.structure_setup.views)
    print(f"{'mesh':<22}{'SVAE IoU':>9}{'flow IoU':>9}{'F@.01 true structure':>22}"
          f"{'VAE F@.01':>10}")
    rows = []
    with torch.no_grad():
        for path, rec in zip(dataset.files, dataset.records):
            gt = Mesh(rec.vertices.double().numpy(), rec.faces.numpy(), None)
            truth = occupancy_grid(rec.active[r], r)
            mean, _ = pipe.structure.svae.encode(truth[None])
            svae_iou = iou(occupancy_grid(occupied_coords(pipe.structure.svae.decode(mean)), r),
                           truth)
            flow_iou, f_true = [], []
            for k in held_out:
                rgba = pipe.render_view(path, k)
                sampled = pipe.sample_structure(rgba, args.steps, args.cfg, 0)
                flow_iou.append(iou(occupancy_grid(sampled, r), truth))
                mesh = pipe.decode(pipe.sample_latents(rgba, rec.active[r].long(), args.steps,
                                                       args.cfg, 0))
                f_true.append(evaluate(mesh, gt, tau=0.01)["fscore"] if len(mesh.faces) else 0.0)
            recon = reconstruct_mesh(pipe.vae, pipe.vae_setup, gt, threshold=pipe.threshold)
            f_vae = evaluate(recon, gt, tau=0.01)["fscore"]
            rows.append((svae_iou, np.mean(flow_iou), np.mean(f_true), f_vae))
            print(f"{rec.name:<22}{svae_iou:>9.3f}{rows[-1][1]:>9.3f}{rows[-1][2]:>22.3f}"
                  f"{f_vae:>10.3f}", flush=True)
    m = np.mean(rows, axis=0)
    print(f"{'mean':<22}{m[0]:>9.3f}{m[1]:>9.3f}{m[2]:>22.3f}{m[3]:>10.3f}")


if __name__ == "__main__":
    main()
