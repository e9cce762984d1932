"""What every part of the atlas shares: the database connection, transactions, meta, array files.

The parts (``samples``, ``labels``, ``runs``, ``models``) are classes over ``Store``, each with
the methods of its tables; ``Atlas`` is all of them together. An array file (a batch's features,
or a model's trajectories) is written under a temporary name, fsynced and renamed *before* the
transaction that names it commits, and is removed when no row names it any more
(``collect_garbage``) or when no committed row ever did (a crash between the two, found when
the atlas is next opened for writing).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager, suppress
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from soundatlas.errors import AtlasError, disk_full, is_disk_full

__all__ = ["Store", "write_array", "checksum", "ARRAY_FOLDERS", "open_array", "array_problem",
           "frames_problem", "read_arrays"]

# numpy parses each .npy header with ast.literal_eval, and CPython 3.11 keeps the AST builder's
# recursion depth in per-interpreter state: two threads parsing at once can fail with "SystemError:
# AST constructor recursion depth mismatch" (python/cpython#106905; the server's threads read
# segments side by side, and once answered a 500 for it). One parse at a time: a header is small.
_HEADER_LOCK = threading.Lock()


def open_array(path: str | os.PathLike) -> np.ndarray:
    """An array file (``.npy``) memory-mapped read-only, its header parsed under a lock."""
    with _HEADER_LOCK:
        return np.load(path, mmap_mode="r")


def array_problem(path: str | os.PathLike, exc: BaseException) -> str:
    """Why the array file at ``path`` did not open (``exc``, what :func:`open_array` raised),
    in words: missing, truncated (the bytes its header promises are not all there: numpy only
    says "mmap length is greater than file size"), or not an array file at all."""
    if isinstance(exc, FileNotFoundError):
        return "missing"
    try:
        with _HEADER_LOCK, open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if major == 1
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(f)
            expected = f.tell() + dtype.itemsize * int(np.prod(shape))
        size = os.path.getsize(path)
    except (OSError, ValueError, EOFError) as header_exc:
        return f"not a readable array file ({header_exc})"
    if size < expected:
        return f"truncated: {size} bytes, its header says {expected}"
    return f"cannot be read ({type(exc).__name__}: {exc})"


def frames_problem(arr: np.ndarray, n_frames: int) -> str | None:
    """Why a feature or embedding file that opened is still not the one its rows were written
    with (not a table of frames, or fewer frames than they need: slicing it would hand out
    fewer frames than a sample has, silently), or None."""
    if arr.ndim != 2 or len(arr) < n_frames:
        return f"holds an array of shape {arr.shape}, its samples need at least {n_frames} frames"
    return None


def read_arrays(path: str | os.PathLike, *, unless: tuple[str, str] | None = None
                ) -> dict[str, np.ndarray] | None:
    """Every array of an ``.npz`` file, read under the lock of :func:`open_array` (each array's
    header is parsed as a ``.npy`` header is); None when ``unless`` = (key, text) and the
    file's ``key`` array is not ``text`` (a stale cache: nothing else is read)."""
    with _HEADER_LOCK, np.load(path, allow_pickle=False) as npz:
        if unless is not None and str(npz[unless[0]]) != unless[1]:
            return None
        return {k: npz[k] for k in npz.files}

_SQL_INT_MIN, _SQL_INT_MAX = -(2**63), 2**63 - 1  # the range of an SQLite INTEGER
#: array folders of the atlas: folder -> (table of its files, table and column pointing at them)
ARRAY_FOLDERS = {
    "features": ("segments", "samples"),
    "embeddings": ("embedding_segments", "embeddings"),
}


