"""The atlas's labels (table ``labels``: key = value pairs per sample) and its failures (table
``failures``: the files that could not be analysed, and why)."""

from __future__ import annotations

import json
from typing import Iterable, Mapping

import numpy as np

from soundatlas.atlas.store import Store, id_chunks, int_list, placeholders

__all__ = ["LabelStore"]


class LabelStore(Store):
    """Labels of samples, and the files that failed."""

    # -- labels ------------------------------------------------------------------------------------

    def replace_labels(self, labels: "Mapping[int, dict[str, str]] | Iterable[tuple[int, dict]]"
                       ) -> None:
        """Set the complete label set of every sample, atomically.

        Parameters
        ----------
        labels : mapping or iterable of pairs
            sample id -> {key: value}, or (sample id, {key: value}) pairs, read as they come
            (a generator need not hold the library's labels at once); samples not in it get no
            labels.
        """
        pairs = labels.items() if isinstance(labels, Mapping) else labels
        with self.transaction() as c:
            c.execute("DELETE FROM labels")
            c.executemany(
                "INSERT INTO labels(sample_id, key, value) VALUES (?, ?, ?)",
                ((sid, k, v) for sid, kv in pairs for k, v in kv.items()),
            )

    def labels(self, key: str) -> dict[int, str]:
        """sample id -> value of label ``key`` (samples without it are absent)."""
        return dict(self.conn.execute("SELECT sample_id, value FROM labels WHERE key = ?", (key,)))

    def sample_labels(self, sample_id: int) -> dict[str, str]:
        """A sample's labels: key -> value."""
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
        """id -> {key: value} (keys sorted) of those of ``ids`` that have any label."""
        out: dict[int, dict[str, str]] = {}
        for chunk in id_chunks(ids):
            for sid, key, value in self.conn.execute(
                "SELECT sample_id, key, value FROM labels"
                f" WHERE sample_id IN ({placeholders(chunk)}) ORDER BY sample_id, key", chunk
            ):
                out.setdefault(sid, {})[key] = value
        return out

    def label_summary(self) -> dict[str, dict[str, int]]:
        """label key -> {value: number of samples}, keys and values sorted."""
        out: dict[str, dict[str, int]] = {}
        for key, value, n in self.conn.execute(
            "SELECT key, value, COUNT(*) FROM labels GROUP BY key, value ORDER BY key, value"
        ):
            out.setdefault(key, {})[value] = n
        return out

    # -- failures ----------------------------------------------------------------------------------

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be analysed, by path."""
        return self.conn.execute("SELECT path, reason FROM failures ORDER BY path").fetchall()

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
