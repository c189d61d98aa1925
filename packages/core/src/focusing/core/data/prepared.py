"""The prepared data set on disk: one safetensors file per shape, a manifest and dataset.json.

Why: training used to build every shape record at its start and hold them all; a corpus of
thousands of meshes is prepared once instead (`focusing prepare`), each shape's outcome kept,
and read back record by record. A DATASET folder holds:

- `dataset.json`: format, version, the settings the records depend on
  (data.records.cache_settings) with their hash, and the counts of the last run;
- `manifest.jsonl`: one JSON line per finished shape, appended by one process and fsynced;
  the last line of a source is its state: source, sha256 (of the file's bytes), name, record,
  settings_hash, status (ok | failed), reason and error, seconds per stage, bytes, finished;
- `records/STEM-KEY.safetensors`, one per shape (KEY: a hash of the source path). Tensors:
  vertices [V,3] f32, faces [F,3] i64, points and normals [P,3] f32, active_N [K,3] i64 for each
  resolution N of R, 2R, 4R, tsdf_depths [T,H,W] f32, tsdf_corners [M,3] i64, tsdf_values [M]
  f32. Metadata (strings): format, version, settings_hash, source_sha256, and `record`, the JSON
  of the fields that are no tensors: name, tsdf_cameras, center, scale.

Every file is written atomically (core.io): a kill leaves whole records or none, and a record
whose manifest line is missing is built again by the next run. A folder whose sub-folders are
prepared sets (one per cluster job) reads as their union.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from focusing.core.config import ConfigError
from focusing.core.data.records import CacheError, ShapeRecord
from focusing.core.geometry.meshio import mesh_names
from focusing.core.io import write_bytes_atomic, write_text_atomic

FORMAT = "focusing-prepared"
VERSION = 1
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "manifest.jsonl"
RECORDS_DIR = "records"
_FIELDS = ("name", "tsdf_cameras", "center", "scale")  # stored as JSON in the metadata
_TENSORS = ("vertices", "faces", "points", "normals", "tsdf_depths", "tsdf_corners",
            "tsdf_values")
# the setup key behind each key of cache_settings, named in a mismatch error
SETUP_KEYS = {"resolutions": "model.latent_resolution", "points": "model.points_per_shape",
              "tsdf_views": "loss.tsdf_views", "tsdf_image": "cameras.image_size",
              "version": "the record format (CACHE_VERSION)"}


class PreparedError(CacheError):
    """A prepared data set or one of its records cannot be read (the message names the file)."""


def settings_hash(settings: dict) -> str:
    """Hash (16 hex digits) of the record settings (data.records.cache_settings)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_file(source: str | os.PathLike) -> str:
    """The record's path inside DATASET for a source path: records/STEM-KEY.safetensors."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).stem)[:60] or "shape"
    key = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    return f"{RECORDS_DIR}/{stem}-{key}.safetensors"


def write_record(record: ShapeRecord, path: str | os.PathLike, meta: dict[str, str]) -> int:
    """Write one shape record as a safetensors file, atomically; returns its size in bytes."""
    data = record_bytes(record, meta)
    write_bytes_atomic(path, data, make_parents=True)
    return len(data)


def record_bytes(record: ShapeRecord, meta: dict[str, str]) -> bytes:
    """One shape record as the bytes of its safetensors file (what write_record writes)."""
    tensors = {k: getattr(record, k) for k in _TENSORS}
    tensors.update({f"active_{res}": act for res, act in record.active.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    fields = {k: getattr(record, k) for k in _FIELDS}
    fields["center"] = np.asarray(record.center, dtype=np.float64).tolist()
    fields["scale"] = float(record.scale)
    metadata = {"format": FORMAT, "version": str(VERSION), "record": json.dumps(fields), **meta}
    return save_tensors(tensors, metadata)


def _metadata(head: bytes) -> dict[str, str]:
    """The metadata of a safetensors file from its first bytes (8-byte length, JSON header)."""
    if len(head) < 8:
        raise ValueError("shorter than a safetensors header")
    (size,) = struct.unpack("<Q", head[:8])
    if size > len(head) - 8:
        raise ValueError("truncated header")
    meta = json.loads(head[8:8 + size]).get("__metadata__") or {}
    if meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
        raise ValueError(f"not a {FORMAT} v{VERSION} record")
    return meta


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """A record's metadata, from its header alone; PreparedError when it is no whole record."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            return _metadata(head + fh.read(min(size, 1 << 26)))
    except (OSError, ValueError) as exc:
        raise PreparedError(f"{path}: unreadable record ({exc})") from None


