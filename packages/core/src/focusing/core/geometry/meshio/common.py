"""What the mesh readers share: text decoding, numeric rows, polygon fans, face arrays, and the
guess of a file's real format from its first bytes (`format_hint`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from focusing.core.geometry.validation import MeshError

# The OFF header keyword, [ST][C][N][4][n]OFF: off.py reads it, format_hint spots it.
OFF_KEYWORD = re.compile(r"^(ST)?(C)?(N)?(4)?(n)?OFF$")


def decode_lines(data: bytes) -> list[str]:
    """Lines of a text mesh file: BOM stripped, CR/LF/CRLF endings, bytes that are not UTF-8
    (in comments, names) replaced rather than fatal."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="replace").splitlines()


def parse_numbers(rows: list[list[str]], dtype, width: int) -> np.ndarray:
    """Rows of `width` numeric tokens as an array [N,width]; ValueError if any is not one."""
    if any(len(t) != width for t in rows):
        raise ValueError("ragged rows")
    flat = " ".join(" ".join(t) for t in rows)
    values = np.array(flat.split(), dtype=np.float64) if flat else np.zeros(0)
    if dtype is np.int64:
        if not np.all((values == np.round(values)) & (np.abs(values) < 2.0**53)):
            raise ValueError("not integers")
        values = values.astype(np.int64)
    return values.reshape(len(rows), width)


def fan(poly: list[int]) -> list[list[int]]:
    """Triangles [n-2] of a polygon's fan from its first corner."""
    return [[poly[0], poly[i], poly[i + 1]] for i in range(1, len(poly) - 1)]


def faces_array(faces: list[list[int]], name: str = "") -> np.ndarray:
    """Triangles as an array [F,3] int64; MeshError when an index does not fit 64 bits."""
    try:
        return np.array(faces, dtype=np.int64).reshape(-1, 3)
    except OverflowError:
        raise MeshError(f"mesh {name}: a face holds a vertex index beyond 64 bits") from None


def format_hint(path: Path | None, file_type: str, head: bytes | None = None) -> str:
    """' (its content looks like X)' when the file's first bytes betray another format, else ''."""
    if head is None:
        try:
            with open(path, "rb") as fh:
                head = fh.read(80)
        except OSError:
            return ""
    head = head[:80]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    guess = None
    if head.startswith(b"ply"):
        guess = "ply"
    elif head.startswith(b"glTF"):
        guess = "glb"
    elif head.strip() and OFF_KEYWORD.match(head.split(maxsplit=1)[0].decode("latin-1")):
        guess = "off"
    elif head.lstrip().startswith(b"solid"):
        guess = "stl"
    if guess is None or guess == file_type:
        return ""
    return f" (its content looks like {guess.upper()}: wrong extension?)"
