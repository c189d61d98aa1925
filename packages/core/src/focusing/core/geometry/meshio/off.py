"""The OFF reader: ASCII OFF (with or without its keyword, comments, polygons fanned into
triangles), read by this small parser (trimesh reads a truncated OFF silently)."""

from __future__ import annotations

import numpy as np

from focusing.core.geometry.meshio.common import (
    OFF_KEYWORD,
    decode_lines,
    faces_array,
    fan,
    parse_numbers,
)
from focusing.core.geometry.validation import MeshError


def parse_off(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V,3], faces [F,3]) of an ASCII OFF file; polygons are fanned into triangles."""
    fail = f"mesh {name}: could not parse as OFF"
    text_lines = decode_lines(data)
    if b"#" in data:
        text_lines = [line.split("#", 1)[0] for line in text_lines]
    # (line number, tokens) of the non-blank lines
    lines = [(n, t) for n, t in enumerate(map(str.split, text_lines), start=1) if t]
    if not lines:
        raise MeshError(f"{fail}: no content (only comments or blank lines)")
    number, tokens = lines[0]
    pos = 1
    if OFF_KEYWORD.match(tokens[0]):
        if "4" in tokens[0] or tokens[0].endswith("nOFF"):
            raise MeshError(f"{fail}: {tokens[0]} (not 3D) is not supported")
        rest = tokens[1:]
        if rest and rest[0].upper() == "BINARY":
            raise MeshError(f"{fail}: binary OFF is not supported; write it as ASCII OFF")
        if not rest:
            if len(lines) < 2:
                raise MeshError(f"{fail}: truncated: the header has no vertex and face counts")
            number, rest = lines[1]
            pos = 2
        counts = rest
    else:
        counts = tokens  # the OFF keyword is optional
    try:
        if len(counts) not in (2, 3):
            raise ValueError
        nv, nf = int(counts[0]), int(counts[1])
        if nv < 0 or nf < 0:
            raise ValueError
    except ValueError:
        raise MeshError(
            f"{fail}: line {number} should hold the counts 'vertices faces edges', "
            f"got {' '.join(counts)[:60]!r}"
        ) from None
    body = lines[pos:]
    if len(body) < nv:
        raise MeshError(f"mesh {name}: truncated: header says {nv} vertices, file has {len(body)}")
    if len(body) < nv + nf:
        raise MeshError(
            f"mesh {name}: truncated: header says {nf} faces, file has {len(body) - nv}"
        )
    if len(body) > nv + nf:
        extra_line = body[nv + nf][0]
        raise MeshError(
            f"{fail}: header says {nv} vertices and {nf} faces, but the file holds "
            f"{len(body) - nv - nf} more lines (from line {extra_line})"
        )
    try:
        vertices = parse_numbers([t[:3] for _, t in body[:nv]], np.float64, 3)
    except ValueError:
        for number, t in body[:nv]:  # find the line at fault
            try:
                if len(t) < 3:
                    raise ValueError
                [float(x) for x in t[:3]]
            except ValueError:
                raise MeshError(
                    f"{fail}: line {number}: a vertex needs 3 numbers, got {' '.join(t)[:60]!r}"
                ) from None
        raise
    face_rows = [t for _, t in body[nv:]]
    if all(len(t) == 4 and t[0] == "3" for t in face_rows):  # the common all-triangle file
        try:
            return vertices, parse_numbers([t[1:] for t in face_rows], np.int64, 3)
        except ValueError:
            pass  # the loop below names the line at fault
    faces: list[list[int]] = []
    for number, t in body[nv:]:
        try:
            n = int(t[0])
            corners = [int(x) for x in t[1 : 1 + n]]
        except ValueError:
            raise MeshError(
                f"{fail}: line {number}: a face is 'n i1 .. in', got {' '.join(t)[:60]!r}"
            ) from None
        if n < 3:
            raise MeshError(f"{fail}: line {number}: a face needs at least 3 corners, got {n}")
        if len(corners) < n:
            raise MeshError(
                f"mesh {name}: truncated: line {number}: face says {n} corners, "
                f"lists {len(corners)}"
            )
        if n == 3:
            faces.append(corners)
        else:
            faces.extend(fan(corners))
    return vertices, faces_array(faces, name)
