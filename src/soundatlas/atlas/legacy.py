"""Hashes an older soundatlas took, and carrying the user's curation over from them (schema 9).

Before schema 9 a file over 4 MiB was hashed by its size, first and last 2 MiB
(``pipeline.legacy_fingerprint``), which different files share (two stems of one song, as long
and silent at both ends). Content hashes now read the whole file. The user's tags, stars, notes
and collection places are keyed by hash, so what was keyed by such a fingerprint ``L`` must go
over to the whole hash ``W`` of each file that had it, and to no other file.

Migration 9 lists the *holders* of old hashes (``legacy_holders``: a path and the hash the file
there had): each sample that may have been fingerprinted (over 4 MiB, or marked by ``check
--repair``, whose size is not known), and each missing item (a hash no sample holds, at the path
it was last seen: its file may come back). ``index`` then:

- hashes whole each holder's file that has not changed since (:meth:`LegacyStore.rehash`);
- lets a file it analyses take a holder (:func:`follow`, in the batch's commit):
  - at its own path, where a sample still holds the old hash (the file changed its date, or was
    marked): when the file's old hash is that hash;
  - else a *vacant* holder (no sample that is still there holds it: the file moved, was away,
    or is a missing item): when the file's old hash is that hash and, where the holder was a
    sample, the file's features are close to the ones that sample had (a coarse summary of
    them, taken before the samples go: :meth:`LegacyStore.sign_legacy_holders`; close, because
    an older soundatlas's features may differ by a float16 step). A holder without a summary
    (a missing item, a sample whose features were damaged) or with a silent one (the analysed
    part holds no sound) needs the same file name instead; where several holders match, the
    one with the file's name is taken, and none if no name decides;
- each take uses its holder up, so one old hash goes to as many files as had it and not to a
  new file that only shares the fingerprint. The taker keeps the split of the sample the holder
  was (its content did not change). ``legacy_followed`` records (old, new) pairs, which also
  resolve a tags CSV exported before the upgrade. The old hash's own rows go as soon as no
  holder and no sample has it (:func:`follow`, :meth:`LegacyStore.settle_legacy`).

A file moved before the upgrade and analysed differently after it (another ``--max-duration``)
does not match its summary: its curation stays, as a missing item at the path it had.
"""

from __future__ import annotations

import base64
import os

import numpy as np

from soundatlas.atlas.store import Store, chunked, placeholders
from soundatlas.errors import AtlasError

__all__ = ["LegacyStore", "LEGACY_SCHEMA", "follow", "features_summary", "summaries_match",
           "is_silent", "file_name"]

LEGACY_SCHEMA = 9  #: the schema version that lists the holders of old hashes
_CURATION_TABLES = ("user_labels", "collection_items", "user_items")


