"""Triangle meshes: `Mesh`, loading (OBJ/PLY/OFF/STL/GLB), validation, normalisation, atomic save,
and the one rule for which files of a folder are meshes (`find_mesh_files`).

Every fault in an input file raises `MeshError` (a ValueError) whose message names the file and
the fault, so a CLI can print it and stop before writing anything. OBJ and OFF are read by the
small parsers here (trimesh rejects tabs, byte-order marks and mixed polygons, and reads a
truncated OFF silently); PLY, STL and GLB go through trimesh with the checks it lacks (truncated
ASCII PLY, triangle strips).

Normalisation takes its box from the surface that has area: faces whose area is negligible
(degenerate slivers, specks) and vertices no face uses carry no surface samples, so a stray one
must not decide the frame in which a shape is trained or scored.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from focusing.core.io import write_bytes_atomic

__all__ = [
    "Mesh",
    "MeshError",
    "SUPPORTED_FORMATS",
    "load_mesh",
    "find_mesh_files",
    "mesh_names",
    "check_output_path",
    "check_mesh_output",
    "normalize_mesh",
    "apply_normalization",
    "usable_faces",
    "surface_bounds",
    "save_mesh",
    "validate_mesh",
]

log = logging.getLogger(__name__)

# Extension -> trimesh file type. GLTF (text) is left out: it needs side files (buffers).
SUPPORTED_FORMATS = {".obj": "obj", ".ply": "ply", ".off": "off", ".stl": "stl", ".glb": "glb"}

# A face is negligible when its area is below this fraction of its longest edge squared
# (float64 rounding of a collinear triangle leaves ~1e-16 L^2) ...
_SLIVER_RATIO = 1e-12
# ... or below this fraction of the mesh's total area (a speck that is never sampled). The
# example meshes' smallest faces are 5e-6 (shape) and 9e-11 (share of the area).
_SPECK_RATIO = 1e-14


# Largest |coordinate| accepted: squared differences (areas, squared distances) of coordinates
# up to this stay below float64's 1.8e308.
_MAX_COORDINATE = 1e150


class MeshError(ValueError):
    """A mesh file or array that cannot be used; the message names the file and the fault."""


def _where(source: Path | str | None) -> str:
    return f"mesh {str(source)!r}" if source is not None else "mesh (in memory)"


@dataclass
class Mesh:
    """A triangle mesh: vertices [V,3] float64, faces [F,3] int64 (indices into vertices)."""

    vertices: np.ndarray
    faces: np.ndarray
    source: Path | None = field(default=None)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(np.asarray(self.vertices, dtype=np.float64))
        self.faces = np.ascontiguousarray(np.asarray(self.faces, dtype=np.int64))
        if self.source is not None:
            self.source = Path(self.source)

    @property
    def num_vertices(self) -> int:
        """V."""
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        """F."""
        return int(self.faces.shape[0])

    @property
    def triangles(self) -> np.ndarray:
        """Corner positions per face [F,3,3] float64."""
        return self.vertices[self.faces]

    def _cross(self) -> np.ndarray:
        tri = self.triangles
        with np.errstate(over="ignore", invalid="ignore"):
            return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])

    @property
    def face_areas(self) -> np.ndarray:
        """Triangle areas [F] float64 (world units squared)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return 0.5 * np.linalg.norm(self._cross(), axis=1)

    @property
    def face_normals(self) -> np.ndarray:
        """Unit face normals [F,3] float64 (right-hand rule on the face's vertex order); 0 for
        degenerate faces."""
        c = self._cross()
        n = np.linalg.norm(c, axis=1, keepdims=True)
        return np.divide(c, n, out=np.zeros_like(c), where=n > 0)

    @property
    def bounds(self) -> np.ndarray:
        """Axis-aligned bounds [2,3] (min row, max row) of the vertices the faces use."""
        used = self.vertices[np.unique(self.faces)] if self.num_faces else self.vertices
        if used.shape[0] == 0:
            raise MeshError(f"{_where(self.source)}: no vertices, bounds undefined")
        return np.stack([used.min(axis=0), used.max(axis=0)])

    def to_trimesh(self):
        """This mesh as a trimesh.Trimesh (process=False: vertices and faces kept as they are)."""
        import trimesh

        return trimesh.Trimesh(vertices=self.vertices, faces=self.faces, process=False)

    def torch(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(vertices float32 [V,3], faces long [F,3]) torch tensors on `device`."""
        v = torch.as_tensor(self.vertices, dtype=torch.float32, device=device)
        f = torch.as_tensor(self.faces, dtype=torch.long, device=device)
        return v, f


def usable_faces(mesh: Mesh) -> np.ndarray:
    """Mask [F] bool of the faces with non-negligible area (not a sliver, not a speck)."""
    tri = mesh.triangles
    with np.errstate(over="ignore", invalid="ignore"):
        area = mesh.face_areas
        edge_sq = np.max([((tri[:, i] - tri[:, (i + 1) % 3]) ** 2).sum(axis=1) for i in range(3)],
                         axis=0) if len(tri) else np.zeros(0)
        total = float(area[np.isfinite(area)].sum())
        return (area > _SLIVER_RATIO * edge_sq) & (area > _SPECK_RATIO * total) & (area > 0)


def surface_bounds(mesh: Mesh) -> np.ndarray:
    """Axis-aligned bounds [2,3] of the vertices of the faces with area (see usable_faces)."""
    keep = usable_faces(mesh)
    if not keep.any():
        raise MeshError(
            f"{_where(mesh.source)}: total surface area is zero (every one of its "
            f"{mesh.num_faces} faces is degenerate), cannot normalise"
        )
    used = mesh.vertices[np.unique(mesh.faces[keep])]
    return np.stack([used.min(axis=0), used.max(axis=0)])


def validate_mesh(mesh: Mesh) -> Mesh:
    """Raise MeshError unless faces [F>0,3] index finite vertices [V,3], the arithmetic on them
    does not overflow and some face has area."""
    where = _where(mesh.source)
    v, f = mesh.vertices, mesh.faces
    if v.ndim != 2 or v.shape[1] != 3:
        raise MeshError(f"{where}: vertices must have shape [V,3], got {list(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise MeshError(f"{where}: faces must be triangles of shape [F,3], got {list(f.shape)}")
    if v.shape[0] == 0:
        raise MeshError(f"{where}: no vertices")
    if f.shape[0] == 0:
        raise MeshError(f"{where}: no faces (a point cloud, not a surface mesh)")
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise MeshError(
            f"{where}: {int(bad.sum())} vertices have NaN or infinite coordinates "
            f"(first: vertex {int(np.flatnonzero(bad)[0])})"
        )
    if f.min() < 0:
        raise MeshError(
            f"{where}: faces hold a negative vertex index ({int(f.min())}), outside the range "
            f"of its vertices [0, {v.shape[0]})"
        )
    if f.max() >= v.shape[0]:
        raise MeshError(
            f"{where}: faces index vertex {int(f.max())} but there are only {v.shape[0]} "
            f"vertices (outside the range of its vertices)"
        )
    _check_magnitude(mesh, v[np.unique(f)], "vertices")
    if not usable_faces(mesh).any():
        raise MeshError(f"{where}: total surface area is zero (every face is degenerate)")
    return mesh


def _check_magnitude(mesh: Mesh, points: np.ndarray, what: str) -> None:
    """MeshError naming the mesh if squared coordinate differences (areas) overflow float64."""
    span = float(np.abs(points).max()) if points.size else 0.0
    with np.errstate(over="ignore"):
        ok = span <= _MAX_COORDINATE and bool(np.isfinite(mesh.face_areas).all())
    if not ok:
        raise MeshError(
            f"{_where(mesh.source)}: coordinates too large ({what} reach {span:.3g}): "
            f"areas and distances overflow float64; rescale the mesh"
        )


# ----------------------------------------------------------------------------- paths


def _check_input_file(path: Path) -> None:
    """MeshError naming the real fault when `path` is not a readable regular file."""
    name = repr(str(path))
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MeshError(f"mesh {name}: symlink loop (the link points back to itself)") from exc
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise MeshError(
                f"mesh {name}: broken symlink (points to {os.readlink(path)!r}, which does not "
                f"exist)"
            ) from exc
        if exc.errno == errno.ENOENT:
            raise MeshError(f"mesh {name}: file does not exist") from exc
        if exc.errno == errno.ENOTDIR:
            raise MeshError(f"mesh {name}: a parent of this path is a file, not a folder") from exc
        raise MeshError(f"mesh {name}: cannot read file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise MeshError(f"mesh {name}: is a directory, not a mesh file (not a regular file)")
    if not stat.S_ISREG(st.st_mode):
        raise MeshError(f"mesh {name}: not a regular file (a device, pipe or socket)")


def check_output_path(path: str | os.PathLike, option: str = "--out") -> Path:
    """The path, or a ValueError saying why a file cannot be written there (folder missing or
    not writable, a parent is a file, the path is a folder)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    for p in [parent, *parent.parents]:
        if p.exists() and not p.is_dir():
            raise ValueError(f"{option} {str(path)!r}: {str(p)!r} is a file, not a folder")
        if p.is_dir():
            break
    if not parent.is_dir():
        raise ValueError(f"{option} {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {str(path)!r}: folder {str(parent)!r} is not writable")
    return path


def check_mesh_output(path: str | os.PathLike, option: str = "-o") -> Path:
    """The path of a mesh to be written, checked before any work: a supported extension and a
    writable folder (check_output_path); MeshError (a ValueError) saying what is wrong."""
    try:
        path = check_output_path(path, option)
    except ValueError as exc:
        raise MeshError(str(exc)) from None
    ext = path.suffix.lower()
    if ext not in SUPPORTED_FORMATS:
        raise MeshError(f"{option} {str(path)!r}: unknown mesh format "
                        f"{ext or '(no extension)'!r}; supported: "
                        f"{', '.join(sorted(SUPPORTED_FORMATS))}")
    return path


def _is_hidden(path: Path) -> bool:
    # "._x.obj" are macOS resource forks: binary junk named like a mesh.
    return path.name.startswith(".")


def mesh_names(paths: list[Path]) -> list[str]:
    """The name each mesh file goes by in records and reports: its stem, or its file name where
    files of the list share a stem (`shape.off` and `shape.ply`), so that no two are alike."""
    stems = [Path(p).stem for p in paths]
    count = Counter(stems)
    return [Path(p).name if count[stem] > 1 else stem for p, stem in zip(paths, stems)]


def find_mesh_files(folder: str | os.PathLike) -> list[Path]:
    """The mesh files of a folder, sorted: a supported suffix (any case), not hidden (`.x`,
    `._x`), not a directory. A sub-folder named like a mesh (`x.obj`) is skipped with a
    warning on the `focusing` log; other entries are ignored. Broken links are kept, so that
    loading them names the fault. Raises NotADirectoryError/FileNotFoundError for the folder."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} is a file, not a folder of meshes")
    files = []
    for path in sorted(folder.iterdir()):
        if _is_hidden(path) or path.suffix.lower() not in SUPPORTED_FORMATS:
            continue
        if path.is_dir():
            log.warning("skipping %s: a folder named like a mesh file", path)
            continue
        files.append(path)
    return files


# ----------------------------------------------------------------------------- parsers

_OFF_KEYWORD = re.compile(r"^(ST)?(C)?(N)?(4)?(n)?OFF$")


def _text_lines(data: bytes) -> list[str]:
    """Lines of a text mesh file: BOM stripped, CR/LF/CRLF endings, bytes that are not UTF-8
    (in comments, names) replaced rather than fatal."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="replace").splitlines()


def _numbers(rows: list[list[str]], dtype, width: int) -> np.ndarray:
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


def _fan(poly: list[int]) -> list[list[int]]:
    """Triangles [n-2] of a polygon's fan from its first corner."""
    return [[poly[0], poly[i], poly[i + 1]] for i in range(1, len(poly) - 1)]


def _faces_array(faces: list[list[int]], name: str = "") -> np.ndarray:
    try:
        return np.array(faces, dtype=np.int64).reshape(-1, 3)
    except OverflowError:
        raise MeshError(f"mesh {name}: a face holds a vertex index beyond 64 bits") from None


def _parse_off(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V,3], faces [F,3]) of an ASCII OFF file; polygons are fanned into triangles."""
    fail = f"mesh {name}: could not parse as OFF"
    text_lines = _text_lines(data)
    if b"#" in data:
        text_lines = [line.split("#", 1)[0] for line in text_lines]
    # (line number, tokens) of the non-blank lines
    lines = [(n, t) for n, t in enumerate(map(str.split, text_lines), start=1) if t]
    if not lines:
        raise MeshError(f"{fail}: no content (only comments or blank lines)")
    number, tokens = lines[0]
    pos = 1
    if _OFF_KEYWORD.match(tokens[0]):
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
        vertices = _numbers([t[:3] for _, t in body[:nv]], np.float64, 3)
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
            return vertices, _numbers([t[1:] for t in face_rows], np.int64, 3)
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
            faces.extend(_fan(corners))
    return vertices, _faces_array(faces, name)


_OBJ_IGNORED = {"vt", "vn", "vp", "g", "o", "s", "usemtl", "mtllib", "cstype", "deg", "bmat",
                "step", "curv", "curv2", "surf", "parm", "trim", "hole", "scrv", "sp", "end",
                "con", "mg", "bevel", "c_interp", "d_interp", "lod", "shadow_obj", "trace_obj",
                "ctech", "stech", "maplib", "usemap"}


def _parse_obj(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V,3], faces [F,3]) of an OBJ file: `f` corners as i, i/t, i//n or i/t/n,
    negative indices relative to the vertices so far, polygons fanned into triangles."""
    fail = f"mesh {name}: could not parse as OBJ"
    vertices: list[list[str]] = []
    faces: list[list[int]] = []
    n_lines = n_points = 0
    first_unknown = None
    pending = ""
    for number, line in enumerate(_text_lines(data), start=1):
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
            faces.extend(_fan(corners))
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
    return verts, _faces_array(faces, name)


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
    return _faces_array(faces)


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


