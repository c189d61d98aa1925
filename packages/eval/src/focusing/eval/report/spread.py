"""Mean and spread over seeds, and the rule that decides when a difference between two setups
is more than run-to-run noise.

Per-mesh F-score moves by up to 0.2 between two runs of the same setting (issue 22), so a
single run per setup cannot tell an effect from noise. Every figure measured once per seed is
therefore aggregated into {mean, std, min, max, n}: n the number of seeds that gave a value (a
seed whose reconstruction of a mesh failed gives none), std the sample standard deviation
(n - 1 in the denominator; 0 when n = 1).

The spread rule (SPREAD_RULE): a difference between two setups is called beyond the spread
only when both have a value from at least MIN_SEEDS seeds and their [min, max] ranges over the
seeds do not overlap. With one seed no difference is ever called beyond the spread. Disjoint
ranges need no assumption about the noise's distribution, and with K seeds each they arise by
chance alone (two setups equal in truth) with probability 2 / C(2K, K): 1/3 at K = 2, 1/10 at
K = 3, 1/35 at K = 4.
"""

from __future__ import annotations

import math
import statistics

MIN_SEEDS = 2
SPREAD_RULE = (
    "a difference between two setups counts as beyond the spread only when each setup has a "
    f"value from at least {MIN_SEEDS} seeds and their [min, max] ranges over the seeds do not "
    "overlap; with one seed no difference is called beyond the spread")
STAT_KEYS = ("mean", "std", "min", "max", "n")


def aggregate(values) -> dict:
    """{mean, std, min, max, n} of the finite values among `values` (one per seed)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "min": min(vals), "max": max(vals),
            "n": len(vals)}


def exceeds_spread(a: dict, b: dict) -> bool:
    """SPREAD_RULE on two aggregates: both n >= MIN_SEEDS and [min, max] ranges disjoint."""
    if min(a["n"], b["n"]) < MIN_SEEDS:
        return False
    return a["min"] > b["max"] or b["min"] > a["max"]


def verdict(figure: str, reference: str, ref: dict, label: str, stat: dict,
            higher_is_better: bool) -> dict:
    """One figure of `label` against `reference`: means' difference and ratio, whether it
    exceeds the spread, and which setup is better (None: within the spread)."""
    diff = ratio = None
    if ref["n"] and stat["n"]:
        diff = stat["mean"] - ref["mean"]
        ratio = stat["mean"] / ref["mean"] if ref["mean"] else None
    beyond = exceeds_spread(stat, ref)
    better = None
    if beyond:
        better = label if (diff > 0) == higher_is_better else reference
    return {"figure": figure, "reference": ref, "setup": stat, "difference": diff,
            "ratio": ratio, "higher_is_better": higher_is_better, "exceeds_spread": beyond,
            "better": better}
