"""Issue 22, item 5: the cost figures of `focusing compare` describe each setup's own steps
(after the warm-up), with the shared warm-up reported apart. A long shared warm-up, equal for
every setup, must not average the setups' own costs into one another ("time per step x1.00")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from focusing.eval.report import (
    comparison, phase_cost, render_markdown, split_phases, summarize_run, summarize_setup,
    summarize_warmups,
)

WARMUP = 10


def _history(own_seconds: float, own_latents: int, own_steps: int = 3) -> dict:
    """WARMUP shared steps (1 s, 600 latents decoded, 50 MiB), then the setup's own steps."""
    steps = [{"step": i + 1, "seconds": 1.0, "peak_memory_mb": 50.0, "terms": {"total": 1.0},
              "counts": {"latent_all": 652, "latent_kept": 600, "output_all": 900,
                         "output_kept": 300, "triangles": 0}} for i in range(WARMUP)]
    steps += [{"step": WARMUP + i + 1, "seconds": own_seconds, "peak_memory_mb": 10.0 * own_seconds,
               "terms": {"total": 0.5},
               "counts": {"latent_all": 652, "latent_kept": own_latents,
                          "output_all": 8 * own_latents, "output_kept": 2 * own_latents,
                          "triangles": 0}} for i in range(own_steps)]
    return {"steps": steps, "train_peak_mb": 60.0, "rss_before_fit_mb": 300.0, "prep_s": 1.0,
            "shared_warmup": {"steps": WARMUP, "fit_s": 10.0, "train_peak_mb": 50.0}}


def test_phases_split_at_the_warmup():
    hist = _history(2.83, 652)
    warm, own = split_phases(hist["steps"], WARMUP)
    assert [s["step"] for s in warm] == list(range(1, 11))
    assert [s["step"] for s in own] == [11, 12, 13]
    cost = phase_cost(own)
    assert cost == {"steps": 3, "seconds_per_step": 2.83, "seconds": pytest.approx(8.49),
                    "peak_memory_mb": pytest.approx(28.3), "latents_decoded_per_step": 652,
                    "latents_active_per_step": 652, "cubes_decoded_per_step": 8 * 652,
                    "cubes_meshed_per_step": 2 * 652, "triangles_per_step": 0}
    assert phase_cost([]) is None


def _report() -> dict:
    setups = {}
    for label, secs, latents in (("triposf", 2.83, 652), ("focusing", 0.25, 80)):
        run = summarize_run(_history(secs, latents), 500.0, 30.0, {}, warmup_steps=WARMUP)
        run.update(seed=0, first_reached_s={})
        setups[label] = summarize_setup([run])
        setups[label]["resolution"] = {"latent": 32, "output": 128}
    warm = SimpleNamespace(history={"steps": _history(1.0, 1)["steps"][:WARMUP]}, max_rss_mb=400.0)
    return {"command": "", "date": "today", "notes": [], "timings": {},
            "machine": {"cpu": "cpu", "cores": 2, "memory_gb": 8, "torch": "2",
                        "load_average": None},
            "budget": {"name": "b", "description": "", "steps": 13, "tau": 0.005,
                       "eval_points": 1000},
            "meshes": {}, "plots": {"cost": "c.png", "voxels": "v.png", "losses": "l.png",
                                    "renders": {}},
            "setups": setups, "shared_warmup": summarize_warmups({0: warm}),
            "comparison": comparison(setups, "triposf")}


def test_glance_and_cost_table_report_each_setups_own_steps():
    rep = _report()
    tri, foc = rep["setups"]["triposf"], rep["setups"]["focusing"]
    # over every step both medians are the warm-up's 1 s: the figure the issue found useless
    assert tri["runs"][0]["time_per_step_s"] == foc["runs"][0]["time_per_step_s"] == 1.0
    assert tri["own_steps"]["seconds_per_step"]["mean"] == 2.83
    assert foc["own_steps"]["seconds_per_step"]["mean"] == 0.25
    assert foc["own_steps"]["latents_decoded_per_step"]["mean"] == 80
    assert foc["own_steps"]["cubes_meshed_per_step"]["mean"] == 160
    assert foc["warmup"]["seconds_per_step"]["mean"] == 1.0 and foc["warmup_shared"]
    c = rep["comparison"]["against_reference"]["focusing"]
    assert c["time_per_step_ratio"] == pytest.approx(0.25 / 2.83)
    assert c["memory_ratio"] == pytest.approx(2.5 / 28.3)
    assert c["latents_decoded_ratio"] == pytest.approx(80 / 652)
    md = render_markdown(rep)
    glance = md[md.index("## At a glance"):md.index("## Cost per setup")]
    assert "own-step peak memory x0.09, time per own step x0.09, latents decoded per own step " \
           "80 vs 652" in glance
    assert "shared warm-up (trained once per seed, forked by every setup; not in the figures " \
           "above): 10 steps, 1 s/step, 10 s, peak 50 MiB" in glance
    cost = md[md.index("## Cost per setup"):md.index("### The shared warm-up")]
    assert "| `triposf` | 3 | 2.83 | 28 | 652 | 652 | 1304 | 5216 | 0 | 8.49 |" in cost
    assert "| `focusing` | 3 | 0.25 | 2 | 80 | 652 | 160 | 640 | 0 | 0.75 |" in cost
    warm = md[md.index("### The shared warm-up"):]
    assert "| shared warm-up | 10 | 1 | 50 | 600 | 652 | 300 | 900 | 0 | 10 |" in warm
