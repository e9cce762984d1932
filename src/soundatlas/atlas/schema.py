"""The atlas's SQLite schema: its migrations, the version checks, and opening the database.

``MIGRATIONS[i]`` brings the schema from version i to i + 1; an atlas records its version in
``PRAGMA user_version``. Opening an atlas for writing migrates it; a read-only open accepts an
atlas as old as ``READABLE_SCHEMA`` (what later migrations add reads as empty there) and refuses
a newer one than this soundatlas understands.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

from soundatlas.atlas.store import roll_back
from soundatlas.errors import AtlasError

__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "READABLE_SCHEMA", "NON_ASCII_PATH",
           "connect", "migrate", "trigram_search_available"]

DB_NAME = "atlas.sqlite"

#: a path that is not ASCII, as SQL: the partial index of migration 5 and the search that folds
#: such paths in Python (``SampleStore.find_samples``) must say it in the same words, or SQLite
#: does not use the index
NON_ASCII_PATH = "length(CAST(path AS BLOB)) != length(path)"

# on the path, not the id: the index covers the search, which reads the path
_NON_ASCII_INDEX = f"""
    CREATE INDEX samples_non_ascii ON samples(path) WHERE {NON_ASCII_PATH};
"""
_TRIGRAMS = """
    CREATE VIRTUAL TABLE path_trigrams USING fts5(path, content='samples', content_rowid='id',
                                                  tokenize='trigram');
    INSERT INTO path_trigrams(path_trigrams) VALUES ('rebuild');
    CREATE TRIGGER path_trigrams_added AFTER INSERT ON samples BEGIN
        INSERT INTO path_trigrams(rowid, path) VALUES (new.id, new.path);
    END;
    CREATE TRIGGER path_trigrams_removed AFTER DELETE ON samples BEGIN
        INSERT INTO path_trigrams(path_trigrams, rowid, path) VALUES ('delete', old.id, old.path);
    END;
    CREATE TRIGGER path_trigrams_moved AFTER UPDATE OF path ON samples BEGIN
        INSERT INTO path_trigrams(path_trigrams, rowid, path) VALUES ('delete', old.id, old.path);
        INSERT INTO path_trigrams(rowid, path) VALUES (new.id, new.path);
    END;
