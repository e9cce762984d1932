"""A list of samples as a file: an M3U playlist, a CSV of paths and labels, or a zip of the
files. The page's export (``POST /api/export``) and ``soundatlas collections export`` write
the same formats through these functions."""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from soundatlas.atlas.records import SampleRecord
from soundatlas.text import spreadsheet_cell

__all__ = ["FORMATS", "sample_duration", "m3u_text", "csv_text", "write_zip", "portable_names",
           "stem_for"]

FORMATS = ("m3u", "csv", "zip")


def sample_duration(record: SampleRecord) -> float:
    """The file's length in seconds when known, else the seconds analysed."""
    return record.file_duration if record.file_duration is not None else record.duration


def stem_for(n: int) -> str:
    """The default file name (without extension) of an export of ``n`` samples."""
    return f"soundatlas-{n}-sample{'s' if n != 1 else ''}"


def m3u_text(records: Iterable[SampleRecord], root: Path) -> str:
    """``#EXTM3U``, then per sample ``#EXTINF:seconds,name`` and its absolute path.

    An M3U entry is one line: a path with a line break in it is written as a percent-encoded
    ``file://`` URI (which players read as one entry), and the title has its line breaks
    turned into spaces."""
    lines = ["#EXTM3U"]
    for r in records:
        name = _one_line(os.path.splitext(r.path)[0])
        path = os.path.join(root, r.path)
        if _one_line(path) != path:
            path = Path(os.path.abspath(path)).as_uri()  # percent-encodes CR and LF
        lines += [f"#EXTINF:{sample_duration(r):.3f},{name}", path]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    """``text`` with each CR, LF (and the other characters that end a line) as a space."""
    return " ".join(text.splitlines())


def csv_text(records: Iterable[SampleRecord], keys: list[str],
             labels: Mapping[int, Mapping[str, str]]) -> str:
    """id, path, duration and one column per label key (cells: the sample's value or empty).
    Rows end in CRLF (RFC 4180): the csv module then quotes a cell holding a CR or an LF, which
    a file name may hold; with LF alone it left a CR unquoted, and readers split the row. A
    path or value that a spreadsheet would run as a formula is written as text
    (:func:`soundatlas.text.spreadsheet_cell`; ``index --labels`` reads it back)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["id", "path", "duration", *map(spreadsheet_cell, keys)])
    for r in records:
        writer.writerow([r.id, spreadsheet_cell(r.path), f"{sample_duration(r):.3f}",
                         *(spreadsheet_cell(str(labels.get(r.id, {}).get(k, ""))) for k in keys)])
    return buf.getvalue()


def write_zip(target, files: Iterable[tuple[str, Path]]) -> None:
    """A zip of ``(name in the archive, file)`` pairs, stored (audio does not deflate, and a
    stored archive streams at once). Names are made to extract anywhere (:func:`portable_names`):
    a library on Linux may hold names that Windows cannot store, or two that a Mac's or
    Windows' disk takes for one."""
    files = list(files)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:
        for name, (_rel, path) in zip(portable_names([rel for rel, _ in files]), files):
            z.write(path, arcname=name)


#: characters Windows cannot hold in a file name (and ``\``, which its tools read as a folder)
_NOT_PORTABLE = re.compile(r'[<>:"\\|?*\x00-\x1f]')
_RESERVED = re.compile(r"(?i)^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$")


def portable_names(paths: list[str]) -> list[str]:
    """Archive names for library paths that every system extracts as as many files.

    Each part of a path keeps its text but for the characters Windows refuses (``<>:"\\|?*``
    and control characters, each a ``_``), trailing dots and spaces (dropped) and the device
    names (``CON``, ``NUL``, ``COM1``...: a ``_`` before them); a name that another one already
    holds once case and Unicode form are set aside (``Kick.wav`` and ``kick.wav``, a composed and
    a decomposed ``é``) gets `` (2)``, `` (3)``... before its extension. Names that need none of
    this are kept as they are.

    Parameters
    ----------
    paths : list of str
        Library-relative paths, ``/`` between folders.

    Returns
    -------
    list of str
        One name per path, in order, no two alike on a case-insensitive disk.
    """
    out, taken = [], set()
    for path in paths:
        parts = []
        for part in path.split("/"):
            part = _NOT_PORTABLE.sub("_", part).rstrip(" .") or "_"
            parts.append("_" + part if _RESERVED.match(part) else part)
        name = "/".join(parts)
        stem, dot, ext = name.rpartition(".")
        if not dot or "/" in ext:
            stem, dot, ext = name, "", ""
        n = 1
        while _fold_key(name) in taken:
            n += 1
            name = f"{stem} ({n}){dot}{ext}"
        taken.add(_fold_key(name))
        out.append(name)
    return out


def _fold_key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()