class Store:
    """An open atlas database: its directory, connection and the caches of its array files.

    Parameters
    ----------
    path : Path
        The atlas directory.
    conn : sqlite3.Connection
        Its database, in autocommit mode (``schema.connect``).
    read_only : bool, default False
        Whether the atlas was opened read-only.

    Notes
    -----
    A part may call the methods of another (``LabelStore.label_column`` counts samples,
    ``RunStore.splits`` reads their hashes, ``ModelStore.remove_model`` collects garbage): they
    are written to be composed into ``Atlas``.
    """

    schema_version: int  #: set when the atlas is opened (``schema.migrate``)

    def __init__(self, path: Path, conn: sqlite3.Connection, *, read_only: bool = False):
        self.path = path
        self.conn = conn
        self._read_only = read_only
        self._segment_cache: dict[str, np.ndarray] = {}  # file -> mmap (files never change)
        self._embedding_cache: dict[str, np.ndarray] = {}  # file -> mmap (files never change)
        self._config_cache: dict[int, tuple[float, dict]] = {}  # model id -> (created, config)

    # -- transactions ----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed at the end, rolled back on error.

        Yields
        ------
        sqlite3.Connection
            The connection to write with.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException as exc:
            roll_back(self.conn, exc, self.path)
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                roll_back(self.conn, exc, self.path)
                raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one state of the database (one read transaction), even while
        another process commits; inside a transaction already open it adds nothing."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def _writable(self) -> bool:
        return not self._read_only

    # -- meta ------------------------------------------------------------------------------------

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str, default: str | None = None) -> str | None:
        """The atlas's meta value ``key``.

        Parameters
        ----------
        key : str
            Its name (``library``, ``cqt``, ``split_seed``, ``label_sources``, ...).
        default : str or None, default None
            What to answer when the atlas has none.

        Returns
        -------
        str or None
        """
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        """Set the meta value ``key`` to ``value`` (its own transaction)."""
        with self.transaction():
            self._set_meta(key, value)

    # -- array files -------------------------------------------------------------------------------

    def collect_garbage(self) -> int:
        """Delete the array files no row points at (after removals and replacements).

        Returns
        -------
        int
            How many segment files were deleted.
        """
        dead: dict[str, list] = {}
        with self.transaction() as c:
            for folder, (table, users) in ARRAY_FOLDERS.items():
                dead[folder] = c.execute(
                    f"SELECT id, file FROM {table}"
                    f" WHERE id NOT IN (SELECT DISTINCT segment FROM {users})"
                ).fetchall()
                c.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i, _ in dead[folder]])
        for folder, rows in dead.items():
            for _, file in rows:
                (self.path / folder / file).unlink(missing_ok=True)
        self._segment_cache.clear()
        self._embedding_cache.clear()
        return sum(len(rows) for rows in dead.values())

    def _remove_orphan_segments(self) -> None:
        """Remove array files that no committed segment row names (left by a crash)."""
        for folder, (table, _) in ARRAY_FOLDERS.items():
            if not (self.path / folder).is_dir():
                continue
            known = {f for (f,) in self.conn.execute(f"SELECT file FROM {table}")}
            for f in (self.path / folder).iterdir():
                if f.name not in known:
                    f.unlink(missing_ok=True)


def roll_back(conn: sqlite3.Connection, exc: BaseException, where: Path) -> None:
    """After ``exc`` inside a write transaction: roll it back (a full disk may refuse even
    that), and raise the atlas's "no space left" error instead when ``exc`` says the disk is
    full; otherwise return, for the caller to raise ``exc``."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
    if is_disk_full(exc):
        raise disk_full(where) from None


def write_array(folder: Path, array: np.ndarray) -> tuple[Path, str]:
    """Write ``array`` to a new .npy file in ``folder``: temporary name, fsync, rename.

    Returns
    -------
    (Path, str)
        The new file, under a name no committed segment uses, and the checksum of its bytes
        (:func:`checksum`), which the row that names it keeps (``soundatlas check``).

    Raises
    ------
    AtlasError
        When the file cannot be written (no space left, ``folder`` not writable), naming the
        atlas and the reason; nothing is left behind.
    """
    import io

    # time-ordered, plus the pid for parallel writers
    name = f"seg-{time.time_ns():020d}-{os.getpid()}.npy"
    tmp = folder / (name + ".tmp")
    buf = io.BytesIO()
    np.save(buf, array)
    data = buf.getbuffer()
    try:
        folder.mkdir(exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except OSError as exc:
        with suppress(OSError):  # not there, or the folder refuses that too
            tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(folder.parent) from None
        raise AtlasError(f"cannot write the atlas at {folder.parent}: {folder.name}/: "
                         f"{exc.strerror or exc}") from None
    return folder / name, _digest(data)


def _digest(data) -> str:
    import hashlib

    return hashlib.blake2b(data, digest_size=16).hexdigest()


def checksum(path: Path) -> str:
    """The checksum an array file's row keeps: blake2b (16 bytes) of its bytes, in hex."""
    return _digest(Path(path).read_bytes())


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """``items`` (any iterable, a generator included) as lists of ``size``, the last shorter,
    read as they are needed."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def id_chunks(ids: Iterable[int]):
    """Sample ids for ``... WHERE id IN (?, ...)`` queries, 900 at a time (SQLite's limit on
    parameters), without those outside an SQLite INTEGER: no sample can have them, and SQLite
    would refuse them with an OverflowError rather than find nothing. NumPy integers become
    Python ones: sqlite3 binds a NumPy scalar as a BLOB (its buffer), which matches no id."""
    return chunked([int(i) for i in ids if _SQL_INT_MIN <= i <= _SQL_INT_MAX], 900)


def placeholders(chunk: list) -> str:
    """The ``?, ?, ...`` of an ``IN (...)`` over ``chunk``."""
    return ",".join("?" * len(chunk))


def int_list(text: str | None) -> np.ndarray:
    """The integers of SQLite's ``group_concat`` (comma-separated; None when no rows) as int64."""
    if not text:
        return np.zeros(0, np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",")  # text mode: parsed in C
