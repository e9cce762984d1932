"""The atlas: one directory, an SQLite database (the single source of truth) plus array files.

Layout::

    ATLAS/atlas.sqlite                  samples, labels, failures, segments, runs, splits,
                                        models, embeddings, similarity vectors, the user's
                                        tags and collections, meta (WAL mode)
    ATLAS/features/seg-*.npy            log-CQT frames of a batch of samples, float16
                                        (frames x n_bins)
    ATLAS/embeddings/seg-*.npy          a model's trajectories of a batch of samples, float32

``Atlas`` is made of one part per group of tables (``samples``, ``labels``, ``runs``,
``models``, over the shared ``store``); this module adds opening and creating an atlas and what
the atlas is (its library, its CQT, a refresh of its features).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import time
from pathlib import Path

from soundatlas.atlas.curation import CurationStore
from soundatlas.atlas.labels import LabelStore
from soundatlas.atlas.legacy import LegacyStore
from soundatlas.atlas.models import ModelStore
from soundatlas.atlas.runs import RunStore
from soundatlas.atlas.samples import SampleStore
from soundatlas.atlas.schema import DB_NAME, connect, migrate
from soundatlas.cqt_params import PAPER_CQT, CQTParams
from soundatlas.errors import AtlasError, ParameterError

__all__ = ["Atlas", "default_atlas_dir", "lock_writer", "unlock_writer", "WRITER_LOCK"]

_REFRESH_META = "cqt_refresh_started"  # meta: time.time() when an unfinished refresh began
WRITER_LOCK = "writer.lock"
_held: dict[Path, list] = {}  # atlas dir -> [file object holding the lock, opens in this process]


def lock_writer(path: Path, *, what: str | None = None) -> None:
    """Take the atlas's writer lock (an exclusive ``flock`` on ``ATLAS/writer.lock``), held
    until the atlas closes: one ``index``, ``embed`` or ``adapt`` at a time, so two never
    interleave their commits and one never removes the files the other has written and not yet
    committed. Re-entrant within a process; where ``fcntl`` is missing, a no-op.

    ``train`` takes the same lock on its model's folder instead (``what`` names it): it writes
    no array file, so trainings of different models run side by side, and beside an ``index``.

    Raises
    ------
    AtlasError
        When another process holds it, naming that process.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    key = path.resolve()
    if key in _held:
        _held[key][1] += 1
        return
    try:
        # held open as long as the lock; an argument in no encoding is written as \xNN
        f = open(path / WRITER_LOCK, "a+", encoding="utf-8",  # noqa: SIM115
                 errors="backslashreplace")
    except OSError as exc:
        raise AtlasError(f"cannot write the atlas at {path}: {exc.strerror or exc}") from None
    if not _take(fcntl, f):
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        if what is not None:
            raise AtlasError(f"{what} is being written by {holder}; wait until it ends, or "
                             "give this run another --name") from None
        raise AtlasError(f"the atlas at {path} is being written by {holder}; wait until it "
                         "ends (one index, embed or adapt at a time)") from None
    import sys

    f.seek(0)
    f.truncate()
    command = " ".join(_printable(a) for a in sys.argv)
    if len(command) > _HOLDER_CHARS:  # a runaway command line; paths of any usual length stay
        command = command[:_HOLDER_CHARS] + " ..."
    f.write(f"pid {os.getpid()} ({command}, since {time.ctime()})\n")
    f.flush()
    _held[key] = [f, 1]


def _take(fcntl, f) -> bool:
    """Take the exclusive lock on ``f`` without waiting for a writer; a few tries over a tenth
    of a second, because :func:`writer_alive` holds a shared lock for an instant."""
    for attempt in range(10):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if attempt < 9:
                time.sleep(0.01)
    return False


#: How much of the holder's command line the lock file keeps (the refusal message quotes it).
_HOLDER_CHARS = 2000


