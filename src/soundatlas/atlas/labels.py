"""The atlas's labels (table ``labels``: key = value pairs per sample) and its failures (table
``failures``: the files that could not be analysed, and why).

The label reads include the user's labels (tags and stars, ``atlas.curation``): a user's value
of a key replaces the index's for that sample, and the many-valued key ``tag`` reads as one
value per sample (``CurationStore.one_tag``) except in ``sample_labels`` and ``labels_of``,
which list a sample's plain tags joined by ", ".
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, Mapping

import numpy as np

from soundatlas.atlas.store import Store, chunked, id_chunks, int_list, placeholders

__all__ = ["LabelStore", "LABEL_SUMMARY_META"]

#: meta key of the index's label counts ({key: {value: n}}), written with the labels and dropped
#: whenever samples are added, replaced or removed: at 1M samples counting them reads 13M rows,
#: which every `index` run and every page load needed
LABEL_SUMMARY_META = "label_summary"


class LabelStore(Store):
    """Labels of samples, and the files that failed."""

    # -- labels ------------------------------------------------------------------------------------

    def replace_labels(self, labels: "Mapping[int, dict[str, str]] | Iterable[tuple[int, dict]]",
                       *, only: "Iterable[int] | None" = None) -> None:
        """Set the complete label set of every sample, or of the samples ``only`` names,
        atomically.

        Parameters
        ----------
        labels : mapping or iterable of pairs
            sample id -> {key: value}, or (sample id, {key: value}) pairs, read as they come
            (a generator need not hold the library's labels at once); samples not in it get no
            labels (of those ``only`` names, with it).
        only : iterable of int, optional
            The samples whose labels are replaced; the others keep theirs (default: every
            sample's are).
        """
        pairs = labels.items() if isinstance(labels, Mapping) else labels
        with self.transaction() as c:
            if only is None:
                c.execute("DELETE FROM labels")
            else:
                for chunk in id_chunks(only):
                    c.execute(f"DELETE FROM labels WHERE sample_id IN ({placeholders(chunk)})",
                              chunk)
            c.executemany(
                "INSERT INTO labels(sample_id, key, value) VALUES (?, ?, ?)",
                ((sid, k, v) for sid, kv in pairs for k, v in kv.items()),
            )
            self._set_meta(LABEL_SUMMARY_META, json.dumps(self._count_labels()))

    def _count_labels(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for key, value, n in self.conn.execute(
            "SELECT key, value, COUNT(*) FROM labels GROUP BY key, value ORDER BY key, value"
        ):
            out.setdefault(key, {})[value] = n
        return out

    def labels_unchanged_since_written(self) -> bool:
        """Whether no sample was added, replaced or removed since the labels were last written
        (``replace_labels``): then the labels of the same sources are the same."""
        return self.meta(LABEL_SUMMARY_META) is not None

    def labels(self, key: str, *, suggested: bool = True) -> dict[int, str]:
        """sample id -> value of label ``key`` (samples without it are absent).

        Parameters
        ----------
        suggested : bool, default True
            Read the values ``suggest --apply`` stored from the map too (False: the index's
            and the user's own alone, as an evaluation needs: a map's own guesses are no truth
            to score it by).
        """
        out = dict(self.conn.execute("SELECT sample_id, value FROM labels WHERE key = ?", (key,)))
        out.update(self._user_values(key, suggested=suggested))
        return out

    def _user_values(self, key: str, *, suggested: bool = True) -> dict[int, str]:
        """sample id -> the user's one value of ``key`` (``atlas.curation``)."""
        from soundatlas.atlas.curation import TAG_KEY

        rows = self.user_label_rows(key=key, suggested=suggested)
        if key != TAG_KEY:
            return {sid: value for sid, _, value in rows}
        ranking = self.tag_ranking(suggested=suggested)
        tags: dict[int, list[str]] = {}
        for sid, _, value in rows:
            tags.setdefault(sid, []).append(value)
        return {sid: self.one_tag(t, ranking) for sid, t in tags.items()}

    def _with_user_labels(self, labels: dict[int, dict[str, str]],
                          ids: Iterable[int]) -> dict[int, dict[str, str]]:
        """``labels`` (id -> {key: value}) with the user's labels of ``ids`` laid over them."""
        from soundatlas.atlas.curation import TAG_KEY

        user: dict[int, dict[str, list[str]]] = {}
        for sid, key, value in self.user_label_rows(ids=ids):
            user.setdefault(sid, {}).setdefault(key, []).append(value)
        for sid, kv in user.items():
            mine = labels.setdefault(sid, {})
            for key, values in kv.items():
                mine[key] = ", ".join(sorted(values)) if key == TAG_KEY else values[0]
            labels[sid] = dict(sorted(mine.items()))
        return labels

    def sample_labels(self, sample_id: int) -> dict[str, str]:
        """A sample's labels: key -> value (plain tags: joined by ", ")."""
        own = dict(
            self.conn.execute("SELECT key, value FROM labels WHERE sample_id = ?", (sample_id,))
        )
        return self._with_user_labels({sample_id: own}, [sample_id]).get(sample_id, {})

    def label_keys(self) -> list[str]:
        """The label keys in use, sorted: one index seek per key, however many labels there
        are (and the keys of the user's labels)."""
        keys = [k for (k,) in self.conn.execute(
            "WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM labels UNION ALL"
            " SELECT (SELECT MIN(key) FROM labels WHERE key > k.key) FROM k"
            " WHERE k.key IS NOT NULL) SELECT key FROM k WHERE key IS NOT NULL")]
        user = self.user_label_keys()
        return sorted(set(keys) | set(user)) if user else keys

    def label_column(self, key: str) -> tuple[np.ndarray, list[str]]:
        """Every sample that has label ``key``, and its value: the same pairs as ``labels(key)``
        without a Python tuple per row.

        Two ways to read them: one pass over the whole labels table (sequential; cheap while
        ``key`` is on a fair share of its rows), or the (key, value) index then a lookup of
        each row (random access: 5-15x slower per row at 1M rows, but only this key's rows).

        Returns
        -------
        ids : ndarray of int64
            The samples, in no particular order.
        values : list of str
            Their values, aligned with ``ids``.
        """
        with self.snapshot():
            if key in self.user_label_keys():  # few rows: laid over the index's in Python
                values = self.labels(key)
                return np.fromiter(values, np.int64, len(values)), list(values.values())
            n_keys = len(self.label_keys())
            # n_keys x n_samples bounds the table's rows
            scan = n_keys <= 1 or n_keys * self.n_samples() <= 6 * self.conn.execute(
                "SELECT COUNT(*) FROM labels WHERE key = ?", (key,)).fetchone()[0]
            ids, values = self.conn.execute(
                "SELECT group_concat(sample_id), json_group_array(value) FROM labels"
                f"{' NOT INDEXED' if scan else ''} WHERE key = ?", (key,)).fetchone()
        # group_concat and json_group_array are fed the same rows in the same order
        return int_list(ids), json.loads(values)

    def labels_of(self, ids: Iterable[int]) -> dict[int, dict[str, str]]:
        """id -> {key: value} (keys sorted) of those of ``ids`` that have any label (plain
        tags: joined by ", ")."""
        ids = list(ids)
        out: dict[int, dict[str, str]] = {}
        for chunk in id_chunks(ids):
            for sid, key, value in self.conn.execute(
                "SELECT sample_id, key, value FROM labels"
                f" WHERE sample_id IN ({placeholders(chunk)}) ORDER BY sample_id, key", chunk
            ):
                out.setdefault(sid, {})[key] = value
        return self._with_user_labels(out, ids)

    def label_summary(self, *, user: bool = True) -> dict[str, dict[str, int]]:
        """label key -> {value: number of samples}, keys and values sorted.

        Parameters
        ----------
        user : bool, default True
            Include the user's labels (a user's value replaces the index's; every plain tag
            counts the samples that carry it); False: the index's alone.
        """
        from soundatlas.atlas.curation import TAG_KEY

        with self.snapshot():
            cached = self.meta(LABEL_SUMMARY_META)
            out = json.loads(cached) if cached is not None else self._count_labels()
        for key in (self.user_label_keys() if user else []):
            if key == TAG_KEY:
                counts = Counter(v for _, _, v in self.user_label_rows(key=key))
            else:
                counts = Counter(self.labels(key).values())
            out[key] = dict(sorted(counts.items()))
        return dict(sorted(out.items()))

    # -- failures ----------------------------------------------------------------------------------

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be analysed, by path."""
        return self.conn.execute("SELECT path, reason FROM failures ORDER BY path").fetchall()

    def scan_failures(self) -> list[str]:
        """The paths of the failures the scan recorded (a file or folder it could not read,
        whose sample stays): they have no size, where an analysis's failure has the file's."""
        return [p for (p,) in self.conn.execute("SELECT path FROM failures WHERE size IS NULL")]

    def failure(self, path: str) -> tuple[int | None, int | None, str] | None:
        """(size, mtime_ns, reason) of the failure recorded for ``path``, or None."""
        row = self.conn.execute("SELECT size, mtime_ns, reason FROM failures WHERE path = ?",
                                (path,)).fetchone()
        return None if row is None else tuple(row)

    def lasting_failures(self, paths: list[str], decoded_with: str) -> dict[str, tuple[int, int]]:
        """The failures among ``paths`` that the same bytes would repeat: recorded with the
        file's bytes as the problem, under the decoder settings ``decoded_with``.

        Parameters
        ----------
        paths : list of str
            Library paths.
        decoded_with : str
            The settings this run decodes with (``indexing.decoder_key``).

        Returns
        -------
        dict
            path -> (size, mtime_ns) the file had when it failed.
        """
        out = {}
        for chunk in chunked(paths, 900):
            out.update((p, (size, mtime_ns)) for p, size, mtime_ns in self.conn.execute(
                "SELECT path, size, mtime_ns FROM failures WHERE decoded_with = ?"
                f" AND path IN ({placeholders(chunk)})", (decoded_with, *chunk)))
        return out

    def forget_failures(self, keep_paths: set[str]) -> int:
        """Drop the failures of files no longer in the library.

        Parameters
        ----------
        keep_paths : set of str
            The paths the library still has.

        Returns
        -------
        int
            How many failures were dropped.
        """
        gone = [p for (p,) in self.conn.execute("SELECT path FROM failures") if p not in keep_paths]
        with self.transaction() as c:
            c.executemany("DELETE FROM failures WHERE path = ?", [(p,) for p in gone])
        return len(gone)
