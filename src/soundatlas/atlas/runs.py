"""The atlas's runs (table ``runs``: each ``index`` run, its progress and summary) and the
train/valid/test split (table ``splits``, drawn with the seed in meta ``split_seed``)."""

from __future__ import annotations

import hashlib
import json
import time

from soundatlas.atlas.store import Store
from soundatlas.errors import AtlasError

__all__ = ["RunStore", "split_of", "SPLIT_FRACTIONS"]

SPLIT_FRACTIONS = {"test": 0.25, "valid": 0.75 * 0.2}  # the reference: 75/25, then 80/20


class RunStore(Store):
    """Runs and their progress; the split of the samples."""

    # -- runs --------------------------------------------------------------------------------------

    def start_run(self, kind: str, n_total: int) -> int:
        """Record a run that starts; a run of the same kind still marked running is marked
        interrupted.

        Parameters
        ----------
        kind : str
            What runs (``index``).
        n_total : int
            The number of items it has to do.

        Returns
        -------
        int
            The run's id.
        """
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status = 'interrupted' WHERE status = 'running' AND kind = ?",
                (kind,),
            )
            return c.execute(
                "INSERT INTO runs(kind, started, status, n_total) VALUES (?, ?, 'running', ?)",
                (kind, time.time(), n_total),
            ).lastrowid

    def finish_run(self, run_id: int, *, status: str, summary: dict,
                   n_done: int | None = None) -> None:
        """Record the end of a run: its status (``done``, ``interrupted``), a JSON summary and,
        when given, how many of its files are dealt with (a run with nothing to analyse
        commits no batch that would say so)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET finished = ?, status = ?, summary = ?,"
                " n_done = COALESCE(?, n_done) WHERE id = ?",
                (time.time(), status, json.dumps(summary), n_done, run_id),
            )

    def last_run(self, kind: str) -> dict | None:
        """The latest run of ``kind``.

        Returns
        -------
        dict or None
            id, started, finished, status, n_total, n_done, summary (a dict, or None); None
            when no run of ``kind`` was recorded.
        """
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

    # -- the split ---------------------------------------------------------------------------------

    def splits(self, *, seed: int | None = None) -> dict[int, str]:
        """sample id -> 'train' | 'valid' | 'test', assigning samples that have none yet.

        The split is by file, at random, as in the reference (75/25, then the 75 into 80/20):
        a sample's split is drawn from its content hash and the atlas's split seed, so it is
        stable as the library grows and duplicates of one file never straddle two splits. It is
        stored (when the atlas is open for writing), so training and evaluation agree on it.

        Parameters
        ----------
        seed : int, optional
            The split seed; the atlas keeps the first one given (0 when none was).

        Raises
        ------
        AtlasError
            When ``seed`` differs from the seed the atlas's split was drawn with.
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
        missing, held = [], {}  # held: content hash -> the split a sample with it has
        for sid, h, _ in self.iter_ids_hashes():
            if sid in out:
                held.setdefault(h, out[sid])
            else:
                missing.append((sid, h))
        if missing:
            # a copy of a file goes where the file is: its split may have been drawn from
            # another hash (an older soundatlas's fingerprint of a long file, atlas.legacy)
            new = {sid: held.get(h) or split_of(h, int(stored)) for sid, h in missing}
            out.update(new)
            if self._writable():
                with self.transaction() as c:
                    c.executemany("INSERT OR REPLACE INTO splits(sample_id, split) VALUES (?, ?)",
                                  new.items())
        return out


def split_of(content_hash: str, seed: int) -> str:
    """A file's split, drawn uniformly from its content hash and the split seed.

    Returns
    -------
    str
        'train', 'valid' or 'test', in the proportions of ``SPLIT_FRACTIONS``.
    """
    digest = hashlib.blake2b(f"{seed}:{content_hash}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    if u < SPLIT_FRACTIONS["test"]:
        return "test"
    return "valid" if u < SPLIT_FRACTIONS["test"] + SPLIT_FRACTIONS["valid"] else "train"
