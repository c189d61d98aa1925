"""Image-to-3D goal benchmark (issue 12): both flow stages overfit on a VAE's training meshes,
then scored from held-out views, plus per-step cost, parameter counts and one unseen mesh.

Run: hatch run python benchmarks/image_to_3d.py --vae RUN --data examples/meshes --out DIR
     [--held-out examples/meshes-eval/cow.off] [--structure-set k=v ...] [--latent-set k=v ...]
     [--profile-steps 10] [--cfg 0 --cfg default]

What it does, in order, each stage in its own `focusing train-flow` process (so its wall time
is the CLI's):
1. trains the structure stage (structure VAE, then structure flow) and the latent stage;
2. profiles `--profile-steps` steps of each kind (structure VAE, structure flow, latent flow)
   with focusing.core.engine.profile: mean seconds and peak tensor MiB above the step's start;
3. `eval-flow`, at each `--cfg`, on the training meshes' held-out views (never trained on) and on
   the `--held-out` mesh (never seen at all): structure IoU, Chamfer, F@0.005 and F@0.01 against
   the source mesh, seconds per shape;
4. the shape VAE's own reconstruction of each mesh at the same F-scores (the ceiling the
   generated shapes are decoded through).
It writes DIR/benchmark.json and DIR/benchmark.md (the tables for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> float:
    return os.getloadavg()[0]


def _train(stage: str, vae: Path, data: Path, out: Path, sets: list[str]) -> float:
    """Wall seconds of one `focusing train-flow` process."""
    cmd = [sys.executable, "-m", "focusing.core.cli", "train-flow", "--stage", stage,
           "--vae", str(vae), "--data", str(data), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _profile(stage: str, vae: Path, data: Path, sets: list[str], steps: int) -> dict[str, dict]:
    """Per step kind: mean ms and peak tensor MiB of a step over `steps` profiled steps, its
    backward and optimizer ms, and the parameters its optimiser updates."""
    from focusing.core.engine.profile import profile_steps
    from focusing.core.config import replace_setting
    from focusing.flow.config import resolve_flow_setup
    from focusing.flow.train import STRUCTURE_VAE_DIR, FlowTrainer, StructureVAEStep

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        setup = resolve_flow_setup(sets + [f'stage="{stage}"', "structure_vae.steps=1",
                                           "train.checkpoint_every=0", "train.eval_every=0"])
        setup = replace_setting(setup, "vae_run", str(vae))
        trainer = FlowTrainer(setup, data, Path(tmp) / "run", progress=False)
        kinds = [(f"{stage} flow", trainer.engine)]
        if stage == "structure":
            from focusing.core.engine import Engine
            from focusing.flow.train import structure_vae_config

            sub, sub_train = structure_vae_config(trainer.setup)
            # the flow step froze it; its own step trains it
            trainer.model.svae.requires_grad_(True)
            sv_step = StructureVAEStep(trainer.setup, trainer.shapes, trainer.model,
                                       trainer.device)
            sv_engine = Engine(sv_step, sub_train,
                               Path(tmp) / STRUCTURE_VAE_DIR, sub, progress=False,
                               dist_info=trainer.dist, name="structure VAE")
            kinds.insert(0, ("structure VAE", sv_engine))
        for name, engine in kinds:
            engine.train_step()  # untimed: first-call allocations
            table = {r.name: r for r in profile_steps(engine.train_step, steps)}
            step = table["step"]
            rows[name] = {"ms": 1e3 * step.seconds, "peak_mib": step.peak_mib,
                          "trained_parameters": _trained(engine),
                          **{f"{k}_ms": 1e3 * table[k].seconds for k in ("backward", "optimizer")
                             if k in table}}
            if engine is not trainer.engine:
                engine.close()
        trainer.close()
    return rows


def _trained(engine) -> int:
    """Parameters the engine's optimiser updates (a frozen structure VAE is not counted)."""
    return sum(p.numel() for g in engine.optimizer.param_groups for p in g["params"])


def _cfg_value(text: str) -> float | None:
    """A --cfg argument: a guidance strength, or `default` for the runs' own (TRELLIS's 7.5 / 3)."""
    return None if text == "default" else float(text)


def _eval_flow(structure: Path, latent: Path, data: Path, out: Path, cfg: float | None) -> dict:
    from focusing.flow.evaluate import evaluate_flow, format_table

    report = evaluate_flow(structure, latent, data, cfg=cfg)
    out.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    return report


def _vae_ceiling(vae: Path, data: Path) -> dict[str, dict]:
    """The shape VAE's reconstruction of each mesh of `data`: F@0.005, F@0.01 (100k points)."""
    from focusing.core.geometry.meshio import find_mesh_files, load_mesh
    from focusing.core.vae.calibration import load_calibrated_threshold
    from focusing.core.vae.reconstruct import load_model, reconstruct_mesh
    from focusing.core.metrics import evaluate

    model, setup = load_model(vae)
    threshold = load_calibrated_threshold(vae)
    out = {}
    for path in find_mesh_files(data):
        mesh = load_mesh(path)
        rec = reconstruct_mesh(model, setup, mesh, threshold=threshold)
        row = {"faces": int(len(rec.faces))}
        for tau in (0.005, 0.01):
            row[f"f_{tau}"] = evaluate(rec, mesh, tau=tau)["fscore"] if len(rec.faces) else 0.0
        out[path.stem] = row
    return out