class LegacyStore(Store):
    """The holders of hashes an older soundatlas took (see the module doc)."""

    def _has_legacy(self) -> bool:
        return self.schema_version >= LEGACY_SCHEMA

    def legacy_holders(self) -> list[tuple[str, str, str | None, int | None, str | None]]:
        """(path, old hash, features summary or None, id of the sample at that path holding
        that hash or None, the split it had or None) of every holder not yet carried over, by
        path."""
        if not self._has_legacy():
            return []
        return self.conn.execute(
            "SELECT h.path, h.hash, h.features, s.id,"
            " COALESCE((SELECT p.split FROM splits p WHERE p.sample_id = s.id), h.split)"
            " FROM legacy_holders h LEFT JOIN samples s ON s.path = h.path AND s.hash = h.hash"
            " ORDER BY h.path, h.hash").fetchall()

    def legacy_samples(self) -> list[tuple[int, str, int, int, str]]:
        """(id, path, size, mtime_ns, old hash) of the samples over 4 MiB that hold the hash of
        their holder, by id: those whose file :meth:`rehash` hashes whole when it has not
        changed."""
        if not self._has_legacy():
            return []
        return self.conn.execute(
            "SELECT s.id, s.path, s.size, s.mtime_ns, s.hash FROM samples s"
            " JOIN legacy_holders h ON h.path = s.path AND h.hash = s.hash"
            " WHERE s.size > 4194304 ORDER BY s.id").fetchall()

    def sign_legacy_holders(self) -> None:
        """Store, for each holder that is a sample, the summary of its features (not for one
        ``check --repair`` marked, or whose feature file is damaged) and its stored split, where
        not yet stored: what the file that takes it is matched by and keeps, after the sample
        has gone."""
        if not self._has_legacy():
            return
        rows = self.conn.execute(
            "SELECT s.id, h.path, h.hash, s.size, (SELECT p.split FROM splits p"
            " WHERE p.sample_id = s.id) FROM legacy_holders h JOIN samples s"
            " ON s.path = h.path AND s.hash = h.hash"
            " WHERE h.features IS NULL AND h.split IS NULL").fetchall()
        if not rows:
            return
        records = {rec.id: rec for rec in self.samples([row[0] for row in rows])}
        signed = []
        for sid, path, old, size, split in rows:
            summary = None
            if size >= 0:
                try:
                    summary = features_summary(self.features(records[sid]))
                except AtlasError:  # a damaged feature file: matched by its name instead
                    pass
            signed.append((summary, split, path, old))
        with self.transaction() as c:
            c.executemany("UPDATE legacy_holders SET features = ?, split = ?"
                          " WHERE path = ? AND hash = ?", signed)

    def _follow(self, c, items) -> None:
        """:func:`follow`, for ``SampleStore.commit_batch`` (which has no import of it)."""
        follow(c, items)

    def rehash(self, items: list[tuple[int, str, str, str]]) -> None:
        """Give samples the whole hash of their unchanged file and carry the curation of their
        old hash over, in one transaction.

        Parameters
        ----------
        items : list of (int, str, str, str)
            (sample id, path, old hash, whole hash).
        """
        with self.transaction() as c:
            for sid, _path, old, new in items:
                c.execute("UPDATE samples SET hash = ? WHERE id = ? AND hash = ?",
                          (new, sid, old))
            follow(c, [(old, new, path, path, None) for _sid, path, old, new in items])

    def settle_legacy(self) -> None:
        """Drop what no longer needs keeping: holders whose old hash has nothing to carry (no
        curation) and no sample; and the curation rows of an old hash that was carried over and
        that no holder and no sample has any more."""
        if not self._has_legacy():
            return
        with self.transaction() as c:  # curation: a label, a collection place or a note
            c.execute("DELETE FROM legacy_holders WHERE NOT EXISTS (SELECT 1 FROM samples s"
                      " WHERE s.hash = legacy_holders.hash)"
                      " AND NOT EXISTS (SELECT 1 FROM user_labels u"
                      " WHERE u.hash = legacy_holders.hash)"
                      " AND NOT EXISTS (SELECT 1 FROM collection_items x"
                      " WHERE x.hash = legacy_holders.hash)"
                      " AND NOT EXISTS (SELECT 1 FROM user_items i"
                      " WHERE i.hash = legacy_holders.hash AND i.note IS NOT NULL)")
            done = [old for (old,) in c.execute(
                "SELECT DISTINCT old FROM legacy_followed f"
                " WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.hash = f.old)"
                " AND NOT EXISTS (SELECT 1 FROM legacy_holders h WHERE h.hash = f.old)"
                " AND EXISTS (SELECT 1 FROM user_items i WHERE i.hash = f.old)")]
            _drop_curation(c, done)

    def followed_hashes(self, old: str) -> list[str]:
        """The whole hashes the curation of an old hash went over to (none: not carried)."""
        if not self._has_legacy():
            return []
        return [new for (new,) in self.conn.execute(
            "SELECT new FROM legacy_followed WHERE old = ? ORDER BY new", (old,))]

    def still_held(self, old: str) -> bool:
        """Whether a sample, or a holder waiting for its file, still has the old hash."""
        return (self.conn.execute("SELECT 1 FROM samples WHERE hash = ? LIMIT 1",
                                  (old,)).fetchone() is not None
                or self._has_legacy() and self.conn.execute(
                    "SELECT 1 FROM legacy_holders WHERE hash = ? LIMIT 1",
                    (old,)).fetchone() is not None)


