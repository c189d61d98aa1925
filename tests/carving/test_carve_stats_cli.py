"""`focusing carve-stats` end to end on real meshes: JSON, the plot, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MESHES = Path(__file__).resolve().parents[2] / "examples" / "meshes"


def run(*args):
    return subprocess.run(
        [sys.executable, "-c", "from focusing.core.cli import main; main()", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_carve_stats_json_and_plot(tmp_path):
    plot = tmp_path / "plots" / "carve.png"
    out = run("carve-stats", str(MESHES / "fandisk.off"), str(MESHES / "blade.off"), "--res", "16",
              "--views", "2", "--image-size", "64", "--json", "--plot", str(plot))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {r["selector"]: r for r in data["summary"]}
    assert set(rows) == {"all", "frustum", "far-plane", "depth-carving", "depth-carving-tight",
                         "zoom"}
    assert all(r["views"] == 4 for r in rows.values())
    assert len(data["records"]) == 4 * 6
    # `all` keeps every active voxel: kept/all is 1 and it covers the bound.
    assert rows["all"]["of_all_mean"] == 1.0 and rows["all"]["recall_min"] == 1.0
    counts = data["active_counts"]
    for rec in data["records"]:
        assert rec["total"] == counts[rec["mesh"]]
        if rec["bound"]:
            assert rec["cost"] == pytest.approx(rec["kept"] / rec["bound"])
    assert rows["depth-carving-tight"]["recall_min"] == 1.0
    assert rows["depth-carving-tight"]["kept_mean"] < rows["depth-carving"]["kept_mean"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in plot.parent.iterdir() if p.name != plot.name]  # no temp file left


def test_carve_stats_bad_mesh(tmp_path):
    bad = tmp_path / "broken.off"
    bad.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n")
    out = run("carve-stats", str(bad), "--res", "8", "--views", "1", "--json")
    assert out.returncode != 0
    assert "broken.off" in out.stderr


def test_carve_stats_json_is_strict_where_a_view_sees_nothing(tmp_path):
    """Two tiny triangles in opposite corners of the box: the 4x4 orbit views see neither, so
    every bound is empty and the ratios have no value; --json prints null, never bare NaN."""
    corners = tmp_path / "corners.off"
    corners.write_text(
        "OFF\n6 2 0\n"
        "-1 -1 -1\n-0.98 -1 -1\n-1 -0.98 -1\n"
        "1 1 1\n0.98 1 1\n1 0.98 1\n"
        "3 0 1 2\n3 3 4 5\n"
    )
    out = run("carve-stats", str(corners), "--res", "8", "--views", "2", "--image-size", "4",
              "--json")
    assert out.returncode == 0, out.stderr
    assert "NaN" not in out.stdout and "Infinity" not in out.stdout
    data = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["records"] and all(r["bound"] == 0 for r in data["records"])
    assert all(r["cost"] is None and r["recall"] is None for r in data["records"])
    for row in data["summary"]:
        assert row["cost_mean"] is None and row["recall_min"] is None
        assert row["kept_mean"] >= 0  # the counts stay numbers
