"""Surface metrics of a predicted against a ground-truth mesh: Chamfer, F-score, normal consistency.

Protocol (docs/DESIGN.md "Metrics protocol"): both meshes are mapped by the same similarity that
takes the *ground truth's* bounding box to [-0.5, 0.5] (centre to the origin, largest extent
to 1). The box is that of the gt's surface with area (`surface_bounds`): unreferenced vertices
and degenerate or speck faces are never sampled, so they must not set the frame either. Each
mesh is sampled with `n_points` area-weighted surface points carrying face normals; nearest
neighbours come from a scipy cKDTree.

Definitions (distances in the normalised frame, units of the ground truth's largest extent):
- chamfer_l2 = mean_p min_q |p - q|^2 + mean_q min_p |p - q|^2   (a *sum* of the two means)
- chamfer_l1 = mean_p min_q |p - q|   + mean_q min_p |p - q|
- precision  = fraction of predicted samples with distance < tau to the ground-truth samples;
  recall the other way; fscore their harmonic mean (0 when both are 0).
- normal_consistency = mean |cos| between a sample's normal and its nearest neighbour's
  normal, averaged over the two directions (|cos|: face orientation is not compared).
- floor_* = the same metrics between the ground-truth samples and an independent resample of
  the ground truth. At finite `n_points` they are not 0 (resp. 1); read results against them.
"""

from __future__ import annotations

from os import PathLike
from typing import Union

import numpy as np
from scipy.spatial import cKDTree

from focusing.core.geometry.mesh import Mesh, apply_normalization, normalize_mesh
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.validation import validate_mesh
from focusing.core.geometry.sampling import sample_surface

MeshLike = Union[Mesh, str, "PathLike[str]"]

# The keys of `evaluate`'s result, in the order the CLI prints them.
METRIC_KEYS: tuple[str, ...] = (
    "chamfer_l2",
    "chamfer_l1",
    "fscore",
    "precision",
    "recall",
    "tau",
    "normal_consistency",
    "n_points",
    "floor_chamfer_l2",
    "floor_fscore",
)
RESULT_KEYS: tuple[str, ...] = METRIC_KEYS + ("convention",)

CONVENTION = (
    "both meshes normalised by the bounding box of the ground truth's surface with area "
    "(faces of non-negligible area; centre 0, largest extent 1, "
    "[-0.5, 0.5]); n_points area-weighted samples each; cKDTree nearest neighbours; "
    "chamfer_l2 = sum of the two mean squared NN distances (pred->gt + gt->pred), "
    "chamfer_l1 = sum of the two mean NN distances; F-score at tau with strict d < tau; "
    "normal_consistency = mean |cos| to the NN's face normal, averaged over both directions; "
    "floor_* = the same between gt and an independent resample of gt"
)