def _markdown(result: dict) -> str:
    lines = [f"load {result['load_before']:.2f} before, {result['load_after']:.2f} after; "
             f"training wall: structure {result['train_seconds']['structure']:.0f} s, "
             f"latent {result['train_seconds']['latent']:.0f} s "
             f"(both {sum(result['train_seconds'].values()) / 60:.1f} min)", ""]
    lines += ["parameters of the stage modules (summary.json): "
              f"structure {result['parameters']['structure']:,} "
              "(structure VAE and DiT, with the jointly trained encoder), "
              f"latent {result['parameters']['latent']:,}", ""]
    lines += ["| step kind | trained parameters | ms per step | peak tensor MiB | backward ms |",
              "|---|---|---|---|---|"]
    for name, row in result["profile"].items():
        lines.append(f"| {name} | {row['trained_parameters']:,} | {row['ms']:.1f} | "
                     f"{row['peak_mib']:.1f} | {row.get('backward_ms', float('nan')):.1f} |")
    for cfg, reports in result["evaluations"].items():
        for label, key in (("held-out views of the training meshes", "train_views"),
                           ("the unseen mesh", "held_out_mesh")):
            report = reports.get(key)
            if not report:
                continue
            guidance = "the runs' default guidance" if cfg == "default" else f"--cfg {cfg}"
            lines += ["", f"**{label}, {guidance}**", "",
                      "| mesh | view | structure IoU | Chamfer L2 | F@0.005 | F@0.01 "
                      "| VAE recon F@0.005 / F@0.01 | s per shape |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in report["rows"]:
                ceiling = result["vae_ceiling"].get(r["mesh"], {})
                cd = f"{r['chamfer_l2']:.2e}" if "chamfer_l2" in r else "-"
                lines.append(f"| {r['mesh']} | {r['view']} | {r['iou']:.3f} | {cd} | "
                             f"{r['f_0.005']:.3f} | "
                             f"{r['f_0.01']:.3f} | {ceiling.get('f_0.005', float('nan')):.3f} / "
                             f"{ceiling.get('f_0.01', float('nan')):.3f} | "
                             f"{r.get('seconds', float('nan')):.2f} |")
            m = report["mean"]
            lines.append(f"| **mean** | | **{m.get('iou', 0):.3f}** | "
                         f"{m.get('chamfer_l2', float('nan')):.2e} | "
                         f"{m.get('f_0.005', 0):.3f} | **{m.get('f_0.01', 0):.3f}** | | "
                         f"{m.get('seconds', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", type=Path, required=True,
                    help="trained shape VAE run (focusing train)")
    ap.add_argument("--data", type=Path, default=ROOT / "examples" / "meshes")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--held-out", type=Path, default=ROOT / "examples" / "meshes-eval" / "cow.off")
    ap.add_argument("--structure-set", action="append", default=[])
    ap.add_argument("--latent-set", action="append", default=[])
    ap.add_argument("--profile-steps", type=int, default=10)
    ap.add_argument("--cfg", action="append", default=None,
                    help="guidance strength to evaluate at, or `default` (repeatable; default: 0 "
                         "and default)")
    ap.add_argument("--skip-train", action="store_true", help="reuse the runs in --out")
    ap.add_argument("--train-seconds", default="",
                    help="with --skip-train: STRUCTURE,LATENT wall seconds "
                         "of the earlier training (else read from DIR/benchmark.json)")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    structure, latent = args.out / "structure", args.out / "latent"
    result = {"command": " ".join(sys.argv), "load_before": _load(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if not args.skip_train:
        for run in (structure, latent):
            if run.exists():
                sys.exit(f"{run} exists; remove it or pass --skip-train")
        result["train_seconds"] = {
            "structure": _train("structure", args.vae, args.data, structure, args.structure_set),
            "latent": _train("latent", args.vae, args.data, latent, args.latent_set),
        }
    elif args.train_seconds:
        s_sec, l_sec = (float(x) for x in args.train_seconds.split(","))
        result["train_seconds"] = {"structure": s_sec, "latent": l_sec}
    else:
        result["train_seconds"] = json.loads(
            (args.out / "benchmark.json").read_text())["train_seconds"]
    result["parameters"] = {s: json.loads((args.out / s / "summary.json").read_text())["parameters"]
                            for s in ("structure", "latent")}
    result["profile"] = {**_profile("structure", args.vae, args.data, args.structure_set,
                                    args.profile_steps),
                         **_profile("latent", args.vae, args.data, args.latent_set,
                                    args.profile_steps)}
    result["evaluations"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        held = Path(tmp) / "held-out"
        held.mkdir()
        shutil.copy(args.held_out, held / args.held_out.name)
        for text in args.cfg or ["0", "default"]:
            cfg = _cfg_value(text)
            tag = "default" if cfg is None else f"{cfg:g}"
            result["evaluations"][tag] = {
                "train_views": _eval_flow(structure, latent, args.data,
                                          args.out / f"eval_train_views_cfg{tag}.json", cfg),
                "held_out_mesh": _eval_flow(structure, latent, held,
                                            args.out / f"eval_held_out_cfg{tag}.json", cfg),
            }
        result["vae_ceiling"] = {**_vae_ceiling(args.vae, args.data),
                                 **_vae_ceiling(args.vae, held)}
    result["load_after"] = _load()
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2))
    (args.out / "benchmark.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