"""


def _path_index_sql() -> str:
    """Migration 5's SQL for this SQLite: the trigram index only where FTS5 has the trigram
    tokenizer (``trigram_search_available``), so that an atlas opens everywhere."""
    return _NON_ASCII_INDEX + (_TRIGRAMS if trigram_search_available() else "")


@functools.cache
def trigram_search_available() -> bool:
    """Whether this process's SQLite has FTS5 with the trigram tokenizer (SQLite >= 3.34 built
    with FTS5): migration 5 makes the index of the paths only then, and an atlas that has one is
    searched through it only then (an atlas made elsewhere may have it)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(x, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()
    return True


# Migrations: index i brings the schema from version i to i + 1 (SQL, or a function that
# gives it for this SQLite). Append, never edit.
MIGRATIONS: list = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        file TEXT NOT NULL UNIQUE,
        n_frames INTEGER NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,          -- relative to the library root, forward slashes
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash TEXT NOT NULL,                 -- blake2b of the file's bytes
        orig_sr INTEGER NOT NULL,
        n_channels INTEGER NOT NULL,
        duration REAL NOT NULL,             -- seconds analysed
        file_duration REAL,                 -- seconds in the file, when known
        truncated INTEGER NOT NULL DEFAULT 0,
        segment INTEGER NOT NULL REFERENCES segments(id),
        frame_offset INTEGER NOT NULL,
        n_frames INTEGER NOT NULL,
        indexed_at REAL NOT NULL
    );
    CREATE INDEX samples_hash ON samples(hash);
    CREATE INDEX samples_segment ON samples(segment);
    CREATE TABLE labels (
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (sample_id, key)
    );
    CREATE INDEX labels_key ON labels(key, value);
    CREATE TABLE failures (
        path TEXT PRIMARY KEY,
        size INTEGER,
        mtime_ns INTEGER,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        started REAL NOT NULL,
        finished REAL,
        status TEXT NOT NULL,               -- running | done | failed
        n_total INTEGER NOT NULL DEFAULT 0,
        n_done INTEGER NOT NULL DEFAULT 0,
        summary TEXT
    );
    """,
    # 2: the train/valid/test split, models and their embeddings
    """
    CREATE TABLE splits (
        sample_id INTEGER PRIMARY KEY REFERENCES samples(id) ON DELETE CASCADE,
        split TEXT NOT NULL CHECK (split IN ('train', 'valid', 'test'))
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        dir TEXT NOT NULL,                  -- relative to the atlas, or absolute (shipped models)
        config TEXT NOT NULL,               -- the model's JSON config
        created REAL NOT NULL
    );
    CREATE TABLE embedding_segments (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        file TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE embeddings (
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        segment INTEGER NOT NULL REFERENCES embedding_segments(id),
        frame_offset INTEGER NOT NULL,
        n_frames INTEGER NOT NULL,
        point BLOB NOT NULL,                -- float32 x dims: the sample's point on the map
        PRIMARY KEY (model_id, sample_id)
    );
    CREATE INDEX embeddings_segment ON embeddings(segment);
    """,
    # 3: each model's similarity space (soundatlas.similarity): what it is, and a vector per sample
    """
    CREATE TABLE similarity_spaces (
        model_id INTEGER PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        dims INTEGER NOT NULL,
        dtype TEXT NOT NULL,                -- numpy dtype of a stored vector's components
        spec TEXT NOT NULL                  -- JSON: scale, what the vector is, its distance
    );
    CREATE TABLE similarity_vectors (
        model_id INTEGER NOT NULL REFERENCES similarity_spaces(model_id) ON DELETE CASCADE,
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        vector BLOB NOT NULL,               -- dims x dtype, little-endian
        PRIMARY KEY (model_id, sample_id)
    );
    """,
    # 4: each model's number of embedded samples, kept by triggers: counting the embeddings of a
    # model read all of them (27 ms at 1M samples), on every request of the page that names it.
    # REPLACE's implicit deletes fire the delete trigger because connect() sets recursive_triggers
    """
    CREATE TABLE embedding_counts (
        model_id INTEGER PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
        n INTEGER NOT NULL
    );
    INSERT INTO embedding_counts(model_id, n)
        SELECT m.id, (SELECT COUNT(*) FROM embeddings e WHERE e.model_id = m.id) FROM models m;
    CREATE TRIGGER embedding_counts_model AFTER INSERT ON models BEGIN
        INSERT OR REPLACE INTO embedding_counts(model_id, n) VALUES (new.id, 0);
    END;
    CREATE TRIGGER embedding_counts_added AFTER INSERT ON embeddings BEGIN
        UPDATE embedding_counts SET n = n + 1 WHERE model_id = new.model_id;
    END;
    CREATE TRIGGER embedding_counts_removed AFTER DELETE ON embeddings BEGIN
        UPDATE embedding_counts SET n = n - 1 WHERE model_id = old.model_id;
    END;
    """,
    # 5: search by path from an index. A trigram full-text index of the paths (SQLite FTS5, kept
    # by triggers) gives the candidates of a substring search; a partial index lists the paths
    # that are not ASCII, which the search folds in Python. Where this SQLite has no trigram
    # FTS5, only the partial index is made and searches scan the paths (``_path_index_sql``).
    _path_index_sql,
    # 6: what the user makes (soundatlas.atlas.curation): tags, stars, notes and collections,
    # keyed by content hash and never written by `index`, so they follow moved files and
    # survive re-indexing; no foreign key to samples: a deleted file's items stay (missing)
    """
    CREATE TABLE user_items (
        hash TEXT PRIMARY KEY,              -- content hash (samples.hash)
        path TEXT NOT NULL,                 -- the path last seen, shown when the file is missing
        note TEXT,
        updated REAL NOT NULL
    );
    CREATE TABLE user_labels (
        hash TEXT NOT NULL,
        key TEXT NOT NULL,                  -- 'tag' (plain tags), 'starred', or a KEY:VALUE's key
        value TEXT NOT NULL,
        suggested INTEGER NOT NULL DEFAULT 0,  -- 1: stored from the map by `suggest --apply`
        confidence REAL,
        created REAL NOT NULL,
        PRIMARY KEY (hash, key, value)
    );
    CREATE INDEX user_labels_key ON user_labels(key, value);
    CREATE TABLE collections (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE collection_items (
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        hash TEXT NOT NULL,
        position INTEGER NOT NULL,
        added REAL NOT NULL,
        PRIMARY KEY (collection_id, hash)
    );
    """,
    # 7: labels the audio itself gives (a loop's tempo and key: soundatlas.rhythm), kept with
    # the sample's analysis; `index` lays the label sources over them when it writes labels
    """
    CREATE TABLE audio_labels (
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (sample_id, key)
    );
    """,
    # 8: each array file's checksum (blake2b of its bytes), written with its row, so that
    # `soundatlas check` finds a damaged file; NULL for files written before
    """
    ALTER TABLE segments ADD COLUMN checksum TEXT;
    ALTER TABLE embedding_segments ADD COLUMN checksum TEXT;
    """,
    # 9: content hashes read the whole file. Before, a file over 4 MiB was hashed by its size,
    # head and tail (pipeline.legacy_fingerprint), which two different files can share. The
    # holders of such hashes (a sample's path, or a missing item's last one) are listed until
    # `index` has hashed their files whole and carried the curation keyed by them over, and
    # while a missing one's curation is kept (atlas.legacy); legacy_followed keeps which whole
    # hashes an old one went to
    """
    CREATE TABLE legacy_holders (
        path TEXT NOT NULL,
        hash TEXT NOT NULL,
        features TEXT,                      -- legacy.features_summary of its sample's features
        split TEXT,                         -- its sample's stored split, for the file that takes it
        PRIMARY KEY (path, hash)
    );
    CREATE TABLE legacy_followed (
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        PRIMARY KEY (old, new)
    );
    CREATE INDEX legacy_holders_hash ON legacy_holders(hash);
    CREATE INDEX IF NOT EXISTS collection_items_hash ON collection_items(hash);
    INSERT OR IGNORE INTO legacy_holders(path, hash)
        SELECT path, hash FROM samples WHERE size > 4194304 OR size < 0;
    INSERT OR IGNORE INTO legacy_holders(path, hash)
        SELECT i.path, i.hash FROM user_items i
        WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.hash = i.hash)
        AND (i.note IS NOT NULL OR EXISTS (SELECT 1 FROM user_labels u WHERE u.hash = i.hash)
             OR EXISTS (SELECT 1 FROM collection_items c WHERE c.hash = i.hash));
    """,
    # 10: a file whose bytes cannot be decoded (not audio, corrupt, too short) fails the same
    # way every time: `index` reads it again only once it changes or the decoder does. The
    # settings it failed under (indexing.decoder_key); NULL for a failure that may pass (an
    # access or I/O error) and for failures recorded before
    """
    ALTER TABLE failures ADD COLUMN decoded_with TEXT;
    """,
    # 11: a sample's rows in the two per-model tables by the sample alone. Their keys lead with
    # the model, so deleting a sample (its ON DELETE CASCADE) read both tables whole: 9 ms per
    # deleted sample at 100k samples and growing with the library, against 0.3 ms with these
    # (a refresh or a moved folder of a 1M library deletes as many samples as it holds)
    """
    CREATE INDEX IF NOT EXISTS embeddings_sample ON embeddings(sample_id);
    CREATE INDEX IF NOT EXISTS similarity_vectors_sample ON similarity_vectors(sample_id);
    """,
    # 12: the user's tags and collection names composed (Unicode NFC), as they are stored since
    # (atlas.curation.parse_tag): 'café' typed and 'café' pasted from a macOS file name were two
    # tags. A tag stored decomposed becomes its composed form; where the sample has that too,
    # the two are one. A collection whose composed name another has keeps its name (lookups
    # find either form)
    """
    UPDATE OR IGNORE user_labels SET key = nfc(key), value = nfc(value)
        WHERE key != nfc(key) OR value != nfc(value);
    DELETE FROM user_labels WHERE key != nfc(key) OR value != nfc(value);
    UPDATE OR IGNORE collections SET name = nfc(name) WHERE name != nfc(name);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

#: the oldest schema a read-only open accepts: what later migrations add (only new tables) reads
#: as empty there, until the atlas is next opened for writing (which migrates it)
READABLE_SCHEMA = 2


def _nfc(text):
    """SQL ``nfc(text)``: ``text`` composed (NFC); anything else as it is."""
    import unicodedata

    return unicodedata.normalize("NFC", text) if isinstance(text, str) else text


def connect(db: Path, *, write: bool) -> sqlite3.Connection:
    """Open the atlas database ``db``.

    Parameters
    ----------
    db : Path
        The ``atlas.sqlite`` file.
    write : bool
        Open for writing (WAL journal), else read-only.

    Returns
    -------
    sqlite3.Connection
        In autocommit mode (transactions are explicit), with foreign keys enforced.

    Raises
    ------
    AtlasError
        When ``db`` is not an SQLite database.
    """
    import os

    if write and db.exists() and not (os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)):
        raise AtlasError(f"cannot write the atlas at {db.parent}: it is read-only here")
    try:
        if write:
            conn = sqlite3.connect(db, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        else:
            # as_uri() needs an absolute path: a relative --atlas must open too
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True,
                                   isolation_level=None, timeout=30)
            try:
                conn.execute("PRAGMA user_version").fetchone()
            except sqlite3.OperationalError as exc:
                if "unable to open" not in str(exc):
                    raise
                # a WAL database on a read-only filesystem: SQLite cannot make the shared
                # memory file beside it; nothing can write there, so read it as immutable
                conn.close()
                conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro&immutable=1",
                                       uri=True, isolation_level=None, timeout=30)
        conn.execute("PRAGMA foreign_keys = ON")
        # the implicit delete of INSERT OR REPLACE fires delete triggers (embedding_counts)
        conn.execute("PRAGMA recursive_triggers = ON")
        conn.create_function("nfc", 1, _nfc, deterministic=True)  # migration 12 uses it
        return conn
    except sqlite3.DatabaseError as exc:
        raise AtlasError(f"{db} is not a readable atlas database: {exc}") from exc


