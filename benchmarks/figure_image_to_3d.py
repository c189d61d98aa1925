"""The image-to-3D picture (docs/image_to_3d.png): for each mesh, a held-out view (the condition),
the shape generated from it, and the shape VAE's own reconstruction of the source mesh (the
ceiling the generated latents are decoded through), all rendered from that view's direction.

Run: hatch run python benchmarks/figure_image_to_3d.py --structure RUN --latent RUN
     [--data examples/meshes] [--mesh fandisk --mesh armadillo ...] [--view 9] [--cfg 0]
     [--size 256] [-o docs/image_to_3d.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MESHES = ["fandisk", "armadillo", "bunny00", "couplingdown"]


def _image(mesh, camera) -> np.ndarray:
    """[H,W,3] normal render on white of a unit-box mesh (the views' renderer and shading)."""
    from focusing.flow.views import render_rgba

    rgba = render_rgba(torch.as_tensor(mesh.vertices).float(), torch.as_tensor(mesh.faces).long(),
                       camera)
    rgb, alpha = rgba[:3].permute(1, 2, 0).numpy(), rgba[3].numpy()[..., None]
    return (rgb + (1.0 - alpha)).clip(0.0, 1.0)  # RGB is premultiplied: composite on white


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structure", type=Path, required=True)
    ap.add_argument("--latent", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT / "examples" / "meshes")
    ap.add_argument("--mesh", action="append", default=None,
                    help="mesh stem in --data (repeatable)")
    ap.add_argument("--view", type=int, default=None,
                    help="view index (default: the first held-out view)")
    ap.add_argument("--cfg", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256, help="pixels of each panel")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "image_to_3d.png")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from focusing.core.geometry.meshio import find_mesh_files, load_mesh
    from focusing.core.vae.reconstruct import reconstruct_mesh
    from focusing.core.metrics import evaluate
    from focusing.eval.report import save_figure
    from focusing.flow.generate import ImageTo3D
    from focusing.flow.views import held_out_views, view_camera, view_settings

    pipe = ImageTo3D(args.structure, args.latent)
    settings = view_settings(pipe.structure_setup.views)
    view = held_out_views(pipe.structure_setup.views)[0] if args.view is None else args.view
    big = view_camera(view, {**settings, "render_size": args.size})
    names = args.mesh or DEFAULT_MESHES
    fig, axes = plt.subplots(len(names), 3, figsize=(7.5, 2.6 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        path = next((p for p in find_mesh_files(args.data) if p.stem == name), None)
        if path is None:
            raise SystemExit(f"no mesh named {name!r} in {args.data}")
        source = load_mesh(path)
        generated = pipe.generate(pipe.render_view(path, view), cfg_structure=args.cfg,
                                  cfg_latent=args.cfg, seed=args.seed)
        recon = reconstruct_mesh(pipe.vae, pipe.vae_setup, source, threshold=pipe.threshold)
        panels = [(f"{name}, held-out view {view}", source, None),
                  (f"generated (CFG {args.cfg:g}, {generated.seconds:.1f} s)", generated.mesh,
                   evaluate(generated.mesh, source, tau=0.01)["fscore"]),
                  ("VAE reconstruction", recon, evaluate(recon, source, tau=0.01)["fscore"])]
        for j, (title, mesh, f) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(_image(mesh, big))
            ax.set_title(title if f is None else f"{title}\nF@0.01 {f:.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        print(f"{name}: generated F@0.01 {panels[1][2]:.3f}, VAE {panels[2][2]:.3f}", flush=True)
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
