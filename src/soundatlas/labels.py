"""Labels for samples: from a CSV manifest, from folder names, and from file names.

Every label is a (key, value) string pair. ``pitch`` values are normalised to MIDI numbers
("C#4", "Db4", "61" all become "61") so that every source agrees.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from soundatlas.errors import ParameterError
from soundatlas.text import from_spreadsheet_cell

__all__ = [
    "NAME_PATTERNS",
    "LabelSources",
    "note_to_midi",
    "normalise_pitch",
    "read_manifest",
    "folder_labels",
    "name_labels",
    "compile_name_pattern",
    "label_parts",
    "label_of",
]

_NOTE = re.compile(r"^([A-Ga-g])([#♯sb♭]*)(-?\d+)$")
_STEPS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}

# Shortcuts for --name-pattern. Named groups become labels.
NAME_PATTERNS = {
    # a note name standing alone in the name: "Violin_C#4_ff.wav", "piano-Db3.aif"
    "note": r"(?<![A-Za-z0-9])(?P<pitch>[A-Ga-g](?:#|b|s)?-?\d)(?![A-Za-z0-9#])",
    # a MIDI number standing alone: "flute_072_v80.wav" -> 72 (the first number in 0..127)
    "midi": r"(?<![A-Za-z0-9])(?P<pitch>1[01]\d|12[0-7]|0?\d\d|\d)(?![0-9])",
}


def note_to_midi(note: str) -> int:
    """The MIDI number of a note name: 'A4' -> 69, 'C#4'/'Db4' -> 61, 'C-1' -> 0.

    Parameters
    ----------
    note : str
        A letter A-G (either case), any number of accidentals (``#``, ``♯``, ``s`` raise a
        semitone; ``b``, ``♭`` lower one) and an octave number; spaces around are ignored.

    Returns
    -------
    int
        The MIDI number, 0 to 127.

    Raises
    ------
    ParameterError
        If ``note`` is not a note name or lies outside the MIDI range.
    """
    m = _NOTE.match(note.strip())
    if not m:
        raise ParameterError(f"{note!r} is not a note name (expected e.g. C4, C#4, Db4)")
    letter, accidentals, octave = m.groups()
    shift = sum(1 if a in "#♯s" else -1 for a in accidentals)
    midi = 12 * (int(octave) + 1) + _STEPS[letter.lower()] + shift
    if not 0 <= midi <= 127:
        raise ParameterError(f"{note!r} is outside the MIDI range")
    return midi


def normalise_pitch(value: str) -> str | None:
    """A pitch label as a MIDI number string.

    Parameters
    ----------
    value : str
        A number (rounded) or a note name (see :func:`note_to_midi`).

    Returns
    -------
    str or None
        The MIDI number as a string, or None when ``value`` is neither a note nor a number in
        0..127.
    """
    value = value.strip()
    try:
        midi = round(float(value))
        return str(midi) if 0 <= midi <= 127 else None
    except ValueError:
        pass
    try:
        return str(note_to_midi(value))
    except ParameterError:
        return None


@dataclass
class LabelSources:
    """Where labels come from; stored in the atlas so later runs reuse them.

    Parameters
    ----------
    manifest : str, optional
        A CSV with a 'path' column; its other columns become labels.
    folder : bool, default=True
        Label each file with its parent folder's name, as label 'folder'.
    name_pattern : str, optional
        A regex with named groups, or a :data:`NAME_PATTERNS` key, read on file names.
    """

    manifest: str | None = None  # CSV with a 'path' column; other columns become labels
    folder: bool = True  # the parent folder's name as label 'folder'
    name_pattern: str | None = None  # regex (or a NAME_PATTERNS key) with named groups

    def to_dict(self) -> dict:
        """The three settings as a dict, as the atlas stores them.

        Returns
        -------
        dict
            {'manifest', 'folder', 'name_pattern'}.
        """
        return {"manifest": self.manifest, "folder": self.folder, "name_pattern": self.name_pattern}


@dataclass
class Manifest:
    """What :func:`read_manifest` read from a CSV manifest.

    Attributes
    ----------
    labels : dict of str to dict of str to str
        Labels per file path relative to the library root.
    columns : list of str
        The label columns (every column but 'path').
    problems : list of str
        One message per row or value left out, naming the file and line.
    """

    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # relpath -> labels
    columns: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_manifest(csv_path: str | os.PathLike, root: str | os.PathLike, *,
                  on_row: Callable[[str, dict[str, str]], None] | None = None) -> Manifest:
    """Read a CSV manifest of labels.

    Rows whose path lies outside the library, and pitch values that are not pitches, are left
    out and reported in ``problems``; pitch values are normalised to MIDI numbers; empty values
    are left out. Of two rows for one path, the later wins.

    Parameters
    ----------
    csv_path : str or os.PathLike
        The CSV file; it needs a 'path' column (paths relative to the CSV's folder, or
        absolute).
    root : str or os.PathLike
        The library's root folder, to which the paths are made relative.
    on_row : callable, optional
        Called with (relative path, labels) for each row, in file order, instead of keeping
        them in ``labels`` (which stays empty): a manifest of a million rows need not be held.

    Returns
    -------
    Manifest

    Raises
    ------
    ParameterError
        If the file cannot be read, is not a readable CSV, or has no 'path' column.
    """
    csv_path, root = Path(csv_path), Path(root).resolve()
    base = csv_path.parent.resolve()  # relative paths are the manifest's own folder's
    out = Manifest()
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise ParameterError(f"{csv_path}: the manifest needs a 'path' column")
            reader.fieldnames = [from_spreadsheet_cell(c) for c in reader.fieldnames]
            out.columns = [c for c in reader.fieldnames if c != "path"]
            for line, row in enumerate(reader, start=2):
                # a cell an export wrote as text ('=x.wav: exports.csv_text) is read as it was
                rel = _relative(from_spreadsheet_cell(row.get("path") or ""), base, root)
                if rel is None:
                    out.problems.append(
                        f"{csv_path}:{line}: path {row.get('path')!r} is outside the library {root}"
                        f" (a relative path is read from the manifest's folder, {base})")
                    continue
                labels = {}
                for key in out.columns:
                    value = from_spreadsheet_cell((row.get(key) or "").strip())
                    if key == "pitch" and value:
                        value = normalise_pitch(value) or ""
                        if not value:
                            out.problems.append(f"{csv_path}:{line}: pitch {row.get(key)!r} is not a pitch")
                    if value:
                        labels[key] = value
                if on_row is None:
                    out.labels[rel] = labels
                else:
                    on_row(rel, labels)
    except OSError as exc:
        raise ParameterError(f"{csv_path}: cannot read the manifest ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ParameterError(f"{csv_path}: not a readable CSV file ({exc})") from exc
    return out


def _relative(path: str, base: Path, root: Path) -> str | None:
    """``path`` (absolute, or relative to ``base``) relative to ``root`` with forward slashes;
    None when it is empty or outside ``root``. String operations, not pathlib (see
    :func:`_stem`): a manifest may have a million rows."""
    if not path:
        return None
    full = os.path.normpath(os.path.join(base, path))  # join keeps an absolute path as it is
    top = os.path.normpath(root)
    if full == top:
        return "."
    prefix = top if top.endswith(os.sep) else top + os.sep
    if not full.startswith(prefix):
        return None
    return full[len(prefix):].replace(os.sep, "/")


def folder_labels(relpath: str) -> dict[str, str]:
    """The label of a file's parent folder (string operations: see :func:`_stem`).

    Parameters
    ----------
    relpath : str
        The file's POSIX path relative to the library root.

    Returns
    -------
    dict of str to str
        {'folder': name of the parent folder}, or {} for files at the library root.
    """
    parent = relpath.rstrip("/").rpartition("/")[0].rpartition("/")[2]
    return {"folder": parent} if parent else {}


def _stem(relpath: str) -> str:
    """``PurePosixPath(relpath).stem`` without pathlib, which interns every part of every path
    it parses (Python 3.11): labelling a million files that way keeps a million names."""
    name = relpath.rstrip("/").rpartition("/")[2]
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def compile_name_pattern(pattern: str) -> re.Pattern:
    """Compile a ``--name-pattern``.

    Parameters
    ----------
    pattern : str
        A :data:`NAME_PATTERNS` key or a regular expression with named groups.

    Returns
    -------
    re.Pattern

    Raises
    ------
    ParameterError
        If the regular expression is invalid or has no named group.
    """
    regex = NAME_PATTERNS.get(pattern, pattern)
    try:
        compiled = re.compile(regex)
    except re.error as exc:
        raise ParameterError(f"--name-pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    if not compiled.groupindex:
        raise ParameterError(
            f"--name-pattern {pattern!r} has no named group; use e.g. (?P<pitch>...) "
            f"or one of: {', '.join(NAME_PATTERNS)}"
        )
    return compiled


def name_labels(relpath: str, pattern: re.Pattern) -> dict[str, str]:
    """Labels from a file name (without extension) by the named groups of ``pattern``.

    Parameters
    ----------
    relpath : str
        The file's POSIX path relative to the library root; only its stem is searched.
    pattern : re.Pattern
        From :func:`compile_name_pattern`; its first match is used.

    Returns
    -------
    dict of str to str
        One label per named group that matched; a 'pitch' group is normalised to a MIDI number
        and left out when it is not a pitch.
    """
    m = pattern.search(_stem(relpath))
    if not m:
        return {}
    out = {}
    for key, value in m.groupdict().items():
        if value is None:
            continue
        if key == "pitch":
            value = normalise_pitch(value)
            if value is None:
                continue
        out[key] = value
    return out


def label_parts(key: str, known) -> list[str]:
    """The label columns a label key names: ``[key]``, or for a composite ``A+B`` (a key that is
    not itself one of the ``known`` labels) ``['A', 'B']``."""
    return [key] if key in known or "+" not in key else [p.strip() for p in key.split("+")]


def label_of(atlas, key: str, known=None, *, suggested: bool = True) -> dict[int, str]:
    """Each sample's value of label ``key``.

    Parameters
    ----------
    atlas : Atlas
        The labelled atlas.
    key : str
        A label, or ``A+B`` (when no label has that name): the pair as one label, ``'a|b'``,
        for the samples that have both. ``evaluate --labels instrument+pitch`` scores what the
        instrument-pitch neighbourhood learns; ``instrument-pitch-2:bank+instrument`` keeps
        "same instrument" within one maker.
    known : set of str, optional
        The atlas's label names (read from it when None).
    suggested : bool, default True
        Read the values ``suggest --apply`` stored from the map too (``Atlas.labels``).

    Returns
    -------
    dict
        sample id -> value.
    """
    known = set(atlas.label_summary()) if known is None else known
    parts = label_parts(key, known)
    if len(parts) == 1:
        return atlas.labels(key, suggested=suggested)
    columns = [atlas.labels(p, suggested=suggested) for p in parts]
    common = set(columns[0]).intersection(*columns[1:])
    return {sid: "|".join(c[sid] for c in columns) for sid in common}
