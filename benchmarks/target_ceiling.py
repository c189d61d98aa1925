"""Where is the TSDF warm-up target lossy? Mesh the target itself and score it like a
reconstruction, per mesh, at output 128 and 256 (issue 22, item 1).

The render-free warm-up regresses every decoded corner onto the cached target of
`focusing.core.data.records.tsdf_target` (view-fused sign, exact distance near the surface,
truncation 2 output voxels). A decoder that learnt that target perfectly would mesh to what this
script meshes: FlexiCubes on every child of the latent voxels, corner SDF = the target, zero
deformation. Its F-score is therefore the ceiling of the warm-up, and the gap between that
ceiling and 1 is where render supervision has room to add quality.

    hatch run python benchmarks/target_ceiling.py [--latent 32 64] [--out FILE.json]
        [--data examples/meshes examples/meshes-eval]

The records come from the same builder the trainer uses (`build_record`), with the `small`
budget's settings (8 TSDF views at 96^2, 8,192 points); the metrics follow the project's
protocol (`focusing.core.metrics.evaluate`, 100,000 points, tau 0.005).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from focusing.core.geometry.mesh import Mesh, normalize_mesh
from focusing.core.geometry.meshio import find_mesh_files, load_mesh
from focusing.core.metrics import evaluate
from focusing.core.sparse.hashing import CoordIndex
from focusing.core.sparseflex.field import field_from_corner_sdf
from focusing.core.sparseflex.flexicubes import extract_mesh
from focusing.core.data.records import CACHE_VERSION, build_record

ROOT = Path(__file__).resolve().parents[1]


def target_mesh(record, latent: int) -> Mesh:
    """FlexiCubes mesh of the record's TSDF target on every child of its latent voxels."""
    out = 4 * latent
    act = record.active[latent]
    off = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    kids = torch.unique((act[:, None, :] * 4 + off[None]).reshape(-1, 3), dim=0)
    corners = record.tsdf_corners
    index = CoordIndex(torch.cat([corners.new_zeros(len(corners), 1), corners], 1))
    trunc = 2.0 / out

    def sdf(pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        ijk = torch.round((pos + 0.5) * out).long()
        found = index.lookup(torch.cat([batch[:, None].long(), ijk], 1))
        values = record.tsdf_values.double()[found.clamp_min(0)]
        return torch.where(found >= 0, values, torch.full_like(values, trunc))

    m = extract_mesh(field_from_corner_sdf(kids, out, sdf))
    return Mesh(m.vertices.double().numpy(), m.faces.numpy(), None)


def main(argv: list[str]) -> int:
    """Score the meshed TSDF target of every mesh at each latent resolution; print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latent", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--data", nargs="+", default=["examples/meshes", "examples/meshes-eval"])
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--image", type=int, default=96)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    for folder in args.data:
        for path in find_mesh_files(ROOT / folder if not Path(folder).is_absolute() else folder):
            gt, _, _ = normalize_mesh(load_mesh(path, normalize=False))
            for latent in args.latent:
                settings = {"version": CACHE_VERSION, "resolutions": [latent, 2 * latent,
                            4 * latent], "points": 8192, "tsdf_views": args.views,
                            "tsdf_image": args.image}
                t0 = time.perf_counter()
                record = build_record(path, settings)
                t1 = time.perf_counter()
                pred = target_mesh(record, latent)
                r = evaluate(pred, gt, n_points=args.points, tau=0.005)
                row = {"split": Path(folder).name, "mesh": path.stem, "output": 4 * latent,
                       "fscore": r["fscore"], "chamfer_l2": r["chamfer_l2"],
                       "normal_consistency": r["normal_consistency"],
                       "floor_fscore": r["floor_fscore"], "prepare_s": t1 - t0,
                       "mesh_eval_s": time.perf_counter() - t1}
                rows.append(row)
                print(f"{row['split']:12s} {row['mesh']:22s} out {row['output']:4d}  "
                      f"F@0.005 {row['fscore']:.3f}  CD {row['chamfer_l2']:.2e}  "
                      f"NC {row['normal_consistency']:.3f}  (prepare {row['prepare_s']:.1f} s)",
                      flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
