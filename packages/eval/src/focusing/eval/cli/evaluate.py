"""`focusing eval`: metrics of one predicted mesh against its ground truth, or of two folders
of meshes paired by file stem.

Heavy imports (torch via the geometry layer, scipy) happen inside the command so that loading
the plugin registry for any other `focusing` command stays cheap.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import typer

from focusing.core.cli_support import fail
from focusing.core.io import write_text_atomic

# Columns of the folder table: (result key, header, format).
_TABLE_COLUMNS = (
    ("chamfer_l2", "CD L2", "{:.4e}"),
    ("chamfer_l1", "CD L1", "{:.4e}"),
    ("fscore", "F", "{:.4f}"),
    ("precision", "P", "{:.4f}"),
    ("recall", "R", "{:.4f}"),
    ("normal_consistency", "NC", "{:.4f}"),
    ("floor_chamfer_l2", "floor CD L2", "{:.4e}"),
    ("floor_fscore", "floor F", "{:.4f}"),
)
_OUT_SUFFIXES = (".json", ".csv")
_CAPTION = (
    "distances in units of the gt's largest extent (both meshes in the gt's unit box); "
    "CD L2 = sum of the two mean squared NN distances; floor = gt vs an independent resample of gt"
)


def _console():
    from rich.console import Console

    # Piped output gets 80 columns by default, which would truncate the numbers.
    return Console(width=max(Console().width, 132))


def _mesh_files(folder: Path) -> tuple[dict[str, Path], list[Path], list[str]]:
    """(stem -> mesh file, files of other formats, stems held by several mesh files) of a folder;
    which files are meshes is `find_mesh_files`'s rule, the one `train` uses."""
    from focusing.core.geometry.meshio import find_mesh_files

    meshes = find_mesh_files(folder)
    by_stem: dict[str, list[Path]] = {}
    for path in meshes:
        by_stem.setdefault(path.stem, []).append(path)
    others = [p for p in sorted(folder.iterdir())
              if p not in meshes and not p.name.startswith(".") and p.is_file()]
    clashes = [f"{s} ({', '.join(p.name for p in ps)})" for s, ps in by_stem.items() if len(ps) > 1]
    return {s: ps[0] for s, ps in by_stem.items()}, others, clashes


def _build_report(
    rows: list[dict], convention: str, only_pred: list[str], only_gt: list[str], metric_keys
) -> dict:
    """The report: per-pair rows, their mean row, the unpaired files and the convention."""
    mean: dict = {"name": "mean", "pred": "", "gt": ""}
    for k in metric_keys:
        mean[k] = float(sum(r[k] for r in rows) / len(rows))
    mean["n_points"] = rows[0]["n_points"]
    return {
        "convention": convention,
        "pairs": rows,
        "mean": mean,
        "unpaired": {"pred": only_pred, "gt": only_gt},
    }


def _report_text(report: dict, suffix: str, metric_keys) -> str:
    """The report as JSON, or as CSV (one row per pair, then the mean row; floats by repr)."""
    if suffix == ".json":
        return json.dumps(report, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "pred", "gt", *metric_keys])
    for row in report["pairs"] + [report["mean"]]:
        writer.writerow([row["name"], row["pred"], row["gt"], *(repr(row[k]) for k in metric_keys)])
    return buf.getvalue()


def _print_single(result: dict, pred: Path, gt: Path, metric_keys) -> None:
    from rich.table import Table

    floors = {"chamfer_l2": "floor_chamfer_l2", "fscore": "floor_fscore"}
    table = Table(title=f"focusing eval: {pred} vs {gt}", caption=_CAPTION)
    for col in ("metric", "value", "sampling floor"):
        table.add_column(col)
    for key in metric_keys:
        if key.startswith("floor_"):
            continue
        fmt = "{:.4e}" if key.startswith("chamfer") else "{:.6g}"
        floor = fmt.format(result[floors[key]]) if key in floors else ""
        table.add_row(key, fmt.format(result[key]), floor)
    _console().print(table)


def _print_folder(report: dict, n_points: int, tau: float) -> None:
    from rich.table import Table

    table = Table(
        title=f"focusing eval: {len(report['pairs'])} pairs, {n_points} points, tau {tau:g}",
        caption=_CAPTION,
    )
    table.add_column("name", overflow="fold")
    for _, header, _ in _TABLE_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for row in report["pairs"]:
        table.add_row(row["name"], *(fmt.format(row[k]) for k, _, fmt in _TABLE_COLUMNS))
    table.add_section()
    mean = report["mean"]
    table.add_row(
        "[bold]mean[/bold]",
        *(f"[bold]{fmt.format(mean[k])}[/bold]" for k, _, fmt in _TABLE_COLUMNS),
    )
    _console().print(table)


