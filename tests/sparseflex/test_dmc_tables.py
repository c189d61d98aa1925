"""Properties of the generated dual-marching-cubes tables (tables.py), checked against
independent computations on the cube's corners, faces and symmetry group."""

from __future__ import annotations

import itertools

import pytest
import torch

from focusing.core.sparseflex.tables import (
    CORNER_OFFSETS,
    EDGE_AXIS,
    EDGE_CORNERS,
    FACE_CORNERS,
    FACE_EDGES,
    QUAD_RANK,
    SEPARATE_INSIDE,
    SEPARATE_OUTSIDE,
    case_patches,
    crossing_edges,
    dmc_tables,
)

OFFS = [tuple(o) for o in CORNER_OFFSETS.tolist()]
EDGES = [tuple(e) for e in EDGE_CORNERS.tolist()]


def _inside(case: int, c: int) -> bool:
    return bool((case >> c) & 1)


def _ambiguous_faces(case: int) -> list[int]:
    """Faces whose diagonal corners share a sign while neighbours differ (checkerboard)."""
    out = []
    for f, corners in enumerate(FACE_CORNERS.tolist()):
        crossing = [
            e
            for e in FACE_EDGES[f].tolist()
            if _inside(case, EDGES[e][0]) != _inside(case, EDGES[e][1])
        ]
        if len(crossing) == 4:
            out.append(f)
    return out


def _components(nodes: list[int], links: list[tuple[int, int]]) -> int:
    parent = {n: n for n in nodes}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in links:
        if a in parent and b in parent:
            parent[find(a)] = find(b)
    return len({find(n) for n in nodes})


def _expected_patch_count(case: int, rule: str) -> int:
    """Independent count: the patches are disjoint cycles on the cube's surface (a sphere), so
    k cycles leave k + 1 regions, one per connected group of same-sign corners. Corners of the
    separated side connect only along cube edges; those of the other side also across the
    diagonal of an ambiguous face."""
    inside = [c for c in range(8) if _inside(case, c)]
    outside = [c for c in range(8) if not _inside(case, c)]
    if not inside or not outside:
        return 0
    edge_links = list(EDGES)
    diag = []
    for f in _ambiguous_faces(case):
        fc = FACE_CORNERS[f].tolist()
        for a, b in itertools.combinations(fc, 2):
            if sum(x != y for x, y in zip(OFFS[a], OFFS[b])) == 2:
                diag.append((a, b))
    joined_side_inside = rule == SEPARATE_OUTSIDE
    n_in = _components(inside, edge_links + (diag if joined_side_inside else []))
    n_out = _components(outside, edge_links + ([] if joined_side_inside else diag))
    return n_in + n_out - 1


def _cube_symmetries() -> list[list[int]]:
    """The 48 symmetries of the cube as corner permutations (axis permutations and flips)."""
    perms = []
    for axes in itertools.permutations(range(3)):
        for flips in itertools.product((0, 1), repeat=3):
            perm = []
            for c in range(8):
                o = OFFS[c]
                new = tuple(o[axes[i]] ^ flips[i] for i in range(3))
                perm.append(OFFS.index(new))
            perms.append(perm)
    return perms


def _map_case(case: int, perm: list[int]) -> int:
    return sum(1 << perm[c] for c in range(8) if _inside(case, c))


def _map_edge(e: int, perm: list[int]) -> int:
    a, b = perm[EDGES[e][0]], perm[EDGES[e][1]]
    return next(i for i, (x, y) in enumerate(EDGES) if {x, y} == {a, b})


def test_cube_topology():
    # Edges join corners that differ in exactly their axis bit, low corner first; 12 distinct.
    assert len(set(EDGES)) == 12
    for e, (lo, hi) in enumerate(EDGES):
        diff = [i for i in range(3) if OFFS[lo][i] != OFFS[hi][i]]
        assert diff == [EDGE_AXIS[e].item()] and OFFS[lo][diff[0]] == 0
    # Each face holds 4 corners with one fixed bit and the 4 edges between them.
    for f in range(6):
        corners = set(FACE_CORNERS[f].tolist())
        for e in FACE_EDGES[f].tolist():
            assert set(EDGES[e]) <= corners


