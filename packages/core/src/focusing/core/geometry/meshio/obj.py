"""The OBJ reader: vertices and faces of an OBJ file, read by this small parser (trimesh
rejects tabs, byte-order marks and mixed polygons)."""

from __future__ import annotations

import numpy as np

from focusing.core.geometry.meshio.common import decode_lines, faces_array, fan
from focusing.core.geometry.validation import MeshError


_OBJ_IGNORED = {"vt", "vn", "vp", "g", "o", "s", "usemtl", "mtllib", "cstype", "deg", "bmat",
                "step", "curv", "curv2", "surf", "parm", "trim", "hole", "scrv", "sp", "end",
                "con", "mg", "bevel", "c_interp", "d_interp", "lod", "shadow_obj", "trace_obj",
                "ctech", "stech", "maplib", "usemap"}


def parse_obj(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V,3], faces [F,3]) of an OBJ file: `f` corners as i, i/t, i//n or i/t/n,
    negative indices relative to the vertices so far, polygons fanned into triangles."""
    fail = f"mesh {name}: could not parse as OBJ"
    vertices: list[list[str]] = []
    faces: list[list[int]] = []
    n_lines = n_points = 0
    first_unknown = None
    pending = ""
    for number, line in enumerate(decode_lines(data), start=1):
        line = pending + line
        if line.endswith("\\"):  # continuation
            pending = line[:-1] + " "
            continue
        pending = ""
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        key = tokens[0]
        if key == "v":
            if len(tokens) < 4:
                raise MeshError(
                    f"{fail}: line {number}: a vertex needs 3 numbers, got {line.strip()[:60]!r}"
                )
            vertices.append(tokens[1:4])
        elif key == "f":
            corners = []
            for t in tokens[1:]:
                try:
                    i = int(t.split("/", 1)[0])
                except ValueError:
                    raise MeshError(f"{fail}: line {number}: bad face corner {t!r}") from None
                if i == 0:
                    raise MeshError(f"{fail}: line {number}: index 0 (OBJ indices start at 1)")
                corners.append(i - 1 if i > 0 else len(vertices) + i)
            if len(corners) < 3:
                raise MeshError(
                    f"{fail}: line {number}: a face needs at least 3 corners, got {len(corners)}"
                )
            faces.extend(fan(corners))
        elif key == "l":
            n_lines += 1
        elif key == "p":
            n_points += 1
        elif key not in _OBJ_IGNORED and first_unknown is None:
            first_unknown = (number, line.strip()[:60])  # vendor extensions are ignored
    try:
        verts = np.array(vertices, dtype=np.float64).reshape(-1, 3)
    except ValueError:
        raise MeshError(f"{fail}: a vertex line holds something that is not a number") from None
    if not faces:
        if n_lines:
            raise MeshError(
                f"mesh {name}: no faces: the file holds only lines ({n_lines} `l` statements, "
                f"{len(verts)} vertices), not a surface mesh"
            )
        if len(verts):
            raise MeshError(
                f"mesh {name}: no faces, the file holds only {len(verts)} vertices "
                f"(points, a point cloud), not a surface mesh"
            )
        if first_unknown is not None:
            raise MeshError(
                f"{fail}: no `v` or `f` statements; line {first_unknown[0]} is "
                f"{first_unknown[1]!r}"
            )
        raise MeshError(f"{fail}: no vertices or faces")
    return verts, faces_array(faces, name)
