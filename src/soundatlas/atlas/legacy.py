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
- for a file it analyses (changed, moved, back from elsewhere), matches the file's old hash
  against the holders at the same path, else against the *vacant* holders (whose path no longer
  holds a file), and carries the curation over from the one it matches (:func:`follow`). A
  holder that was a sample also keeps a signature of its stored features
  (:meth:`LegacyStore.sign_legacy_holders`, before the samples go): a file takes it only when
  its own features are the same, so a stem that shares the fingerprint of one that moved away
  does not take the other's curation. A missing item has no features: the fingerprint alone
  decides;
- each carry uses up its holder, so one old hash goes to as many files as had it, never to a
  new file that merely shares the fingerprint; ``legacy_followed`` records (old, new) pairs,
  which also resolve a tags CSV exported before the upgrade;
- :meth:`LegacyStore.settle_legacy` drops the old hash's own rows once no holder and no sample
  is left with it, and holders with nothing to carry.
"""

from __future__ import annotations

import hashlib

import numpy as np

from soundatlas.atlas.store import Store, chunked, placeholders

__all__ = ["LegacyStore", "LEGACY_SCHEMA", "follow", "features_signature"]

LEGACY_SCHEMA = 9  #: the schema version that lists the holders of old hashes


class LegacyStore(Store):
    """The holders of hashes an older soundatlas took (see the module doc)."""

    def _has_legacy(self) -> bool:
        return self.schema_version >= LEGACY_SCHEMA

    def legacy_holders(self) -> list[tuple[str, str, str | None]]:
        """(path, old hash, features signature or None) of every holder not yet carried over,
        by path."""
        if not self._has_legacy():
            return []
        return self.conn.execute(
            "SELECT path, hash, features FROM legacy_holders ORDER BY path, hash").fetchall()

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
            rec = records[sid]
            try:
                signed.append((features_signature(self.features(rec)), path, old))
            except DamagedFeaturesError:
                continue
        if signed:
            with self.transaction() as c:
                c.executemany("UPDATE legacy_holders SET features = ? WHERE path = ? AND hash = ?",
                              signed)

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

    def rehash(self, items: list[tuple[int, str, str, str]]) -> None:
        """Give samples the whole hash of their unchanged file and carry the curation of their
        old hash over, in one transaction.

        Parameters
        ----------
        items : list of (int, str, str, str)
            (sample id, path, old hash, whole hash).
        """
        with self.transaction() as c:
            for sid, path, old, new in items:
                c.execute("UPDATE samples SET hash = ? WHERE id = ? AND hash = ?",
                          (new, sid, old))
            follow(c, [(old, new, path, path) for _sid, path, old, new in items])

    def settle_legacy(self) -> None:
        """Drop what no longer needs keeping: holders whose old hash has nothing to carry (no
        curation) and no sample; and the curation rows of an old hash that was carried over and
        that no holder and no sample has any more."""
        if not self._has_legacy():
            return
        unheld = "NOT EXISTS (SELECT 1 FROM samples s WHERE s.hash = {0})"
        nothing = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {t} x WHERE x.hash = {{0}})"
                               for t in ("user_items", "user_labels", "collection_items"))
        with self.transaction() as c:
            c.execute("DELETE FROM legacy_holders WHERE "
                      + unheld.format("legacy_holders.hash") + " AND "
                      + nothing.format("legacy_holders.hash"))
            done = [old for (old,) in c.execute(
                "SELECT DISTINCT old FROM legacy_followed f WHERE "
                + unheld.format("f.old")
                + " AND NOT EXISTS (SELECT 1 FROM legacy_holders h WHERE h.hash = f.old)")]
            for chunk in chunked(done, 900):
                marks = placeholders(chunk)
                for table in ("user_labels", "collection_items", "user_items"):
                    c.execute(f"DELETE FROM {table} WHERE hash IN ({marks})", chunk)

    def followed_hashes(self, old: str) -> list[str]:
        """The whole hashes the curation of an old hash went over to (none: not carried)."""
        if not self._has_legacy():
            return []
        return [new for (new,) in self.conn.execute(
            "SELECT new FROM legacy_followed WHERE old = ? ORDER BY new", (old,))]


def follow(c, items) -> None:
    """Carry curation from old hashes over to whole ones, inside the caller's transaction.

    Parameters
    ----------
    c : sqlite3.Connection
        In a transaction.
    items : iterable of (str, str, str, str)
        (old hash, whole hash, the receiving file's path, the holder's path). The holder (path,
        old hash) is used up. Tags, stars, notes and collection places are copied (a label key
        the whole hash already has a value for keeps it; plain tags add up), the item's last
        path is the receiving file's; the old hash's rows stay until ``settle_legacy``.
    """
    for old, new, path, holder in items:
        c.execute("DELETE FROM legacy_holders WHERE path = ? AND hash = ?", (holder, old))
        if old == new:  # a file of up to 4 MiB: its hash was always the whole hash
            continue
        # what stays keyed by the old hash is shown, while missing, where a holder still is
        c.execute("UPDATE user_items SET path = (SELECT path FROM legacy_holders"
                  " WHERE hash = ?1 ORDER BY path LIMIT 1) WHERE hash = ?1"
                  " AND EXISTS (SELECT 1 FROM legacy_holders WHERE hash = ?1)", (old,))
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


def features_signature(features: np.ndarray) -> str:
    """blake2b of a sample's features as the atlas stores them (float16): the same audio
    analysed the same way has the same signature."""
    from soundatlas.atlas.samples import FEATURE_DTYPE

    data = np.ascontiguousarray(np.asarray(features).astype(FEATURE_DTYPE, copy=False))
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()
