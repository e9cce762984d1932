"""The atlas: one directory, an SQLite database (the single source of truth) plus feature arrays.

Layout::

    ATLAS/atlas.sqlite           samples, labels, failures, segments, runs, meta (WAL mode)
    ATLAS/features/seg-NNNNNNNN.npy   log-CQT frames of a batch of samples, float16 (frames x n_bins)

A batch's features are written to a new segment file (temporary name, fsync, rename) *before*
the transaction that inserts the segment and points the batch's samples at it commits. A crash
between the two leaves an unreferenced file, removed the next time the atlas is opened for
writing; a crash before the rename leaves a temporary file, removed likewise. Nothing a committed
row points at is ever rewritten in place.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from soundatlas.cqt import PAPER_CQT, CQTParams
from soundatlas.errors import AtlasError

__all__ = ["Atlas", "SampleRecord", "SCHEMA_VERSION", "DB_NAME", "default_atlas_dir"]

DB_NAME = "atlas.sqlite"
_REFRESH_META = "cqt_refresh_started"  # meta: time.time() when an unfinished refresh began
FEATURE_DTYPE = np.float16  # log-CQT values lie in [0, ~12]; float16 keeps ~3 significant digits

# Migrations: index i brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        file TEXT NOT NULL UNIQUE,
        n_frames INTEGER NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,          -- relative to the library root, forward slashes
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash TEXT NOT NULL,                 -- blake2b of the file's bytes
        orig_sr INTEGER NOT NULL,
        n_channels INTEGER NOT NULL,
        duration REAL NOT NULL,             -- seconds analysed
        file_duration REAL,                 -- seconds in the file, when known
        truncated INTEGER NOT NULL DEFAULT 0,
        segment INTEGER NOT NULL REFERENCES segments(id),
        frame_offset INTEGER NOT NULL,
        n_frames INTEGER NOT NULL,
        indexed_at REAL NOT NULL
    );
    CREATE INDEX samples_hash ON samples(hash);
    CREATE INDEX samples_segment ON samples(segment);
    CREATE TABLE labels (
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (sample_id, key)
    );
    CREATE INDEX labels_key ON labels(key, value);
    CREATE TABLE failures (
        path TEXT PRIMARY KEY,
        size INTEGER,
        mtime_ns INTEGER,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        started REAL NOT NULL,
        finished REAL,
        status TEXT NOT NULL,               -- running | done | failed
        n_total INTEGER NOT NULL DEFAULT 0,
        n_done INTEGER NOT NULL DEFAULT 0,
        summary TEXT
    );
    """,
    # 2: the train/valid/test split, models and their embeddings
    """
    CREATE TABLE splits (
        sample_id INTEGER PRIMARY KEY REFERENCES samples(id) ON DELETE CASCADE,
        split TEXT NOT NULL CHECK (split IN ('train', 'valid', 'test'))
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        dir TEXT NOT NULL,                  -- relative to the atlas, or absolute (shipped models)
        config TEXT NOT NULL,               -- the model's JSON config
        created REAL NOT NULL
    );
    CREATE TABLE embedding_segments (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        file TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE embeddings (
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        segment INTEGER NOT NULL REFERENCES embedding_segments(id),
        frame_offset INTEGER NOT NULL,
        n_frames INTEGER NOT NULL,
        point BLOB NOT NULL,                -- float32 x dims: the sample's point on the map
        PRIMARY KEY (model_id, sample_id)
    );
    CREATE INDEX embeddings_segment ON embeddings(segment);
    """,
    # 3: each model's similarity space (soundatlas.similarity): what it is, and a vector per sample
    """
    CREATE TABLE similarity_spaces (
        model_id INTEGER PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        dims INTEGER NOT NULL,
        dtype TEXT NOT NULL,                -- numpy dtype of a stored vector's components
        spec TEXT NOT NULL                  -- JSON: scale, what the vector is, its distance
    );
    CREATE TABLE similarity_vectors (
        model_id INTEGER NOT NULL REFERENCES similarity_spaces(model_id) ON DELETE CASCADE,
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        vector BLOB NOT NULL,               -- dims x dtype, little-endian
        PRIMARY KEY (model_id, sample_id)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
#: the oldest schema a read-only open accepts: what later migrations add (only new tables) reads
#: as empty there, until the atlas is next opened for writing (which migrates it)
READABLE_SCHEMA = 2

SPLIT_FRACTIONS = {"test": 0.25, "valid": 0.75 * 0.2}  # the reference: 75/25, then 80/20
_SQL_INT_MIN, _SQL_INT_MAX = -(2**63), 2**63 - 1  # the range of an SQLite INTEGER


def default_atlas_dir(library: str | os.PathLike) -> Path:
    return Path(library) / ".soundatlas"


@dataclass(frozen=True)
class SampleRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str
    orig_sr: int
    n_channels: int
    duration: float
    file_duration: float | None
    truncated: bool
    segment: int
    frame_offset: int
    n_frames: int


@dataclass(frozen=True)
class NewSample:
    """What a batch commit needs to know about one analysed file."""

    path: str
    size: int
    mtime_ns: int
    hash: str
    orig_sr: int
    n_channels: int
    duration: float
    file_duration: float | None
    truncated: bool
    features: np.ndarray  # frames x n_bins


class Atlas:
    """An atlas directory. Open with ``Atlas.create(dir, library=...)`` or ``Atlas.open(dir)``."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, read_only: bool = False):
        self.path = path
        self.conn = conn
        self._read_only = read_only
        self._segment_cache: dict[int, np.ndarray] = {}
        self._embedding_cache: dict[str, np.ndarray] = {}  # file -> mmap (files never change)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, *, write: bool = False) -> "Atlas":
        """Open an existing atlas; migrate its schema when opened for writing."""
        path = Path(path)
        db = path / DB_NAME
        if not db.is_file():
            raise AtlasError(f"no atlas at {path} (run `soundatlas index LIBRARY` first)")
        atlas = cls(path, _connect(db, write=write), read_only=not write)
        atlas._check_version(write=write)
        if write:
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

        ``params``: the CQT a new atlas records (default ``PAPER_CQT``); for an existing one,
        None accepts what it holds and anything else must equal it.
        """
        path = Path(path)
        if (path / DB_NAME).is_file():
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
        try:
            (path / "features").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AtlasError(f"cannot create the atlas directory {path}: {exc.strerror}") from exc
        atlas = cls(path, _connect(path / DB_NAME, write=True))
        atlas._check_version(write=True)
        with atlas.transaction():
            atlas._set_meta("library", str(Path(library).resolve()))
            atlas._set_meta("cqt", json.dumps(params.to_dict()))
            atlas._set_meta("created", str(time.time()))
        return atlas

    def close(self) -> None:
        self._segment_cache.clear()
        self._embedding_cache.clear()
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_version(self, *, write: bool) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise AtlasError(
                f"the atlas at {self.path} has schema version {version}, newer than this "
                f"soundatlas understands ({SCHEMA_VERSION}); upgrade soundatlas"
            )
        self.schema_version = version
        if version < SCHEMA_VERSION:
            if not write and version >= READABLE_SCHEMA:
                return
            if not write:
                raise AtlasError(
                    f"the atlas at {self.path} has schema version {version}; "
                    "run `soundatlas index` once to migrate it"
                )
            for v in range(version, SCHEMA_VERSION):
                # one transaction per step: the schema change and its version number land together
                self.conn.executescript(
                    f"BEGIN IMMEDIATE; {MIGRATIONS[v]}; PRAGMA user_version = {v + 1}; COMMIT;"
                )
            self.schema_version = SCHEMA_VERSION

    # -- meta ----------------------------------------------------------------------------------

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._set_meta(key, value)

    @property
    def library(self) -> Path:
        return Path(self.meta("library") or ".")

    @property
    def cqt_params(self) -> CQTParams:
        """The CQT of the atlas's features (stored without ``kernel``: the folded kernel)."""
        return CQTParams(**json.loads(self.meta("cqt") or "{}"))

    def refresh_command(self) -> str:
        """The command that recomputes every feature of the atlas with today's CQT kernel."""
        import shlex

        return (f"soundatlas index {shlex.quote(str(self.library))} "
                f"--atlas {shlex.quote(str(self.path.resolve()))} --refresh-features")

    def start_feature_refresh(self, params: CQTParams) -> None:
        """Make ``params`` the atlas's CQT and every sample analysed so far stale, atomically;
        ``index`` analyses stale samples again and ends the refresh when none is left."""
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
        with self.transaction():
            self.conn.execute("DELETE FROM meta WHERE key = ?", (_REFRESH_META,))

    # -- transactions ----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # -- samples -------------------------------------------------------------------------------

    def n_samples(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def samples(self, ids: Iterable[int] | None = None) -> list[SampleRecord]:
        """Sample records, ordered by id (all of them, or those with the given ids)."""
        cols = ", ".join(SampleRecord.__dataclass_fields__)
        if ids is None:
            rows = self.conn.execute(f"SELECT {cols} FROM samples ORDER BY id").fetchall()
        else:
            rows = []
            for chunk in _id_chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows += self.conn.execute(
                    f"SELECT {cols} FROM samples WHERE id IN ({marks})", chunk
                ).fetchall()
            rows.sort()
        return [SampleRecord(*r[:9], bool(r[9]), *r[10:]) for r in rows]

    def lookup_paths(self, paths: list[str]) -> dict[str, tuple[int, int, int, str]]:
        """path -> (id, size, mtime_ns, hash) for those of ``paths`` the atlas holds."""
        out = {}
        for chunk in _chunked(paths, 900):
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT path, id, size, mtime_ns, hash FROM samples WHERE path IN ({marks})", chunk
            ):
                out[row[0]] = tuple(row[1:])
        return out

    def max_sample_id(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM samples").fetchone()[0]

    def iter_ids_hashes(self) -> Iterator[tuple[int, str, str]]:
        """(id, hash, path) of every sample, streamed."""
        yield from self.conn.execute("SELECT id, hash, path FROM samples ORDER BY id")

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

    def sample_ids(self) -> np.ndarray:
        """Every sample id, ascending, as int64: no Python object per sample (at 1M samples a
        few ms when the ids run without gaps, ~60 ms otherwise)."""
        with self.snapshot():
            # three subqueries: MIN and MAX in one SELECT (or next to COUNT) read every row
            n, lo, hi = self.conn.execute(
                "SELECT (SELECT COUNT(*) FROM samples), (SELECT MIN(id) FROM samples),"
                " (SELECT MAX(id) FROM samples)").fetchone()
            if n == 0:
                return np.zeros(0, np.int64)
            if hi - lo + 1 == n:  # n distinct integers in [lo, hi]: all of them
                return np.arange(lo, hi + 1, dtype=np.int64)
            text = self.conn.execute("SELECT group_concat(id) FROM samples").fetchone()[0]
        return np.sort(_int_list(text))

    def paths(self, ids: Iterable[int]) -> dict[int, str]:
        """id -> path of those of ``ids`` the atlas holds."""
        out = {}
        for chunk in _id_chunks(ids):
            marks = ",".join("?" * len(chunk))
            out.update(self.conn.execute(f"SELECT id, path FROM samples WHERE id IN ({marks})",
                                         chunk))
        return out

    def find_samples(self, *, path_contains: str = "",
                     labels: Iterable[tuple[str, str]] = ()) -> np.ndarray:
        """Ids (int64, ascending) of the samples whose path contains ``path_contains`` ignoring
        case (as ``needle.casefold() in path.casefold()``) and that carry every (key, value) of
        ``labels``. One SQL query: ASCII paths are compared in SQL (SQLite's ``lower`` folds ASCII
        only, which for an ASCII path is exactly ``str.casefold``); only paths with other
        characters are handed to ``str.casefold`` in Python, so 'STRASSE' finds 'straße'."""
        where, args = [], []
        needle = path_contains.casefold()
        if needle:
            # instr() takes the needle literally: no LIKE wildcards (% and _) to escape
            where.append("CASE WHEN length(CAST(path AS BLOB)) = length(path)"
                         " THEN instr(lower(path), ?) > 0 ELSE casefold_contains(path, ?) END")
            args += [needle, needle]
            self.conn.create_function("casefold_contains", 2, _casefold_contains,
                                      deterministic=True)
        for key, value in labels:
            where.append("id IN (SELECT sample_id FROM labels WHERE key = ? AND value = ?)")
            args += [key, value]
        if not where:
            return self.sample_ids()
        text = self.conn.execute(
            f"SELECT group_concat(id) FROM samples WHERE {' AND '.join(where)}", args
        ).fetchone()[0]
        return np.sort(_int_list(text))

    def features(self, sample_id: int | SampleRecord) -> np.ndarray:
        """The sample's log-CQT frames (frames x n_bins) as float32."""
        rec = sample_id if isinstance(sample_id, SampleRecord) else self.samples([sample_id])[0]
        seg = self._segment(rec.segment)
        return np.asarray(seg[rec.frame_offset : rec.frame_offset + rec.n_frames], dtype=np.float32)

    def _segment(self, segment_id: int) -> np.ndarray:
        if segment_id not in self._segment_cache:
            row = self.conn.execute("SELECT file FROM segments WHERE id = ?", (segment_id,)).fetchone()
            if row is None:
                raise AtlasError(f"segment {segment_id} is missing from {self.path}")
            if len(self._segment_cache) > 256:
                self._segment_cache.clear()
            self._segment_cache[segment_id] = np.load(self.path / "features" / row[0], mmap_mode="r")
        return self._segment_cache[segment_id]

    # -- writing a batch -----------------------------------------------------------------------

    def commit_batch(
        self,
        new: list[NewSample],
        *,
        moved: list[tuple[int, str, int, int]] = (),
        failed: list[tuple[str, int | None, int | None, str]] = (),
        run_id: int | None = None,
        n_done: int | None = None,
    ) -> list[int]:
        """Write one batch: analysed samples (with their features), moves and failures, atomically.

        ``moved``: (sample id, new path, size, mtime_ns). ``failed``: (path, size, mtime_ns,
        reason). A new sample at a path the atlas already holds replaces that record (its labels
        go with it). Returns the ids of the new samples in order.
        """
        segment_file = self._write_segment(new) if new else None
        ids = []
        try:
            with self.transaction() as c:
                seg_id = None
                if segment_file is not None:
                    n = sum(len(s.features) for s in new)
                    seg_id = c.execute(
                        "INSERT INTO segments(file, n_frames, created) VALUES (?, ?, ?)",
                        (segment_file.name, n, time.time()),
                    ).lastrowid
                now = time.time()
                for sid, path, size, mtime_ns in moved:
                    c.execute("DELETE FROM samples WHERE path = ? AND id != ?", (path, sid))
                    c.execute(
                        "UPDATE samples SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
                        (path, size, mtime_ns, sid),
                    )
                    c.execute("DELETE FROM failures WHERE path = ?", (path,))
                offset = 0
                for s in new:
                    c.execute("DELETE FROM samples WHERE path = ?", (s.path,))
                    ids.append(
                        c.execute(
                            "INSERT INTO samples(path, size, mtime_ns, hash, orig_sr, n_channels,"
                            " duration, file_duration, truncated, segment, frame_offset, n_frames,"
                            " indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                            (s.path, s.size, s.mtime_ns, s.hash, s.orig_sr, s.n_channels,
                             s.duration, s.file_duration, int(s.truncated), seg_id, offset,
                             len(s.features), now),
                        ).lastrowid
                    )
                    offset += len(s.features)
                    c.execute("DELETE FROM failures WHERE path = ?", (s.path,))
                for path, size, mtime_ns, reason in failed:
                    c.execute("DELETE FROM samples WHERE path = ?", (path,))
                    c.execute(
                        "INSERT OR REPLACE INTO failures(path, size, mtime_ns, reason, at)"
                        " VALUES (?,?,?,?,?)",
                        (path, size, mtime_ns, reason, now),
                    )
                if run_id is not None and n_done is not None:
                    c.execute("UPDATE runs SET n_done = ? WHERE id = ?", (n_done, run_id))
        except BaseException:
            if segment_file is not None:
                segment_file.unlink(missing_ok=True)
            raise
        return ids

    def _write_segment(self, new: list[NewSample]) -> Path:
        frames = np.concatenate([s.features for s in new]).astype(FEATURE_DTYPE)
        return _write_array(self.path / "features", frames)

    def remove_samples(self, ids: list[int]) -> None:
        with self.transaction() as c:
            for chunk in _chunked(ids, 900):
                marks = ",".join("?" * len(chunk))
                c.execute(f"DELETE FROM samples WHERE id IN ({marks})", chunk)

    def forget_failures(self, keep_paths: set[str]) -> int:
        """Drop failure records whose file is no longer in the library; returns how many."""
        gone = [p for (p,) in self.conn.execute("SELECT path FROM failures") if p not in keep_paths]
        with self.transaction() as c:
            c.executemany("DELETE FROM failures WHERE path = ?", [(p,) for p in gone])
        return len(gone)

    def collect_garbage(self) -> int:
        """Delete segments no sample points at (after removals and replacements); returns count."""
        with self.transaction() as c:
            dead = c.execute(
                "SELECT id, file FROM segments WHERE id NOT IN (SELECT DISTINCT segment FROM samples)"
            ).fetchall()
            c.executemany("DELETE FROM segments WHERE id = ?", [(i,) for i, _ in dead])
            dead_emb = c.execute(
                "SELECT id, file FROM embedding_segments"
                " WHERE id NOT IN (SELECT DISTINCT segment FROM embeddings)"
            ).fetchall()
            c.executemany("DELETE FROM embedding_segments WHERE id = ?", [(i,) for i, _ in dead_emb])
        for _, file in dead:
            (self.path / "features" / file).unlink(missing_ok=True)
        for _, file in dead_emb:
            (self.path / "embeddings" / file).unlink(missing_ok=True)
        self._segment_cache.clear()
        self._embedding_cache.clear()
        return len(dead) + len(dead_emb)

    def _remove_orphan_segments(self) -> None:
        """Remove array files that no committed segment row names (left by a crash)."""
        for folder, table in (("features", "segments"), ("embeddings", "embedding_segments")):
            if not (self.path / folder).is_dir():
                continue
            known = {f for (f,) in self.conn.execute(f"SELECT file FROM {table}")}
            for f in (self.path / folder).iterdir():
                if f.name not in known:
                    f.unlink(missing_ok=True)

    # -- labels --------------------------------------------------------------------------------

    def replace_labels(self, labels: dict[int, dict[str, str]]) -> None:
        """Set the complete label set of every sample (samples not in ``labels`` get none)."""
        with self.transaction() as c:
            c.execute("DELETE FROM labels")
            c.executemany(
                "INSERT INTO labels(sample_id, key, value) VALUES (?, ?, ?)",
                ((sid, k, v) for sid, kv in labels.items() for k, v in kv.items()),
            )

    def labels(self, key: str) -> dict[int, str]:
        """sample id -> value of label ``key`` (samples without it are absent)."""
        return dict(self.conn.execute("SELECT sample_id, value FROM labels WHERE key = ?", (key,)))

    def sample_labels(self, sample_id: int) -> dict[str, str]:
        return dict(
            self.conn.execute("SELECT key, value FROM labels WHERE sample_id = ?", (sample_id,))
        )

    def label_keys(self) -> list[str]:
        """The label keys in use, sorted: one index seek per key, however many labels there are."""
        return [k for (k,) in self.conn.execute(
            "WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM labels UNION ALL"
            " SELECT (SELECT MIN(key) FROM labels WHERE key > k.key) FROM k"
            " WHERE k.key IS NOT NULL) SELECT key FROM k WHERE key IS NOT NULL")]

    def label_column(self, key: str) -> tuple[np.ndarray, list[str]]:
        """(sample ids int64, values) of every sample that has label ``key``, aligned, in no
        particular order: the same pairs as ``labels(key)`` without a Python tuple per row.

        Two ways to read them: one pass over the whole labels table (sequential; cheap while
        ``key`` is on a fair share of its rows), or the (key, value) index then a lookup of
        each row (random access: 5-15x slower per row at 1M rows, but only this key's rows).
        """
        with self.snapshot():
            n_keys = len(self.label_keys())
            # n_keys x n_samples bounds the table's rows
            scan = n_keys <= 1 or n_keys * self.n_samples() <= 6 * self.conn.execute(
                "SELECT COUNT(*) FROM labels WHERE key = ?", (key,)).fetchone()[0]
            ids, values = self.conn.execute(
                "SELECT group_concat(sample_id), json_group_array(value) FROM labels"
                f"{' NOT INDEXED' if scan else ''} WHERE key = ?", (key,)).fetchone()
        # group_concat and json_group_array are fed the same rows in the same order
        return _int_list(ids), json.loads(values)

    def labels_of(self, ids: Iterable[int]) -> dict[int, dict[str, str]]:
        """id -> {key: value} (keys sorted) of those of ``ids`` that have any label."""
        out: dict[int, dict[str, str]] = {}
        for chunk in _id_chunks(ids):
            marks = ",".join("?" * len(chunk))
            for sid, key, value in self.conn.execute(
                f"SELECT sample_id, key, value FROM labels WHERE sample_id IN ({marks})"
                " ORDER BY sample_id, key", chunk
            ):
                out.setdefault(sid, {})[key] = value
        return out

    def label_summary(self) -> dict[str, dict[str, int]]:
        """label key -> {value: number of samples}."""
        out: dict[str, dict[str, int]] = {}
        for key, value, n in self.conn.execute(
            "SELECT key, value, COUNT(*) FROM labels GROUP BY key, value ORDER BY key, value"
        ):
            out.setdefault(key, {})[value] = n
        return out

    # -- failures and runs ------------------------------------------------------------------------

    def failures(self) -> list[tuple[str, str]]:
        return self.conn.execute("SELECT path, reason FROM failures ORDER BY path").fetchall()

    def start_run(self, kind: str, n_total: int) -> int:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status = 'interrupted' WHERE status = 'running' AND kind = ?",
                (kind,),
            )
            return c.execute(
                "INSERT INTO runs(kind, started, status, n_total) VALUES (?, ?, 'running', ?)",
                (kind, time.time(), n_total),
            ).lastrowid

    def finish_run(self, run_id: int, *, status: str, summary: dict) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET finished = ?, status = ?, summary = ? WHERE id = ?",
                (time.time(), status, json.dumps(summary), run_id),
            )

    def last_run(self, kind: str) -> dict | None:
        row = self.conn.execute(
            "SELECT id, started, finished, status, n_total, n_done, summary FROM runs"
            " WHERE kind = ? ORDER BY id DESC LIMIT 1",
            (kind,),
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "started", "finished", "status", "n_total", "n_done", "summary")
        out = dict(zip(keys, row))
        out["summary"] = json.loads(out["summary"]) if out["summary"] else None
        return out

    # -- the split ---------------------------------------------------------------------------

    def splits(self, *, seed: int | None = None) -> dict[int, str]:
        """sample id -> 'train' | 'valid' | 'test', assigning samples that have none yet.

        The split is by file, at random, as in the reference (75/25, then the 75 into 80/20):
        a sample's split is drawn from its content hash and the atlas's split seed, so it is
        stable as the library grows and duplicates of one file never straddle two splits. It is
        stored, so training and evaluation agree on it.
        """
        stored = self.meta("split_seed")
        if stored is None:
            stored = str(0 if seed is None else int(seed))
            if self._writable():
                self.set_meta("split_seed", stored)
        elif seed is not None and int(stored) != int(seed):
            raise AtlasError(
                f"this atlas's split was drawn with seed {stored}; a different split seed "
                f"({seed}) would mix training and test files"
            )
        out = dict(self.conn.execute("SELECT sample_id, split FROM splits"))
        missing = [(sid, h) for sid, h, _ in self.iter_ids_hashes() if sid not in out]
        if missing:
            new = {sid: split_of(h, int(stored)) for sid, h in missing}
            out.update(new)
            if self._writable():
                with self.transaction() as c:
                    c.executemany("INSERT OR REPLACE INTO splits(sample_id, split) VALUES (?, ?)",
                                  new.items())
        return out

    def _writable(self) -> bool:
        return not self._read_only

    # -- models --------------------------------------------------------------------------------

    def register_model(self, name: str, directory: str, config: dict) -> int:
        """Record a model (its weights live in ``directory``); replaces one of the same name."""
        with self.transaction() as c:
            c.execute("DELETE FROM models WHERE name = ?", (name,))
            return c.execute(
                "INSERT INTO models(name, dir, config, created) VALUES (?, ?, ?, ?)",
                (name, directory, json.dumps(config), time.time()),
            ).lastrowid

    def models(self) -> list[dict]:
        """Registered models: id, name, dir, config (dict), created, n_embedded."""
        rows = self.conn.execute(
            "SELECT m.id, m.name, m.dir, m.config, m.created,"
            " (SELECT COUNT(*) FROM embeddings e WHERE e.model_id = m.id)"
            " FROM models m ORDER BY m.id"
        ).fetchall()
        keys = ("id", "name", "dir", "config", "created", "n_embedded")
        out = [dict(zip(keys, r)) for r in rows]
        for m in out:
            m["config"] = json.loads(m["config"])
        return out

    def model(self, name: str) -> dict:
        for m in self.models():
            if m["name"] == name:
                return m
        known = ", ".join(m["name"] for m in self.models()) or "none"
        raise AtlasError(f"no model named {name!r} in {self.path} (known: {known})")

    def remove_model(self, name: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM models WHERE name = ?", (name,))
        self.collect_garbage()

    # -- embeddings ----------------------------------------------------------------------------

    def unembedded(self, model_id: int) -> list[int]:
        """Ids of samples without an embedding for the model."""
        return [sid for (sid,) in self.conn.execute(
            "SELECT id FROM samples WHERE id NOT IN"
            " (SELECT sample_id FROM embeddings WHERE model_id = ?) ORDER BY id", (model_id,))]

    def commit_embeddings(
        self, model_id: int, items: list[tuple[int, np.ndarray, np.ndarray]],
        *, similarity: list[np.ndarray] | None = None,
    ) -> None:
        """Store (sample id, trajectory (frames x dims), point (dims,)) for a batch, atomically;
        with ``similarity``, each sample's vector (aligned with ``items``) in the model's
        recorded similarity space, in the same transaction."""
        if not items:
            return
        trajectories = np.concatenate([t for _, t, _ in items]).astype(np.float32)
        file = _write_array(self.path / "embeddings", trajectories)
        try:
            with self.transaction() as c:
                seg = c.execute(
                    "INSERT INTO embedding_segments(model_id, file, created) VALUES (?, ?, ?)",
                    (model_id, file.name, time.time()),
                ).lastrowid
                offset = 0
                for sid, traj, point in items:
                    c.execute(
                        "INSERT OR REPLACE INTO embeddings(model_id, sample_id, segment,"
                        " frame_offset, n_frames, point) VALUES (?, ?, ?, ?, ?, ?)",
                        (model_id, sid, seg, offset, len(traj),
                         np.asarray(point, np.float32).tobytes()),
                    )
                    offset += len(traj)
                if similarity is not None:
                    self._insert_similarity(c, model_id, [(sid, v) for (sid, _, _), v
                                                          in zip(items, similarity)])
        except BaseException:
            file.unlink(missing_ok=True)
            raise

    def newest_embedding_segment(self, model_id: int) -> int:
        """The id of the model's newest embedding segment (0: none). Every embedding run adds
        segments, so this with the number of embedded samples (``models()``'s ``n_embedded``,
        which drops when samples are removed) changes whenever the model's points do: a cheap
        key for caches of them (a few rows read, at any library size)."""
        row = self.conn.execute("SELECT MAX(id) FROM embedding_segments WHERE model_id = ?",
                                (model_id,)).fetchone()
        return int(row[0] or 0)

    def points(self, model_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(sample ids, points (n x dims) float32) of every embedded sample, ordered by id."""
        rows = self.conn.execute(
            "SELECT sample_id, point FROM embeddings WHERE model_id = ? ORDER BY sample_id",
            (model_id,),
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        if not rows:
            return ids, np.zeros((0, 0), np.float32)
        return ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    # -- similarity vectors: one per sample per model, in the space soundatlas.similarity names ---

    def similarity_space(self, model_id: int) -> dict | None:
        """The model's similarity space as recorded: {name, dims, dtype, spec (dict), updated};
        None when it has none (nothing stored yet, or an atlas from before they existed)."""
        if self.schema_version < 3:
            return None
        row = self.conn.execute(
            "SELECT name, dims, dtype, spec FROM similarity_spaces WHERE model_id = ?",
            (model_id,)).fetchone()
        if row is None:
            return None
        spec = json.loads(row[3])
        updated = spec.pop("updated", None)  # when a vector was last stored: a key for caches
        return {"name": row[0], "dims": row[1], "dtype": row[2], "spec": spec,
                "updated": updated}

    def set_similarity_space(self, model_id: int, space: dict) -> bool:
        """Record the model's similarity space ({name, dims, dtype, spec}); when one of another
        definition was recorded, its vectors go with it (they are of another space). Returns
        whether the vectors were dropped."""
        stored = self.similarity_space(model_id)
        wanted = {k: space[k] for k in ("name", "dims", "dtype")}
        same = stored is not None and {k: stored[k] for k in wanted} == wanted and \
            stored["spec"] == space["spec"]
        if same:
            return False
        with self.transaction() as c:
            c.execute("DELETE FROM similarity_spaces WHERE model_id = ?", (model_id,))
            c.execute("INSERT INTO similarity_spaces(model_id, name, dims, dtype, spec)"
                      " VALUES (?, ?, ?, ?, ?)",
                      (model_id, space["name"], int(space["dims"]), space["dtype"],
                       json.dumps({**space["spec"], "updated": time.time()})))
        return stored is not None

    def commit_similarity(self, model_id: int, items: list[tuple[int, np.ndarray]]) -> None:
        """Store (sample id, vector) pairs in the model's recorded similarity space, atomically."""
        with self.transaction() as c:
            self._insert_similarity(c, model_id, items)

    def _insert_similarity(self, c, model_id: int, items) -> None:
        if not items:
            return
        row = c.execute("SELECT dims, dtype, spec FROM similarity_spaces WHERE model_id = ?",
                        (model_id,)).fetchone()
        if row is None:
            raise AtlasError(f"model {model_id} has no similarity space recorded")
        dims, dtype = row[0], np.dtype(row[1]).newbyteorder("<")
        blobs = []
        for sid, vector in items:
            v = np.asarray(vector)
            if v.shape != (dims,) or v.dtype.kind != dtype.kind:
                raise AtlasError(f"sample {sid}'s similarity vector has shape {v.shape} and dtype "
                                 f"{v.dtype}; the space holds ({dims},) {dtype.name}")
            blobs.append((model_id, int(sid), v.astype(dtype).tobytes()))
        c.executemany("INSERT OR REPLACE INTO similarity_vectors(model_id, sample_id, vector)"
                      " VALUES (?, ?, ?)", blobs)
        spec = json.loads(row[2])
        spec["updated"] = time.time()
        c.execute("UPDATE similarity_spaces SET spec = ? WHERE model_id = ?",
                  (json.dumps(spec), model_id))

    def similarity_vectors(self, model_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(sample ids ascending, vectors n x dims in the space's dtype) of every sample that has
        one; (empty, empty) without a space."""
        space = self.similarity_space(model_id)
        if space is None:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        dtype = np.dtype(space["dtype"]).newbyteorder("<")
        with self.snapshot():
            ids, blob = self.conn.execute(
                "SELECT group_concat(sample_id), CAST(group_concat(vector, x'') AS BLOB) FROM"
                " (SELECT sample_id, vector FROM similarity_vectors WHERE model_id = ?"
                "  ORDER BY sample_id)", (model_id,)).fetchone()
        ids = _int_list(ids)
        blob = blob or b""
        if len(blob) != len(ids) * space["dims"] * dtype.itemsize:  # a vector of another size
            rows = self.conn.execute("SELECT sample_id, vector FROM similarity_vectors"
                                     " WHERE model_id = ?", (model_id,)).fetchall()
            bad = next(sid for sid, v in rows if len(v) != space["dims"] * dtype.itemsize)
            raise AtlasError(f"sample {bad}'s similarity vector for model {model_id} is not "
                             f"{space['dims']} x {dtype.name}")
        vectors = np.frombuffer(blob, dtype=dtype).reshape(len(ids), space["dims"])
        order = np.argsort(ids, kind="stable")
        return ids[order], vectors[order].astype(dtype.newbyteorder("="))

    def without_similarity(self, model_id: int) -> list[int]:
        """Ids of samples embedded with the model that have no similarity vector for it."""
        if self.schema_version < 3:
            return [sid for (sid,) in self.conn.execute(
                "SELECT sample_id FROM embeddings WHERE model_id = ? ORDER BY sample_id",
                (model_id,))]
        return [sid for (sid,) in self.conn.execute(
            "SELECT sample_id FROM embeddings WHERE model_id = ? AND sample_id NOT IN"
            " (SELECT sample_id FROM similarity_vectors WHERE model_id = ?) ORDER BY sample_id",
            (model_id, model_id))]

    def trajectory(self, model_id: int, sample_id: int) -> np.ndarray:
        """The sample's per-frame embedding (frames x dims) under the model."""
        row = self.conn.execute(
            "SELECT s.file, e.frame_offset, e.n_frames FROM embeddings e"
            " JOIN embedding_segments s ON s.id = e.segment"
            " WHERE e.model_id = ? AND e.sample_id = ?", (model_id, sample_id),
        ).fetchone()
        if row is None:
            raise AtlasError(f"sample {sample_id} has no embedding for model {model_id}")
        arr = self._embedding_segment(row[0])
        return np.asarray(arr[row[1] : row[1] + row[2]], dtype=np.float32)

    def trajectories(self, model_id: int, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """sample id -> per-frame embedding (frames x dims) of those of ``ids`` embedded with the
        model: one query per 900 ids, each segment file opened once."""
        out: dict[int, np.ndarray] = {}
        for chunk in _id_chunks(ids):
            marks = ",".join("?" * len(chunk))
            for sid, file, offset, n in self.conn.execute(
                "SELECT e.sample_id, s.file, e.frame_offset, e.n_frames FROM embeddings e"
                " JOIN embedding_segments s ON s.id = e.segment"
                f" WHERE e.model_id = ? AND e.sample_id IN ({marks})", (model_id, *chunk),
            ):
                arr = self._embedding_segment(file)
                out[sid] = np.asarray(arr[offset : offset + n], dtype=np.float32)
        return out

    def _embedding_segment(self, file: str) -> np.ndarray:
        """An embedding segment file, memory-mapped, kept open (at most 256 at a time)."""
        cache = self._embedding_cache
        if file not in cache:
            if len(cache) > 256:
                cache.clear()
            cache[file] = np.load(self.path / "embeddings" / file, mmap_mode="r")
        return cache[file]

    # -- reporting -----------------------------------------------------------------------------

    def disk_size(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def n_frames_total(self) -> int:
        return self.conn.execute("SELECT COALESCE(SUM(n_frames), 0) FROM samples").fetchone()[0]


def split_of(content_hash: str, seed: int) -> str:
    """A file's split, drawn uniformly from its content hash and the split seed."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}:{content_hash}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    if u < SPLIT_FRACTIONS["test"]:
        return "test"
    return "valid" if u < SPLIT_FRACTIONS["test"] + SPLIT_FRACTIONS["valid"] else "train"


def _write_array(folder: Path, array: np.ndarray) -> Path:
    """Write ``array`` to a new .npy file in ``folder``: temporary name, fsync, rename."""
    folder.mkdir(exist_ok=True)
    # a unique name that no committed segment uses: time-ordered, plus pid for parallel writers
    name = f"seg-{time.time_ns():020d}-{os.getpid()}.npy"
    tmp = folder / (name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / name)
    return folder / name


def _connect(db: Path, *, write: bool) -> sqlite3.Connection:
    try:
        if write:
            conn = sqlite3.connect(db, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        else:
            # as_uri() needs an absolute path: a relative --atlas must open too
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True,
                                   isolation_level=None, timeout=30)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn
    except sqlite3.DatabaseError as exc:
        raise AtlasError(f"{db} is not a readable atlas database: {exc}") from exc


def _chunked(seq: list, size: int):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _id_chunks(ids: Iterable[int]):
    """Sample ids for ``... WHERE id IN (?, ...)`` queries, 900 at a time (SQLite's limit on
    parameters), without those outside an SQLite INTEGER: no sample can have them, and SQLite
    would refuse them with an OverflowError rather than find nothing."""
    return _chunked([i for i in ids if _SQL_INT_MIN <= i <= _SQL_INT_MAX], 900)


def _int_list(text: str | None) -> np.ndarray:
    """The integers of SQLite's ``group_concat`` (comma-separated; None when no rows) as int64."""
    if not text:
        return np.zeros(0, np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",")  # text mode: parsed in C


def _casefold_contains(text: str, needle: str) -> bool:
    return needle in text.casefold()