def _check_points(name: str, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {pts.shape}")
    if pts.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(pts).all():
        raise ValueError(f"{name} contains NaN or inf")
    return pts


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a positive distance, got {tau}")
    return tau


def nearest_neighbours(
    query: np.ndarray, reference: np.ndarray | cKDTree
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference point [M,3] (or cKDTree) of each query [N,3]: (distance [N], index [N])."""
    query = _check_points("query", query)
    if isinstance(reference, cKDTree):
        tree = reference
    else:
        tree = cKDTree(_check_points("reference", reference))
    dist, idx = tree.query(query, k=1, workers=-1)
    return np.asarray(dist, dtype=np.float64), np.asarray(idx, dtype=np.int64)


def chamfer_distance(pred_points: np.ndarray, gt_points: np.ndarray, squared: bool = True) -> float:
    """Chamfer of point sets [N,3], [M,3]: sum of the two mean NN distances (squared by default)."""
    d_pg, _ = nearest_neighbours(pred_points, gt_points)
    d_gp, _ = nearest_neighbours(gt_points, pred_points)
    if squared:
        return float(np.mean(d_pg**2) + np.mean(d_gp**2))
    return float(np.mean(d_pg) + np.mean(d_gp))


def _f_from(d_pg: np.ndarray, d_gp: np.ndarray, tau: float) -> tuple[float, float, float]:
    precision = float(np.mean(d_pg < tau))
    recall = float(np.mean(d_gp < tau))
    denom = precision + recall
    f = 2.0 * precision * recall / denom if denom > 0 else 0.0
    return f, precision, recall


def fscore(
    pred_points: np.ndarray, gt_points: np.ndarray, tau: float = 0.005
) -> tuple[float, float, float]:
    """F-score of point sets [N,3], [M,3] at distance tau: (fscore, precision, recall) in [0, 1]."""
    tau = _check_tau(tau)
    d_pg, _ = nearest_neighbours(pred_points, gt_points)
    d_gp, _ = nearest_neighbours(gt_points, pred_points)
    return _f_from(d_pg, d_gp, tau)


def _abs_cos(normals_a: np.ndarray, normals_b: np.ndarray) -> np.ndarray:
    # Normals are re-normalised so callers may pass unnormalised face normals.
    na = normals_a / np.linalg.norm(normals_a, axis=1, keepdims=True)
    nb = normals_b / np.linalg.norm(normals_b, axis=1, keepdims=True)
    return np.abs(np.einsum("ij,ij->i", na, nb))


def _check_normals(name: str, normals: np.ndarray, n: int) -> np.ndarray:
    nrm = np.asarray(normals, dtype=np.float64)
    if nrm.shape != (n, 3):
        raise ValueError(f"{name} must have shape [{n}, 3], got {nrm.shape}")
    length = np.linalg.norm(nrm, axis=1)
    if not np.isfinite(nrm).all() or (length == 0).any():
        raise ValueError(f"{name} contains NaN, inf or zero-length normals")
    return nrm


def normal_consistency(
    pred_points: np.ndarray, pred_normals: np.ndarray, gt_points: np.ndarray, gt_normals: np.ndarray
) -> float:
    """Mean |cos| of each sample's normal [N,3]/[M,3] with its NN's, averaged over both ways."""
    pred_points = _check_points("pred_points", pred_points)
    gt_points = _check_points("gt_points", gt_points)
    pred_normals = _check_normals("pred_normals", pred_normals, len(pred_points))
    gt_normals = _check_normals("gt_normals", gt_normals, len(gt_points))
    _, i_pg = nearest_neighbours(pred_points, gt_points)
    _, i_gp = nearest_neighbours(gt_points, pred_points)
    nc_pg = np.mean(_abs_cos(pred_normals, gt_normals[i_pg]))
    nc_gp = np.mean(_abs_cos(gt_normals, pred_normals[i_gp]))
    return float(0.5 * (nc_pg + nc_gp))


def _pair_metrics(
    a_pts: np.ndarray, a_nrm: np.ndarray, a_tree: cKDTree,
    b_pts: np.ndarray, b_nrm: np.ndarray, b_tree: cKDTree, tau: float,
) -> dict[str, float]:
    # One query per direction serves every metric (a = prediction, b = ground truth).
    d_ab, i_ab = a_tree.query(b_pts, k=1, workers=-1)  # b -> a
    d_ba, i_ba = b_tree.query(a_pts, k=1, workers=-1)  # a -> b
    f, precision, recall = _f_from(d_ba, d_ab, tau)
    nc = 0.5 * (np.mean(_abs_cos(a_nrm, b_nrm[i_ba])) + np.mean(_abs_cos(b_nrm, a_nrm[i_ab])))
    return {
        "chamfer_l2": float(np.mean(d_ba**2) + np.mean(d_ab**2)),
        "chamfer_l1": float(np.mean(d_ba) + np.mean(d_ab)),
        "fscore": f,
        "precision": precision,
        "recall": recall,
        "normal_consistency": float(nc),
    }


def point_metrics(
    pred_points: np.ndarray, pred_normals: np.ndarray,
    gt_points: np.ndarray, gt_normals: np.ndarray, tau: float = 0.005,
) -> dict[str, float]:
    """Chamfer L2/L1, F-score, precision, recall, normal consistency of oriented [N,3], [M,3]."""
    pred_points = _check_points("pred_points", pred_points)
    gt_points = _check_points("gt_points", gt_points)
    pred_normals = _check_normals("pred_normals", pred_normals, len(pred_points))
    gt_normals = _check_normals("gt_normals", gt_normals, len(gt_points))
    tau = _check_tau(tau)
    return _pair_metrics(
        pred_points, pred_normals, cKDTree(pred_points),
        gt_points, gt_normals, cKDTree(gt_points), tau,
    )


def _as_mesh(obj: MeshLike) -> Mesh:
    if isinstance(obj, Mesh):
        return validate_mesh(obj)
    # Raw coordinates: the normalisation below is the ground truth's, not each mesh's own.
    return load_mesh(obj, normalize=False)


def evaluate(
    pred: MeshLike, gt: MeshLike, n_points: int = 100_000, tau: float = 0.005, seed: int = 0
) -> dict:
    """Metrics of pred vs gt (Mesh or path) in the gt's unit box, as a dict with RESULT_KEYS.

    Samples: pred with `seed`, gt with `seed + 1`, the gt resample of the floor with `seed + 2`.
    """
    n_points = int(n_points)
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    tau = _check_tau(tau)
    gt_mesh, pred_mesh = _as_mesh(gt), _as_mesh(pred)
    # The gt's surface box defines the frame; pred gets the same map (an overflow there is a
    # MeshError naming pred's file, not gt's).
    gt_n, centre, scale = normalize_mesh(gt_mesh)
    pred_n = apply_normalization(pred_mesh, centre, scale)
    p_pts, p_nrm = sample_surface(pred_n, n_points, seed)
    g_pts, g_nrm = sample_surface(gt_n, n_points, seed + 1)
    r_pts, r_nrm = sample_surface(gt_n, n_points, seed + 2)

    g_tree = cKDTree(g_pts)
    main = _pair_metrics(p_pts, p_nrm, cKDTree(p_pts), g_pts, g_nrm, g_tree, tau)
    floor = _pair_metrics(r_pts, r_nrm, cKDTree(r_pts), g_pts, g_nrm, g_tree, tau)
    values = {
        **main,
        "tau": tau,
        "n_points": n_points,
        "floor_chamfer_l2": floor["chamfer_l2"],
        "floor_fscore": floor["fscore"],
        "convention": CONVENTION,
    }
    return {k: values[k] for k in RESULT_KEYS}
