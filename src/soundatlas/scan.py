"""Find the audio files of a library: a recursive walk that survives what real folders hold.

Hidden files and folders (names starting with '.') are skipped, so is the atlas directory.
Symlinked folders are followed once (loops are detected by device and inode), except a link to a
folder of the library itself, whose files keep their own paths; a file that cannot even be
stat-ed (broken link, link loop, name that is not UTF-8) is reported as a problem with its
reason, never dropped silently.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from soundatlas.atlas.records import FileEntry
from soundatlas.atlas.store import chunked, placeholders
from soundatlas.audio import AUDIO_EXTENSIONS
from soundatlas.errors import ParameterError
from soundatlas.scratch import Scratch

__all__ = ["FileEntry", "ScanList", "ScanResult", "TodoEntry", "Walk", "scan", "NOT_REGULAR"]

#: the problem of a path that is there but is no regular file any more (a FIFO, say): unlike a
#: path that cannot be read this time, it takes its sample with it
NOT_REGULAR = "not a regular file"


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

    The whole list in memory; ``index`` streams :class:`Walk` instead.

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
    ParameterError
        When ``root`` itself cannot be read (naming it and why).
    """
    walk = Walk(root, extensions=extensions)
    result = ScanResult(root=Path(root))
    for item in walk:
        if isinstance(item, FileEntry):
            result.files.append(item)
        else:
            result.problems.append(item)
    result.files.sort(key=lambda e: e.path)
    result.problems.sort()
    result.n_ignored = walk.n_ignored
    return result


@dataclass(frozen=True)
class TodoEntry(FileEntry):
    """A file on ``index``'s to-do list.

    Attributes
    ----------
    stored : (int, str) or None
        For a file the atlas holds at this path with another size or date: that record's
        sample id and content hash (the record is kept when the content is the same).
    """

    stored: tuple[int, str] | None = None


