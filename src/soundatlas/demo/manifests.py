"""The manifests of a rendered library: ``metadata.csv`` (every written file and its labels) and
``silent.csv`` (the notes not written because they rendered silent).

Each (set, bank) folder ``OUT/<set>/<bank>/`` has its own pair, paths relative to that folder.
``OUT/metadata.csv`` and ``OUT/silent.csv`` list everything under OUT: the demo set's files and
those of every set folder, with the union of their label columns (empty where a label does not
apply). A manifest is written atomically, its rows sorted by path.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from soundatlas.demo.items import Item

METADATA_FILE = "metadata.csv"
SILENT_FILE = "silent.csv"
#: while a folder's part renders, the rows of its earlier files that this render does not plan,
#: kept here (its manifests are removed until it ends): a render interrupted and run again
#: still has them
KEPT_FILES = (".kept-metadata.csv", ".kept-silent.csv")
METADATA_COLUMNS = ("path", "instrument", "pitch", "velocity", "articulation")
#: label columns of the manifests, in this order (a manifest has those its rows use).
LABEL_COLUMNS: tuple[str, ...] = (
    "instrument", "pitch", "velocity", "articulation", "family", "drum", "drum_class", "kit",
    "oscillator", "envelope", "filter", "noise", "bank",
)  # fmt: skip
#: sub-folders of OUT that hold the gm, drums and synth sets (one folder per bank inside).
SET_FOLDERS: tuple[str, ...] = ("gm", "drums", "synth")

Row = dict[str, str]


def clear_manifests(folder: Path) -> None:
    """Remove a folder's manifests before its part is rendered again.

    Their presence then marks a complete render: they are written last.
    """
    (folder / METADATA_FILE).unlink(missing_ok=True)
    (folder / SILENT_FILE).unlink(missing_ok=True)


def rows_of(items: Iterable[Item], strip: int = 0) -> list[Row]:
    """Manifest rows: each item's path (less its first ``strip`` characters) and labels."""
    return [{"path": item.path[strip:], **item.labels} for item in items]


def write_part_manifests(
    out: Path, folder: str, planned: list[Item], written: list[Item], silent: list[Item],
    earlier: tuple[list[Row], list[Row]] = ([], []),
) -> None:
    """Write the manifests of one set folder.

    Parameters
    ----------
    out : Path
        The library root.
    folder : str
        The part's folder under ``out`` (``gm/<bank>``, ...); paths are written relative to it.
    planned : list
        Every item of the part: their labels choose the columns, even where no row is written.
    written, silent : list
        The items of ``metadata.csv`` and of ``silent.csv``.
    earlier : (rows, silent rows), optional
        The folder's manifests before this render (:func:`earlier_rows`): the rows of files it
        did not plan are kept (:func:`kept_rows`).
    """
    unit = out / folder
    prefix = len(folder) + 1
    planned_paths = {item.path[prefix:] for item in planned}
    rows = rows_of(written, prefix) + kept_rows(earlier[0], planned_paths, unit)
    silent_rows = rows_of(silent, prefix) + kept_rows(earlier[1], planned_paths, None)
    columns = columns_of([*(item.labels for item in planned), *rows, *silent_rows])
    write_rows(unit / SILENT_FILE, silent_rows, columns)
    write_rows(unit / METADATA_FILE, rows, columns)


def earlier_rows(folder: Path) -> tuple[list[Row], list[Row]]:
    """The rows of ``folder``'s ``metadata.csv`` and ``silent.csv`` (empty where absent), with
    those an interrupted render kept aside (:data:`KEPT_FILES`)."""
    return tuple(_by_path(read_rows(folder / name) + read_rows(folder / kept))
                 for name, kept in zip((METADATA_FILE, SILENT_FILE), KEPT_FILES))


def keep_aside(folder: Path, rows: tuple[list[Row], list[Row]]) -> None:
    """Write the rows a render keeps to :data:`KEPT_FILES`, before the manifests go."""
    for kept, part in zip(KEPT_FILES, rows):
        write_rows(folder / kept, part, list(METADATA_COLUMNS))


