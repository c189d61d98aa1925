"""Equal memory (`focusing compare --memory-cap GB`, or a budget's `memory_cap_gb`): each setup
trains at the highest output resolution whose training peak, measured by probe steps in a fresh
process (probe.py, as `--scaling` measures), fits under the cap. compare then trains every
setup at its own resolution for the same wall time (the budget's `minutes`) and evaluates each
model against the same ground truth: the metrics sample the input meshes, never a voxel grid, so
the figures do not depend on the resolution a model was trained at.

The search (choose_resolution), per setup: the candidate outputs in increasing order
(`[memory_cap] outputs`; default the budget's output resolution times 1, 2 and 4). At each, the
setup is probed as configured. TripoSF's own knob is part of it: a setup with the `far-plane`
selector that does not fit is probed again at each smaller alpha of `[memory_cap] alphas` (1.0,
0.5, 0.3, 0.1), largest first, and keeps the first, i.e. the largest, that fits. The search stops
at the first output where nothing fits ("does not fit at R"): memory grows with resolution, so
the outputs above it are not probed, and the report says so. Nothing is predicted into a choice:
a probe that failed, timed out or was not run (predicted beyond the machine's free memory or the
time limit, probe.out_of_reach) counts as not fitting, with its reason in the report.

Settings that should follow the grid (points per shape, the zoom's n_min/n_max, the warm-up's
crop) can be given per candidate output in `[memory_cap.config."256"]` tables (same keys as the
budget's `[config]`, applied after it): the probe and the training at that output both get them.

What a probe measures: `warmup_probe_steps` (2) render-free warm-up steps, when the setup has a
warm-up, then `probe_steps` (3) steps of its own (selectors, rendering), with the budget's model
at the candidate resolution, on one mesh (`[memory_cap] mesh`; default the mesh with the most
latent voxels: the costliest step of a setup that decodes them all). The capped figure is
`peak = "training"` (default; `--scaling`'s training peak): the peak of the probe's whole fit,
its steps, one evaluation as `train.eval_every` runs them (calibration, then the probe mesh
reconstructed at the candidate output and scored) and the occupancy-threshold calibration that
ends every training (both decode in `inference.chunk_voxels` chunks), above the process's level
before its first step (CUDA's allocated peak on a GPU); `peak = "step"`: the highest peak of one
training step alone; or `peak = "process"`: the child's whole max RSS (Python, torch and the
prepared data included).

Why the evaluation: in the first equal-memory run (BENCHMARKS.md, session 10) the probes had
none, and focusing's whole training at 256 peaked at 4761 MiB under a 4608 MiB cap its probe
(3726 MiB) had fitted. A probe should cover all a training does, so it now evaluates too. What
the evaluation adds is small (2026-12-06, the same probe again, focusing at 256 on couplingdown,
selected encoding): 3599 MiB with it, 3514 without; the steps peaked at 538 and 502, so the
final calibration sets the figure. The rest of that run's excess is the allocator's slack,
which grows through a whole run and no probe of a few steps shows (BENCHMARKS.md, session 11).
`[memory_cap] probe_evaluates = false` measures the steps and the final calibration alone.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from focusing.eval.compare.budget import Budget, flatten_overrides
from focusing.eval.compare.probe import out_of_reach, run_probe
from focusing.eval.compare.spec import CompareError, SetupSpec

DEFAULT_ALPHAS = (1.0, 0.5, 0.3, 0.1)
ALPHA_SELECTOR = "far-plane"
ALPHA_KEY = "selectors.params.far-plane.alpha"
DEFAULT_ALPHA = 0.5      # FarPlaneSelector's own default
# the capped figure -> the probe's figure: the whole fit (its steps and the final threshold
# calibration) above the level before it; the highest per-step peak; the process's max RSS
PEAKS = {"training": "peak_memory_mb", "step": "step_peak_mb", "process": "child_max_rss_mb"}
# what a probe job overrides beyond the setup: no clock, checkpoint or LR restart; evaluation
# at its last step only (probe_overrides) or never
PROBE_FIXED = ("train.minutes=0", "train.restart_at=0")


@dataclass(frozen=True)
class CapSettings:
    """The equal-memory search of one comparison (a budget's [memory_cap] table and the cap)."""

    cap_gb: float
    outputs: tuple[int, ...]         # candidate output resolutions, increasing
    alphas: tuple[float, ...]        # far-plane alphas tried when the configured one does not fit
    probe_steps: int                 # the setup's own steps per probe
    warmup_probe_steps: int          # render-free warm-up steps before them (if it has one)
    mesh: str                        # the probe mesh's stem; '' = the one with most latents
    timeout_s: float
    memory_fraction: float           # a probe predicted above this share of free memory: not run
    peak: str                        # 'training', 'step' or 'process' (PEAKS)
    evaluates: bool = True           # a probe ends with one evaluation (train.eval_every's)
    per_output: dict = field(default_factory=dict)  # output -> overrides at that output

    def overrides_at(self, output: int) -> list[str]:
        """The [memory_cap.config."OUTPUT"] overrides of one candidate output ([] if none)."""
        return list(self.per_output.get(int(output), []))

    @property
    def cap_mb(self) -> float:
        """The cap in MiB (the unit of every measured peak)."""
        return self.cap_gb * 1024.0

    def as_dict(self) -> dict:
        """The settings as report.json records them."""
        return {"cap_gb": self.cap_gb, "outputs": list(self.outputs), "alphas": list(self.alphas),
                "probe_steps": self.probe_steps, "warmup_probe_steps": self.warmup_probe_steps,
                "peak": self.peak, "probe_evaluates": self.evaluates,
                "timeout_s": self.timeout_s,
                "memory_fraction": self.memory_fraction,
                "config": {str(o): v for o, v in self.per_output.items()}}


def _flag(value, where: str) -> bool:
    """A TOML boolean; ValueError naming `where` for anything else (a string "false" is true)."""
    if not isinstance(value, bool):
        raise ValueError(f"{where} = {value!r}: give true or false")
    return value


def cap_settings(budget: Budget, cap_gb: float, latent_resolution: int) -> CapSettings:
    """The search's settings: the cap (GB), the budget's [memory_cap] table, and the candidate
    outputs it defaults to (4 * latent_resolution times 1, 2, 4); CompareError when invalid."""
    t = budget.memory_cap
    where = f"budget file {budget.source}: [memory_cap]"
    base = 4 * int(latent_resolution)
    try:
        per_output = {int(o): flatten_overrides(table)
                      for o, table in t.get("config", {}).items()}
        outputs = tuple(sorted({int(o) for o in t.get("outputs", [base, 2 * base, 4 * base])}))
        alphas = tuple(sorted({float(a) for a in t.get("alphas", DEFAULT_ALPHAS)}, reverse=True))
        settings = CapSettings(
            cap_gb=float(cap_gb), outputs=outputs, alphas=alphas,
            probe_steps=int(t.get("probe_steps", 3)),
            warmup_probe_steps=int(t.get("warmup_probe_steps", 2)), mesh=str(t.get("mesh", "")),
            timeout_s=float(t.get("timeout_s", 900)),
            memory_fraction=float(t.get("memory_fraction", 0.7)),
            peak=str(t.get("peak", "training")),
            evaluates=_flag(t.get("probe_evaluates", True), "probe_evaluates"),
            per_output=per_output)
    except (TypeError, ValueError) as exc:
        raise CompareError(f"{where}: {exc}") from None
    if not settings.cap_gb > 0:
        raise CompareError(f"--memory-cap {cap_gb}: give a cap in GB above 0")
    if not outputs or any(o < 4 or o % 4 for o in outputs):
        raise CompareError(f"{where} outputs {list(outputs)}: give output resolutions, each a "
                           f"multiple of 4 (the latent grid is a quarter of the output)")
    if any(not 0 < a <= 1 for a in alphas):
        raise CompareError(f"{where} alphas {list(alphas)}: each must be in (0, 1]")
    if settings.probe_steps < 1 or settings.warmup_probe_steps < 0 or settings.timeout_s <= 0:
        raise CompareError(f"{where}: probe_steps >= 1, warmup_probe_steps >= 0, timeout_s > 0")
    stray = sorted(set(per_output) - set(outputs))
    if stray:
        raise CompareError(f"{where}.config has tables for outputs {stray}, which are not "
                           f"candidates ({', '.join(map(str, outputs))})")
    if settings.peak not in PEAKS:
        raise CompareError(f"{where} peak {settings.peak!r}: give one of {', '.join(PEAKS)}")
    return settings


def alphas_for(config: dict, alphas) -> list[float | None]:
    """The far-plane alphas a setup is probed at, in order: its own, then each smaller one of
    `alphas`, largest first; [None] for a setup without the far-plane selector (no such knob)."""
    sel = config["selectors"]
    if ALPHA_SELECTOR not in list(sel["latent"]) + list(sel["output"]):
        return [None]
    own = float(sel["params"].get(ALPHA_SELECTOR, {}).get("alpha", DEFAULT_ALPHA))
    return [own] + sorted({float(a) for a in alphas if float(a) < own}, reverse=True)


def choose_resolution(outputs, alphas: list[float | None], cap_mb: float,
                      probe: Callable[[int, float | None], dict]) -> dict:
    """The search on given probes: probe(output, alpha) returns {'peak_mb': measured MiB, ...}
    or {'error': why not measured, ...}. Returns {'chosen': the probe record of the highest
    output that fits (its largest fitting alpha) or None, 'does_not_fit_at': the first output
    where no alpha fits or None, 'not_probed': the outputs above it, 'probes': every record}.
    A record fits when it has a measured peak_mb at or under cap_mb."""
    records, chosen, stop = [], None, None
    outputs = sorted(int(o) for o in outputs)
    for output in outputs:
        hit = None
        for alpha in alphas:
            rec = {"output": output, "latent": output // 4, "alpha": alpha,
                   **probe(output, alpha)}
            rec["fits"] = rec.get("peak_mb") is not None and rec["peak_mb"] <= cap_mb
            records.append(rec)
            if rec["fits"]:
                hit = rec
                break
        if hit is None:
            stop = output
            break
        chosen = hit
    return {"chosen": chosen, "does_not_fit_at": stop,
            "not_probed": [o for o in outputs if stop is not None and o > stop],
            "probes": records}


def verdict_text(result: dict) -> str:
    """'output 256 (alpha 0.3); does not fit at 512', or 'does not fit at 128'."""
    chosen, stop = result["chosen"], result["does_not_fit_at"]
    parts = []
    if chosen is not None:
        parts.append(f"output {chosen['output']}"
                     + (f" (alpha {chosen['alpha']:g})" if chosen["alpha"] is not None else ""))
    if stop is not None:
        tried = [r["alpha"] for r in result["probes"] if r["output"] == stop]
        parts.append(f"does not fit at {stop}" + (
            f" (alpha {', '.join(f'{a:g}' for a in tried)} tried)"
            if tried and tried[0] is not None else ""))
    return "; ".join(parts)


def pick_probe_mesh(files: list[Path], stem: str, latent: int) -> Path:
    """The probe's mesh: the file of that stem, or (stem '') the one with the most active latent
    voxels at `latent` (dilated surface voxels, as the trainer's active set)."""
    from focusing.core.geometry.meshio import load_mesh
    from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels

    if stem:
        for f in files:
            if f.stem == stem:
                return f
        raise CompareError(f"[memory_cap] mesh {stem!r} is not among the training meshes "
                           f"({', '.join(f.stem for f in files)})")
    counts = [len(dilate_voxels(surface_voxels(load_mesh(f), latent), latent)) for f in files]
    return files[max(range(len(files)), key=counts.__getitem__)]


def probe_overrides(spec: SetupSpec, budget: Budget, settings: CapSettings, output: int,
                    alpha: float | None) -> list[str]:
    """A probe job's overrides: the budget's, the setup's, then the candidate resolution, the
    alpha, and a short schedule (warm-up steps, then the setup's own steps, then one evaluation
    at the last step unless settings.evaluates is off)."""
    warm = settings.warmup_probe_steps if spec.config["loss"]["tsdf_steps"] > 0 else 0
    steps = warm + settings.probe_steps
    return (list(budget.overrides) + settings.overrides_at(output) + list(spec.overrides)
            + [f"model.latent_resolution={output // 4}"]
            + ([f"{ALPHA_KEY}={alpha!r}"] if alpha is not None else [])
            + [f"train.steps={steps}", f"loss.tsdf_steps={warm}", *PROBE_FIXED,
               f"train.eval_every={steps if settings.evaluates else 0}"])


def setup_prober(spec: SetupSpec, budget: Budget, settings: CapSettings, data: Path,
                 work: Path, log: Callable[[str], None]) -> Callable[[int, float | None], dict]:
    """probe(output, alpha) for choose_resolution: a real probe in a fresh process."""
    measured: list[dict] = []  # this setup's probes so far, for out_of_reach

    def probe(output: int, alpha: float | None) -> dict:
        warm = settings.warmup_probe_steps if spec.config["loss"]["tsdf_steps"] > 0 else 0
        steps = warm + settings.probe_steps
        what = f"{spec.label} @ {output}^3" + (f", alpha {alpha:g}" if alpha is not None else "")
        reason, predicted = out_of_reach(measured, output, steps, settings.timeout_s,
                                         settings.memory_fraction)
        if reason:
            log(f"    {what}: {reason}")
            return {"error": f"not probed ({reason})", **predicted}
        log(f"[memory cap] {what}: {warm} warm-up + {settings.probe_steps} own steps in a fresh "
            f"process")
        name = f"{spec.slug}-{output}" + (f"-alpha{alpha:g}" if alpha is not None else "")
        res = run_probe(spec.base, probe_overrides(spec, budget, settings, output, alpha), data,
                        work, name, budget.threads, settings.timeout_s)
        if "error" in res:
            log(f"    {what}: {res['error']}")
            return {"error": res["error"]}
        measured.append({"output": output, **res})
        peaks = res["step_peaks_mb"]
        res["step_peak_mb"] = max(peaks)
        rec = {"peak_mb": res[PEAKS[settings.peak]],
               "training_peak_mb": res["peak_memory_mb"], "step_peak_mb": max(peaks),
               "child_max_rss_mb": res["child_max_rss_mb"],
               "warmup_step_peak_mb": max(peaks[:warm]) if warm else None,
               "own_step_peak_mb": max(peaks[warm:]),
               "warmup_step_seconds": res["step_seconds"][:warm],
               "own_step_seconds": res["step_seconds"][warm:],
               "latents_decoded": [c.get("latent_kept") for c in res["step_counts"][warm:]],
               "cubes_decoded": [c.get("output_all") for c in res["step_counts"][warm:]],
               "prep_s": res["prep_s"], "wall_s": res["wall_s"]}
        fits = "fits" if rec["peak_mb"] <= settings.cap_mb else "over the cap"
        log(f"    peak {rec['peak_mb']:.0f} MiB ({settings.peak}; cap "
            f"{settings.cap_mb:.0f} MiB): {fits}")
        return rec

    return probe


def check_specs(specs: list[SetupSpec]) -> None:
    """CompareError for a setup that fixes its own latent resolution: under a cap the search
    chooses it."""
    for s in specs:
        if any(o.split("=", 1)[0].strip() == "model.latent_resolution" for o in s.overrides):
            raise CompareError(f"setup {s.label!r} sets model.latent_resolution; under a memory "
                               f"cap the search chooses it (give candidates in [memory_cap] "
                               f"outputs)")


def memory_cap_search(specs: list[SetupSpec], budget: Budget, settings: CapSettings,
                      train_files: list[Path], work: Path, log: Callable[[str], None]) -> dict:
    """Probe every setup (each probe in a fresh process) and choose its resolution; returns the
    report's `memory_cap` record: settings, probe mesh, per setup label its search."""
    check_specs(specs)
    t0 = time.perf_counter()
    if work.exists():
        shutil.rmtree(work)
    (work / "data").mkdir(parents=True)
    mesh = pick_probe_mesh(train_files, settings.mesh, settings.outputs[0] // 4)
    (work / "data" / mesh.name).symlink_to(mesh.resolve())
    log(f"memory cap {settings.cap_gb:g} GB ({settings.peak} peak): probing outputs "
        f"{', '.join(map(str, settings.outputs))} on {mesh.name}, each probe in a fresh process")
    setups = {}
    for s in specs:
        alphas = alphas_for(s.config, settings.alphas)
        result = choose_resolution(settings.outputs, alphas, settings.cap_mb,
                                   setup_prober(s, budget, settings, work / "data", work, log))
        result.update(base=s.base, alphas_tried=alphas, verdict=verdict_text(result))
        setups[s.label] = result
        log(f"    {s.label}: {result['verdict']}")
    return {**settings.as_dict(), "mesh": str(mesh), "setups": setups,
            "probe_s": time.perf_counter() - t0}


def with_resolution(spec: SetupSpec, budget: Budget, chosen: dict,
                    settings: CapSettings | None = None) -> SetupSpec:
    """The setup at its chosen output resolution (and alpha), same label and folder; with that
    output's [memory_cap.config] overrides (settings) before the setup's own."""
    from focusing.core.config import ConfigError, load_setup
    from focusing.core.plugin_system import PluginError

    extra = [f"model.latent_resolution={chosen['latent']}"]
    if chosen["alpha"] is not None:
        extra.append(f"{ALPHA_KEY}={chosen['alpha']!r}")
    at = settings.overrides_at(4 * chosen["latent"]) if settings is not None else []
    overrides = at + list(spec.overrides) + extra
    try:
        config = load_setup(spec.base, list(budget.overrides) + overrides)
    except (ConfigError, PluginError) as exc:
        raise CompareError(f"setup {spec.label!r} at output {4 * chosen['latent']}: {exc}") \
            from None
    return SetupSpec(spec.label, spec.base, overrides, config)
