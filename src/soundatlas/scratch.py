"""Scratch space on disk for lists as long as the library: a private temporary SQLite database.

``index`` must not hold a million file entries, manifest rows or labels in memory at once (its
memory is meant to stay flat in the library's size), so the lists it needs whole (the scan, to
sort and compare; the manifest, to look up) go to a ``Scratch`` database instead: SQLite's
private temporary database (an empty file name), written to the system's temporary folder,
sorted and indexed there with a bounded page cache, and deleted when closed.
"""

from __future__ import annotations

import sqlite3

__all__ = ["Scratch"]

#: The scratch database's page cache, in KiB (SQLite's negative cache_size): what it may hold
#: in memory whatever the size of its tables.
CACHE_KIB = 2048


class Scratch:
    """A private temporary SQLite database, deleted on ``close`` (a context manager).

    Attributes
    ----------
    conn : sqlite3.Connection
        Its connection (autocommit off: ``insert`` commits).
    """

    def __init__(self):
        self.conn = sqlite3.connect("")  # "": a private temporary database on disk
        self.conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self.conn.execute("PRAGMA journal_mode = OFF")
        self.conn.execute("PRAGMA synchronous = OFF")

    def insert(self, sql: str, rows: list) -> None:
        """Run ``sql`` for each row and commit; ``rows`` is emptied (a reusable buffer)."""
        if rows:
            self.conn.executemany(sql, rows)
            self.conn.commit()
            rows.clear()

    def close(self) -> None:
        """Close and delete the database."""
        self.conn.close()

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
