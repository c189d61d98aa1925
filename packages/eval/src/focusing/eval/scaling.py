"""`focusing compare --scaling`: one training step's peak memory and time per setup at several
output resolutions (latent 32, 64, 128 -> output 128, 256, 512; 1024 where it fits), each run in
its own process; log-log fits of memory and time against the output resolution, extrapolated
to 1024^3 and set beside the paper's claim (Focusing trains at 1024^3 in under 50 GB).

The model is kept tiny (the budget's [scaling.config]): the study is about how the voxel counts
grow with resolution, not about model width. Before each run the memory and time are predicted
from the runs already made; a run predicted to exceed the free memory or the time limit is
skipped and the report says so.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import time
from pathlib import Path

import numpy as np

from focusing.core.io import write_bytes_atomic

from focusing.eval.compare import CompareError, flatten_overrides, load_budget, log, parse_specs
from focusing.eval.compare.probe import (
    loglog_fit, mem_available_mb, out_of_reach, predict, run_probe,
)

PAPER_CLAIM_GB = 50.0
TARGET_OUTPUT = 1024


def _pick_mesh(data: Path, stem: str | None) -> Path:
    from focusing.core.data.dataset import mesh_files

    files = mesh_files(data)
    for f in files:
        if f.stem == stem:
            return f
    return files[0]


def scaling_study(data: Path, setups: str, budget_name: str, out: Path, command: str = "") -> dict:
    """Run the study; writes out/scaling.json, out/scaling.md and out/plots/scaling.png."""
    from focusing.eval import report as report_mod

    budget = load_budget(budget_name)
    sc = budget.scaling
    latents = [int(r) for r in sc.get("latent_resolutions", [32, 64, 128])]
    extra = [int(r) for r in sc.get("extra_latent_resolutions", [256])]
    steps = int(sc.get("steps", 2))
    timeout = float(sc.get("timeout_s", 900))
    frac = float(sc.get("memory_fraction", 0.7))
    # loss.tsdf_steps=0 (unless [scaling.config] sets it): every measured step is the setup's
    # own, rendered one; the render-free warm-up's crop is the same for every setup
    base = ["loss.tsdf_steps=0"] + flatten_overrides(sc.get("config", {})) + [
        f"train.steps={steps}", "train.checkpoint_every=0", "evaluation.image_every=0"]
    specs = parse_specs(setups, base)
    out = Path(out)
    work = out / "scaling"
    if work.exists():
        shutil.rmtree(work)
    (work / "data").mkdir(parents=True)
    (work / "jobs").mkdir()
    mesh = _pick_mesh(Path(data), sc.get("mesh"))
    (work / "data" / mesh.name).symlink_to(mesh.resolve())
    log(f"focusing compare --scaling: {', '.join(s.label for s in specs)} on {mesh.name}, "
        f"latent {latents} (+{extra} where it fits), {steps} steps each, own process each")
    t0 = time.perf_counter()
    results = {}
    for s in specs:
        points: list[dict] = []
        stop = ""
        for r in latents + extra:
            output = 4 * r
            entry = {"latent": r, "output": output}
            if points:
                reason, predicted = out_of_reach(points, output, steps, timeout, frac)
                entry.update(predicted)
                stop = reason or stop
            if stop:
                entry["error"] = stop
                points.append(entry)
                log(f"    {s.label} @ {output}^3: {stop}")
                stop = f"skipped: output {output}^3 was already out of reach"
                continue
            log(f"[{s.label}] output {output}^3 (latent {r}^3): {steps} steps in a fresh process")
            probe = run_probe(s.base, base + [f"model.latent_resolution={r}"] + s.overrides,
                              work / "data", work, f"{s.slug}-{r}", budget.threads, timeout)
            if "error" in probe:
                entry["error"] = probe["error"]
                stop = f"skipped: output {output}^3 failed ({probe['error']})"
                points.append(entry)
                log(f"    {s.label} @ {output}^3: {probe['error']}")
                continue
            entry.update({k: v for k, v in probe.items()
                          if k not in ("step_peaks_mb", "step_counts")})
            points.append(entry)
            log(f"    peak {entry['peak_memory_mb']:.0f} MiB above baseline, "
                f"{entry['time_per_step_s']:.2f} s/step, decoded {entry['latent_kept']:.0f} of "
                f"{entry['latent_all']:.0f} latents, {entry['output_all']:.0f} output cubes")
        ok = [p for p in points if "peak_memory_mb" in p]
        fits = {key: loglog_fit([p["output"] for p in ok], [p[key] for p in ok])
                for key in ("peak_memory_mb", "child_max_rss_mb", "time_per_step_s",
                            "output_all", "latent_kept")}
        measured = next((p for p in ok if p["output"] == TARGET_OUTPUT), None)
        results[s.label] = {
            "points": points, "fits": fits,
            "at_1024": {
                "measured": measured is not None,
                "peak_memory_gb": (measured["peak_memory_mb"] / 1024 if measured
                                   else _gb(predict(fits["peak_memory_mb"], TARGET_OUTPUT))),
                "child_max_rss_gb": (measured["child_max_rss_mb"] / 1024 if measured
                                     else _gb(predict(fits["child_max_rss_mb"], TARGET_OUTPUT))),
                "time_per_step_s": (measured["time_per_step_s"] if measured
                                    else predict(fits["time_per_step_s"], TARGET_OUTPUT)),
            },
        }
    rep = {
        "command": command,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": report_mod.machine_info(),
        "budget": str(budget.source), "mesh": str(mesh), "steps": steps,
        "overrides": base, "paper_claim_gb": PAPER_CLAIM_GB, "setups": results,
        "plot": "plots/scaling.png", "total_s": time.perf_counter() - t0,
    }
    plot_scaling(results, out / rep["plot"])
    report_mod.write_json(out / "scaling.json", rep)
    write_bytes_atomic(out / "scaling.md", scaling_markdown(rep).encode(), make_parents=True)
    log(f"wrote {out / 'scaling.md'} and {out / 'scaling.json'} ({rep['total_s']:.0f} s)")
    return rep


def _gb(mb):
    return None if mb is None else mb / 1024


def plot_scaling(results: dict, path: Path) -> None:
    """Log-log plot of peak memory and time per step against output resolution, with fits."""
    from focusing.eval.report import _plt, save_figure

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "peak_memory_mb", "training peak memory (MiB above baseline)"),
                           (axes[1], "time_per_step_s", "time per step (s)")):
        for i, (label, r) in enumerate(results.items()):
            ok = [p for p in r["points"] if key in p]
            if ok:
                ax.plot([p["output"] for p in ok], [p[key] for p in ok], "o", color=f"C{i}")
            fit = r["fits"][key]
            if fit:
                xs = np.array([min(p["output"] for p in ok), TARGET_OUTPUT], dtype=float)
                ax.plot(xs, fit["coefficient"] * xs ** fit["exponent"], "--", color=f"C{i}",
                        label=f"{label}: ~ res^{fit['exponent']:.2f}")
        if key == "peak_memory_mb":
            ax.axhline(PAPER_CLAIM_GB * 1024, color="k", lw=0.8, ls=":")
            ax.text(130, PAPER_CLAIM_GB * 1024 * 1.15, "50 GB (paper, Focusing at 1024^3, GPU)",
                    fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("output resolution")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def scaling_markdown(rep: dict) -> str:
    """scaling.md: measured points, fitted exponents, 1024^3 extrapolation beside the paper."""
    from focusing.eval.report import _f, _md_table

    m = rep["machine"]
    md = ["# focusing compare --scaling", "",
          f"- command: `{rep['command']}`" if rep["command"] else "",
          f"- date: {rep['date']}; machine: {m['cpu']}, {m['cores']} cores, "
          f"{_f(m['memory_gb'], '{:.0f}')} GB, torch {m['torch']}",
          f"- mesh: {Path(rep['mesh']).name}; {rep['steps']} steps per point, each point in a "
          f"fresh process; the budget's overrides: `{' '.join(rep['overrides'])}`",
          f"- total time: {rep['total_s']:.0f} s", "", "## Measured", ""]
    rows = []
    for label, r in rep["setups"].items():
        for p in r["points"]:
            if "error" in p:
                rows.append([f"`{label}`", f"{p['output']}", "", "", "", "", "", "", p["error"]])
            else:
                rows.append([f"`{label}`", f"{p['output']}",
                             f"{p['latent_kept']:.0f} / {p['latent_all']:.0f}",
                             f"{p['output_kept']:.0f} / {p['output_all']:.0f}",
                             f"{p['peak_memory_mb']:.0f}", _f(p.get("step_peak_mb"), "{:.0f}"),
                             f"{p['child_max_rss_mb']:.0f}",
                             f"{p['time_per_step_s']:.2f}", ""])
    md.append(_md_table(["setup", "output res", "latents decoded / all",
                         "output cubes meshed / decoded", "training peak MiB",
                         "one step's peak MiB", "child max RSS MiB", "s / step", "note"], rows))
    md += ["", "Training peak: the probe's whole training above its level before the first "
               "step, the final threshold calibration included (unless the budget sets "
               "`evaluation.calibrate_at_end = false`); one step's peak: the highest of its "
               "steps alone."]
    md += ["", "## Fitted growth (y ~ c * res^k over the measured points) and 1024^3", ""]
    rows = []
    for label, r in rep["setups"].items():
        f, a = r["fits"], r["at_1024"]
        rows.append([f"`{label}`",
                     _f(f["peak_memory_mb"] and f["peak_memory_mb"]["exponent"], "{:.2f}"),
                     _f(f["time_per_step_s"] and f["time_per_step_s"]["exponent"], "{:.2f}"),
                     _f(f["output_all"] and f["output_all"]["exponent"], "{:.2f}"),
                     ("measured " if a["measured"] else "extrapolated ")
                     + _f(a["peak_memory_gb"], "{:.1f}") + " GB",
                     _f(a["child_max_rss_gb"], "{:.1f}") + " GB",
                     _f(a["time_per_step_s"], "{:.1f}") + " s"])
    md.append(_md_table(["setup", "memory exponent", "time exponent", "decoded-cubes exponent",
                         "training peak at 1024^3", "process RSS at 1024^3", "s / step at 1024^3"],
                        rows))
    md += ["", "The paper states that Focusing trains a 1024^3 VAE in under "
           f"{rep['paper_claim_gb']:.0f} GB (GPU, its full-size model, bf16). These figures are "
           "for the budget's model on the CPU (float32), so they speak to how the cost grows "
           "with resolution (the exponents), not to absolute GPU memory.",
           "", f"![scaling]({rep['plot']})", ""]
    return "\n".join(md)


__all__ = ["scaling_study", "loglog_fit", "mem_available_mb", "predict", "CompareError"]
