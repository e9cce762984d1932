"""``soundatlas check``: is an atlas whole? And, with ``repair``, make it so without losing what
the user made.

What is checked, one problem per line:

- the database: ``PRAGMA integrity_check`` and ``foreign_key_check``; a write-ahead log left
  by a process that did not close the atlas (SQLite replays it; ``repair`` checkpoints it);
- the CQT parameters the atlas records, and that its feature files have their bin count;
- every feature and embedding file a row names: present, an array of the shape and type its
  rows say, and the checksum its row keeps (files written before schema 8 have none: their
  shape is checked); every sample and embedding inside its file;
- array files no row names (left by a crash, or copied in);
- every model: its weights and config load.

``repair`` removes the files no row names, marks the samples whose features are damaged so
that the next ``index`` analyses their files again (their labels, tags, stars and collections
stay: those follow the file's content), drops the embeddings in a damaged embedding file (the
next ``embed`` makes them again) and checkpoints a stale log. It never deletes a model, a label
or anything of the user's; a model that does not load is reported for the user to resolve.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from soundatlas.atlas import DB_NAME, Atlas
from soundatlas.atlas.core import lock_writer, unlock_writer
from soundatlas.atlas.store import ARRAY_FOLDERS, checksum
from soundatlas.errors import AtlasError, SoundAtlasError

__all__ = ["Problem", "CheckReport", "check_atlas"]


#: what ``PRAGMA integrity_check`` says of an index that does not match its table
_INDEX_PROBLEM = re.compile(r"(missing from|wrong # of entries in|non-unique entry in"
                            r"( UNIQUE)?) index \S+$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong: ``kind`` (a short tag), ``where`` (a file, a model, the database) and
    ``what`` (in words); ``repaired`` says what ``repair`` did about it, if anything."""

    kind: str
    where: str
    what: str
    repaired: str | None = None

    def line(self) -> str:
        """The problem in one line."""
        done = f" [repaired: {self.repaired}]" if self.repaired else ""
        return f"{self.kind}: {self.where}: {self.what}{done}"


@dataclass
class CheckReport:
    """What ``check_atlas`` found: its problems and what it looked at."""

    atlas: str
    problems: list[Problem] = field(default_factory=list)
    checked: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (or everything found was repaired)."""
        return all(p.repaired for p in self.problems)


def _shape_of(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype in a .npy file's header (the data is not read)."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if major == 1
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
    return shape, dtype


def _file_problem(path: Path, want_checksum: str | None, n_frames: int, n_cols: int | None,
                  dtype) -> str | None:
    """Why an array file does not hold what its row says, or None."""
    if not path.is_file():
        return "missing"
    try:
        shape, found_dtype = _shape_of(path)
    except (ValueError, OSError) as exc:
        return f"not a readable array ({exc})"
    if len(shape) != 2 or shape[0] < n_frames or (n_cols is not None and shape[1] != n_cols):
        return f"holds {shape}, its rows need at least ({n_frames}, {n_cols})"
    if np.dtype(found_dtype) != np.dtype(dtype):
        return f"holds {found_dtype}, not {np.dtype(dtype)}"
    expected = np.dtype(dtype).itemsize * int(np.prod(shape))
    size = path.stat().st_size
    if size < expected:
        return f"truncated: {size} bytes, the array needs more than {expected}"
    if want_checksum is not None and checksum(path) != want_checksum:
        return "its bytes changed since it was written (checksum differs)"
    return None


def check_atlas(path: str | os.PathLike, *, repair: bool = False, models: bool = True,
                progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Check the atlas at ``path`` (see the module doc); with ``repair``, fix what can be.
    ``progress`` is called with (array files checked, array files in all) as their checksums
    are read, the long part on a large atlas.

    Raises
    ------
    AtlasError
        When there is no atlas at ``path`` or its database cannot be opened at all.
    """
    path = Path(path)
    report = CheckReport(str(path))
    add = report.problems.append
    wal = path / (DB_NAME + "-wal")
    # measured before anything opens the database: the last connection to close checkpoints
    wal_size = wal.stat().st_size if wal.is_file() else 0
    stale_wal = wal_size if wal_size and not _in_use(path / DB_NAME) else 0
    if repair:  # no index or embed may write meanwhile: their files not yet committed
        lock_writer(path)  # would look like orphans
    try:
        with Atlas.open(path, write=repair, tidy=False) as atlas:
            _check(atlas, path, report, add, stale_wal, repair, models, progress)
    finally:
        if repair:
            unlock_writer(path)
    return report