def _load_trimesh(path: Path, file_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of a PLY/STL/GLB file read by trimesh; scenes concatenated."""
    import trimesh

    fmt = file_type.upper()
    name = repr(str(path))
    hint = _format_hint(path, file_type)
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


def _format_hint(path: Path | None, file_type: str, head: bytes | None = None) -> str:
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
    elif head.strip() and _OFF_KEYWORD.match(head.split(maxsplit=1)[0].decode("latin-1")):
        guess = "off"
    elif head.lstrip().startswith(b"solid"):
        guess = "stl"
    if guess is None or guess == file_type:
        return ""
    return f" (its content looks like {guess.upper()}: wrong extension?)"


def load_mesh(path: str | os.PathLike, normalize: bool = True) -> Mesh:
    """Load an OBJ/PLY/OFF/STL/GLB triangle mesh (polygons and strips triangulated, a GLB
    scene merged into one mesh), validate it, and (by default) normalise it into the unit box
    [-0.5, 0.5]^3; raises MeshError naming the file and the fault."""
    path = Path(path)
    name = repr(str(path))
    ext = path.suffix.lower()
    _check_input_file(path)
    if ext not in SUPPORTED_FORMATS:
        raise MeshError(
            f"mesh {name}: unknown format {ext or '(no extension)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_FORMATS))}"
        )
    file_type = SUPPORTED_FORMATS[ext]
    try:
        data = path.read_bytes() if file_type in ("obj", "off") else open(path, "rb").read(80)
    except OSError as exc:
        raise MeshError(f"mesh {name}: cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise MeshError(f"mesh {name}: file is empty")
    if data.startswith(b"\x1f\x8b"):
        raise MeshError(f"mesh {name}: the file is gzip-compressed; decompress it first (gunzip)")
    if file_type in ("obj", "off"):
        hint = _format_hint(None, file_type, data)
        if hint or b"\x00" in data[:65536]:
            what = hint or " (binary data, not a text file)"
            raise MeshError(f"mesh {name}: could not parse as {file_type.upper()}{what}")
        parse = _parse_obj if file_type == "obj" else _parse_off
        vertices, faces = parse(data, name)
    else:
        vertices, faces = _load_trimesh(path, file_type)
    mesh = validate_mesh(Mesh(vertices, faces, path))
    if normalize:
        mesh, _, _ = normalize_mesh(mesh)
    return mesh


def normalize_mesh(mesh: Mesh) -> tuple[Mesh, np.ndarray, float]:
    """Centre the box of the surface with area (see surface_bounds) at 0 and scale its largest
    extent to 1 (unit box [-0.5, 0.5]^3); returns (new mesh, centre [3] float64, scale) with
    new = (old - centre) * scale."""
    _check_magnitude(mesh, mesh.vertices[np.unique(mesh.faces)], "vertices")
    lo, hi = surface_bounds(mesh)
    extent = float((hi - lo).max())
    if not extent > 0.0:
        raise MeshError(f"{_where(mesh.source)}: zero extent, cannot normalise")
    center = (lo + hi) / 2.0
    scale = 1.0 / extent
    return apply_normalization(mesh, center, scale), center, scale


def apply_normalization(mesh: Mesh, center, scale: float) -> Mesh:
    """Map `mesh` with a transform from normalize_mesh: vertices (v - center) * scale; a
    MeshError naming this mesh if its mapped coordinates overflow."""
    center = np.asarray(center, dtype=np.float64).reshape(3)
    with np.errstate(over="ignore", invalid="ignore"):
        verts = (mesh.vertices - center) * float(scale)
    out = Mesh(verts, mesh.faces.copy(), mesh.source)
    used = verts[np.unique(mesh.faces)] if mesh.num_faces else verts
    if not np.isfinite(used).all():
        raise MeshError(
            f"{_where(mesh.source)}: coordinates too large: they overflow float64 once mapped "
            f"(centre {center.tolist()}, scale {float(scale):.3g}); rescale the mesh"
        )
    _check_magnitude(out, used, "mapped vertices")
    return out


def save_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write `mesh` (format from the extension) atomically: a temp file in the same folder, then
    os.replace, so a failure never leaves a half-written file. Returns the path."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_FORMATS:
        raise MeshError(
            f"mesh {str(path)!r}: cannot save, unknown format {ext or '(no extension)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_FORMATS))}"
        )
    validate_mesh(mesh)
    data = mesh.to_trimesh().export(file_type=SUPPORTED_FORMATS[ext])
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise MeshError(f"mesh {str(path)!r}: folder {str(folder)!r} does not exist")
    write_bytes_atomic(path, data)
    return path