def _pair_folders(
    pred: Path, gt: Path
) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pair the mesh files of two folders by stem; warn (stderr) about what stays unpaired."""
    pred_files, pred_other, pred_clash = _mesh_files(pred)
    gt_files, gt_other, gt_clash = _mesh_files(gt)
    if pred_clash or gt_clash:
        fail("several mesh files share a stem, pairing is ambiguous: "
             + "; ".join(pred_clash + gt_clash))
    only_pred = sorted(set(pred_files) - set(gt_files))
    only_gt = sorted(set(gt_files) - set(pred_files))
    if only_pred:
        typer.echo(f"warning: {len(only_pred)} predicted meshes have no ground truth: "
                   f"{', '.join(only_pred)}", err=True)
    if only_gt:
        typer.echo(f"warning: {len(only_gt)} ground-truth meshes have no prediction: "
                   f"{', '.join(only_gt)}", err=True)
    other = pred_other + gt_other
    if other:
        typer.echo(f"note: ignored {len(other)} files that are not meshes: "
                   f"{', '.join(str(p) for p in other)}", err=True)
    pairs = [(s, pred_files[s], gt_files[s]) for s in sorted(set(pred_files) & set(gt_files))]
    if not pairs:
        fail(f"no mesh file stems in common between {str(pred)!r} and {str(gt)!r}")
    return (pairs, [str(pred_files[s]) for s in only_pred], [str(gt_files[s]) for s in only_gt])


def eval_command(
    pred: Path = typer.Argument(..., help="Predicted mesh, or a folder of them."),
    gt: Path = typer.Argument(
        ..., help="Ground-truth mesh, or a folder paired with PRED by file stem."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    points: int = typer.Option(100_000, "--points", min=1, help="Surface samples per mesh."),
    tau: float = typer.Option(
        0.005, "--tau", help="F-score distance (units of the gt's largest extent)."),
    seed: int = typer.Option(
        0, "--seed", help="Sampling seed (pred: S, gt: S+1, floor resample: S+2)."),
    out: Path = typer.Option(
        None, "--out", help="Also write the results to a .json or .csv file (atomically)."),
) -> None:
    """Chamfer (L2, L1), F-score, normal consistency of PRED against GT, and the sampling floor."""
    import os

    from focusing.core.cli_support import raise_if_debugging
    from focusing.core.io import check_output_path
    from focusing.core.geometry.validation import MeshError
    from focusing.core.metrics import METRIC_KEYS, evaluate

    # Every argument is checked before any work, so a bad call writes nothing.
    if not (tau > 0):
        fail(f"--tau must be a positive distance, got {tau}")
    for role, path in (("PRED", pred), ("GT", gt)):
        if not os.path.lexists(path):  # a broken link or loop is named by load_mesh
            fail(f"{role} {str(path)!r} does not exist")
    if pred.is_dir() != gt.is_dir():
        fail(f"PRED and GT must both be mesh files or both be folders (got {pred} and {gt})")
    if out is not None:
        if out.suffix.lower() not in _OUT_SUFFIXES:
            fail(f"--out {str(out)!r}: unknown format; use one of {', '.join(_OUT_SUFFIXES)}")
        try:
            check_output_path(out, "--out")
        except ValueError as exc:
            fail(str(exc))

    if pred.is_dir():
        from tqdm import tqdm

        pairs, only_pred, only_gt = _pair_folders(pred, gt)
        progress = tqdm(pairs, desc="focusing eval", unit="pair", disable=None)
    else:
        pairs, only_pred, only_gt = [(gt.stem, pred, gt)], [], []
        progress = pairs

    rows, result = [], {}
    for name, pred_file, gt_file in progress:
        try:
            result = evaluate(pred_file, gt_file, n_points=points, tau=tau, seed=seed)
        except MeshError as exc:
            raise_if_debugging(exc)  # `focusing --debug`: the traceback, for a bug report
            fail(exc)
        rows.append({"name": name, "pred": str(pred_file), "gt": str(gt_file),
                     **{k: result[k] for k in METRIC_KEYS}})
    report = _build_report(rows, result["convention"], only_pred, only_gt, METRIC_KEYS)
    if out is not None:
        write_text_atomic(out, _report_text(report, out.suffix.lower(), METRIC_KEYS))

    if not pred.is_dir():
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            _print_single(result, pred, gt, METRIC_KEYS)
    elif as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_folder(report, points, tau)


eval_command.command_name = "eval"