def _check(atlas, path: Path, report: CheckReport, add, stale_wal: int, repair: bool,
           models: bool, progress=None) -> None:
    """The checks of :func:`check_atlas`, on the open atlas; ``stale_wal`` is the size of a
    log no process holds open (0: none)."""
    wal = path / (DB_NAME + "-wal")
    conn = atlas.conn
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise AtlasError(f"{path}: the database cannot be checked: {exc}") from exc
    if rows != ["ok"]:
        # an index that lost or kept rows its table has not: REINDEX rebuilds it from the table,
        # and loses nothing (a table's own pages damaged is another matter)
        index_only = all(_INDEX_PROBLEM.search(r) for r in rows)
        done = None
        if index_only and repair:
            with atlas.transaction() as c:
                c.execute("REINDEX")
            if [r[0] for r in conn.execute("PRAGMA integrity_check")] == ["ok"]:
                done = "indexes rebuilt (REINDEX)"
        hint = " (--repair rebuilds the index)" if index_only and not repair else ""
        for r in rows[:20]:
            add(Problem("database", DB_NAME, r + hint, done))
    for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall()[:20]:
        add(Problem("database", DB_NAME, f"{table} row {rowid} names a missing {parent}"))
    if stale_wal:
        done = None
        if repair:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            done = "checkpointed"
        add(Problem("log", wal.name, f"{stale_wal} bytes left by a process that did not close "
                    "the atlas", done))
    try:
        params = atlas.cqt_params
        n_bins = params.n_bins
    except (TypeError, ValueError) as exc:
        add(Problem("cqt", "meta", f"the CQT parameters cannot be read: {exc}"))
        n_bins = None
    n_files = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("segments", "embedding_segments"))
    counted = [0]

    def tick() -> None:
        counted[0] += 1
        if progress:
            progress(counted[0], n_files)

    if progress:
        progress(0, n_files)
    damaged_samples = _check_features(atlas, n_bins, add, repair, report, tick)
    _check_embeddings(atlas, add, repair, report, tick)
    _check_orphans(atlas, add, repair, report)
    if models:
        _check_models(atlas, add, report)
    report.checked["damaged_samples"] = damaged_samples


# SQLite's unix locking: every connection to a database in WAL mode holds a read lock on these
# bytes of the database file for as long as it is open (os_unix.c: SHARED_FIRST, SHARED_SIZE)
_SHARED_FIRST, _SHARED_SIZE = 0x40000000 + 2, 510
_LOCK_PROBE = f"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, {_SHARED_SIZE}, {_SHARED_FIRST})
except OSError:
    sys.exit(3)