def test_quad_rank_is_counter_clockwise_around_the_edge_axis():
    # Place the 4 cubes around a grid edge from (0,0,0) along axis a; the cube holding it as
    # local edge e sits at -(offset of e's low corner). Ranks must go CCW seen from +a.
    for a in range(3):
        centres = {}
        for e in range(4 * a, 4 * a + 4):
            lo = torch.tensor(OFFS[EDGES[e][0]], dtype=torch.float64)
            centres[QUAD_RANK[e].item()] = -lo + 0.5
        assert sorted(centres) == [0, 1, 2, 3]
        axis = torch.zeros(3, dtype=torch.float64)
        axis[a] = 1
        for r in range(4):
            p0, p1, p2 = centres[r], centres[(r + 1) % 4], centres[(r + 2) % 4]
            assert torch.dot(torch.linalg.cross(p1 - p0, p2 - p1), axis) > 0


@pytest.mark.parametrize("rule", [SEPARATE_OUTSIDE, SEPARATE_INSIDE])
def test_every_crossing_edge_in_exactly_one_patch(rule):
    edge_patch, num = dmc_tables(rule)
    for case in range(256):
        cross = set(crossing_edges(case))
        patches = case_patches(case, rule)
        flat = [e for p in patches for e in p]
        assert sorted(flat) == sorted(cross) and len(flat) == len(set(flat))
        assert num[case].item() == len(patches)
        for e in range(12):
            want = next((i for i, p in enumerate(patches) if e in p), -1)
            assert edge_patch[case, e].item() == want


@pytest.mark.parametrize("rule", [SEPARATE_OUTSIDE, SEPARATE_INSIDE])
def test_patch_counts_match_region_count(rule):
    for case in range(256):
        assert len(case_patches(case, rule)) == _expected_patch_count(case, rule), case


@pytest.mark.parametrize("rule", [SEPARATE_OUTSIDE, SEPARATE_INSIDE])
def test_patches_are_closed_cycles(rule):
    # A closed curve on the cube's surface enters and leaves every face: each patch has 0, 2 or
    # 4 edges on each face, and at least 3 edges in all.
    for case in range(256):
        for p in case_patches(case, rule):
            assert len(p) >= 3
            for f in range(6):
                assert sum(e in p for e in FACE_EDGES[f].tolist()) in (0, 2, 4)


def test_single_corner_cases():
    for c in range(8):
        patches = case_patches(1 << c)
        assert len(patches) == 1
        assert set(patches[0]) == {e for e, pair in enumerate(EDGES) if c in pair}


def test_complement_symmetry():
    # Flipping all signs swaps the sides, so it swaps the two rules; where no face is
    # ambiguous the rule is never used and the complement has the same patches.
    n_ambiguous = 0
    for case in range(256):
        comp = 255 - case
        assert case_patches(case, SEPARATE_OUTSIDE) == case_patches(comp, SEPARATE_INSIDE)
        if _ambiguous_faces(case):
            n_ambiguous += 1
        else:
            assert case_patches(case) == case_patches(comp)
    assert 0 < n_ambiguous < 256


@pytest.mark.parametrize("rule", [SEPARATE_OUTSIDE, SEPARATE_INSIDE])
def test_rotation_and_reflection_consistency(rule):
    perms = _cube_symmetries()
    assert len({tuple(p) for p in perms}) == 48
    for perm in perms:
        for case in range(256):
            mapped = {frozenset(_map_edge(e, perm) for e in p) for p in case_patches(case, rule)}
            assert mapped == {frozenset(p) for p in case_patches(_map_case(case, perm), rule)}


def test_bad_case_raises():
    with pytest.raises(ValueError, match="case"):
        case_patches(256)
    with pytest.raises(ValueError, match="rule"):
        dmc_tables("bogus")