def read_record(path: str | os.PathLike) -> ShapeRecord:
    """One record back from its file; PreparedError naming the file and the fault."""
    path = Path(path)
    try:
        data = path.read_bytes()
        meta = _metadata(data)
        tensors = load_tensors(data)
        fields = json.loads(meta["record"])
        active = {int(k.split("_", 1)[1]): v for k, v in tensors.items()
                  if k.startswith("active_")}
        return ShapeRecord(
            name=fields["name"], active=dict(sorted(active.items())),
            tsdf_cameras=fields["tsdf_cameras"], center=np.asarray(fields["center"], np.float64),
            scale=float(fields["scale"]), **{k: tensors[k] for k in _TENSORS})
    except Exception as exc:  # a damaged file, in whatever way: one line naming it
        text = str(exc).strip().splitlines()
        raise PreparedError(f"{path}: damaged record ({type(exc).__name__}: "
                            f"{text[0] if text else 'unreadable'})") from None


def read_manifest(folder: str | os.PathLike) -> dict[str, dict]:
    """The state of every source of DATASET/manifest.jsonl (its last line wins); a line that
    does not parse (one torn by a power cut) is skipped."""
    path = Path(folder) / MANIFEST_FILE
    state: dict[str, dict] = {}
    if not path.is_file():
        return state
    with open(path, "rb") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "source" in entry:
                state[entry["source"]] = entry
    return state


class ManifestWriter:
    """Appends lines to DATASET/manifest.jsonl, each flushed and fsynced (one writer)."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / MANIFEST_FILE
        self._fh = open(self.path, "ab")
        if self._fh.tell() > 0:  # a line torn by a crash must not swallow the next one
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._fh.write(b"\n")

    def append(self, entry: dict) -> None:
        """Write one entry as a line and force it to disk."""
        self._fh.write((json.dumps(entry, sort_keys=True) + "\n").encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


def read_info(folder: str | os.PathLike) -> dict:
    """DATASET/dataset.json; PreparedError when it is missing, corrupt or of another format."""
    path = Path(folder) / DATASET_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PreparedError(f"{path}: unreadable ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "settings" not in info:
        raise PreparedError(f"{path}: not a {FORMAT} data set description")
    if info.get("version") != VERSION:
        raise PreparedError(f"{path}: format version {info.get('version')}, this toolkit reads "
                            f"{VERSION}; prepare the data set again")
    return info


def write_info(folder: str | os.PathLike, info: dict) -> bool:
    """Write DATASET/dataset.json atomically when its content changes; whether it did."""
    path = Path(folder) / DATASET_FILE
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return False
    write_text_atomic(path, text)
    return True


def check_settings(found: dict, wanted: dict, where: str | os.PathLike) -> None:
    """ConfigError naming the keys (and the setup keys behind them) where the settings a set was
    prepared with differ from the ones wanted."""
    keys = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
    if not keys:
        return
    diffs = ", ".join(f"{k} ({SETUP_KEYS.get(k, k)}): prepared {json.dumps(found.get(k))}, "
                      f"setup {json.dumps(wanted.get(k))}" for k in keys)
    raise ConfigError(f"{where} was prepared with other settings than this setup's: {diffs}; "
                      "prepare it again with this setup, or train with the setup it was "
                      "prepared with")


def dataset_parts(folder: str | os.PathLike) -> list[Path]:
    """The prepared sets of `folder`: itself when it holds dataset.json, else its sub-folders
    that do (one per cluster job); empty when neither."""
    folder = Path(folder)
    if (folder / DATASET_FILE).is_file():
        return [folder]
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / DATASET_FILE).is_file())


def is_prepared(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a prepared set, or a folder of them."""
    return bool(dataset_parts(folder))


def unique_names(sources: list[str]) -> list[str]:
    """Names of the shapes (mesh_names: stem, or file name where stems clash), with -1, -2, ...
    after names that files of different folders still share."""
    names = mesh_names([Path(s) for s in sources])
    count, seen = Counter(names), Counter()
    out = []
    for name in names:
        if count[name] > 1:
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        out.append(name)
    return out


@dataclass(frozen=True)
class PreparedShape:
    """One shape of a prepared set that is ready (status ok)."""

    name: str      # unique within the set
    record: Path   # its safetensors file
    source: str    # the mesh it was prepared from
    bytes: int     # size of the record file


def prepared_shapes(folder: str | os.PathLike, settings: dict | None = None) -> list[PreparedShape]:
    """The ok shapes of a prepared set (or of its parts), ordered by source path; with
    `settings`, ConfigError unless every part was prepared with them."""
    parts = dataset_parts(folder)
    if not parts:
        raise FileNotFoundError(f"{folder} is not a prepared data set (no {DATASET_FILE})")
    found: dict[str, tuple[Path, dict]] = {}
    for part in parts:
        info = read_info(part)
        if settings is not None:
            check_settings(info["settings"], settings, part)
        for source, entry in read_manifest(part).items():
            if (entry.get("status") == "ok" and entry.get("settings_hash") == info.get(
                    "settings_hash") and source not in found):
                found[source] = (part, entry)
    sources = sorted(found, key=Path)
    names = unique_names(sources)
    return [PreparedShape(name, found[s][0] / found[s][1]["record"], s,
                          int(found[s][1].get("bytes", 0))) for s, name in zip(sources, names)]
