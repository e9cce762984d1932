"""Find the audio files of a library: a recursive walk that survives what real folders hold.

Hidden files and folders (names starting with '.') are skipped, so is the atlas directory.
Symlinked folders are followed once (loops are detected by device and inode); a file that cannot
even be stat-ed (broken link, link loop, name that is not UTF-8) is reported as a problem with its
reason, never dropped silently.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from soundatlas.atlas.records import FileEntry
from soundatlas.audio import AUDIO_EXTENSIONS

__all__ = ["FileEntry", "ScanResult", "scan"]


@dataclass
class ScanResult:
    """What a walk of a library finds.

    Attributes
    ----------
    root : Path
        The library folder.
    files : list of FileEntry
        The audio candidates, by path.
    problems : list of (str, str)
        (relative path, reason) of what could not be listed, by path.
    n_ignored : int
        Files that are not audio candidates (by extension).
    """

    root: Path
    files: list[FileEntry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    n_ignored: int = 0


def scan(root: str | os.PathLike, *, extensions: frozenset[str] = AUDIO_EXTENSIONS) -> ScanResult:
    """Walk ``root`` and list audio candidates (by extension) with size and mtime, sorted by path.

    Parameters
    ----------
    root : path-like
        The library folder.
    extensions : frozenset of str, default audio.AUDIO_EXTENSIONS
        Lower-case suffixes (with the dot) of the audio candidates.

    Returns
    -------
    ScanResult

    Raises
    ------
    OSError
        When ``root`` itself cannot be read.
    """
    root = Path(root)
    result = ScanResult(root=root)
    seen_dirs: set[tuple[int, int]] = set()
    _walk(root, "", extensions, result, seen_dirs)
    result.files.sort(key=lambda e: e.path)
    result.problems.sort()
    return result


def _walk(top: Path, rel: str, extensions, result: ScanResult, seen_dirs) -> None:
    try:
        st = os.stat(top)
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return  # a symlink back to a folder already walked (a loop, or an alias)
        seen_dirs.add(key)
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as exc:
        if rel:
            result.problems.append((rel, f"folder cannot be read: {_reason(exc)}"))
        else:
            raise
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        relpath = f"{rel}/{entry.name}" if rel else entry.name
        if not _is_utf8(relpath):
            result.problems.append((_printable(relpath), "file name is not valid UTF-8"))
            continue
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError as exc:
            if Path(entry.name).suffix.lower() in extensions or entry.is_symlink():
                result.problems.append((relpath, _reason(exc)))
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(Path(entry.path), relpath, extensions, result, seen_dirs)
        elif Path(entry.name).suffix.lower() in extensions:
            if stat.S_ISREG(st.st_mode):
                result.files.append(FileEntry(relpath, st.st_size, st.st_mtime_ns))
            else:
                result.problems.append((relpath, "not a regular file"))
        else:
            result.n_ignored += 1


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink (target does not exist)"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return exc.strerror or str(exc)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    return os.fsencode(name).decode("utf-8", errors="replace")
