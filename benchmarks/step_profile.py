"""Where a training step's time and memory go, per setup and phase (issue 13, item 7).

Run: hatch run python benchmarks/step_profile.py [--budget small] [--steps 20] [--data DIR]
For each setup it builds the trainer under the budget's overrides (prepared shapes come from
the shape cache), then profiles `--steps` render-free warm-up steps and `--steps` rendered
steps (the steps after loss.tsdf_steps) with focusing.core.engine.profile: mean seconds per
step and peak tensor MiB above the step's start, per phase (encode, select, decode, extract,
render, render_gt, losses, backward, optimizer). Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["encode", "select", "decode", "extract", "render_gt", "render", "losses", "backward",
         "optimizer", "step"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="small")
    ap.add_argument("--setups", default="triposf,focusing")
    ap.add_argument("--data", default=str(ROOT / "examples" / "meshes"))
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    from focusing.core.config import resolve_setup
    from focusing.core.engine.profile import profile_steps
    from focusing.core.vae.train.trainer import Trainer
    from focusing.eval.compare import load_budget

    budget = load_budget(args.budget)
    print(f"load before: {os.getloadavg()[0]:.2f}")
    rows = {}
    for name in args.setups.split(","):
        setup = resolve_setup(name, budget.overrides + [f"train.steps={budget.steps}",
                                                         "train.eval_every=0"])
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(setup, Path(args.data), Path(tmp) / "run", progress=False)
            engine = trainer.engine
            for phase_name, start in (("warm-up", 0), ("rendered", setup.loss.tsdf_steps)):
                engine.step = start
                engine.train_step()  # untimed: first-call allocations
                t0 = time.perf_counter()
                table = profile_steps(engine.train_step, args.steps)
                wall = (time.perf_counter() - t0) / args.steps
                rows[(name, phase_name)] = ({r.name: r for r in table}, wall)
            trainer.close()
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("\n| setup | step kind | " + " | ".join(ORDER) + " |")
    print("|---|---|" + "---|" * len(ORDER))
    for (name, kind), (table, wall) in rows.items():
        cells = []
        for p in ORDER:
            r = table.get(p)
            cells.append("-" if r is None else f"{r.seconds * 1000:.0f} ms / {r.peak_mib:.0f} MiB")
        print(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    print("\ncells: mean milliseconds per step / peak tensor MiB above the step's start; "
          f"{args.steps} profiled steps each, budget {budget.name}")


if __name__ == "__main__":
    main()
