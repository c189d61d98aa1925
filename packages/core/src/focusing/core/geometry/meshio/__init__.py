"""Mesh files: which files of a folder are meshes (`find_mesh_files`), the names they go by
(`mesh_names`), reading (`load_mesh`: OBJ/PLY/OFF/STL/GLB) and atomic writing (`save_mesh`).

Every fault in an input file raises `MeshError` (a ValueError) whose message names the file and
the fault, so a CLI can print it and stop before writing anything. OBJ and OFF are read by the
small parsers of obj.py and off.py (trimesh rejects tabs, byte-order marks and mixed polygons,
and reads a truncated OFF silently); PLY, STL and GLB go through trimesh with the checks it lacks
(trimesh_formats.py: truncated ASCII PLY, triangle strips).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections import Counter
from pathlib import Path

from focusing.core.geometry.mesh import Mesh, normalize_mesh
from focusing.core.geometry.meshio.common import format_hint
from focusing.core.geometry.meshio.obj import parse_obj
from focusing.core.geometry.meshio.off import parse_off
from focusing.core.geometry.meshio.trimesh_formats import load_trimesh
from focusing.core.geometry.validation import MeshError, validate_mesh
from focusing.core.io import check_output_path, write_bytes_atomic

__all__ = [
    "SUPPORTED_FORMATS",
    "check_mesh_output",
    "find_mesh_files",
    "load_mesh",
    "mesh_names",
    "save_mesh",
]

log = logging.getLogger(__name__)

# Extension -> trimesh file type. GLTF (text) is left out: it needs side files (buffers).
SUPPORTED_FORMATS = {".obj": "obj", ".ply": "ply", ".off": "off", ".stl": "stl", ".glb": "glb"}



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
        hint = format_hint(None, file_type, data)
        if hint or b"\x00" in data[:65536]:
            what = hint or " (binary data, not a text file)"
            raise MeshError(f"mesh {name}: could not parse as {file_type.upper()}{what}")
        parse = parse_obj if file_type == "obj" else parse_off
        vertices, faces = parse(data, name)
    else:
        vertices, faces = load_trimesh(path, file_type)
    mesh = validate_mesh(Mesh(vertices, faces, path))
    if normalize:
        mesh, _, _ = normalize_mesh(mesh)
    return mesh


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