def follow(c, items) -> None:
    """Carry curation from old hashes over to whole ones, inside the caller's transaction (after
    the batch's samples are written).

    Parameters
    ----------
    c : sqlite3.Connection
        In a transaction.
    items : iterable of (str, str, str, str, str or None)
        (old hash, whole hash, the receiving file's path, the holder's path, the split of the
        sample the holder was, for a new sample at the receiving path to keep; None: none to
        set). The holder (its path, the old hash) is used up. Tags, stars, notes and collection
        places are copied (a label key the whole hash already has a value for keeps it; plain
        tags add up); the item's last path is the receiving file's. The old hash's rows go once
        no holder and no sample has it.
    """
    for old, new, path, holder, split in items:
        c.execute("DELETE FROM legacy_holders WHERE path = ? AND hash = ?", (holder, old))
        if split is not None:
            c.execute("INSERT OR REPLACE INTO splits(sample_id, split) SELECT id, ? FROM samples"
                      " WHERE path = ? AND hash = ?", (split, path, new))
        if old == new:  # a file of up to 4 MiB: its hash was always the whole hash
            continue
        c.execute("INSERT OR IGNORE INTO legacy_followed(old, new) VALUES (?, ?)", (old, new))
        c.execute("INSERT OR IGNORE INTO user_items(hash, path, note, updated)"
                  " SELECT ?, ?, note, updated FROM user_items WHERE hash = ?", (new, path, old))
        c.execute("INSERT OR IGNORE INTO user_labels(hash, key, value, suggested, confidence,"
                  " created) SELECT ?, key, value, suggested, confidence, created"
                  " FROM user_labels WHERE hash = ? AND (key = 'tag' OR key NOT IN"
                  " (SELECT key FROM user_labels WHERE hash = ?))", (new, old, new))
        c.execute("INSERT OR IGNORE INTO collection_items(collection_id, hash, position, added)"
                  " SELECT collection_id, ?, position, added FROM collection_items"
                  " WHERE hash = ?", (new, old))
        waiting = c.execute("SELECT path FROM legacy_holders WHERE hash = ? ORDER BY path"
                            " LIMIT 1", (old,)).fetchone()
        if waiting is not None:  # shown, while missing, where a file that had it was
            c.execute("UPDATE user_items SET path = ? WHERE hash = ?", (waiting[0], old))
        elif c.execute("SELECT 1 FROM samples WHERE hash = ? LIMIT 1", (old,)).fetchone() is None:
            _drop_curation(c, [old])  # carried to every file that had it


def _drop_curation(c, hashes: list[str]) -> None:
    """Delete the tags, stars, notes and collection places keyed by ``hashes`` (old hashes
    whose curation every file that had them has taken)."""
    for chunk in chunked(hashes, 900):
        for table in _CURATION_TABLES:
            c.execute(f"DELETE FROM {table} WHERE hash IN ({placeholders(chunk)})", chunk)


#: a summary's blocks: frames pooled into at most this many spans, bins into groups of this many
_SUMMARY_SPANS, _SUMMARY_BINS = 16, 8
#: the most two summaries of one file's features may differ by, in log-CQT units (an older
#: soundatlas's features differ from today's by up to a float16 step, 0.008 at the top)
SUMMARY_TOLERANCE = 0.05
#: a summary whose every block is below this holds no sound: it tells files apart by nothing
SILENT = 0.05


def features_summary(features: np.ndarray) -> str:
    """A coarse summary of a sample's features: its frame count and the mean of each block of
    (at most 16 spans of frames) x (groups of 8 bins), as text. Two analyses of one file with
    the same settings give summaries within :data:`SUMMARY_TOLERANCE`; two different sounds,
    far more apart."""
    F = np.asarray(features, dtype=np.float32)
    if F.ndim != 2 or len(F) == 0:
        return f"{len(F)}:0x0:"
    spans = np.array_split(F, min(_SUMMARY_SPANS, len(F)), axis=0)
    grid = np.stack([[g.mean() for g in np.array_split(
        span, -(-F.shape[1] // _SUMMARY_BINS), axis=1)] for span in spans])
    data = base64.b64encode(grid.astype("<f2").tobytes()).decode("ascii")
    return f"{len(F)}:{grid.shape[0]}x{grid.shape[1]}:{data}"


def _grid(summary: str) -> tuple[str, np.ndarray]:
    head, shape, data = summary.split(":", 2)
    rows, cols = (int(x) for x in shape.split("x"))
    grid = np.frombuffer(base64.b64decode(data), "<f2").astype(np.float32)
    return f"{head}:{shape}", grid.reshape(rows, cols)


def summaries_match(a: str, b: str) -> bool:
    """Whether two feature summaries are of one sound analysed alike: the same frame count and
    blocks, each within :data:`SUMMARY_TOLERANCE`."""
    (ka, ga), (kb, gb) = _grid(a), _grid(b)
    return ka == kb and ga.size > 0 and float(np.abs(ga - gb).max()) <= SUMMARY_TOLERANCE


def is_silent(summary: str) -> bool:
    """Whether a summary holds no sound (a stem silent through its analysed part)."""
    _key, grid = _grid(summary)
    return grid.size == 0 or float(grid.max()) < SILENT


def file_name(path: str) -> str:
    """The last part of a library path (how an unsigned holder is told from its neighbours)."""
    return os.path.basename(path)
