"""The atlas's samples and their features: tables ``samples`` and ``segments``, folder ``features/``.

A batch's features are written to a new segment file (``features/seg-*.npy``, float16, frames x
n_bins) before the transaction that inserts the segment and points the batch's samples at it
commits (``Store``); nothing a committed row points at is ever rewritten in place. A segment
file found missing or damaged when read raises :class:`DamagedFeaturesError`, which names it and
the commands that make it whole.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from soundatlas.atlas.labels import LABEL_SUMMARY_META
from soundatlas.atlas.records import NewSample, SampleRecord
from soundatlas.atlas.schema import NON_ASCII_PATH
from soundatlas.atlas.store import (Store, array_problem, chunked, frames_problem, id_chunks,
                                    int_list, open_array, placeholders, write_array)
from soundatlas.cqt_params import DEFAULT_MAX_DURATION
from soundatlas.errors import AtlasError, DamagedDataError

__all__ = ["SampleStore", "FEATURE_DTYPE", "DamagedFeaturesError", "damaged_features",
           "is_id_text"]

MAX_DURATION_META = "max_duration"
FEATURE_DTYPE = np.float16  # log-CQT values lie in [0, ~12]; float16 keeps ~3 significant digits


def is_id_text(text: str) -> bool:
    """Whether an item given as text reads as a sample id: ASCII digits, few enough for an
    int64. (It may still name a folder of the library: files have a suffix, folders need not;
    the commands that take ITEMS decide between the two readings.)"""
    return text.isascii() and text.isdigit() and len(text) <= 18


class DamagedFeaturesError(DamagedDataError):
    """A feature file the atlas names is missing, truncated or not an array: the features of
    its samples cannot be read until ``soundatlas check --repair`` marks them and ``soundatlas
    index`` analyses their audio again (``fix``). The message says all three.

    Parameters
    ----------
    file : str or os.PathLike
        The feature file.
    reason : str
        What is wrong with it, in words.
    fix : str
        The command line that makes it whole.
    """

    def __init__(self, file: str | os.PathLike, reason: str, fix: str):
        self.file = os.fspath(file)
        self.reason = reason
        self.fix = fix
        super().__init__(f"the feature file {self.file} cannot be read: {reason}; run `{fix}` "
                         "(check marks its samples, index analyses their audio again)")

    def __reduce__(self):
        # picklable, as AudioReadError: it may travel back from a worker as a value
        return (type(self), (self.file, self.reason, self.fix))


def damaged_features(damaged: dict[str, tuple[DamagedFeaturesError, int]]) -> DamagedDataError:
    """One error for every damaged feature file a read of many samples met (``damaged``: file
    -> (its error, the samples of it that were asked for)): the one file's own error, or each
    file (ten at most) with what is wrong with it and its samples, and the commands that make
    them whole (one per atlas, where a read met two: ``evaluate --reference``)."""
    if len(damaged) == 1:
        return next(iter(damaged.values()))[0]
    items = list(damaged.values())
    shown = "; ".join(f"{e.file}: {e.reason} ({n} samples)" for e, n in items[:10])
    more = f"; and {len(items) - 10} more" if len(items) > 10 else ""
    total = sum(n for _e, n in items)
    fixes = " and ".join(f"`{fix}`" for fix in dict.fromkeys(e.fix for e, _n in items))
    return DamagedDataError(f"{len(items)} feature files cannot be read ({total} samples): "
                            f"{shown}{more}; run {fixes} (check marks their samples, index "
                            "analyses their audio again)")


class SampleStore(Store):
    """Samples, their features, and the batch commit that writes them with failures and moves."""

    # -- reading ---------------------------------------------------------------------------------

    def n_samples(self) -> int:
        """The number of samples in the atlas."""
        return self.conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def n_frames_total(self) -> int:
        """The number of feature frames of all samples together."""
        return self.conn.execute("SELECT COALESCE(SUM(n_frames), 0) FROM samples").fetchone()[0]

    def samples(self, ids: Iterable[int] | None = None) -> list[SampleRecord]:
        """Sample records, ordered by id.

        Parameters
        ----------
        ids : iterable of int, optional
            The ids wanted (those the atlas lacks are left out); all samples when None.

        Returns
        -------
        list of SampleRecord
        """
        cols = ", ".join(SampleRecord.columns())
        if ids is None:
            rows = self.conn.execute(f"SELECT {cols} FROM samples ORDER BY id").fetchall()
        else:
            rows = []
            for chunk in id_chunks(ids):
                rows += self.conn.execute(
                    f"SELECT {cols} FROM samples WHERE id IN ({placeholders(chunk)})", chunk
                ).fetchall()
            rows.sort()
        return [SampleRecord.from_row(r) for r in rows]

    def audio_labels_of(self, ids: Iterable[int]) -> dict[int, dict[str, str]]:
        """id -> the labels its audio gave (a loop's ``tempo`` and ``key``), for those of
        ``ids`` that have any (none in an atlas from before schema 7)."""
        out: dict[int, dict[str, str]] = {}
        if self.schema_version < 7:
            return out
        for chunk in id_chunks(ids):
            for sid, key, value in self.conn.execute(
                    "SELECT sample_id, key, value FROM audio_labels"
                    f" WHERE sample_id IN ({placeholders(chunk)})", chunk):
                out.setdefault(sid, {})[key] = value
        return out

    def ids_under(self, path: str) -> list[int]:
        """The sample at ``path`` (relative to the library, forward slashes), or every sample
        in the folder ``path`` and below it, by path ("" or "." : every sample).

        One range of the path index: a folder's paths are those from ``"path/"`` up to, not
        including, ``"path0"`` ('0' follows '/').
        """
        path = path.strip("/")
        if path in ("", "."):
            return self.sample_ids().tolist()
        row = self.conn.execute("SELECT id FROM samples WHERE path = ?", (path,)).fetchone()
        if row:
            return [row[0]]
        return [i for (i,) in self.conn.execute(
            "SELECT id FROM samples WHERE path >= ? AND path < ? ORDER BY path",
            (path + "/", path + "0"))]

    def lookup_paths(self, paths: list[str]) -> dict[str, tuple[int, int, int, str]]:
        """What the atlas holds at ``paths``.

        Returns
        -------
        dict
            path -> (id, size, mtime_ns, hash), for those of ``paths`` the atlas holds.
        """
        out = {}
        for chunk in chunked(paths, 900):
            for row in self.conn.execute(
                "SELECT path, id, size, mtime_ns, hash FROM samples"
                f" WHERE path IN ({placeholders(chunk)})", chunk
            ):
                out[row[0]] = tuple(row[1:])
        return out

    def max_sample_id(self) -> int:
        """The largest sample id (0 for an empty atlas)."""
        return self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM samples").fetchone()[0]

    def marked_sample_ids(self) -> set[int]:
        """Samples ``check --repair`` marked for the next index (their features are damaged):
        size and mtime -1, so that their files look changed."""
        return {sid for (sid,) in self.conn.execute("SELECT id FROM samples WHERE size < 0")}

    def iter_ids_hashes(self) -> Iterator[tuple[int, str, str]]:
        """(id, hash, path) of every sample, by id, streamed."""
        yield from self.conn.execute("SELECT id, hash, path FROM samples ORDER BY id")

    def iter_ids_hashes_sizes(self) -> Iterator[tuple[int, str, int]]:
        """(id, hash, size in bytes) of every sample, by id, streamed."""
        yield from self.conn.execute("SELECT id, hash, size FROM samples ORDER BY id")

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
        return np.sort(int_list(text))

    def paths(self, ids: Iterable[int]) -> dict[int, str]:
        """id -> path of those of ``ids`` the atlas holds."""
        out = {}
        for chunk in id_chunks(ids):
            out.update(self.conn.execute(
                f"SELECT id, path FROM samples WHERE id IN ({placeholders(chunk)})", chunk))
        return out

    def max_duration(self) -> float | None:
        """Seconds of each file the atlas's index runs analyse (``index --max-duration``: the
        last run's; ``cqt_params.DEFAULT_MAX_DURATION`` before any; None: no limit). An atlas
        from before the limit was kept has it in its last index run's summary."""
        text = self.meta(MAX_DURATION_META)
        if text is not None:
            return json.loads(text)
        row = self.conn.execute("SELECT summary FROM runs WHERE kind = 'index' AND summary IS NOT"
                                " NULL ORDER BY id DESC LIMIT 1").fetchone()
        summary = json.loads(row[0]) if row else {}
        return summary.get("max_duration", DEFAULT_MAX_DURATION)

    def set_max_duration(self, seconds: float | None) -> None:
        """Set the limit :meth:`max_duration` gives (its own transaction)."""
        self.set_meta(MAX_DURATION_META, json.dumps(seconds))

    def ids_cut_otherwise(self, max_duration: float | None) -> set[int]:
        """Samples that ``max_duration`` (None: no limit) would read otherwise than they were
        read: cut ones under a higher limit, and ones longer than a lower limit."""
        tol = 0.01  # seconds: a cut file's analysed part is the limit to a sample or two
        if max_duration is None:
            rows = self.conn.execute("SELECT id FROM samples WHERE truncated")
        else:
            rows = self.conn.execute(
                "SELECT id FROM samples WHERE (truncated AND duration < ?)"
                " OR (duration > ? AND coalesce(file_duration, duration) > ?)",
                (max_duration - tol, max_duration + tol, max_duration + tol))
        return {sid for (sid,) in rows}

    def truncated_paths(self) -> list[str]:
        """Paths of the samples of which only the first ``max_duration`` seconds were read."""
        return [p for (p,) in self.conn.execute(
            "SELECT path FROM samples WHERE truncated ORDER BY path")]

    def find_samples(self, *, path_contains: str = "",
                     labels: Iterable[tuple[str, str]] = ()) -> np.ndarray:
        """Ids of the samples whose path contains a text and that carry given labels.

        One SQL query: ASCII paths are compared in SQL (SQLite folds ASCII only, which for an
        ASCII path is exactly ``str.casefold``), their candidates taken from the trigram index
        of the paths (schema 5) when the needle has three characters in a row that are not
        LIKE wildcards, else from a scan; only paths with other characters are handed to
        :func:`fold` in Python, so 'STRASSE' finds 'straße', and 'café' finds both forms of
        'café' (composed, and decomposed as macOS writes names).

        Parameters
        ----------
        path_contains : str, default ""
            Matched ignoring case and Unicode form, as ``fold(needle) in fold(path)``.
        labels : iterable of (str, str), default ()
            (key, value) pairs: the index's labels and the user's (``atlas.curation``). A
            sample carries one value of a key, so the values given for one key are
            alternatives (any may hold), and every key given must hold; a sample holds several
            plain tags, so each ``("tag", T)`` must hold.

        Returns
        -------
        ndarray of int64
            The ids, ascending.
        """
        where, args = [], []
        needle = fold(path_contains)
        if needle:
            self.conn.create_function("casefold_contains", 2, _casefold_contains,
                                      deterministic=True)
            if self._has_path_trigrams() and _TRIGRAM_RUN.search(needle):
                # candidates from the trigram index (its LIKE ignores ASCII case, and the
                # needle's own % and _ act as wildcards there: more candidates, never fewer),
                # then the exact test on them; the paths that are not ASCII come from their
                # partial index and are folded in Python
                where.append(
                    "id IN (SELECT s.id FROM path_trigrams t JOIN samples s ON s.id = t.rowid"
                    " WHERE t.path LIKE ? AND length(CAST(s.path AS BLOB)) = length(s.path)"
                    " AND instr(lower(s.path), ?) > 0"
                    f" UNION ALL SELECT id FROM samples WHERE {NON_ASCII_PATH}"
                    " AND casefold_contains(path, ?))")
                args += [f"%{needle}%", needle, needle]
            else:
                # one scan; LIKE ignores ASCII case itself, without building lower(path): 2x
                # instr(lower()) (benchmarks/RESULTS.md); the needle's wildcards are escaped
                pattern = "%" + re.sub(r"([\\%_])", r"\\\1", needle) + "%"
                where.append("CASE WHEN length(CAST(path AS BLOB)) = length(path)"
                             " THEN path LIKE ? ESCAPE '\\' ELSE casefold_contains(path, ?) END")
                args += [pattern, needle]
        curated = self.schema_version >= 6  # the user's labels (atlas.curation) count too
        groups: dict[str, list[str]] = {}  # key -> its values, each once, in the order given
        for key, value in labels:
            if value not in groups.setdefault(key, []):
                groups[key].append(value)
        clauses = [(key, [value]) for key, values in groups.items() if key == "tag"
                   for value in values] + [(k, v) for k, v in groups.items() if k != "tag"]
        for key, values in clauses:
            some = ", ".join("?" * len(values))
            if not curated:
                where.append(f"id IN (SELECT sample_id FROM labels WHERE key = ?"
                             f" AND value IN ({some}))")
                args += [key, *values]
                continue
            # the index's label where the user gave the key no value, or the user's (any of a
            # sample's plain tags for key 'tag')
            where.append(
                f"(id IN (SELECT sample_id FROM labels WHERE key = ? AND value IN ({some})"
                "  AND sample_id NOT IN (SELECT s.id FROM user_labels u JOIN samples s"
                "   ON s.hash = u.hash WHERE u.key = ?))"
                " OR id IN (SELECT s.id FROM user_labels u JOIN samples s ON s.hash = u.hash"
                f"  WHERE u.key = ? AND u.value IN ({some})))")
            args += [key, *values, key, key, *values]
        if not where:
            return self.sample_ids()
        text = self.conn.execute(
            f"SELECT group_concat(id) FROM samples WHERE {' AND '.join(where)}", args
        ).fetchone()[0]
        return np.sort(int_list(text))

    def _has_path_trigrams(self) -> bool:
        """Whether this atlas has the trigram index of its paths (schema 5, made where SQLite
        has FTS5's trigram tokenizer) and this process's SQLite can read it."""
        from soundatlas.atlas.schema import trigram_search_available

        return self.schema_version >= 5 and trigram_search_available() and self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'path_trigrams'").fetchone() is not None

    def features(self, sample_id: int | SampleRecord) -> np.ndarray:
        """A sample's log-CQT frames.

        Parameters
        ----------
        sample_id : int or SampleRecord
            The sample (a record saves reading it again).

        Returns
        -------
        ndarray of float32, shape (n_frames, n_bins)
        """
        rec = sample_id if isinstance(sample_id, SampleRecord) else self.samples([sample_id])[0]
        seg = self._segment(rec.segment, rec.frame_offset + rec.n_frames)
        return np.asarray(seg[rec.frame_offset : rec.frame_offset + rec.n_frames], dtype=np.float32)

    def _segment(self, segment_id: int, n_frames: int = 0) -> np.ndarray:
        """A segment file, memory-mapped, that holds at least ``n_frames`` frames.

        Raises
        ------
        DamagedFeaturesError
            When the file is missing, cut short or not an array of frames.
        """
        # cached by file name, not id: an id may name another file after garbage collection
        # (SQLite reuses the largest rowid), and an open atlas outlives many commits (the
        # server keeps one per thread); file names are never reused
        row = self.conn.execute("SELECT file FROM segments WHERE id = ?", (segment_id,)).fetchone()
        if row is None:
            raise AtlasError(f"segment {segment_id} is missing from {self.path}")
        file = self.path / "features" / row[0]
        seg = self._segment_cache.get(row[0])
        if seg is None:
            try:
                seg = open_array(file)
            except (OSError, ValueError, EOFError) as exc:  # what np.load raises for these
                raise DamagedFeaturesError(file, array_problem(file, exc),
                                           self.features_repair_command()) from None
            if len(self._segment_cache) > 256:
                self._segment_cache.clear()
            self._segment_cache[row[0]] = seg
        problem = frames_problem(seg, n_frames)
        if problem:
            raise DamagedFeaturesError(file, problem, self.features_repair_command())
        return seg

    def each_features(self, records: Iterable[SampleRecord], *,
                      damaged: dict | None = None) -> Iterator[tuple[SampleRecord, np.ndarray]]:
        """(record, features) of each record whose features can be read, in order; after the
        last, one error naming every damaged feature file met (:func:`damaged_features`), so
        that one repair mends them all.

        Parameters
        ----------
        records : iterable of SampleRecord
            The samples.
        damaged : dict, optional
            Where to collect the damaged files instead of raising (file -> (error, samples)),
            across several calls; ``damaged_features(damaged)`` is then the error to raise.

        Raises
        ------
        AtlasError
            After the readable ones, when feature files cannot be read (without ``damaged``).
        """
        log = {} if damaged is None else damaged
        for rec in records:
            try:
                F = self.features(rec)
            except DamagedFeaturesError as exc:
                first, n = log.get(exc.file, (exc, 0))
                log[exc.file] = (first, n + 1)
                continue
            yield rec, F
        if damaged is None and log:
            raise damaged_features(log)

    def features_repair_command(self) -> str:
        """The command line that makes damaged feature files whole: ``check --repair`` marks
        their samples as changed, and ``index`` then analyses their audio again (``index`` alone
        sees their files unchanged and keeps the damaged features)."""
        atlas = shlex.quote(str(self.path.resolve()))
        library = shlex.quote(self.meta("library") or ".")
        return (f"soundatlas check --atlas {atlas} --repair && "
                f"soundatlas index {library} --atlas {atlas}")

    # -- writing -----------------------------------------------------------------------------------

    def commit_batch(
        self,
        new: list[NewSample],
        *,
        moved: list[tuple[int, str, int, int]] = (),
        failed: list[tuple[str, int | None, int | None, str, str | None]] = (),
        run_id: int | None = None,
        n_done: int | None = None,
        follows: list[tuple[str, str, str, str, str | None]] = (),
        kept_failures: list[tuple[str, int | None, int | None, str, str | None]] = (),
    ) -> list[int]:
        """Write one batch: analysed samples (with their features), moves and failures, atomically.

        A new sample at a path the atlas already holds replaces that record (its labels go with
        it; its split stays where the content is the same).

        Parameters
        ----------
        new : list of NewSample
            Newly analysed files.
        moved : list of (int, str, int, int), default ()
            (sample id, new path, size, mtime_ns) of samples whose file moved.
        failed : list of (str, int or None, int or None, str, str or None), default ()
            (path, size, mtime_ns, reason, decoded_with) of files that could not be analysed;
            ``decoded_with`` is the decoder's settings where the file's bytes are the problem
            (``LabelStore.lasting_failures``), else None.
        run_id, n_done : int, optional
            With both, the run's progress is set to ``n_done`` in the same transaction.
        follows : list of (str, str, str, str, str or None), default ()
            (old hash, whole hash, path, holder's path, split to keep): the curation of a file
            an older soundatlas fingerprinted goes over to the hash it has now, and the new
            sample keeps the split of the one it replaces (``legacy.follow``).
        kept_failures : list, default ()
            Failures as ``failed``, of paths whose sample (if any) stays: a file or folder
            the scan could not read this time (a drive not mounted) may well still be there.

        Returns
        -------
        list of int
            The ids of the new samples, in order.
        """
        segment_file, digest = self._write_segment(new) if new else (None, None)
        ids = []
        try:
            with self.transaction() as c:
                seg_id = None
                if segment_file is not None:
                    n = sum(len(s.features) for s in new)
                    seg_id = c.execute(
                        "INSERT INTO segments(file, n_frames, created, checksum)"
                        " VALUES (?, ?, ?, ?)", (segment_file.name, n, time.time(), digest),
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
                    # the same bytes analysed again (a refresh, a repair): the split stays
                    kept = c.execute("SELECT p.split FROM samples o JOIN splits p"
                                     " ON p.sample_id = o.id WHERE o.path = ? AND o.hash = ?",
                                     (s.path, s.hash)).fetchone()
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
                    c.executemany("INSERT INTO audio_labels(sample_id, key, value)"
                                  " VALUES (?, ?, ?)",
                                  [(ids[-1], k, v) for k, v in s.labels.items()])
                    c.execute("DELETE FROM failures WHERE path = ?", (s.path,))
                    if kept is not None:
                        c.execute("INSERT INTO splits(sample_id, split) VALUES (?, ?)",
                                  (ids[-1], kept[0]))
                if follows:
                    self._follow(c, follows)  # LegacyStore's, beside this part in Atlas
                changed = bool(new or moved)
                for path, *_ in failed:  # (kept_failures keep their samples)
                    changed |= c.execute("DELETE FROM samples WHERE path = ?",
                                         (path,)).rowcount > 0
                for path, size, mtime_ns, reason, decoded_with in [*failed, *kept_failures]:
                    c.execute(
                        "INSERT OR REPLACE INTO failures(path, size, mtime_ns, reason, at,"
                        " decoded_with) VALUES (?,?,?,?,?,?)",
                        (path, size, mtime_ns, reason, now, decoded_with),
                    )
                if changed:  # the label counts no longer hold (LabelStore.label_summary)
                    c.execute("DELETE FROM meta WHERE key = ?", (LABEL_SUMMARY_META,))
                if run_id is not None and n_done is not None:
                    c.execute("UPDATE runs SET n_done = ? WHERE id = ?", (n_done, run_id))
        except BaseException:
            if segment_file is not None:
                segment_file.unlink(missing_ok=True)
            raise
        return ids

    def _write_segment(self, new: list[NewSample]) -> tuple[Path, str]:
        frames = np.concatenate([s.features for s in new]).astype(FEATURE_DTYPE)
        return write_array(self.path / "features", frames)

    def remove_samples(self, ids: list[int]) -> None:
        """Remove samples (their labels, split, embeddings and vectors go with them).

        Their feature files stay until ``collect_garbage``.
        """
        with self.transaction() as c:
            for chunk in chunked(ids, 900):
                c.execute(f"DELETE FROM samples WHERE id IN ({placeholders(chunk)})", chunk)
            if ids:  # their labels went with them
                c.execute("DELETE FROM meta WHERE key = ?", (LABEL_SUMMARY_META,))


#: three characters in a row that are not LIKE wildcards: what the trigram index needs to answer
#: a LIKE from the index rather than by reading every row
_TRIGRAM_RUN = re.compile(r"[^%_]{3}")


def fold(text: str) -> str:
    """``text`` for a search that ignores case and Unicode form: composed (NFC, so a composed
    and a decomposed 'é' are alike; only a text that is not composed already is normalised),
    then case-folded. An ASCII text folds to its ``lower()``, as SQLite's LIKE compares.

    Not accents: taking them away too ('cafe' finding 'café') made a search over paths that
    are not ASCII 3.5 to 4 times as slow (decomposing and filtering every path), against 1.0
    to 1.3 times for this (``benchmarks/bench_fold.py``)."""
    if text.isascii():
        return text.lower()
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text.casefold()


def _casefold_contains(text: str, needle: str) -> bool:
    return needle in fold(text)