def migrate(conn: sqlite3.Connection, path: Path, *, write: bool) -> int:
    """Check the schema version of the atlas at ``path``, migrating it when opened for writing.

    Parameters
    ----------
    conn : sqlite3.Connection
        The atlas's database.
    path : Path
        The atlas directory (for messages).
    write : bool
        Whether the atlas is open for writing (then an older schema is migrated).

    Returns
    -------
    int
        The schema version the atlas has now.

    Raises
    ------
    AtlasError
        When the schema is newer than ``SCHEMA_VERSION``, or older than ``READABLE_SCHEMA`` on
        a read-only open.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise AtlasError(
            f"the atlas at {path} has schema version {version}, newer than this "
            f"soundatlas understands ({SCHEMA_VERSION}); upgrade soundatlas"
        )
    if version == SCHEMA_VERSION or (not write and version >= READABLE_SCHEMA):
        return version
    if not write:
        raise AtlasError(
            f"the atlas at {path} has schema version {version}; "
            "run `soundatlas index` once to migrate it"
        )
    for v in range(version, SCHEMA_VERSION):
        # one transaction per step: the schema change and its version number land together
        step = MIGRATIONS[v] if isinstance(MIGRATIONS[v], str) else MIGRATIONS[v]()
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {step}; PRAGMA user_version = {v + 1}; "
                               "COMMIT;")
        except sqlite3.OperationalError as exc:
            roll_back(conn, exc, path)
            raise
    return SCHEMA_VERSION
