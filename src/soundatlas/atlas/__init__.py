"""The atlas: the SQLite store of a library's samples, labels, runs, models and embeddings.

Parts, one module each:

- ``core``: ``Atlas``, opening and creating an atlas; what the atlas is (library, CQT, refresh)
- ``schema``: the SQLite schema, its migrations and the version checks
- ``records``: the typed records the atlas takes and hands out
- ``store``: the connection, transactions, meta and array files the parts share
- ``samples``: samples, their features, the batch commit
- ``labels``: labels and failures
- ``curation``: the user's tags, stars, notes and collections (keyed by content hash)
- ``runs``: runs and the train/valid/test split
- ``models``: the model registry, embeddings and similarity vectors
"""

from soundatlas.atlas.core import Atlas, default_atlas_dir
from soundatlas.atlas.records import (
    Analysis, AudioFacts, FileEntry, ModelRecord, NewSample, SampleRecord,
)
from soundatlas.atlas.runs import SPLIT_FRACTIONS, split_of
from soundatlas.atlas.samples import FEATURE_DTYPE
from soundatlas.atlas.schema import DB_NAME, MIGRATIONS, READABLE_SCHEMA, SCHEMA_VERSION

__all__ = [
    "Atlas", "default_atlas_dir",
    "SampleRecord", "ModelRecord", "NewSample", "Analysis", "AudioFacts", "FileEntry",
    "DB_NAME", "SCHEMA_VERSION", "READABLE_SCHEMA", "MIGRATIONS", "FEATURE_DTYPE",
    "SPLIT_FRACTIONS", "split_of",
]