class Walk:
    """The walk of a library as a stream: iterating yields each audio candidate (a
    :class:`FileEntry`) and each (relative path, reason) that could not be listed, folder by
    folder (each folder's entries by name), holding one folder's entries per level and nothing
    per file of the library.

    Parameters
    ----------
    root : path-like
        The library folder.
    extensions : frozenset of str, default audio.AUDIO_EXTENSIONS
        Lower-case suffixes (with the dot) of the audio candidates.

    Attributes
    ----------
    n_ignored : int
        Files passed over so far because they are not audio candidates (by extension).

    Raises
    ------
    ParameterError
        From iterating, when ``root`` itself cannot be read (naming it and why).
    """

    def __init__(self, root: str | os.PathLike, *,
                 extensions: frozenset[str] = AUDIO_EXTENSIONS):
        self.root = Path(root)
        self.extensions = extensions
        self.n_ignored = 0
        self._real_root: str | None = None

    def __iter__(self) -> Iterator[FileEntry | tuple[str, str]]:
        # depth first with a stack of the open folders' listings, not recursion: a library
        # may nest folders deeper than Python's recursion limit
        seen_dirs: set[tuple[int, int]] = set()
        stack = [("", iter(self._listing(self.root, "", seen_dirs)))]
        while stack:
            rel, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            if entry.name.startswith("."):
                continue
            relpath = f"{rel}/{entry.name}" if rel else entry.name
            if not _is_utf8(relpath):
                yield (_printable(relpath), "folder name is not valid UTF-8: its files were not "
                       "scanned" if _is_dir(entry) else "file name is not valid UTF-8")
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                if Path(entry.name).suffix.lower() in self.extensions or entry.is_symlink():
                    yield (relpath, _reason(exc))
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.is_symlink() and self._walked_elsewhere(entry.path):
                    continue  # an alias of a folder of the library: its files keep their paths
                listing = self._listing(Path(entry.path), relpath, seen_dirs)
                if isinstance(listing, tuple):
                    yield listing
                else:
                    stack.append((relpath, iter(listing)))
            elif Path(entry.name).suffix.lower() in self.extensions:
                if stat.S_ISREG(st.st_mode):
                    yield FileEntry(relpath, st.st_size, st.st_mtime_ns)
                else:
                    yield (relpath, NOT_REGULAR)
            else:
                self.n_ignored += 1

    def _walked_elsewhere(self, link: str) -> bool:
        """Whether a folder link leads to a folder the walk reaches by its own path (inside
        the library, not hidden): followed, the link would move that folder's samples to the
        link's name (and their folder label with them) whenever its name sorts first."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        inside = os.path.relpath(os.path.realpath(link), self._real_root)
        parts = Path(inside).parts
        return inside != "." and parts[0] != ".." and not any(p.startswith(".") for p in parts)

    @staticmethod
    def _listing(top: Path, rel: str, seen_dirs: set[tuple[int, int]]):
        """The folder's entries sorted by name (empty for a folder already walked: a symlink
        back to it, a loop or an alias), or the problem (rel, reason) of one that cannot be
        read. The library folder itself raises."""
        try:
            st = os.stat(top)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                return []
            seen_dirs.add(key)
            # one folder's entries, sorted: of two links to the same folder, the first by name
            # is walked, whatever order the filesystem lists them in
            return sorted(os.scandir(top), key=lambda e: e.name)
        except OSError as exc:
            if not rel:
                raise ParameterError(f"library {top} cannot be read: {_reason(exc)}") from None
            return (rel, f"folder cannot be read: {_reason(exc)}")


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


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


class ScanList(Scratch):
    """A walk of the library kept on disk (a :class:`~soundatlas.scratch.Scratch` database), read
    back sorted by path in chunks: ``index``'s scan, which holds nothing per file in memory.

    Besides the files and problems, it keeps ``index``'s to-do list (``add_todo``, ``todo``).
    A context manager, as every ``Scratch``; ``close`` deletes the database.

    Parameters
    ----------
    root : path-like
        The library folder.
    extensions : frozenset of str, default audio.AUDIO_EXTENSIONS
        Lower-case suffixes (with the dot) of the audio candidates.

    Attributes
    ----------
    n_files, n_problems, n_ignored : int
        Audio candidates, entries that could not be listed, other files.

    Raises
    ------
    ParameterError
        When ``root`` itself cannot be read (naming it and why).
    """

    def __init__(self, root: str | os.PathLike, *,
                 extensions: frozenset[str] = AUDIO_EXTENSIONS):
        super().__init__()
        c = self.conn
        c.execute("CREATE TABLE files(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)"
                  " WITHOUT ROWID")
        c.execute("CREATE TABLE problems(path TEXT, reason TEXT)")
        c.execute("CREATE TABLE todo(seq INTEGER PRIMARY KEY, path TEXT, size INTEGER,"
                  " mtime_ns INTEGER, stored_id INTEGER, stored_hash TEXT)")
        try:
            walk = Walk(root, extensions=extensions)
            files: list = []
            problems: list = []
            for item in walk:
                if isinstance(item, FileEntry):
                    files.append((item.path, item.size, item.mtime_ns))
                    if len(files) >= 1000:
                        self.insert("INSERT OR IGNORE INTO files VALUES (?, ?, ?)", files)
                else:
                    problems.append(item)
                    if len(problems) >= 1000:
                        self.insert("INSERT INTO problems VALUES (?, ?)", problems)
            self.insert("INSERT OR IGNORE INTO files VALUES (?, ?, ?)", files)
            self.insert("INSERT INTO problems VALUES (?, ?)", problems)
            c.execute("CREATE INDEX problems_path ON problems(path)")
        except BaseException:
            self.close()
            raise
        self.n_ignored = walk.n_ignored
        self.n_files = c.execute("SELECT count(*) FROM files").fetchone()[0]
        self.n_problems = c.execute("SELECT count(*) FROM problems").fetchone()[0]

    def files(self, size: int = 2000) -> Iterator[list[FileEntry]]:
        """The audio candidates by path, ``size`` at a time."""
        after = None
        while True:
            rows = self.conn.execute(
                "SELECT path, size, mtime_ns FROM files"
                + ("" if after is None else " WHERE path > ?") + " ORDER BY path LIMIT ?",
                (size,) if after is None else (after, size)).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [FileEntry(*r) for r in rows]

    def problems(self, size: int = 2000) -> Iterator[list[tuple[str, str]]]:
        """(relative path, reason) of what could not be listed, by path, ``size`` at a time."""
        offset = 0
        while rows := self.conn.execute(
                "SELECT path, reason FROM problems ORDER BY path, reason LIMIT ? OFFSET ?",
                (size, offset)).fetchall():
            offset += len(rows)
            yield rows

    def add_todo(self, entries: list[FileEntry]) -> None:
        """Append files to the to-do list."""
        self.insert("INSERT INTO todo(path, size, mtime_ns, stored_id, stored_hash)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(e.path, e.size, e.mtime_ns, *(getattr(e, "stored", None) or (None, None)))
                     for e in entries])

    def n_todo(self) -> int:
        """Files in the to-do list."""
        return self.conn.execute("SELECT count(*) FROM todo").fetchone()[0]

    def todo(self, size: int) -> Iterator[list[FileEntry]]:
        """The to-do list in the order it was added, ``size`` at a time (a ``TodoEntry`` where
        it was added as one)."""
        after = 0
        while rows := self.conn.execute(
                "SELECT seq, path, size, mtime_ns, stored_id, stored_hash FROM todo"
                " WHERE seq > ? ORDER BY seq LIMIT ?", (after, size)).fetchall():
            after = rows[-1][0]
            yield [FileEntry(path, n, mtime) if sid is None
                   else TodoEntry(path, n, mtime, (sid, digest))
                   for _seq, path, n, mtime, sid, digest in rows]

    def files_among(self, paths: Iterable[str]) -> list[str]:
        """Those of ``paths`` the walk found as readable files."""
        out: list[str] = []
        for chunk in chunked(paths, 900):
            out += [p for (p,) in self.conn.execute(
                f"SELECT path FROM files WHERE path IN ({placeholders(chunk)})", chunk)]
        return out

    def present(self, paths: Iterable[str]) -> set[str]:
        """Those of ``paths`` the walk found (as a file or as a problem)."""
        out: set[str] = set()
        for chunk in chunked(paths, 450):  # twice 450 variables: under SQLite's old 999
            marks = placeholders(chunk)
            out.update(p for (p,) in self.conn.execute(
                f"SELECT path FROM files WHERE path IN ({marks})"
                f" UNION SELECT path FROM problems WHERE path IN ({marks})", chunk + chunk))
        return out