def drop_kept(folder: Path) -> None:
    """The render's manifests are written: the rows kept aside are in them."""
    for kept in KEPT_FILES:
        (folder / kept).unlink(missing_ok=True)


def _by_path(rows: list[Row]) -> list[Row]:
    return list({r["path"]: r for r in rows}.values())


def kept_rows(rows: list[Row], planned: set[str], base: Path | None) -> list[Row]:
    """Rows of an earlier render into the same folder for files this one does not plan (another
    --classes, --velocities or --pitch-step): their files stay on disk, so their labels stay
    in the manifest. With ``base``, only rows whose file is still at ``base / path``."""
    return [r for r in rows if r["path"] not in planned
            and (base is None or (base / r["path"]).is_file())]


def columns_of(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """The columns of a manifest of ``rows``.

    Returns
    -------
    list of str
        ``path``, then the label columns the rows use (non-empty): those of
        :data:`LABEL_COLUMNS` in its order, then any others sorted.
    """
    keys = set()
    for row in rows:
        keys.update(k for k, v in row.items() if v != "")
    keys.discard("path")
    known = [c for c in LABEL_COLUMNS if c in keys]
    return ["path", *known, *sorted(keys - set(known))]


def write_rows(path: Path, rows: list[Row], columns: list[str] | None = None) -> None:
    """Write a manifest atomically, its rows sorted by path.

    Parameters
    ----------
    path : Path
        The CSV file.
    rows : list of dict
        Its rows; a missing column is written empty.
    columns : list of str, optional
        The header when there are no rows (with rows, :func:`columns_of` chooses).
    """
    if rows or not columns:
        columns = columns_of(rows)
    part = path.with_name(f".{path.name}.part")
    with open(part, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in sorted(rows, key=lambda r: r["path"]):
            writer.writerow([row.get(c, "") for c in columns])
    os.replace(part, path)


def read_rows(path: Path, prefix: str = "") -> list[Row]:
    """The rows of a manifest, empty cells left out, each path prefixed with ``prefix``.

    Returns
    -------
    list of dict
        ``[]`` when the file is missing.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [
                {k: (prefix + v if k == "path" else v) for k, v in row.items() if k and v}
                for row in csv.DictReader(f)
                if row.get("path")
            ]
    except FileNotFoundError:
        return []


def _in_set_folder(path: str) -> bool:
    return path.split("/", 1)[0] in SET_FOLDERS


def demo_rows(out: Path) -> tuple[list[Row], list[Row]]:
    """The rows of OUT's two manifests that belong to the demo set (not under a set folder).

    Returns
    -------
    rows, silent : list of dict
        From ``metadata.csv`` and ``silent.csv``.
    """
    return (
        [r for r in read_rows(out / METADATA_FILE) if not _in_set_folder(r["path"])],
        [r for r in read_rows(out / SILENT_FILE) if not _in_set_folder(r["path"])],
    )


def earlier_demo_rows(out: Path) -> tuple[list[Row], list[Row]]:
    """:func:`demo_rows`, with those an interrupted render kept aside in OUT."""
    rows, silent = demo_rows(out)
    return (_by_path(rows + read_rows(out / KEPT_FILES[0])),
            _by_path(silent + read_rows(out / KEPT_FILES[1])))


def write_root_manifests(out: Path, demo_rows: list[Row], demo_silent: list[Row]) -> None:
    """Write ``OUT/metadata.csv`` and ``OUT/silent.csv``.

    Parameters
    ----------
    out : Path
        The library root.
    demo_rows, demo_silent : list of dict
        The demo set's rows; those of every set folder's manifests are added.
    """
    rows, silent = list(demo_rows), list(demo_silent)
    for set_folder in SET_FOLDERS:
        base = out / set_folder
        if not base.is_dir():
            continue
        for unit in sorted(p for p in base.iterdir() if p.is_dir()):
            prefix = f"{set_folder}/{unit.name}/"
            rows += read_rows(unit / METADATA_FILE, prefix)
            silent += read_rows(unit / SILENT_FILE, prefix)
    columns = columns_of(rows) if rows else list(METADATA_COLUMNS)
    write_rows(out / METADATA_FILE, rows, columns)
    write_rows(out / SILENT_FILE, silent, columns)
