"""Unpack the meshes of Debian's libcgal-demo package into a flat local corpus, with credits.

    python scripts/cgal_corpus.py data/cgal                  # apt-get download, then unpack
    python scripts/cgal_corpus.py data/cgal --deb libcgal-demo_5.5.1-2_all.deb
    python scripts/cgal_corpus.py data/cgal --transform 20   # + 20 rotated, scaled copies each

The package (CGAL 5.5.1 in Debian 12) ships CGAL's data set as
usr/share/doc/libcgal-dev/data.tar.gz inside its data.tar.*: about 140 triangle and polygon
meshes (OFF, PLY, STL), scans, artist models and CAD parts among them. The script copies every
file with a mesh suffix that holds faces (point sets, such as a PLY with `element face 0`, are
left out and listed) into OUT under unique names, and writes OUT/CREDITS.md: where each file
came from, and the copyright file of the package that owns the folder (libcgal-dev: CGAL's data
files that carry no notice of their own are CC0; the armadillo and the bunny come from the
Stanford 3D Scanning Repository). `--transform K` adds K copies of each mesh (OFF), each
rotated by a seeded random rotation and scaled uniformly: benchmarks that need thousands of
assets get them from the same ~140 shapes. Nothing here runs at test or training time: the
corpus is made once, by hand.

Without --deb the script runs `apt-get download libcgal-demo libcgal-dev` in a temporary
folder (no root needed; apt's lists must be current: `apt-get update`). With --deb it uses the
files given; the copyright file comes from one of them, from a libcgal-dev .deb beside them,
from /usr/share/doc/libcgal-dev/copyright, or from `apt-get download libcgal-dev`, in that
order. A .deb is read with Python's own tools (ar, tar, xz, gzip); `dpkg-deb` is used for a
data.tar.zst.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

MESH_SUFFIXES = (".off", ".obj", ".ply", ".stl", ".glb")
DATA_TAR = "usr/share/doc/libcgal-dev/data.tar.gz"  # CGAL's data set inside the package
COPYRIGHT = "usr/share/doc/libcgal-dev/copyright"   # libcgal-demo's doc folder links there
PACKAGES = ("libcgal-demo", "libcgal-dev")
STANFORD = ("armadillo", "bunny")  # stems from the Stanford 3D Scanning Repository
SCALE = (0.5, 2.0)  # --transform: the uniform scale's range
HEADER = "# The CGAL corpus (made by scripts/cgal_corpus.py)"


# -- reading a .deb: an ar archive holding debian-binary, control.tar.*, data.tar.* ------------
def ar_members(path: Path) -> dict[str, bytes]:
    """The members of an ar archive (a .deb), by name."""
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise ValueError(f"{path}: not a .deb (no ar archive)")
    out, pos = {}, 8
    while pos + 60 <= len(data):
        head = data[pos:pos + 60]
        name = head[:16].decode().strip().rstrip("/")
        size = int(head[48:58].decode().strip())
        out[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)  # members are 2-byte aligned
    return out


def data_tar(deb: Path) -> tarfile.TarFile:
    """The file-system tree of a .deb (its data.tar.*) as an open TarFile."""
    members = ar_members(deb)
    name = next((n for n in members if n.startswith("data.tar")), None)
    if name is None:
        raise ValueError(f"{deb}: no data.tar.* member")
    if name.endswith(".zst"):  # no zstd in Python's standard library before 3.14
        if not shutil.which("dpkg-deb"):
            raise ValueError(f"{deb}: data.tar.zst needs dpkg-deb (or Python >= 3.14)")
        tree = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                              capture_output=True).stdout
        return tarfile.open(fileobj=io.BytesIO(tree), mode="r:")
    return tarfile.open(fileobj=io.BytesIO(members[name]), mode="r:*")


def read_member(tree: tarfile.TarFile, path: str) -> bytes | None:
    """A file of the tree by path ('./' prefix or not), None when absent."""
    for name in (path, f"./{path}"):
        try:
            member = tree.getmember(name)
        except KeyError:
            continue
        handle = tree.extractfile(member)
        return handle.read() if handle is not None else None
    return None


def download(folder: Path, packages=PACKAGES) -> list[Path]:
    """`apt-get download PACKAGES` into folder; the .deb files."""
    try:
        subprocess.run(["apt-get", "download", *packages], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"error: apt-get download {' '.join(packages)} failed ({exc}); on a "
                         "Debian or Ubuntu machine run `apt-get update` first, or download the "
                         "package elsewhere and give it with --deb") from None
    return sorted(folder.glob("*.deb"))


# -- which files are meshes -------------------------------------------------------------------
def has_faces(name: str, data: bytes) -> bool:
    """Whether a mesh file declares faces (False for a point set); True when unsure."""
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".off":
            tokens = re.sub(rb"#[^\n]*", b"", data[:4096]).split()
            if not tokens or not tokens[0].endswith(b"OFF"):
                return True
            return int(tokens[2]) > 0
        if suffix == ".ply":
            end = data.find(b"end_header")
            header = data[:end if end >= 0 else 4096].decode("ascii", "replace")
            match = re.search(r"^element\s+face\s+(\d+)", header, re.M)
            return bool(match) and int(match[1]) > 0
        if suffix == ".obj":
            return re.search(rb"^\s*f\s", data, re.M) is not None
    except (ValueError, IndexError):
        return True
    return True


def unique_name(path: str, taken: dict[str, str]) -> str:
    """A flat file name for data/FOLDER/STEM.EXT whose stem no file took yet (stems must differ:
    a prepared set names a shape by its stem): STEM.EXT; STEM-EXT.EXT when a file of another
    format took STEM; else FOLDER-STEM.EXT, FOLDER-STEM-2.EXT, ... `taken`: stem -> suffix."""
    p = Path(path)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem) or "mesh"
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", p.parent.name) or "data"
    suffix = p.suffix.lower()
    candidates = [stem]
    if taken.get(stem.lower(), suffix) != suffix:
        candidates.append(f"{stem}-{suffix[1:]}")
    candidates += [f"{folder}-{stem}"] + [f"{folder}-{stem}-{k}" for k in range(2, 10_000)]
    for candidate in candidates:
        if candidate.lower() not in taken:
            taken[candidate.lower()] = suffix
            return candidate + suffix
    raise RuntimeError(f"no free name for {path}")


# -- transformed copies -----------------------------------------------------------------------
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation [3,3] (QR of a Gaussian matrix, signs fixed, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def transform(vertices: np.ndarray, name: str, k: int, seed: int) -> tuple[np.ndarray, dict]:
    """Copy k of a mesh: vertices [V,3] rotated by a random rotation and scaled uniformly about
    the origin; the draw depends on (seed, the file's name, k) only."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), k])
    rotation = random_rotation(rng)
    scale = float(rng.uniform(*SCALE))
    return scale * vertices @ rotation.T, {"rotation": rotation.round(6).tolist(), "scale": scale}


def write_off(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """A triangle mesh as an ASCII OFF file (vertices with 9 significant digits)."""
    with open(path, "w") as fh:
        fh.write(f"OFF\n{len(vertices)} {len(faces)} 0\n")
        np.savetxt(fh, vertices, fmt="%.9g")
        np.savetxt(fh, np.column_stack([np.full(len(faces), 3), faces]), fmt="%d")


def load_triangles(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A mesh file's vertices [V,3] float64 and triangles [F,3] (focusing's loader, not
    normalised: polygons triangulated, validated)."""
    from focusing.core.geometry.meshio import load_mesh

    mesh = load_mesh(path, normalize=False)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


# -- credits ----------------------------------------------------------------------------------
def credits(version: str, rows: list[tuple[str, str]], skipped: list[str], copyright_text: str
            | None, transforms: int, seed: int) -> str:
    """OUT/CREDITS.md."""
    lines = [
        HEADER, "",
        f"{len(rows)} meshes from the data set of CGAL, shipped in Debian's package "
        f"`libcgal-demo` ({version}), file `{DATA_TAR}`. None was made by this project.",
        "CGAL's licence (below) puts the data files that carry no notice of their own under "
        "CC0 1.0. The armadillo and the bunny are originally from the Stanford 3D Scanning "
        "Repository (Stanford University Computer Graphics Laboratory); credit them as such.", ""]
    if transforms:
        lines += [f"Each mesh also has {transforms} transformed copies, `STEM-tKK.off` (K = 1.."
                  f"{transforms}): rotated by a uniformly random rotation and scaled uniformly "
                  f"by a factor in [{SCALE[0]}, {SCALE[1]}] about the origin, drawn from (seed "
                  f"{seed}, the file's name, K); `transforms.jsonl` lists each draw.", ""]
    lines += ["| file here | file in data.tar.gz |", "|---|---|"]
    lines += [f"| {name} | {source} |" for name, source in rows]
    if skipped:
        lines += ["", "Left out as point sets (no faces): " + ", ".join(skipped) + "."]
    lines += ["", "## The package's copyright file", ""]
    if copyright_text:
        lines += [f"`/{COPYRIGHT}`, as Debian ships it (libcgal-demo's documentation folder is a "
                  "link to libcgal-dev's):", "", "```", copyright_text.rstrip("\n"), "```"]
    else:
        lines += ["(Not found: no libcgal-dev package or copyright file was at hand. See "
                  "https://www.cgal.org/license.html and Debian's `/usr/share/doc/libcgal-dev/"
                  "copyright`.)"]
    return "\n".join(lines) + "\n"


def find_copyright(debs: list[Path], tmp: Path) -> str | None:
    """The text of libcgal-dev's copyright file: from the .deb files given, from a libcgal-dev
    .deb beside them, from this machine, or downloaded (None when none works)."""
    beside = [p for d in debs for p in d.parent.glob("libcgal-dev_*.deb") if p not in debs]
    for deb in debs + beside:
        try:
            text = read_member(data_tar(deb), COPYRIGHT)
        except (ValueError, tarfile.TarError, OSError):
            continue
        if text:
            return text.decode("utf-8", "replace")
    local = Path("/") / COPYRIGHT
    if local.is_file():
        return local.read_text(errors="replace")
    try:
        got = download(tmp, ("libcgal-dev",))
    except SystemExit as exc:
        print(f"warning: no copyright file: {exc}", file=sys.stderr)
        return None
    return find_copyright(got, tmp) if got else None


def version_of(deb: Path) -> str:
    """The package version from a .deb's file name (NAME_VERSION_ARCH.deb)."""
    parts = deb.name.split("_")
    return parts[1] if len(parts) >= 3 else "unknown version"


def _is_corpus(folder: Path) -> bool:
    """Whether folder was made by this script (its CREDITS.md says so)."""
    try:
        return (folder / "CREDITS.md").read_text().startswith(HEADER)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="corpus folder (new, empty, or made by this "
                                               "script before: then rewritten)")
    parser.add_argument("--deb", type=Path, action="append", default=[],
                        help="a downloaded libcgal-demo .deb (may repeat, e.g. with libcgal-dev's"
                             " for the copyright file); default: apt-get download")
    parser.add_argument("--transform", type=int, default=0, metavar="K",
                        help="K rotated and scaled copies of each mesh (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the transforms")
    args = parser.parse_args(argv)
    out = args.out
    if out.exists() and any(out.iterdir()) and not _is_corpus(out):
        parser.error(f"{out} is not empty and holds no corpus made by this script")
    if args.transform < 0:
        parser.error("--transform K needs K >= 0")
    with tempfile.TemporaryDirectory(prefix="cgal-corpus-") as tmp:
        tmp = Path(tmp)
        debs = list(args.deb) or download(tmp)
        data, version = None, "unknown version"
        for deb in debs:
            blob = read_member(data_tar(deb), DATA_TAR)
            if blob is not None:
                data, version = blob, version_of(deb)
                break
        if data is None:
            raise SystemExit(f"error: no {DATA_TAR} in {', '.join(map(str, debs))} (give "
                             "libcgal-demo's .deb)")
        copyright_text = find_copyright(debs, tmp)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rows, skipped, taken = [], [], {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tree:
        members = sorted((m for m in tree.getmembers() if m.isfile()
                          and Path(m.name).suffix.lower() in MESH_SUFFIXES), key=lambda m: m.name)
        for member in members:
            blob = tree.extractfile(member).read()
            source = member.name.removeprefix("./")
            if not has_faces(source, blob):
                skipped.append(source)
                continue
            name = unique_name(source, taken)
            (out / name).write_bytes(blob)
            rows.append((name, source))
    failed = []
    if args.transform:
        import json

        with open(out / "transforms.jsonl", "w") as log:
            for name, _ in rows:
                try:
                    vertices, faces = load_triangles(out / name)
                except Exception as exc:  # a mesh the loader refuses: no copies of it
                    failed.append(f"{name} ({str(exc).splitlines()[0]})")
                    continue
                for k in range(1, args.transform + 1):
                    moved, draw = transform(vertices, name, k, args.seed)
                    copy = f"{Path(name).stem}-t{k:02d}.off"
                    write_off(out / copy, moved, faces)
                    log.write(json.dumps({"file": copy, "from": name, **draw}) + "\n")
    (out / "CREDITS.md").write_text(credits(version, rows, skipped, copyright_text,
                                            args.transform, args.seed))
    copies = (len(rows) - len(failed)) * args.transform
    print(f"{out}: {len(rows)} meshes from libcgal-demo {version}"
          + (f" and {copies} transformed copies" if args.transform else "")
          + f"; {len(skipped)} point sets left out; CREDITS.md written")
    if failed:
        print(f"no copies of {len(failed)} meshes the loader refuses: " + "; ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
