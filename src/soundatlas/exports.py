"""A list of samples as a file: an M3U playlist, a CSV of paths and labels, or a zip of the
files. The page's export (``POST /api/export``) and ``soundatlas collections export`` write
the same formats through these functions."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from soundatlas.atlas.records import SampleRecord

__all__ = ["FORMATS", "sample_duration", "m3u_text", "csv_text", "write_zip", "stem_for"]

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
    a file name may hold; with LF alone it left a CR unquoted, and readers split the row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["id", "path", "duration", *keys])
    for r in records:
        writer.writerow([r.id, r.path, f"{sample_duration(r):.3f}",
                         *(labels.get(r.id, {}).get(k, "") for k in keys)])
    return buf.getvalue()


def write_zip(target, files: Iterable[tuple[str, Path]]) -> None:
    """A zip of ``(name in the archive, file)`` pairs, stored (audio does not deflate, and a
    stored archive streams at once)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:
        for rel, path in files:
            z.write(path, arcname=rel)
