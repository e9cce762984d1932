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
    sample, the file's features are the ones that sample had (a signature of them, taken before
    the samples go: :meth:`LegacyStore.sign_legacy_holders`); a holder without that signature
    (a missing item, a sample whose features were damaged) also needs the same file name;
- each take uses its holder up, so one old hash goes to as many files as had it and never to a
  new file that only shares the fingerprint. The taker keeps the replaced sample's split (its
  content did not change). ``legacy_followed`` records (old, new) pairs, which also resolve a
  tags CSV exported before the upgrade. The old hash's own rows go as soon as no holder and no
  sample has it (:func:`follow`, :meth:`LegacyStore.settle_legacy`).

A file moved before the upgrade and analysed differently after it (another ``--max-duration``,
``--refresh-features``) does not match its signature: its curation stays, as a missing item at
the path it had.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from soundatlas.atlas.store import Store, chunked, placeholders

__all__ = ["LegacyStore", "LEGACY_SCHEMA", "follow", "features_signature"]

LEGACY_SCHEMA = 9  #: the schema version that lists the holders of old hashes
_CURATION_TABLES = ("user_labels", "collection_items", "user_items")


class LegacyStore(Store):
    """The holders of hashes an older soundatlas took (see the module doc)."""

    def _has_legacy(self) -> bool:
        return self.schema_version >= LEGACY_SCHEMA

    def legacy_holders(self) -> list[tuple[str, str, str | None, int | None]]:
        """(path, old hash, features signature or None, id of the sample at that path holding
        that hash or None) of every holder not yet carried over, by path."""
        if not self._has_legacy():
            return []
        return self.conn.execute(
            "SELECT h.path, h.hash, h.features, s.id FROM legacy_holders h"
            " LEFT JOIN samples s ON s.path = h.path AND s.hash = h.hash"
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
        """Store the signature of the features of each holder that is a sample (not one
        ``check --repair`` marked), where not yet stored; a damaged feature file leaves it
        unsigned."""
        from soundatlas.atlas.samples import DamagedFeaturesError

        if not self._has_legacy():
            return
        rows = self.conn.execute(
            "SELECT s.id, h.path, h.hash FROM legacy_holders h JOIN samples s"
            " ON s.path = h.path AND s.hash = h.hash"
            " WHERE h.features IS NULL AND s.size >= 0").fetchall()
        if not rows:
            return
        records = {rec.id: rec for rec in self.samples([sid for sid, _, _ in rows])}
        signed = []
        for sid, path, old in rows:
            try:
                signed.append((features_signature(self.features(records[sid])), path, old))
            except DamagedFeaturesError:
                continue
        with self.transaction() as c:
            c.executemany("UPDATE legacy_holders SET features = ? WHERE path = ? AND hash = ?",
                          signed)

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
        with self.transaction() as c:
            c.execute("DELETE FROM legacy_holders WHERE NOT EXISTS (SELECT 1 FROM samples s"
                      " WHERE s.hash = legacy_holders.hash) AND " + " AND ".join(
                          f"NOT EXISTS (SELECT 1 FROM {t} x WHERE x.hash = legacy_holders.hash)"
                          for t in _CURATION_TABLES))
            done = [old for (old,) in c.execute(
                "SELECT DISTINCT old FROM legacy_followed f"
                " WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.hash = f.old)"
                " AND NOT EXISTS (SELECT 1 FROM legacy_holders h WHERE h.hash = f.old)"
                " AND EXISTS (SELECT 1 FROM user_items i WHERE i.hash = f.old)")]
            for chunk in chunked(done, 900):
                for table in _CURATION_TABLES:
                    c.execute(f"DELETE FROM {table} WHERE hash IN ({placeholders(chunk)})", chunk)

    def followed_hashes(self, old: str) -> list[str]:
        """The whole hashes the curation of an old hash went over to (none: not carried)."""
        if not self._has_legacy():
            return []
        return [new for (new,) in self.conn.execute(
            "SELECT new FROM legacy_followed WHERE old = ? ORDER BY new", (old,))]

    def has_legacy_holder(self, old: str) -> bool:
        """Whether a holder of the old hash is still waiting for its file."""
        return self._has_legacy() and self.conn.execute(
            "SELECT 1 FROM legacy_holders WHERE hash = ? LIMIT 1", (old,)).fetchone() is not None


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
            for table in _CURATION_TABLES:  # carried to every file that had it
                c.execute(f"DELETE FROM {table} WHERE hash = ?", (old,))


def features_signature(features: np.ndarray) -> str:
    """blake2b of a sample's features as the atlas stores them (float16): the same audio
    analysed the same way has the same signature."""
    from soundatlas.atlas.samples import FEATURE_DTYPE

    data = np.ascontiguousarray(np.asarray(features).astype(FEATURE_DTYPE, copy=False))
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()


def file_name(path: str) -> str:
    """The last part of a library path (how an unsigned holder is told from its neighbours)."""
    return os.path.basename(path)