def _printable(text: str) -> str:
    """``text`` (a path or argument, maybe holding bytes that are not UTF-8, which Python keeps
    as surrogates) with those bytes written ``\\xNN``: it can be written and printed."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unlock_writer(path: Path) -> None:
    """Let go of the writer lock :func:`lock_writer` took (the last of this process's)."""
    key = path.resolve()
    held = _held.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _held[key]
        held[0].close()  # closing the file releases the flock


def writer_alive(path: Path) -> bool:
    """Whether a process holds the atlas's writer lock now: a run recorded as running while
    none does was killed.

    The lock itself is asked (a shared ``flock`` tried without waiting on a file of its own,
    let go at once), not the process the lock file names: that process may have finished its
    write and gone on (``map`` then ``serve``), or its number been given to another. A writer
    that tries to take the lock in that instant tries again (:func:`lock_writer`). Where
    ``fcntl`` is missing, the named process is asked instead.
    """
    try:
        f = open(path / WRITER_LOCK, "rb")  # noqa: SIM115
    except OSError:
        return False
    with f:
        try:
            import fcntl
        except ImportError:  # not POSIX: does the named process run?
            return _named_process_runs(f.read().decode("utf-8", "replace"))
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True  # held: a writer runs
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _named_process_runs(text: str) -> bool:
    found = re.match(r"pid (\d+) ", text)
    if found is None:
        return False
    try:
        os.kill(int(found.group(1)), 0)  # signal 0: only asks whether it exists
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def default_atlas_dir(library: str | os.PathLike) -> Path:
    """Where a library's atlas lives unless told otherwise: ``LIBRARY/.soundatlas``."""
    return Path(library) / ".soundatlas"


class Atlas(SampleStore, LabelStore, CurationStore, LegacyStore, RunStore, ModelStore):
    """An atlas directory. Open with ``Atlas.create(dir, library=...)`` or ``Atlas.open(dir)``.

    It is a context manager that closes the atlas. Its methods come from its parts:
    ``SampleStore`` (samples, features, the batch commit), ``LabelStore`` (labels, failures),
    ``CurationStore`` (the user's tags, stars, notes and collections), ``LegacyStore`` (hashes
    an older soundatlas took, carried over to whole ones), ``RunStore`` (runs,
    the split), ``ModelStore`` (models, embeddings, similarity vectors) and ``Store``
    (transactions, meta, array files).

    Attributes
    ----------
    path : Path
        The atlas directory.
    conn : sqlite3.Connection
        Its database.
    schema_version : int
        The database's schema version (``schema.SCHEMA_VERSION`` once opened for writing).
    """

    @classmethod
    def open(cls, path: str | os.PathLike, *, write: bool = False,
             tidy: bool = True, option: str = "--atlas") -> "Atlas":
        """Open an existing atlas; migrate its schema when opened for writing.

        Parameters
        ----------
        path : path-like
            The atlas directory.
        write : bool, default False
            Open for writing (else read-only). Array files left by a crash are removed then,
            unless ``tidy`` is False.
        tidy : bool, default True
            Whether a write open removes array files no row names, and takes the writer lock
            (one tidying writer at a time). Writers that touch no array file (the user's tags
            and collections) pass False: they may run beside an ``index`` or ``embed``, whose
            files not yet committed must stay.
        option : str, default '--atlas'
            The command-line option that named ``path``, for the hint when it names a library
            (``--from``, ``--reference``).

        Returns
        -------
        Atlas

        Raises
        ------
        AtlasError
            When there is no atlas at ``path``, or its schema cannot be read (``schema.migrate``).
        """
        path = Path(path)
        db = path / DB_NAME
        if not db.is_file():
            inside = default_atlas_dir(path)
            if (inside / DB_NAME).is_file():  # the library named, not its atlas
                raise AtlasError(f"no atlas at {path}: it is a library, whose atlas is {inside} "
                                 f"({option} {inside})")
            raise AtlasError(f"no atlas at {path} (run `soundatlas index LIBRARY` first)")
        if write and tidy:
            lock_writer(path)
        try:
            atlas = cls(path, connect(db, write=write), read_only=not write)
            atlas.schema_version = migrate(atlas.conn, path, write=write)
        except BaseException:
            if write and tidy:
                unlock_writer(path)
            raise
        atlas._writer_lock = write and tidy
        if write and tidy:
            atlas._remove_orphan_segments()
        return atlas

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        library: str | os.PathLike,
        params: CQTParams | None = None,
    ) -> "Atlas":
        """Open the atlas at ``path`` for writing, creating it for ``library`` when absent.

        Parameters
        ----------
        path : path-like
            The atlas directory.
        library : path-like
            The library folder a new atlas records.
        params : CQTParams, optional
            The CQT a new atlas records (default ``PAPER_CQT``); for an existing one, None
            accepts what it holds and anything else must equal it.

        Returns
        -------
        Atlas
            Open for writing.

        Raises
        ------
        AtlasError
            When an existing atlas holds features of other CQT parameters (the message says
            what to do), or the directory cannot be created.
        ParameterError
            When a new atlas's library path is not valid UTF-8 (the database can only record
            text); nothing is created then.
        """
        path = Path(path)
        if cls.exists(path):
            atlas = cls.open(path, write=True)
            stored = atlas.cqt_params
            if params is not None and stored != params:
                refresh = atlas.refresh_command()
                atlas.close()
                if stored.differs_only_in_kernel(params):
                    fix = (f"`{refresh}` recomputes them with it" if params.kernel == PAPER_CQT.kernel
                           else "index into a new --atlas directory for that kernel")
                    raise AtlasError(
                        f"the atlas at {path} holds features of the {stored.kernel!r} CQT kernel, "
                        f"not {params.kernel!r}; {fix}"
                    )
                raise AtlasError(
                    f"the atlas at {path} was made with other CQT parameters ({stored.to_dict()}); "
                    "use a new --atlas directory"
                )
            return atlas
        params = PAPER_CQT if params is None else params
        library = str(Path(library).resolve())
        if _printable(library) != library:
            raise ParameterError(f"the library path {_printable(library)} is not valid UTF-8, "
                                 "so the atlas cannot record it; rename the folder (for "
                                 "example with `convmv`) and index it again")
        try:
            (path / "features").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AtlasError(f"cannot create the atlas directory {path}: {exc.strerror}") from exc
        lock_writer(path)
        atlas = cls(path, connect(path / DB_NAME, write=True))
        atlas._writer_lock = True
        atlas.schema_version = migrate(atlas.conn, path, write=True)
        with atlas.transaction():
            atlas._set_meta("library", library)
            atlas._set_meta("cqt", json.dumps(params.to_dict()))
            atlas._set_meta("created", str(time.time()))
        return atlas

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """Whether ``path`` holds an atlas whose creation finished.

        A database without the CQT it was made with is a creation that stopped half-way (the
        disk filled, the process was killed): ``create`` makes it again rather than reading it
        as an atlas of the kernel parameters stored without one mean (``folded``).
        """
        db = Path(path) / DB_NAME
        if not db.is_file():
            return False
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT 1 FROM meta WHERE key = 'cqt'").fetchone()
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # stopped before its tables were made
                return False
            return True  # locked, unreadable: opening it says what is wrong
        except sqlite3.DatabaseError:
            return True
        return row is not None

    _writer_lock = False  # whether this open holds the writer lock

    def close(self) -> None:
        """Close the database, drop the cached array files and let go of the writer lock."""
        self._segment_cache.clear()
        self._embedding_cache.clear()
        self.conn.close()
        if self._writer_lock:
            self._writer_lock = False
            unlock_writer(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- what the atlas is -------------------------------------------------------------------------

    @property
    def library(self) -> Path:
        """The library folder the atlas indexes."""
        return Path(self.meta("library") or ".")

    def set_library(self, library: str | os.PathLike) -> None:
        """Record ``library`` as the folder the atlas indexes (it moved there).

        Raises
        ------
        ParameterError
            When its path is not valid UTF-8 (the database can only record text).
        """
        library = str(Path(library).resolve())
        if _printable(library) != library:
            raise ParameterError(f"the library path {_printable(library)} is not valid UTF-8, "
                                 "so the atlas cannot record it; rename the folder (for "
                                 "example with `convmv`) and index it again")
        with self.transaction():
            self._set_meta("library", library)

    @property
    def cqt_params(self) -> CQTParams:
        """The CQT of the atlas's features (stored without ``kernel``: the folded kernel)."""
        return CQTParams(**json.loads(self.meta("cqt") or "{}"))

    def disk_size(self) -> int:
        """Bytes the atlas directory takes."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    # -- a refresh of the features ---------------------------------------------------------------

    def refresh_command(self) -> str:
        """The command that recomputes every feature of the atlas with today's CQT kernel."""
        return (f"soundatlas index {shlex.quote(str(self.library))} "
                f"--atlas {shlex.quote(str(self.path.resolve()))} --refresh-features")

    def start_feature_refresh(self, params: CQTParams) -> None:
        """Make ``params`` the atlas's CQT and every sample analysed so far stale, atomically.

        ``index`` analyses stale samples again and ends the refresh when none is left.
        """
        with self.transaction():
            self._set_meta("cqt", json.dumps(params.to_dict()))
            self._set_meta(_REFRESH_META, repr(time.time()))

    def feature_refresh_started(self) -> float | None:
        """When an unfinished feature refresh began (samples indexed before it are stale)."""
        value = self.meta(_REFRESH_META)
        return float(value) if value else None

    def stale_sample_ids(self) -> set[int]:
        """Samples whose features predate an unfinished feature refresh."""
        started = self.feature_refresh_started()
        if started is None:
            return set()
        return {sid for (sid,) in self.conn.execute(
            "SELECT id FROM samples WHERE indexed_at < ?", (started,))}

    def finish_feature_refresh(self) -> None:
        """End the feature refresh (every sample has been analysed again)."""
        with self.transaction() as c:
            c.execute("DELETE FROM meta WHERE key = ?", (_REFRESH_META,))