"""


def _in_use(db: Path) -> bool:
    """Whether a connection (a writer, a server, a reader) holds the database open: then its
    log is not stale. Asked of the locks, by a child process (closing the file here would drop
    the locks this process's own connections hold on it), without opening the database: the
    last connection to close checkpoints the log into it, and a plain ``check`` writes nothing.
    Where it cannot be asked (no ``fcntl``, a database this user cannot write), in use."""
    import subprocess
    import sys

    try:
        probe = subprocess.run([sys.executable, "-I", "-S", "-c", _LOCK_PROBE, str(db)],
                               capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return True
    return probe.returncode != 0


def _check_features(atlas, n_bins, add, repair: bool, report: CheckReport, tick) -> int:
    from soundatlas.atlas.samples import FEATURE_DTYPE

    has_sum = atlas.schema_version >= 8
    segs = atlas.conn.execute(
        f"SELECT s.id, s.file, s.n_frames, {'s.checksum' if has_sum else 'NULL'},"
        " COALESCE((SELECT MAX(frame_offset + n_frames) FROM samples WHERE segment = s.id), 0)"
        " FROM segments s").fetchall()
    report.checked["feature_files"] = len(segs)
    damaged = 0
    for seg_id, file, n_frames, digest, needed in segs:
        why = _file_problem(atlas.path / "features" / file, digest, max(n_frames, needed),
                            n_bins, FEATURE_DTYPE)
        tick()
        if why is None:
            continue
        ids = [i for (i,) in atlas.conn.execute("SELECT id FROM samples WHERE segment = ?",
                                                 (seg_id,))]
        done = None
        if repair and ids:
            with atlas.transaction() as c:  # the next index sees changed files and analyses them
                c.executemany("UPDATE samples SET size = -1, mtime_ns = -1 WHERE id = ?",
                              [(i,) for i in ids])
            done = f"{len(ids)} sample(s) marked for the next index"
        damaged += len(ids)
        add(Problem("features", f"features/{file}", f"{why} ({len(ids)} sample(s))", done))
    return damaged


def _check_embeddings(atlas, add, repair: bool, report: CheckReport, tick) -> None:
    has_sum = atlas.schema_version >= 8
    segs = atlas.conn.execute(
        f"SELECT s.id, s.file, m.name, {'s.checksum' if has_sum else 'NULL'}, m.config,"
        " COALESCE((SELECT MAX(frame_offset + n_frames) FROM embeddings WHERE segment = s.id), 0)"
        " FROM embedding_segments s JOIN models m ON m.id = s.model_id").fetchall()
    report.checked["embedding_files"] = len(segs)
    import json

    for seg_id, file, model, digest, config, needed in segs:
        dims = json.loads(config).get("architecture", {}).get("dims", 3)
        why = _file_problem(atlas.path / "embeddings" / file, digest, needed, dims, np.float32)
        tick()
        if why is None:
            continue
        n = atlas.conn.execute("SELECT COUNT(*) FROM embeddings WHERE segment = ?",
                               (seg_id,)).fetchone()[0]
        done = None
        if repair:
            with atlas.transaction() as c:  # the next embed embeds them again
                c.execute("DELETE FROM embeddings WHERE segment = ?", (seg_id,))
                c.execute("DELETE FROM embedding_segments WHERE id = ?", (seg_id,))
            (atlas.path / "embeddings" / file).unlink(missing_ok=True)
            done = f"{n} embedding(s) dropped for the next embed"
        add(Problem("embeddings", f"embeddings/{file}", f"{why} (model {model!r}, {n} "
                    "sample(s))", done))


def _check_orphans(atlas, add, repair: bool, report: CheckReport) -> None:
    n = 0
    for folder, (table, _) in ARRAY_FOLDERS.items():
        if not (atlas.path / folder).is_dir():
            continue
        known = {f for (f,) in atlas.conn.execute(f"SELECT file FROM {table}")}
        for f in sorted((atlas.path / folder).iterdir()):
            if f.name in known:
                continue
            n += 1
            done = None
            if repair:
                f.unlink(missing_ok=True)
                done = "removed"
            add(Problem("orphan", f"{folder}/{f.name}", "no row names this file", done))
    report.checked["orphans"] = n


def _check_models(atlas, add, report: CheckReport) -> None:
    from soundatlas.artifact import ModelArtifact, model_path

    records = atlas.models()
    report.checked["models"] = len(records)
    for m in records:
        try:
            ModelArtifact.load(model_path(atlas, m.dir))
        except (SoundAtlasError, OSError, KeyError, ValueError) as exc:
            add(Problem("model", m.name, f"does not load: {exc}"))
