"""report.md of `focusing compare`: a headline that calls a difference between setups real
only under the spread rule (spread.py), the cost of each setup's own steps with the warm-up
apart, and every quality figure as mean and spread over the seeds.

Cells of aggregated figures read `mean ± std (min..max)`: std is the sample standard deviation
over the seeds, min..max their range; one seed gives the bare figure. `[k/K]` marks a mesh
that only k of the K seeds reconstructed.
"""

from __future__ import annotations

from pathlib import Path

from focusing.eval.report.spread import MIN_SEEDS, SPREAD_RULE


def _f(v, fmt="{:.4g}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _range(stat: dict, fmt: str) -> str:
    return f"{fmt.format(stat['min'])}..{fmt.format(stat['max'])}"


def _fs(stat: dict | None, fmt="{:.4g}", of: int | None = None, ranges: bool = True) -> str:
    """An aggregate as `mean ± std (min..max)` (`mean ± 0` when every seed agrees, no range
    when not `ranges`); the bare mean for one seed; `[n/of]` when fewer than `of` seeds."""
    if not stat or not stat["n"]:
        return "n/a"
    text = fmt.format(stat["mean"])
    if stat["n"] > 1:
        text += f" ± {fmt.format(stat['std'])}"
        if ranges and stat["min"] != stat["max"]:
            text += f" ({_range(stat, fmt)})"
    if of is not None and stat["n"] < of:
        text += f" [{stat['n']}/{of}]"
    return text


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


GROUP_NAMES = {"own_steps": "", "train": " on the training meshes",
               "eval": " on the held-out meshes"}
FIGURE_FORMATS = {"peak_memory_mb": "{:.0f} MiB", "seconds_per_step": "{:.3g} s",
                  "chamfer_l2": "{:.3e}", "fscore": "{:.3f}", "normal_consistency": "{:.3f}"}


def verdict_sentence(v: dict, label: str, reference: str) -> str:
    """One headline sentence: 'X is better than Y in ...' only when the spread rule holds."""
    fmt = FIGURE_FORMATS.get(v["figure"], "{:.4g}")
    s, r = v["setup"], v["reference"]
    what = f"{v['name']}{GROUP_NAMES.get(v['group'], '')}"
    sense = "higher" if v["higher_is_better"] else "lower"
    if not s["n"] or not r["n"]:
        missing = " and ".join(x for x, st in ((label, s), (reference, r)) if not st["n"])
        return f"{what}: no figure for {missing}, so no comparison."
    figures = (f"{label} {fmt.format(s['mean'])}, {reference} {fmt.format(r['mean'])} "
               f"({sense} is better)")
    n = min(s["n"], r["n"])
    if v["exceeds_spread"]:
        worse = reference if v["better"] == label else label
        return (f"**{v['better']} is better than {worse}** in {what}: {figures}; the ranges over "
                f"{n} seeds, {_range(s, fmt)} and {_range(r, fmt)}, do not overlap.")
    if n < MIN_SEEDS:
        return (f"{what}: {figures}; with one seed no difference is called beyond the spread "
                f"(`--seeds 3` measures it).")
    return (f"{what}: {figures}; the difference is within the spread: the ranges over {n} seeds, "
            f"{_range(s, fmt)} and {_range(r, fmt)}, overlap.")


def headline(rep: dict) -> list[str]:
    """The report's headline lines: which differences between setups exceed the spread."""
    comp = rep["comparison"]
    ref = comp["reference"]
    lines = [f"Rule: {SPREAD_RULE}. Seeds per setup: {comp['seeds']}.", ""]
    for label, c in comp["against_reference"].items():
        real = [v for v in c["verdicts"] if v["exceeds_spread"]]
        lines.append(f"**{label}** against **{ref}**: "
                     + (f"{len(real)} of {len(c['verdicts'])} differences exceed the spread."
                        if real else "no difference exceeds the spread."))
        lines += [f"- {verdict_sentence(v, label, ref)}" for v in real]
        lines += [f"- {verdict_sentence(v, label, ref)}" for v in c["verdicts"]
                  if not v["exceeds_spread"]]
        lines.append("")
    return lines


def _machine_lines(rep: dict) -> list[str]:
    setups = rep["setups"]
    labels = list(setups)
    b, m = rep["budget"], rep["machine"]
    first = setups[labels[0]]
    run0 = first["runs"][0]
    res = first["resolution"]
    n_train = sum(1 for v in rep["meshes"].values() if v["split"] == "train")
    n_eval = sum(1 for v in rep["meshes"].values() if v["split"] == "eval")
    seeds = ", ".join(str(s) for s in first["seeds"])
    if rep.get("memory_cap"):
        size = "each setup at its own resolution under the memory cap (below)"
    else:
        size = f"latent {res['latent']}^3, output {res['output']}^3"
    if b.get("eval_resolution"):
        size += f"; quality reconstructed at output {b['eval_resolution']}^3"
        if rep.get("memory_cap"):
            size += " or the trained resolution where finer"
    return [f"- command: `{rep['command']}`" if rep["command"] else "",
            f"- date: {rep['date']}",
            f"- machine: {m['cpu']}, {m['cores']} cores, "
            f"{_f(m['memory_gb'], '{:.0f}')} GB, torch {m['torch']} (training processes: "
            f"{run0.get('torch_threads')} threads, {run0.get('device')})"
            + (f", load average at the end {m['load_average'][0]:.1f}"
               if m.get("load_average") else ""),
            f"- budget: `{b['name']}` ({b['steps']} steps per setup; {size}"
            + (f"; {b['description']})" if b["description"] else ")"),
            f"- seeds: {len(first['seeds'])} per setup (train.seed {seeds})",
            f"- meshes: {n_train} trained on" + (f", {n_eval} held out" if n_eval else ""),
            f"- total time: {_f(rep['timings'].get('total_s'), '{:.0f}')} s"
            + (" (this run's part; --resume kept "
               + ", ".join(f"`{r}`" for r in rep["resumed_runs"])
               + " from the interrupted one, with their own seconds and memory)"
               if rep.get("resumed_runs") else ""), ""]


def _glance(rep: dict) -> list[str]:
    setups, comp = rep["setups"], rep["comparison"]
    ref = comp["reference"]
    md = ["## At a glance", "",
          "Cost of each setup's own steps (after the warm-up, where the setups differ); "
          "quality on the training meshes; means over the seeds.", ""]
    for label, c in comp["against_reference"].items():
        own, rown = setups[label]["own_steps"] or {}, setups[ref]["own_steps"] or {}
        lat = [_f((o.get("latents_decoded_per_step") or {}).get("mean"), "{:.0f}")
               for o in (own, rown)]
        md.append(f"- **{label}** vs **{ref}**: own-step peak memory "
                  f"x{_f(c['memory_ratio'], '{:.2f}')}, time per own step "
                  f"x{_f(c['time_per_step_ratio'], '{:.2f}')}, latents decoded per own step "
                  f"{lat[0]} vs {lat[1]}, Chamfer L2 x{_f(c['chamfer_l2_ratio'], '{:.2f}')} "
                  f"(lower is better), F-score {_f(c['fscore_difference'], '{:+.3f}')}, "
                  f"normal consistency {_f(c['normal_consistency_difference'], '{:+.3f}')}")
    warm = rep.get("shared_warmup")
    if warm:
        md.append(f"- shared warm-up (trained once per seed, forked by every setup; not in the "
                  f"figures above): {_f(warm['steps']['mean'], '{:.0f}')} steps, "
                  f"{_fs(warm['seconds_per_step'], '{:.3g}')} s/step, "
                  f"{_fs(warm['seconds'], '{:.3g}')} s, peak "
                  f"{_fs(warm['peak_memory_mb'], '{:.0f}')} MiB")
    return md


COST_COLUMNS = (("steps", "steps", "{:.0f}"), ("seconds_per_step", "s / step (median)", "{:.3g}"),
                ("peak_memory_mb", "peak MiB", "{:.0f}"),
                ("latents_decoded_per_step", "latents decoded / step", "{:.0f}"),
                ("latents_active_per_step", "latents active / step", "{:.0f}"),
                ("cubes_meshed_per_step", "output cubes meshed / step", "{:.0f}"),
                ("cubes_decoded_per_step", "output cubes decoded / step", "{:.0f}"),
                ("triangles_per_step", "triangles / step", "{:.0f}"),
                ("seconds", "s in all", "{:.3g}"))


def _cost_rows(phases: dict) -> list[list[str]]:
    return [[name] + [_fs((ph or {}).get(k), fmt) for k, _, fmt in COST_COLUMNS]
            for name, ph in phases.items()]


def _cost(rep: dict) -> list[str]:
    setups = rep["setups"]
    labels = list(setups)
    header = ["setup"] + [title for _, title, _ in COST_COLUMNS]
    md = ["", "## Cost per setup: its own steps", "",
          "Steps after the warm-up (steps 1..`loss.tsdf_steps`), where the setups differ. Peak "
          "memory: the highest per-step peak above the process's level before training.", ""]
    md.append(_md_table(header, _cost_rows({f"`{lb}`": setups[lb]["own_steps"]
                                            for lb in labels})))
    md.append("")
    md.append(_md_table(["setup", "child max RSS MiB", "training s (all steps)", "final loss"],
                        [[f"`{lb}`", _fs(setups[lb]["child_max_rss_mb"], "{:.0f}"),
                          _fs(setups[lb]["train_time_s"], "{:.0f}"),
                          _fs(setups[lb]["final_losses"].get("total"), "{:.4f}")]
                         for lb in labels]))
    if rep.get("shared_warmup"):
        md += ["", "### The shared warm-up", "",
               "Trained once per seed in its own process; every setup of that seed resumes "
               "from its last checkpoint, so it is the same for all and counted apart.", ""]
        md.append(_md_table(header, _cost_rows({"shared warm-up": rep["shared_warmup"]})))
    elif any(setups[lb]["warmup"] for lb in labels):
        md += ["", "### Each setup's own warm-up", "",
               "The setups differ in what the warm-up reads, so each trained its own.", ""]
        md.append(_md_table(header, _cost_rows({f"`{lb}`": setups[lb]["warmup"]
                                                for lb in labels})))
    for lb in labels:
        for run in setups[lb]["runs"]:
            bad = run["nonfinite_loss_steps"]
            if bad:
                empty = sum(1 for b_ in bad if b_["latent_kept"] == 0 or b_["output_kept"] == 0)
                md += ["", f"Note: `{lb}` (seed {run.get('seed')}) had a non-finite loss at "
                       f"{len(bad)} of {run['steps']} steps (steps "
                       f"{', '.join(str(b_['step']) for b_ in bad)}; {empty} of them kept no "
                       f"voxel); they are left out of the means."]
    terms = sorted({t for lb in labels for t in setups[lb]["final_losses"]})
    md += ["", "Final loss terms (mean over the last 10% of steps; ± std over the seeds):", ""]
    md.append(_md_table(["setup"] + terms,
                        [[f"`{lb}`"] + [_fs(setups[lb]["final_losses"].get(t), "{:.4g}",
                                            ranges=False) for t in terms] for lb in labels]))
    return md


def _spread_legend(n: int) -> str:
    if n > 1:
        return (f"Each figure: mean ± sample standard deviation over {n} seeds, (min..max) over "
                f"the seeds in brackets; [k/{n}]: only k seeds gave a value.")
    return "One seed per setup: single figures, no spread (`--seeds 3` measures it)."


def _resolution_varies(rep: dict) -> bool:
    """True when quality figures come from other grids than one shared trained one."""
    return bool(rep.get("memory_cap") or rep["budget"].get("eval_resolution"))


def _res_cell(setup: dict) -> str:
    res = setup.get("resolution", {})
    return f"{res.get('output')} / {res.get('evaluated', res.get('output'))}"


def _quality(rep: dict) -> list[str]:
    setups, b = rep["setups"], rep["budget"]
    labels = list(setups)
    n = rep["comparison"]["seeds"]
    varies = _resolution_varies(rep)
    md = []
    for split, title in (("train", "Quality on the training meshes"),
                         ("eval", "Quality on held-out meshes")):
        if not any(split in setups[lb]["quality"] for lb in labels):
            continue
        md += ["", f"## {title} (mean over meshes; tau = {b['tau']:g}, {b['eval_points']} "
                   f"points)", "", _spread_legend(n), ""]
        rows = []
        for lb in labels:
            q = setups[lb]["quality"].get(split, {})
            rows.append([f"`{lb}`", f"{_fs(q.get('reconstructed'), '{:.3g}')} / "
                                    f"{q.get('meshes', 0)}",
                         _fs(q.get("chamfer_l2"), "{:.3e}", n),
                         _fs(q.get("floor_chamfer_l2"), "{:.3e}", n),
                         _fs(q.get("fscore"), "{:.3f}", n), _fs(q.get("floor_fscore"), "{:.3f}", n),
                         _fs(q.get("fscore_all"), "{:.3f}", n),
                         _fs(q.get("normal_consistency"), "{:.3f}", n)]
                        + ([_res_cell(setups[lb])] if varies else []))
        md.append(_md_table(["setup", "reconstructed", "Chamfer L2", "(floor)", "F-score",
                             "(floor)", "F-score, all meshes (lost = 0)", "normal consistency"]
                            + (["output res trained / evaluated"] if varies else []), rows))
    md += ["", "## Per mesh", "", _spread_legend(n), ""]
    for key, title, fmt, floor in (("chamfer_l2", "Chamfer L2", "{:.3e}", "floor_chamfer_l2"),
                                   ("fscore", f"F-score at {b['tau']:g}", "{:.3f}",
                                    "floor_fscore"),
                                   ("normal_consistency", "Normal consistency", "{:.3f}", None)):
        md += [f"**{title}**", ""]
        rows = []
        for name, mesh in rep["meshes"].items():
            row = [name, mesh["split"]]
            fl = None
            for lb in labels:
                r = setups[lb]["meshes"].get(name, {})
                row.append(_fs(r.get(key), fmt, n) if r.get("reconstructed") else "no surface")
                fl = r.get(floor) if floor and (r.get(floor) or {}).get("n") else fl
            if floor:
                row.append(_fs(fl, fmt))
            rows.append(row)
        md.append(_md_table(["mesh", "split"] + [f"`{lb}`" for lb in labels]
                            + (["sampling floor"] if floor else []), rows))
        md.append("")
    return md


def _over_time(rep: dict) -> list[str]:
    setups = rep["setups"]
    if not rep["plots"].get("quality_time"):
        return []
    levels = list(next(iter(setups.values()))["first_reached_s"])
    md = ["", "## Quality against compute", "",
          "Mean F-score of the evaluated training meshes at each `train.eval_every` "
          "evaluation, against the optimisation seconds spent so far (evaluation and "
          "checkpoint time excluded). First training second at which each F-score was "
          "reached (mean over the seeds that reached it):", ""]
    md.append(_md_table(["setup"] + [f"F >= {lv}" for lv in levels],
                        [[lb] + [_fs(setups[lb]["first_reached_s"][lv], "{:.0f}",
                                     len(setups[lb]["seeds"])) for lv in levels]
                         for lb in setups]))
    return md + ["", f"![F-score against training seconds]({rep['plots']['quality_time']})"]


def _alpha(a) -> str:
    return "-" if a is None else f"{a:g}"


def _equal_memory(rep: dict) -> list[str]:
    """The equal-memory table (one row per setup, trained or not) and every probe."""
    cap = rep.get("memory_cap")
    if not cap:
        return []
    n = rep["comparison"]["seeds"]
    md = ["## Equal memory", "",
          f"Cap {cap['cap_gb']:g} GB ({cap['cap_gb'] * 1024:.0f} MiB) on the {cap['peak']} peak, "
          f"measured by probe steps in a fresh process ({cap['warmup_probe_steps']} render-free "
          f"warm-up step(s), then {cap['probe_steps']} of the setup's own"
          + (", then one evaluation" if cap.get("probe_evaluates") else "") + ") on "
          f"`{Path(cap['mesh']).name}`; candidate outputs "
          f"{', '.join(str(o) for o in cap['outputs'])}; far-plane alphas "
          f"{', '.join(f'{a:g}' for a in cap['alphas'])}. Each setup trains at the highest "
          f"output that fits, for the budget's minutes. A probe is a few steps: the last column "
          f"says whether the whole training stayed under the cap too. {_spread_legend(n)}", ""]
    rows = []
    for label, r in cap["table"].items():
        if not r.get("fits"):
            rows.append([f"`{label}`", "-", "-", f"{cap['cap_gb']:g}", "", "", "", "", "",
                         "", f"not trained: {r['verdict']}", ""])
            continue
        q = r.get("quality", {})
        rows.append([f"`{label}`", f"{r['output']}", _alpha(r["alpha"]), f"{cap['cap_gb']:g}",
                     _f(r["probe_peak_mb"], "{:.0f}"),
                     f"{_fs(r.get('own_step_peak_mb'), '{:.0f}', n, ranges=False)} / "
                     f"{_fs(r.get('warmup_step_peak_mb'), '{:.0f}', n, ranges=False)}",
                     _fs(r.get("steps"), "{:.0f}", n),
                     _fs(q.get("train", {}).get("fscore"), "{:.3f}", n),
                     _fs(q.get("eval", {}).get("fscore"), "{:.3f}", n) if "eval" in q else "",
                     f"{r.get('evaluated_at')}", r["verdict"],
                     _f(r.get("peak_in_training_mb", {}).get("max"), "{:.0f}")
                     + {True: " (within)", False: " (**over the cap**)", None: ""}[
                         r.get("training_within_cap")]])
    md.append(_md_table(["setup", "output res", "alpha", "cap GB", "probe peak MiB",
                         "training step peak MiB: own / warm-up", "steps", "F-score (train)",
                         "F-score (held out)", "evaluated at", "search",
                         f"{cap['peak']} peak in training MiB (highest seed)"], rows))
    md += ["", f"Every probe, in MiB: the capped figure ({cap['peak']}), the training peak (the "
           "whole fit: steps, " + ("the evaluation " if cap.get("probe_evaluates") else "")
           + "and the final threshold calibration), the highest per-step peak of "
           "the warm-up and of the setup's own steps, and the process's max RSS:", ""]
    probes = []
    for label, r in cap["setups"].items():
        for p in r["probes"]:
            state = ("fits" if p["fits"] else
                     "over" if p.get("peak_mb") is not None else "not measured")
            probes.append([f"`{label}`", f"{p['output']}", _alpha(p["alpha"])]
                          + [_f(p.get(k), "{:.0f}") for k in (
                              "peak_mb", "training_peak_mb", "warmup_step_peak_mb",
                              "own_step_peak_mb", "child_max_rss_mb")]
                          + [state, p.get("error", "")])
        for o in r["not_probed"]:
            probes.append([f"`{label}`", f"{o}", "", "", "", "", "", "", "not probed",
                           f"output {r['does_not_fit_at']} did not fit"])
    md.append(_md_table(["setup", "output res", "alpha", "capped peak", "training peak",
                         "warm-up step", "own step", "process max RSS", "under the cap",
                         "note"], probes))
    return md + [""]


def render_markdown(rep: dict) -> str:
    """report.md: headline, at a glance, own-step cost, quality with spreads, plots."""
    labels = list(rep["setups"])
    md = [f"# focusing compare: {', '.join(labels)}", ""]
    md += _machine_lines(rep)
    md += _equal_memory(rep)
    md += ["## Headline: differences beyond the spread", ""] + headline(rep)
    md += _glance(rep)
    md += _over_time(rep)
    md += _cost(rep)
    md += _quality(rep)
    p = rep["plots"]
    md += ["## Plots", "", f"![memory and time]({p['cost']})", "",
           f"![voxels per step]({p['voxels']})", "", f"![loss curves]({p['losses']})", ""]
    if p.get("quality_resolution"):
        md += [f"![quality against resolution and memory]({p['quality_resolution']})", ""]
    if p["renders"]:
        md += ["## Normal renders (ground truth, then each setup)", ""]
        md += [f"![{n}]({path})" for n, path in p["renders"].items()]
        md.append("")
    md += ["## How to read it", ""] + [f"- {n}" for n in rep["notes"]] + [""]
    return "\n".join(x for x in md if x is not None)
