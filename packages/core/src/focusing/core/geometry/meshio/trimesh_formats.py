"""PLY, STL and GLB, read through trimesh with the checks it lacks: a truncated ASCII PLY (trimesh
reads the rows present without a word), PLY triangle strips, a file with no faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from focusing.core.geometry.meshio.common import faces_array, format_hint
from focusing.core.geometry.validation import MeshError


def _strip_triangles(strip: np.ndarray) -> list[list[int]]:
    """Triangles of one triangle strip [n] (alternating winding; repeated corners dropped)."""
    out = []
    for i in range(len(strip) - 2):
        a, b, c = (int(x) for x in strip[i : i + 3])
        if a == b or b == c or a == c:
            continue
        out.append([a, b, c] if i % 2 == 0 else [b, a, c])
    return out


def _ply_strips(raw: dict) -> np.ndarray | None:
    """Faces [F,3] of a PLY's `tristrips` element (strips split at -1), or None if it has none."""
    element = raw.get("tristrips")
    if element is None:
        return None
    data = element["data"]
    if isinstance(data, dict):  # ASCII: property -> rows
        rows = next(iter(data.values()))
    else:  # binary: a structured array; the first property's list is its field "f1"
        rows = data[data.dtype.names[0]]
        rows = rows["f1"] if rows.dtype.names else rows
    faces: list[list[int]] = []
    for row in rows:
        row = np.asarray(row, dtype=np.int64).ravel()
        for strip in np.split(row, np.flatnonzero(row < 0)):
            faces.extend(_strip_triangles(strip[strip >= 0]))
    return faces_array(faces)


def _check_ply_counts(raw: dict, name: str) -> None:
    """MeshError when an ASCII PLY holds fewer rows than its header promises (trimesh reads the
    rows present without a word)."""
    for element, entry in raw.items():
        data = entry.get("data")
        if isinstance(data, dict):  # ASCII: one array per property
            data = next(iter(data.values()), None)
        got = len(data) if data is not None else entry["length"]
        if got < entry["length"]:
            raise MeshError(
                f"mesh {name}: truncated: header says {entry['length']} {element} "
                f"elements, file has {got}"
            )


def load_trimesh(path: Path, file_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of a PLY/STL/GLB file read by trimesh; scenes concatenated."""
    import trimesh

    fmt = file_type.upper()
    name = repr(str(path))
    hint = format_hint(path, file_type)
    try:
        loaded = trimesh.load(str(path), file_type=file_type, process=False)
    except Exception as exc:  # trimesh raises many types on corrupt files
        raise MeshError(
            f"mesh {name}: could not parse as {fmt}{hint}: {type(exc).__name__}: {exc}"
        ) from exc
    raw = getattr(loaded, "metadata", {}).get("_ply_raw")
    if raw is not None:
        _check_ply_counts(raw, name)
    if isinstance(loaded, trimesh.Scene):
        # Node transforms applied, every geometry concatenated into one mesh.
        geoms = loaded.dump()
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if not meshes:
            if geoms:  # e.g. only points or lines
                raise MeshError(
                    f"mesh {name}: no faces, the file holds only "
                    f"{', '.join(sorted({_kind(g) for g in geoms}))}, not a surface mesh"
                )
            raise MeshError(
                f"mesh {name}: no triangles could be read as {fmt} "
                f"(empty, truncated or not a {fmt} file){hint}"
            )
        loaded = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        strips = _ply_strips(raw) if raw is not None else None
        if strips is not None and len(strips):
            return np.array(loaded.vertices), strips
        if strips is not None:
            raise MeshError(f"mesh {name}: triangle strips hold no triangle")
        raise MeshError(
            f"mesh {name}: no faces, the file holds only {_kind(loaded, raw)}, not a surface mesh"
        )
    # np.array copies: trimesh's TrackedArrays must not alias our data.
    return np.array(loaded.vertices), np.array(loaded.faces).reshape(-1, 3)


def _kind(geometry, raw: dict | None = None) -> str:
    """What a face-less trimesh result holds, in words."""
    import trimesh

    if raw is not None:
        others = [k for k in raw if k != "vertex" and raw[k]["length"]]
        if others:
            return f"vertices and {', '.join(others)} elements (no `face` element)"
    if isinstance(geometry, trimesh.PointCloud) or (
        isinstance(geometry, trimesh.Trimesh) and len(geometry.faces) == 0
    ):
        return "points (a point cloud)"
    if isinstance(geometry, trimesh.path.Path3D | trimesh.path.Path2D):
        return "lines or curves"
    return type(geometry).__name__
