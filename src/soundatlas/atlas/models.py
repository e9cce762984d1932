"""The atlas's model registry (table ``models``), each model's embeddings (tables ``embeddings``
and ``embedding_segments``, folder ``embeddings/``) and its similarity space and vectors (tables
``similarity_spaces`` and ``similarity_vectors``, the space ``soundatlas.similarity`` names).

A model's embedding of a sample is its trajectory (one point per frame, float32, in an
embedding segment file written as ``Store`` writes array files) and its point on the map (a
BLOB in ``embeddings``); its similarity vector is one BLOB per sample in the space recorded for
the model.
"""

from __future__ import annotations

import json
import shlex
import time
import unicodedata
from pathlib import Path
from typing import Iterable

import numpy as np

from soundatlas.atlas.records import ModelRecord
from soundatlas.atlas.store import (Store, array_problem, frames_problem, id_chunks, int_list,
                                    open_array, placeholders, write_array)
from soundatlas.errors import AtlasError, DamagedDataError, NotEmbeddedError, ParameterError

__all__ = ["ModelStore", "check_model_name", "MAX_MODEL_NAME"]

_PRECISION_KEY = "embed_precision:"  # + a model's name: a meta key
MAX_MODEL_NAME = 100


def check_model_name(name: str) -> str:
    """Check the name of a model about to be made (``train --name``, ``adapt --name``).

    A model's name is a folder of the atlas's ``models/`` and one segment of the page's URLs
    (``/api/models/NAME/...``), so it holds no ``/`` or ``\\``, is not ``.`` or ``..``, has no
    control characters and no space at either end, and is 1 to ``MAX_MODEL_NAME`` characters.

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    ParameterError
        Naming what is wrong with it.
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip() \
            or len(name) > MAX_MODEL_NAME or name in (".", "..") or "/" in name \
            or "\\" in name or any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        raise ParameterError(f"model name {name!r}: 1 to {MAX_MODEL_NAME} characters, no '/' "
                             "or '\\', not '.' or '..', no control characters, no space at "
                             "either end (it names a folder and a part of the page's URLs)")
    return name


def _ids(cursor) -> np.ndarray:
    """A one-column cursor of ids as an int64 array, without a list of rows in between."""
    return np.fromiter((row[0] for row in cursor), dtype=np.int64)


class ModelStore(Store):
    """Registered models, their embeddings and their similarity vectors."""

    # -- the registry --------------------------------------------------------------------------

    def register_model(self, name: str, directory: str, config: dict) -> int:
        """Record a model; one of the same name is replaced.

        Parameters
        ----------
        name : str
            Its name in the atlas.
        directory : str
            Where its weights live: relative to the atlas, absolute, or ``shipped:NAME``.
        config : dict
            Its config (``artifact.ModelArtifact.config``).

        Returns
        -------
        int
            The model's id.
        """
        with self.transaction() as c:
            dropped = self._drop_model(c, name)
            model_id = c.execute(
                "INSERT INTO models(name, dir, config, created) VALUES (?, ?, ?, ?)",
                (name, directory, json.dumps(config), time.time()),
            ).lastrowid
        self._unlink_embedding_files(dropped)
        return model_id

    def _drop_model(self, c, name: str) -> list[str]:
        """Delete the model ``name`` (its embeddings and vectors go with it, by the schema's
        cascades) and say which embedding files its segments named: the caller removes them
        once the transaction has committed, or they would stay as orphans until the next
        tidying open (``soundatlas check`` found them after an ``adapt`` run twice)."""
        files = [f for (f,) in c.execute(
            "SELECT s.file FROM embedding_segments s JOIN models m ON m.id = s.model_id"
            " WHERE m.name = ?", (name,))]
        c.execute("DELETE FROM models WHERE name = ?", (name,))
        return files

    def _unlink_embedding_files(self, files: list[str]) -> None:
        for f in files:
            (self.path / "embeddings" / f).unlink(missing_ok=True)
        if files:
            self._embedding_cache.clear()

    def models(self) -> list[ModelRecord]:
        """The registered models, by id, each with its number of embedded samples."""
        return self._model_records("")

    def find_model(self, name: str) -> ModelRecord | None:
        """The model registered as ``name``, or None where there is none."""
        found = self._model_records(" WHERE m.name = ?", (name,))
        return found[0] if found else None

    def model(self, name: str) -> ModelRecord:
        """The model registered as ``name``.

        Raises
        ------
        AtlasError
            When no model has that name (the message lists those that do).
        """
        found = self.find_model(name)
        if found is not None:
            return found
        known = ", ".join(m.name for m in self.models()) or "none"
        raise AtlasError(f"no model named {name!r} in {self.path} (known: {known})")

    def _model_records(self, where: str, args: tuple = ()) -> list[ModelRecord]:
        """The models' records, their configs parsed once per open atlas.

        A config is tens of kilobytes of JSON (a shipped model's holds its evaluation), and the
        server looks its model up on every request: parsing it each time was a sixth of a
        neighbours request. Its text is read with the row (one query, so a model registered
        again meanwhile is read whole), and parsed only when the model's id and registration
        time differ from those of the config parsed last for that id; the records of one open
        atlas share it, and callers read it, never change it.
        """
        count = ("(SELECT COUNT(*) FROM embeddings e WHERE e.model_id = m.id)"
                 if self.schema_version < 4 else  # read-only, before the counts were kept
                 "(SELECT n FROM embedding_counts c WHERE c.model_id = m.id)")
        rows = self.conn.execute(
            f"SELECT m.id, m.name, m.dir, m.created, {count}, m.config FROM models m{where}"
            " ORDER BY m.id", args).fetchall()
        cache = self._config_cache
        if not where:  # every model: forget those gone
            for gone in set(cache) - {i for i, *_ in rows}:
                del cache[gone]
        records = []
        for i, name, directory, created, n, text in rows:
            kept = cache.get(i)
            if kept is None or kept[0] != created:
                kept = cache[i] = (created, json.loads(text))
            records.append(ModelRecord(id=i, name=name, dir=directory, config=kept[1],
                                       created=created, n_embedded=n))
        return records

    def remove_model(self, name: str) -> None:
        """Forget the model ``name`` with its embeddings and vectors (its directory stays)."""
        with self.transaction() as c:
            dropped = self._drop_model(c, name)
            c.execute("DELETE FROM meta WHERE key = ?", (_PRECISION_KEY + name,))
        self._unlink_embedding_files(dropped)
        self.collect_garbage()

    def embed_precision(self, name: str) -> str | None:
        """The arithmetic ('fp32' or 'bf16') the model's embeddings were last made in.

        Parameters
        ----------
        name : str
            The model's name.

        Returns
        -------
        str or None
            None when none was recorded (embedded before precisions were, in fp32).
        """
        return self.meta(_PRECISION_KEY + name)

    def set_embed_precision(self, name: str, precision: str) -> None:
        """Record the arithmetic of the model's latest embeddings (``embed_precision``)."""
        self.set_meta(_PRECISION_KEY + name, precision)

    # -- embeddings ------------------------------------------------------------------------------

    def unembedded(self, model_id: int) -> np.ndarray:
        """Ids (int64, ascending) of samples without an embedding for the model.

        An array, streamed from the cursor: 8 bytes a sample where a list of Python ints holds
        about 36 (a 1M-sample library's first embedding lists every sample)."""
        return _ids(self.conn.execute(
            "SELECT id FROM samples WHERE id NOT IN"
            " (SELECT sample_id FROM embeddings WHERE model_id = ?) ORDER BY id", (model_id,)))

    def commit_embeddings(
        self, model_id: int, items: list[tuple[int, np.ndarray, np.ndarray]],
        *, similarity: list[np.ndarray] | None = None,
    ) -> None:
        """Store a batch of embeddings, atomically.

        Parameters
        ----------
        model_id : int
            The model.
        items : list of (int, ndarray, ndarray)
            (sample id, trajectory (n_frames x dims), point (dims,)) of each sample.
        similarity : list of ndarray, optional
            Each sample's vector (aligned with ``items``) in the model's recorded similarity
            space, stored in the same transaction.
        """
        if not items:
            return
        trajectories = np.concatenate([t for _, t, _ in items]).astype(np.float32)
        file, digest = write_array(self.path / "embeddings", trajectories)
        try:
            with self.transaction() as c:
                seg = c.execute(
                    "INSERT INTO embedding_segments(model_id, file, created, checksum)"
                    " VALUES (?, ?, ?, ?)", (model_id, file.name, time.time(), digest),
                ).lastrowid
                offset = 0
                for sid, traj, point in items:
                    c.execute(
                        "INSERT OR REPLACE INTO embeddings(model_id, sample_id, segment,"
                        " frame_offset, n_frames, point) VALUES (?, ?, ?, ?, ?, ?)",
                        (model_id, sid, seg, offset, len(traj),
                         np.asarray(point, np.float32).tobytes()),
                    )
                    offset += len(traj)
                if similarity is not None:
                    self._insert_similarity(c, model_id, [(sid, v) for (sid, _, _), v
                                                          in zip(items, similarity)])
        except BaseException:
            file.unlink(missing_ok=True)
            raise

    def newest_embedding_segment(self, model_id: int) -> int:
        """The id of the model's newest embedding segment (0: none).

        Every embedding run adds segments, so this with the number of embedded samples
        (``ModelRecord.n_embedded``, which drops when samples are removed) changes whenever the
        model's points do: a cheap key for caches of them (a few rows read, at any library size).
        """
        row = self.conn.execute("SELECT MAX(id) FROM embedding_segments WHERE model_id = ?",
                                (model_id,)).fetchone()
        return int(row[0] or 0)

    def points(self, model_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Every embedded sample's point on the model's map.

        Returns
        -------
        ids : ndarray of int64
            The samples, ascending.
        points : ndarray of float32, shape (n, dims)
            Their points ((0, 0) when none is embedded).

        Raises
        ------
        AtlasError
            When a stored point is not of the others' size.
        """
        rows = self.conn.execute(
            "SELECT sample_id, point FROM embeddings WHERE model_id = ? ORDER BY sample_id",
            (model_id,),
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        if not rows:
            return ids, np.zeros((0, 0), np.float32)
        # one buffer for all: an array per row cost seconds at a million samples
        blob = b"".join(r[1] for r in rows)
        width = len(rows[0][1])
        if width % 4 or len(blob) != len(rows) * width:
            bad = next((sid for sid, p in rows if len(p) != width), rows[0][0])
            raise AtlasError(f"sample {bad}'s point for model {model_id} is {len(dict(rows)[bad])}"
                             f" bytes, not a float32 vector of the others' size ({width})")
        return ids, np.frombuffer(blob, dtype=np.float32).reshape(len(rows), width // 4).copy()

    # -- similarity vectors: one per sample per model, in the space soundatlas.similarity names ---

    def similarity_space(self, model_id: int) -> dict | None:
        """The model's similarity space as recorded.

        Returns
        -------
        dict or None
            name, dims, dtype, spec (a dict) and updated (when a vector was last stored); None
            when it has none (nothing stored yet, or an atlas from before they existed).
        """
        if self.schema_version < 3:
            return None
        row = self.conn.execute(
            "SELECT name, dims, dtype, spec FROM similarity_spaces WHERE model_id = ?",
            (model_id,)).fetchone()
        if row is None:
            return None
        spec = json.loads(row[3])
        updated = spec.pop("updated", None)  # when a vector was last stored: a key for caches
        return {"name": row[0], "dims": row[1], "dtype": row[2], "spec": spec,
                "updated": updated}

    def set_similarity_space(self, model_id: int, space: dict) -> bool:
        """Record the model's similarity space; the vectors of another space recorded before go.

        Parameters
        ----------
        model_id : int
            The model.
        space : dict
            name, dims, dtype and spec (``similarity.space_for``).

        Returns
        -------
        bool
            Whether vectors of another space were dropped.
        """
        stored = self.similarity_space(model_id)
        wanted = {k: space[k] for k in ("name", "dims", "dtype")}
        same = stored is not None and {k: stored[k] for k in wanted} == wanted and \
            stored["spec"] == space["spec"]
        if same:
            return False
        with self.transaction() as c:
            c.execute("DELETE FROM similarity_spaces WHERE model_id = ?", (model_id,))
            c.execute("INSERT INTO similarity_spaces(model_id, name, dims, dtype, spec)"
                      " VALUES (?, ?, ?, ?, ?)",
                      (model_id, space["name"], int(space["dims"]), space["dtype"],
                       json.dumps({**space["spec"], "updated": time.time()})))
        return stored is not None

    def commit_similarity(self, model_id: int, items: list[tuple[int, np.ndarray]]) -> None:
        """Store (sample id, vector) pairs in the model's recorded similarity space, atomically."""
        with self.transaction() as c:
            self._insert_similarity(c, model_id, items)

    def _insert_similarity(self, c, model_id: int, items) -> None:
        if not items:
            return
        row = c.execute("SELECT dims, dtype, spec FROM similarity_spaces WHERE model_id = ?",
                        (model_id,)).fetchone()
        if row is None:
            raise AtlasError(f"model {model_id} has no similarity space recorded")
        dims, dtype = row[0], np.dtype(row[1]).newbyteorder("<")
        blobs = []
        for sid, vector in items:
            v = np.asarray(vector)
            if v.shape != (dims,) or v.dtype.kind != dtype.kind:
                raise AtlasError(f"sample {sid}'s similarity vector has shape {v.shape} and dtype "
                                 f"{v.dtype}; the space holds ({dims},) {dtype.name}")
            blobs.append((model_id, int(sid), v.astype(dtype).tobytes()))
        c.executemany("INSERT OR REPLACE INTO similarity_vectors(model_id, sample_id, vector)"
                      " VALUES (?, ?, ?)", blobs)
        spec = json.loads(row[2])
        spec["updated"] = time.time()
        c.execute("UPDATE similarity_spaces SET spec = ? WHERE model_id = ?",
                  (json.dumps(spec), model_id))

    def similarity_vectors(self, model_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Every similarity vector the model has.

        Returns
        -------
        ids : ndarray of int64
            The samples that have one, ascending (empty without a space).
        vectors : ndarray of shape (n, dims)
            Their vectors, in the space's dtype; read-only where they are the database's own
            bytes.

        Raises
        ------
        AtlasError
            When a stored vector is not of the space's size.
        """
        space = self.similarity_space(model_id)
        if space is None:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        dtype = np.dtype(space["dtype"]).newbyteorder("<")
        with self.snapshot():
            ids, blob = self.conn.execute(
                "SELECT group_concat(sample_id), CAST(group_concat(vector, x'') AS BLOB) FROM"
                " (SELECT sample_id, vector FROM similarity_vectors WHERE model_id = ?"
                "  ORDER BY sample_id)", (model_id,)).fetchone()
        ids = int_list(ids)
        blob = blob or b""
        if len(blob) != len(ids) * space["dims"] * dtype.itemsize:  # a vector of another size
            rows = self.conn.execute("SELECT sample_id, vector FROM similarity_vectors"
                                     " WHERE model_id = ?", (model_id,)).fetchall()
            bad = next(sid for sid, v in rows if len(v) != space["dims"] * dtype.itemsize)
            raise AtlasError(f"sample {bad}'s similarity vector for model {model_id} is not "
                             f"{space['dims']} x {dtype.name}")
        vectors = np.frombuffer(blob, dtype=dtype).reshape(len(ids), space["dims"])
        if len(ids) > 1 and np.any(ids[1:] <= ids[:-1]):  # the rows come in order; a guard
            order = np.argsort(ids, kind="stable")
            ids, vectors = ids[order], vectors[order]
        # no copy where none is needed (int8 codes): two copies of 256 MB took 1.9 s at 1M
        return ids, vectors.astype(dtype.newbyteorder("="), copy=False)

    def without_similarity(self, model_id: int) -> np.ndarray:
        """Ids (int64, ascending) of samples embedded with the model that have no similarity
        vector for it."""
        if self.schema_version < 3:
            return _ids(self.conn.execute(
                "SELECT sample_id FROM embeddings WHERE model_id = ? ORDER BY sample_id",
                (model_id,)))
        return _ids(self.conn.execute(
            "SELECT sample_id FROM embeddings WHERE model_id = ? AND sample_id NOT IN"
            " (SELECT sample_id FROM similarity_vectors WHERE model_id = ?) ORDER BY sample_id",
            (model_id, model_id)))

    def trajectory(self, model_id: int, sample_id: int) -> np.ndarray:
        """The sample's per-frame embedding under the model.

        Returns
        -------
        ndarray of float32, shape (n_frames, dims)

        Raises
        ------
        NotEmbeddedError
            When the sample has no embedding for the model.
        DamagedDataError
            When its embedding file is missing or damaged (``_embedding_segment``).
        """
        row = self.conn.execute(
            "SELECT s.file, e.frame_offset, e.n_frames FROM embeddings e"
            " JOIN embedding_segments s ON s.id = e.segment"
            " WHERE e.model_id = ? AND e.sample_id = ?", (model_id, sample_id),
        ).fetchone()
        if row is None:
            raise NotEmbeddedError(f"sample {sample_id} has no embedding for model {model_id}")
        arr = self._embedding_segment(row[0], row[1] + row[2])
        return np.asarray(arr[row[1] : row[1] + row[2]], dtype=np.float32)

    def trajectories(self, model_id: int, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """Per-frame embeddings of many samples: one query per 900 ids, each file opened once.

        Returns
        -------
        dict
            sample id -> trajectory (n_frames x dims, float32) of those of ``ids`` embedded
            with the model.
        """
        out: dict[int, np.ndarray] = {}
        for chunk in id_chunks(ids):
            for sid, file, offset, n in self.conn.execute(
                "SELECT e.sample_id, s.file, e.frame_offset, e.n_frames FROM embeddings e"
                " JOIN embedding_segments s ON s.id = e.segment"
                f" WHERE e.model_id = ? AND e.sample_id IN ({placeholders(chunk)})",
                (model_id, *chunk),
            ):
                arr = self._embedding_segment(file, offset + n)
                out[sid] = np.asarray(arr[offset : offset + n], dtype=np.float32)
        return out

    def _embedding_segment(self, file: str, n_frames: int) -> np.ndarray:
        """An embedding segment file, memory-mapped, kept open (at most 256 at a time), that
        holds at least ``n_frames`` frames.

        Raises
        ------
        DamagedDataError
            When the file is missing, cut short, not an array, or a whole array of fewer frames
            than its rows need: naming it, what is wrong and the commands that make it whole
            (``check --repair`` drops its embeddings, ``embed`` computes them again).
        """
        cache = self._embedding_cache
        path = self.path / "embeddings" / file
        if file not in cache:
            try:
                arr = open_array(path)
            except (OSError, ValueError, EOFError) as exc:  # what np.load raises for these
                raise self._damaged_embeddings(path, array_problem(path, exc)) from None
            if len(cache) > 256:
                cache.clear()
            cache[file] = arr
        arr = cache[file]
        problem = frames_problem(arr, n_frames)
        if problem:
            raise self._damaged_embeddings(path, problem)
        return arr

    def _damaged_embeddings(self, path: Path, problem: str) -> DamagedDataError:
        atlas = shlex.quote(str(self.path.resolve()))
        return DamagedDataError(f"the embedding file {path} cannot be read: {problem}; run "
                                f"`soundatlas check --atlas {atlas} --repair`, then `soundatlas "
                                f"embed --atlas {atlas} --model MODEL` (check drops its "
                                "embeddings, embed computes them again)")

