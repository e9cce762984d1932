"""What the user makes of the library: tags, stars, notes and collections (schema 6).

Everything here is keyed by a file's content hash, not by its sample id or path, so it follows
a file that is moved or renamed and survives re-indexing and new models: ``index`` writes these
tables only to carry the curation of a hash an older soundatlas took over to the file's whole
hash (``atlas.legacy``, schema 9), and removing a sample leaves them alone. What a hash no
sample has any more is *missing* (the file was deleted, or changed): it is kept, shown with the
path it last had, until the user forgets it (:meth:`CurationStore.forget_missing`). Two files
with the same bytes are one item.

Tags are labels. A tag is either a plain word (``punchy``), one of the values of the
many-valued label ``tag``, or ``KEY:VALUE`` (``mood:dark``), the label ``KEY`` of that sample
(one value per key: tagging ``mood:bright`` replaces ``mood:dark``; over an index label of the
same key, the user's value wins). A star is the label ``starred`` = ``yes``. The label reads of
:class:`~soundatlas.atlas.labels.LabelStore` include them, so tags colour the map, filter
searches and train neighbourhoods like any label; a sample with several plain tags has, as its
one ``tag`` value for colouring and training, the tag most samples carry (ties: the first by
name), and matches a ``tag`` filter on any of them.

Tables (``schema.MIGRATIONS[5]``): ``user_items`` (a hash's last path and its note),
``user_labels`` (hash, key, value; ``suggested`` with a ``confidence`` when ``soundatlas
suggest --apply`` stored it), ``collections`` and ``collection_items`` (ordered).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable

from soundatlas.atlas.store import Store, chunked, id_chunks, placeholders
from soundatlas.errors import NotFoundError, ParameterError
from soundatlas.text import unicode_forms

__all__ = ["CurationStore", "TAG_KEY", "STAR_KEY", "parse_tag", "tag_text", "Collection",
           "MAX_TAG_LENGTH"]

TAG_KEY = "tag"  #: the many-valued label of plain tags
STAR_KEY = "starred"  #: the label of a star (value ``yes``)
STAR_VALUE = "yes"
MAX_TAG_LENGTH = 100
MAX_NOTE_LENGTH = 10_000
CURATION_SCHEMA = 6  #: the schema version that has these tables


#: a sample's content hash as the atlas stores it (blake2b, 16 bytes, in lower-case hex)
_CONTENT_HASH = re.compile(r"[0-9a-f]{32}")


def parse_tag(text: str) -> tuple[str, str]:
    """(label key, value) of a tag: ``punchy`` -> ("tag", "punchy"); ``mood:dark`` -> ("mood",
    "dark").

    Raises
    ------
    ParameterError
        For an empty tag, one longer than ``MAX_TAG_LENGTH``, with a comma, a control character
        or space at either end, an empty key or value, the value ``*`` (a removal's "every
        value") or the key ``starred`` (use a star).
    """
    if not isinstance(text, str):
        raise ParameterError(f"a tag must be text, not {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)  # 'café' typed or pasted from a macOS name: one tag
    shown = repr(text) if len(text) <= 60 else repr(text[:57] + "...")
    if not text or text != text.strip():
        raise ParameterError(f"tag {shown}: empty, or space at an end")
    if len(text) > MAX_TAG_LENGTH:
        raise ParameterError(f"tag {shown}: longer than {MAX_TAG_LENGTH} characters")
    if "," in text or any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise ParameterError(f"tag {shown}: a comma or a control character")
    if text == "*" or text.endswith(":*"):  # a removal's "every value": no tag could be removed
        raise ParameterError(f"tag {shown}: '*' as a value means every value of its key "
                             "(--remove '*', 'KEY:*'); it cannot be a tag")
    if ":" not in text:
        return TAG_KEY, text
    key, value = text.split(":", 1)
    if not key.strip() or not value.strip() or key != key.strip() or value != value.strip():
        raise ParameterError(f"tag {shown}: KEY:VALUE needs both, without spaces around ':'")
    if key == STAR_KEY:
        raise ParameterError(f"tag {shown}: '{STAR_KEY}' is the star's label; star the sample")
    if key == TAG_KEY:  # 'tag:x' is the plain tag x
        return TAG_KEY, value
    return key, value


def _add_label(c, h: str, key: str, value: str, suggested: bool, confidence: float | None,
               now: float) -> int:
    """Add one user label to content hash ``h``: (item, label) pairs changed."""
    changed = 0
    if key != TAG_KEY:  # one value per key
        changed += c.execute("DELETE FROM user_labels WHERE hash = ? AND key = ? AND value != ?",
                             (h, key, value)).rowcount
    # a tag the user adds is the user's, also one suggested before (accepted)
    return changed + c.execute(
        "INSERT INTO user_labels(hash, key, value, suggested, confidence, created)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(hash, key, value) DO UPDATE SET"
        " suggested = 0, confidence = NULL"
        " WHERE excluded.suggested = 0 AND user_labels.suggested = 1",
        (h, key, value, int(suggested), confidence, now)).rowcount


def _removal(text: str) -> tuple[str, str]:
    """(key, value) a removal names; value ``*``: every value of the key."""
    if text == "*":
        return TAG_KEY, "*"
    if isinstance(text, str) and text.endswith(":*") and text[:-2]:
        key = text[:-2]
        if key == TAG_KEY:
            return TAG_KEY, "*"
        try:  # the key as a tag would have it
            return parse_tag(f"{key}:x")[0], "*"
        except ParameterError as exc:  # named as the user wrote it, not as the check's tag
            raise ParameterError(str(exc).replace(repr(f"{key}:x"), repr(text), 1)) from None
    return parse_tag(text)


def _stored_forms(key: str, value: str) -> tuple[tuple[list[str], str], tuple[list[str], str]]:
    """For each of a parsed tag's key and value: (its composed and decomposed forms, the SQL
    placeholders for them). Tags are stored composed (:func:`parse_tag`); one stored before
    they were may be decomposed, and a lookup or a removal finds it too."""
    out = []
    for text in (key, value):
        forms = unicode_forms(text)
        out.append((forms, ", ".join("?" * len(forms))))
    return out[0], out[1]


def tag_text(key: str, value: str) -> str:
    """The tag of a user label: the inverse of :func:`parse_tag`."""
    return value if key == TAG_KEY else f"{key}:{value}"


@dataclass(frozen=True)
class Collection:
    """A collection: its name, its items in order (content hashes) and when it was made."""

    name: str
    hashes: tuple[str, ...]
    created: float


class CurationStore(Store):
    """Tags, stars, notes and collections, keyed by content hash (see the module doc)."""

    # -- what a read needs ---------------------------------------------------------------------

    def _has_curation(self) -> bool:
        """Whether the atlas has the curation tables (an atlas of an older schema opened
        read-only has none: everything reads as empty)."""
        return self.schema_version >= CURATION_SCHEMA

    def hashes_of(self, ids: Iterable[int]) -> dict[int, str]:
        """sample id -> content hash, in the order of ``ids``; raises NotFoundError naming
        ids that are not samples."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        found: dict[int, str] = {}
        for chunk in id_chunks(ids):
            found.update(self.conn.execute(
                f"SELECT id, hash FROM samples WHERE id IN ({placeholders(chunk)})", chunk))
        unknown = [i for i in ids if i not in found]
        if unknown:
            shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
            raise NotFoundError(f"no samples with ids {shown}")
        return {i: found[i] for i in ids}

    def copies_elsewhere(self, ids: Iterable[int]) -> int:
        """How many samples not among ``ids`` hold the sound of one of them (a copy at another
        path): what the user's tags, stars and notes on ``ids`` reach besides them."""
        ids = set(int(i) for i in ids)
        hashes = list(set(self.hashes_of(ids).values()))
        total = 0
        for chunk in chunked(hashes, 900):  # SQLite's limit on parameters
            total += self.conn.execute(
                f"SELECT COUNT(*) FROM samples WHERE hash IN ({placeholders(chunk)})",
                chunk).fetchone()[0]
        return total - len(ids)

    def _touch(self, c, ids_hashes: dict[int, str], now: float) -> None:
        """Record each hash's current path in ``user_items`` (what a missing item shows)."""
        for chunk in id_chunks(list(ids_hashes)):
            c.execute(
                "INSERT INTO user_items(hash, path, updated)"
                f" SELECT hash, path, ? FROM samples WHERE id IN ({placeholders(chunk)})"
                " ON CONFLICT(hash) DO UPDATE SET path = excluded.path, updated = excluded.updated",
                [now, *chunk])

    @contextmanager
    def _writing(self, ids: Iterable[int]):
        """A write transaction about samples ``ids``: yields (connection, their distinct
        content hashes, now), with each hash's current path recorded (``_touch``)."""
        hashes = self.hashes_of(ids)
        now = time.time()
        with self.transaction() as c:
            self._touch(c, hashes, now)
            yield c, list(dict.fromkeys(hashes.values())), now

    def user_label_rows(self, *, key: str | None = None, ids: Iterable[int] | None = None,
                        suggested: bool = True) -> list[tuple[int, str, str]]:
        """(sample id, key, value) of the user's labels on present samples (tags and stars),
        for one ``key`` and some ``ids`` when given, and without those suggested from the map
        and not yet accepted when ``suggested`` is False; by sample id, key, value."""
        if not self._has_curation():
            return []
        where, args = [], []
        if key is not None:
            where.append("u.key = ?")
            args.append(key)
        if not suggested:
            where.append("u.suggested = 0")
        sql = ("SELECT s.id, u.key, u.value FROM user_labels u JOIN samples s ON s.hash = u.hash"
               + (" WHERE " + " AND ".join(where) if where else ""))
        if ids is None:
            return sorted(self.conn.execute(sql, args).fetchall())
        out = []
        for chunk in id_chunks(list(dict.fromkeys(ids))):
            out += self.conn.execute(
                sql + (" AND " if where else " WHERE ") + f"s.id IN ({placeholders(chunk)})",
                [*args, *chunk]).fetchall()
        return sorted(out)

    def user_label_keys(self) -> list[str]:
        """The keys of the user's labels on present samples, sorted."""
        if not self._has_curation():
            return []
        return [k for (k,) in self.conn.execute(
            "SELECT DISTINCT u.key FROM user_labels u WHERE EXISTS"
            " (SELECT 1 FROM samples s WHERE s.hash = u.hash) ORDER BY u.key")]

    def tag_counts(self) -> tuple[dict[str, int], int]:
        """(tag text -> present samples the user gave it, sorted by text; samples starred):
        the user's own labels, not the index's labels of the same key and value."""
        tags: Counter = Counter()
        n_starred = 0
        for _, key, value in self.user_label_rows():
            if key == STAR_KEY:
                n_starred += 1
            else:
                tags[tag_text(key, value)] += 1
        return dict(sorted(tags.items())), n_starred

    def tag_ranking(self, *, suggested: bool = True) -> dict[str, int]:
        """Plain tag -> number of present samples that carry it (without the tags suggested
        and not accepted when ``suggested`` is False)."""
        return Counter(v for _, _, v in self.user_label_rows(key=TAG_KEY, suggested=suggested))

    @staticmethod
    def one_tag(tags: Iterable[str], ranking: dict[str, int]) -> str:
        """The one ``tag`` value of a sample with these plain tags: the most carried."""
        return min(tags, key=lambda t: (-ranking.get(t, 0), t))

    # -- tags and stars --------------------------------------------------------------------------

    def tag(self, ids: Iterable[int], *, add: Iterable[str] = (), remove: Iterable[str] = (),
            suggested: bool = False, confidence: float | None = None) -> int:
        """Add and remove tags on samples (removals first), in one transaction.

        Parameters
        ----------
        ids : iterable of int
            Sample ids.
        add, remove : iterable of str
            Tags (:func:`parse_tag`). Adding ``KEY:VALUE`` replaces the sample's other value of
            ``KEY``; removing ``KEY:*`` removes any value of ``KEY``, and ``*`` every plain
            tag.
        suggested : bool, default False
            Mark the added tags as suggestions from the map (``soundatlas suggest --apply``);
            a tag the user added stays the user's, and one the user adds that was suggested
            becomes the user's (accepted).
        confidence : float, optional
            The suggestion's confidence, stored with it.

        Returns
        -------
        int
            How many (item, tag) pairs changed.

        Raises
        ------
        ParameterError
            For a bad tag or an id that is not a sample (nothing is written).
        """
        adds = [parse_tag(t) for t in add]
        removes = [_removal(t) for t in remove]
        changed = 0
        with self._writing(ids) as (c, hashes, now):
            for h in hashes:
                for key, value in removes:
                    keys, values = _stored_forms(key, value)
                    if value == "*":
                        changed += c.execute(
                            f"DELETE FROM user_labels WHERE hash = ? AND key IN ({keys[1]})",
                            (h, *keys[0])).rowcount
                    else:
                        changed += c.execute(
                            f"DELETE FROM user_labels WHERE hash = ? AND key IN ({keys[1]})"
                            f" AND value IN ({values[1]})", (h, *keys[0], *values[0])).rowcount
                for key, value in adds:
                    changed += _add_label(c, h, key, value, suggested, confidence, now)
        return changed

    def add_suggestions(self, groups: Iterable[tuple[Iterable[int], str, float]]) -> int:
        """Store tags suggested from the map, all in one transaction (``suggest --apply``).

        Parameters
        ----------
        groups : iterable of (ids, tag, confidence)
            Each tag (:func:`parse_tag`) goes on its samples as a suggestion with its
            confidence, as ``tag(ids, add=[tag], suggested=True, confidence=...)`` does; the
            answer and the errors are :meth:`tag`'s, and nothing is written before a bad tag
            or id is found.
        """
        parsed = [([int(i) for i in ids], parse_tag(tag), confidence)
                  for ids, tag, confidence in groups]
        changed = 0
        with self._writing([i for ids, _, _ in parsed for i in ids]) as (c, _, now):
            hash_of = self.hashes_of(i for ids, _, _ in parsed for i in ids)
            for ids, (key, value), confidence in parsed:
                for h in dict.fromkeys(hash_of[i] for i in ids):
                    changed += _add_label(c, h, key, value, True, confidence, now)
        return changed

    def star(self, ids: Iterable[int], starred: bool = True) -> int:
        """Star (or unstar) samples; returns how many changed."""
        changed = 0
        with self._writing(ids) as (c, hashes, now):
            for h in hashes:
                if starred:
                    changed += c.execute(
                        "INSERT INTO user_labels(hash, key, value, suggested, created)"
                        " VALUES (?, ?, ?, 0, ?) ON CONFLICT DO NOTHING",
                        (h, STAR_KEY, STAR_VALUE, now)).rowcount
                else:
                    changed += c.execute("DELETE FROM user_labels WHERE hash = ? AND key = ?",
                                         (h, STAR_KEY)).rowcount
        return changed

    def set_note(self, sample_id: int, note: str | None) -> None:
        """A sample's note (None or empty: none)."""
        if note is not None and len(note) > MAX_NOTE_LENGTH:
            raise ParameterError(f"a note of {len(note)} characters: at most {MAX_NOTE_LENGTH}")
        hashes = self.hashes_of([sample_id])
        with self.transaction() as c:
            self._touch(c, hashes, time.time())
            c.execute("UPDATE user_items SET note = ? WHERE hash = ?",
                      (note or None, hashes[int(sample_id)]))

    def curation_of(self, ids: Iterable[int]) -> dict[int, dict]:
        """sample id -> {starred, tags (sorted), suggested (tags from the map, with their
        confidence), note, collections (names)} for those of ``ids`` with anything."""
        ids = list(dict.fromkeys(int(i) for i in ids))  # an id in two chunks: read twice
        if not self._has_curation() or not ids:
            return {}
        out: dict[int, dict] = {}

        def entry(sid):
            return out.setdefault(sid, {"starred": False, "tags": [], "suggested": {},
                                        "note": None, "collections": []})

        for chunk in id_chunks(ids):
            q = placeholders(chunk)
            for sid, key, value, suggested, conf in self.conn.execute(
                    "SELECT s.id, u.key, u.value, u.suggested, u.confidence FROM user_labels u"
                    f" JOIN samples s ON s.hash = u.hash WHERE s.id IN ({q})"
                    " ORDER BY s.id, u.key, u.value", chunk):
                e = entry(sid)
                if key == STAR_KEY:
                    e["starred"] = True
                    continue
                e["tags"].append(tag_text(key, value))
                if suggested:
                    e["suggested"][tag_text(key, value)] = conf
            for sid, note in self.conn.execute(
                    "SELECT s.id, i.note FROM user_items i JOIN samples s ON s.hash = i.hash"
                    f" WHERE s.id IN ({q}) AND i.note IS NOT NULL", chunk):
                entry(sid)["note"] = note
            for sid, name in self.conn.execute(
                    "SELECT s.id, c.name FROM collection_items ci"
                    " JOIN collections c ON c.id = ci.collection_id"
                    f" JOIN samples s ON s.hash = ci.hash WHERE s.id IN ({q})"
                    " ORDER BY s.id, c.name", chunk):
                entry(sid)["collections"].append(name)
        for e in out.values():
            e["tags"].sort()
        return out

    def ids_with(self, *, tag: str | None = None, starred: bool | None = None,
                 collection: str | None = None) -> set[int]:
        """Present samples that carry ``tag`` (any of a sample's plain tags; ``KEY:VALUE``),
        are starred, or are in ``collection`` (each given condition; all must hold)."""
        sets = []
        if tag is not None:
            key, value = parse_tag(tag)
            sets.append({sid for sid, _, _ in self._rows_with(key, value)})
        if starred is not None:
            have = {sid for sid, _, _ in self.user_label_rows(key=STAR_KEY)}
            sets.append(have if starred else set(self._all_ids()) - have)
        if collection is not None:
            sets.append(self.collection_samples(collection))
        return set.intersection(*sets) if sets else set()

    def _rows_with(self, key: str, value: str):
        if not self._has_curation():
            return []
        keys, values = _stored_forms(key, value)
        return self.conn.execute(
            "SELECT s.id, u.key, u.value FROM user_labels u JOIN samples s ON s.hash = u.hash"
            f" WHERE u.key IN ({keys[1]}) AND u.value IN ({values[1]})",
            (*keys[0], *values[0])).fetchall()

    def _all_ids(self) -> list[int]:
        return [i for (i,) in self.conn.execute("SELECT id FROM samples")]

    # -- collections -----------------------------------------------------------------------------

    def collections(self) -> list[dict]:
        """Every collection: {name, n (items), n_missing (items no sample has), created}, by
        name."""
        if not self._has_curation():
            return []
        return [{"name": name, "n": n, "n_missing": missing, "created": created}
                for name, n, missing, created in self.conn.execute(
                    "SELECT c.name, COUNT(ci.hash),"
                    " SUM(ci.hash IS NOT NULL AND NOT EXISTS"
                    "     (SELECT 1 FROM samples s WHERE s.hash = ci.hash)), c.created"
                    " FROM collections c LEFT JOIN collection_items ci ON ci.collection_id = c.id"
                    " GROUP BY c.id ORDER BY c.name")]

    def _collection_id(self, name: str) -> int:
        cid = self._find_collection(self.conn, name) if self._has_curation() else None
        if cid is None:
            raise NotFoundError(f"no collection named {name!r}")
        return cid

    @staticmethod
    def _find_collection(c, name: str) -> int | None:
        """The id of the collection ``name`` names: as written, composed or decomposed (a name
        stored before names were composed may be either)."""
        if not isinstance(name, str):
            return None
        for form in unicode_forms(name):
            row = c.execute("SELECT id FROM collections WHERE name = ?", (form,)).fetchone()
            if row is not None:
                return row[0]
        return None

    @staticmethod
    def _check_name(name: str) -> str:
        if not isinstance(name, str) or not name.strip() or name != name.strip() \
                or len(name) > MAX_TAG_LENGTH or name in (".", "..") \
                or any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
            # '.' and '..' would be a URL's dot segments (browsers drop them from the page's
            # /api/collections/NAME); a '/' is fine, the routes take the rest of the path
            raise ParameterError(f"collection name {name!r}: 1 to {MAX_TAG_LENGTH} characters, "
                                 "not '.' or '..', no control characters, no space at either end")
        return unicodedata.normalize("NFC", name)  # as a tag (parse_tag)

    def create_collection(self, name: str) -> None:
        """A new, empty collection; ParameterError when the name is taken or not a name."""
        name = self._check_name(name)
        with self.transaction() as c:
            if self._find_collection(c, name) is not None:
                raise ParameterError(f"a collection named {name!r} exists already")
            c.execute("INSERT INTO collections(name, created) VALUES (?, ?)", (name, time.time()))

    def rename_collection(self, old: str, new: str) -> None:
        """Rename a collection; ParameterError for an unknown one or a name taken."""
        new = self._check_name(new)
        with self.transaction() as c:
            cid = self._collection_id(old)
            if self._find_collection(c, new) not in (None, cid):
                raise ParameterError(f"a collection named {new!r} exists already")
            c.execute("UPDATE collections SET name = ? WHERE id = ?", (new, cid))

    def delete_collection(self, name: str) -> None:
        """Delete a collection (its samples and their tags stay)."""
        with self.transaction() as c:
            c.execute("DELETE FROM collections WHERE id = ?", (self._collection_id(name),))

    def add_to_collection(self, name: str, ids: Iterable[int], *, create: bool = False) -> int:
        """Append samples to a collection (those in it already keep their place); with
        ``create``, make it when absent. Returns how many were added."""
        name = self._check_name(name)
        with self._writing(ids) as (c, hashes, now):
            cid = self._find_collection(c, name)
            if cid is None and not create:
                raise NotFoundError(f"no collection named {name!r}")
            if cid is None:
                cid = c.execute("INSERT INTO collections(name, created) VALUES (?, ?)",
                                (name, now)).lastrowid
            end = c.execute("SELECT COALESCE(MAX(position), -1) FROM collection_items"
                            " WHERE collection_id = ?", (cid,)).fetchone()[0]
            added = 0
            for h in hashes:
                n = c.execute("INSERT INTO collection_items(collection_id, hash, position, added)"
                              " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                              (cid, h, end + 1 + added, now)).rowcount
                added += n
        return added

    def remove_from_collection(self, name: str, ids: Iterable[int]) -> int:
        """Take samples out of a collection; returns how many were in it."""
        hashes = self.hashes_of(ids)
        with self.transaction() as c:
            cid = self._collection_id(name)
            return sum(c.execute("DELETE FROM collection_items WHERE collection_id = ?"
                                 " AND hash = ?", (cid, h)).rowcount
                       for h in dict.fromkeys(hashes.values()))

    def collection_members(self, name: str) -> list[tuple[int | None, str]]:
        """A collection's items in order: (sample id, or None when missing; path: the
        sample's, or the last one seen)."""
        cid = self._collection_id(name)
        return self.conn.execute(
            "SELECT (SELECT MIN(s.id) FROM samples s WHERE s.hash = ci.hash),"
            " COALESCE((SELECT s.path FROM samples s WHERE s.hash = ci.hash ORDER BY s.id"
            " LIMIT 1), i.path)"
            " FROM collection_items ci LEFT JOIN user_items i ON i.hash = ci.hash"
            " WHERE ci.collection_id = ? ORDER BY ci.position, ci.rowid", (cid,)).fetchall()

    def collection_samples(self, name: str) -> set[int]:
        """Every sample whose sound is in a collection: a collection holds sounds (content),
        so a copy of one at another path is in it too, as it carries the sound's tags."""
        cid = self._collection_id(name)
        return {sid for (sid,) in self.conn.execute(
            "SELECT s.id FROM collection_items ci JOIN samples s ON s.hash = ci.hash"
            " WHERE ci.collection_id = ?", (cid,))}

    # -- missing items ---------------------------------------------------------------------------

    def missing_items(self) -> list[dict]:
        """What the user made for content no sample has any more: {hash, path (last seen),
        tags, starred, note, collections}, by path."""
        if not self._has_curation():
            return []
        out = []
        for h, path, note in self.conn.execute(
                "SELECT i.hash, i.path, i.note FROM user_items i WHERE NOT EXISTS"
                " (SELECT 1 FROM samples s WHERE s.hash = i.hash) ORDER BY i.path, i.hash"):
            rows = self.conn.execute("SELECT key, value FROM user_labels WHERE hash = ?"
                                     " ORDER BY key, value", (h,)).fetchall()
            names = [n for (n,) in self.conn.execute(
                "SELECT c.name FROM collection_items ci JOIN collections c"
                " ON c.id = ci.collection_id WHERE ci.hash = ? ORDER BY c.name", (h,))]
            if rows or names or note:
                out.append({"hash": h, "path": path, "note": note, "collections": names,
                            "starred": any(k == STAR_KEY for k, _ in rows),
                            "tags": [tag_text(k, v) for k, v in rows if k != STAR_KEY]})
        return out

    def forget_missing(self) -> int:
        """Forget the tags, stars, notes and collection places of content no sample has.
        Returns how many items were forgotten."""
        gone = "(SELECT hash FROM user_items i WHERE NOT EXISTS" \
               " (SELECT 1 FROM samples s WHERE s.hash = i.hash))"
        with self.transaction() as c:
            n = c.execute(f"SELECT COUNT(*) FROM {gone}").fetchone()[0]
            for table in ("user_labels", "collection_items"):
                c.execute(f"DELETE FROM {table} WHERE hash IN {gone}")
            c.execute(f"DELETE FROM user_items WHERE hash IN {gone}")
        return n

    # -- export and import -----------------------------------------------------------------------

    def tag_rows(self) -> list[dict]:
        """Every user label, present or missing, as the rows of a tags CSV: {path, hash, tag,
        suggested, confidence}, by path then tag (a star is the tag ``starred``)."""
        if not self._has_curation():
            return []
        out = []
        for h, key, value, suggested, conf, path in self.conn.execute(
                "SELECT u.hash, u.key, u.value, u.suggested, u.confidence,"
                " COALESCE((SELECT s.path FROM samples s WHERE s.hash = u.hash ORDER BY s.id"
                " LIMIT 1), i.path)"
                " FROM user_labels u LEFT JOIN user_items i ON i.hash = u.hash"):
            out.append({"path": path, "hash": h,
                        "tag": STAR_KEY if key == STAR_KEY else tag_text(key, value),
                        "suggested": bool(suggested), "confidence": conf})
        return sorted(out, key=lambda r: (r["path"] or "", r["tag"], r["hash"]))

    def import_tag_rows(self, rows: list[dict]) -> dict:
        """Add tags from rows of a tags CSV (:meth:`tag_rows`), in one transaction.

        A row names its item by ``hash`` (of content this atlas has, or had; a long file's
        hash from before schema 9 names the files it went over to, ``atlas.legacy``) or else by
        ``path`` (of a present sample); ``tag`` ``starred`` is a star. A row's ``line`` (where
        its file's reader found it: a cell may hold a line break) names it in a problem; else
        its place among the rows after a header line.

        Returns
        -------
        dict
            ``changed`` (rows new to the atlas, or that changed a tag's suggestion mark),
            ``unchanged``, ``missing`` (rows for content no sample has: stored, shown as
            missing).

        Raises
        ------
        ParameterError
            Naming every row that names no item or has a bad tag; nothing is written then.
        """
        def hash_at(path: str) -> str | None:
            # as written, then in the other Unicode forms (a CSV written on one system, names
            # stored as another wrote them), then without surrounding spaces
            for form in dict.fromkeys([*unicode_forms(path), path.strip()]):
                row = self.conn.execute("SELECT hash FROM samples WHERE path = ?",
                                        (form,)).fetchone()
                if row:
                    return row[0]
            return None

        def path_of(h: str) -> str | None:
            row = self.conn.execute("SELECT path FROM samples WHERE hash = ? ORDER BY id LIMIT 1",
                                    (h,)).fetchone()
            return row[0] if row else None

        problems, resolved = [], []
        for n, row in enumerate(rows, start=2):  # line 1 is the header
            i = row.get("line", n)
            h = (row.get("hash") or "").strip().lower()  # hex: a spreadsheet may upper it
            path = row.get("path") or ""
            if h and not _CONTENT_HASH.fullmatch(h):
                problems.append(f"line {i}: hash {row.get('hash')!r} is not a content hash "
                                "(32 hexadecimal digits, as tags export writes)")
                continue
            if not h:
                h = hash_at(path)
                if h is None:
                    problems.append(f"line {i}: no sample at {path!r}" if path.strip() else
                                    f"line {i}: neither a hash nor a path")
                    continue
            tag = row.get("tag")
            try:
                key, value = ((STAR_KEY, STAR_VALUE) if tag == STAR_KEY else parse_tag(tag))
            except ParameterError as e:
                problems.append(f"line {i}: {e}")
                continue
            suggested = str(row.get("suggested", "")).strip().lower() in ("1", "true", "yes")
            conf = row.get("confidence")
            try:
                conf = float(conf) if conf not in (None, "") else None
            except ValueError:
                conf = -1.0
            if conf is not None and not 0 <= conf <= 1:  # (NaN too)
                problems.append(f"line {i}: confidence {row.get('confidence')!r} is not a "
                                "number from 0 to 1")
                continue
            # a hash an older soundatlas took for a long file (a CSV exported before the
            # upgrade) names the files whose whole hashes its curation went over to
            targets = [h]
            followed = self.followed_hashes(h)
            if followed:  # and under it too while a file still has or awaits it
                targets = followed + ([h] if self.still_held(h) else [])
            for target in targets:
                resolved.append((target, path, key, value, suggested, conf))
        if problems:
            more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
            raise ParameterError("; ".join(problems[:20]) + more)
        now = time.time()
        changed = unchanged = missing = 0
        with self.transaction() as c:
            for h, path, key, value, suggested, conf in resolved:
                here = path_of(h)
                c.execute("INSERT INTO user_items(hash, path, updated) VALUES (?, ?, ?)"
                          " ON CONFLICT(hash) DO NOTHING", (h, here or path, now))
                if key not in (TAG_KEY, STAR_KEY):
                    c.execute("DELETE FROM user_labels WHERE hash = ? AND key = ? AND value != ?",
                              (h, key, value))
                n = c.execute(
                    "INSERT INTO user_labels(hash, key, value, suggested, confidence, created)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(hash, key, value) DO UPDATE SET"
                    " suggested = excluded.suggested, confidence = excluded.confidence"
                    " WHERE suggested != excluded.suggested"
                    " OR confidence IS NOT excluded.confidence",
                    (h, key, value, int(suggested), conf, now)).rowcount
                changed += n
                unchanged += 1 - n
                missing += here is None
        return {"changed": changed, "unchanged": unchanged, "missing": missing}
