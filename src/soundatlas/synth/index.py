"""The frame index: every sounding frame of a model's map, in a k-d tree.

Every frame of every embedded sample is a point of the map (its trajectory). :class:`FrameIndex`
holds them all, with (sample id, frame), in a k-d tree; frames of near-silence (summed linear CQT
magnitude below ``silence`` x the sample's loudest frame) are left out, so a path never snaps to
silence. It is built once per (atlas, model) and cached in ``ATLAS/cache/frames-ID-MODEL.npz``,
rebuilt when the model's embeddings change. Memory: about 60 bytes a frame with the tree (3-D
points, ids, frames, the tree's own copy), 12 MB for the demo library's ~200k frames, ~0.6 GB for
10 M frames (140 hours of audio).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from soundatlas.errors import AtlasError, ParameterError, SoundAtlasError
from soundatlas.frames import SILENCE
from soundatlas.text import slug

if TYPE_CHECKING:  # pragma: no cover
    from soundatlas.atlas import ModelRecord

__all__ = ["SILENCE", "FrameIndex", "embedded_model"]

CACHE_VERSION = 1


@dataclass(eq=False)
class FrameIndex:
    """The candidate frames of a model's map, with a k-d tree over their points.

    Row ``i`` is frame ``frames[i]`` of sample ``sample_ids[i]``, at ``points[i]``; rows are
    sorted by sample, then frame. Build one with :meth:`load`; restrict it with :meth:`without`.

    Attributes
    ----------
    model : str
        The model's name.
    model_id : int
        The model's id in the atlas.
    sample_ids : ndarray of int64, shape (n,)
        Each row's sample.
    frames : ndarray of int32, shape (n,)
        Each row's frame in its sample.
    points : ndarray of float32, shape (n, dims)
        Each row's point in the map.
    frame_period : float
        Seconds between frames (``hop_length / sr``: 0.05).
    sample_rates : dict of int to int
        Each indexed sample's original rate, by sample id.
    from_cache : bool
        Whether :meth:`load` read the arrays from the cache.
    """

    model: str
    model_id: int
    sample_ids: np.ndarray
    frames: np.ndarray
    points: np.ndarray
    frame_period: float
    sample_rates: dict[int, int] = field(default_factory=dict)
    from_cache: bool = False
    _tree: object = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def dims(self) -> int:
        """The map's dimensions (3 for the shipped models)."""
        return self.points.shape[1]

    @property
    def tree(self):
        """A scipy cKDTree over ``points``, built on first use."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.points, leafsize=32, balanced_tree=False, compact_nodes=False)
        return self._tree

    @classmethod
    def load(cls, atlas, model: ModelRecord | str | None = None, *, silence: float = SILENCE,
             cache: bool | str = True,
             progress: Callable[[int, int], None] | None = None) -> "FrameIndex":
        """The index of a model's map, from the cache when it is current, else built.

        Parameters
        ----------
        atlas : Atlas
            The open atlas.
        model : ModelRecord or str, optional
            The model's record (from ``atlas.model``), its name, or None for the default
            embedded model (see :func:`embedded_model`).
        silence : float, default SILENCE
            Frames quieter than this fraction of their sample's loudest frame are left out
            (0: only frames of no energy at all), in [0, 1).
        cache : bool or {"read"}, default True
            True: use a current cache, else build and write one. ``"read"``: use a current
            cache but never write one, as a read-only reader of the atlas (the web server)
            must. False: always build, write nothing.
        progress : callable, optional
            Called as ``progress(done, total)`` (samples) while building.

        Returns
        -------
        FrameIndex

        Raises
        ------
        ParameterError
            ``silence`` or ``cache`` is out of range.
        AtlasError
            The model is unknown or has no embeddings.
        """
        if cache not in (True, False, "read"):
            raise ParameterError(f"cache={cache!r} must be True, False or 'read'")
        if not 0 <= silence < 1:
            raise ParameterError(f"silence={silence} must be in [0, 1)")
        reg = embedded_model(atlas, model) if model is None or isinstance(model, str) else model
        ids, _ = atlas.points(reg.id)
        if len(ids) == 0:
            raise AtlasError(f"model {reg.name!r} has no embeddings in {atlas.path}; run "
                             f"`soundatlas embed --atlas {atlas.path} --model {reg.name}` first")
        digest = hashlib.blake2b(ids.astype("<i8").tobytes(), digest_size=16).hexdigest()
        stamp = json.dumps([CACHE_VERSION, reg.id, reg.name, reg.created, len(ids), digest])
        file = atlas.path / "cache" / f"frames-{reg.id}-{slug(reg.name, max_length=80)}.npz"
        arrays = _read_cache(file, stamp) if cache else None
        from_cache = arrays is not None
        if arrays is None:
            arrays = _build_arrays(atlas, reg.id, ids, progress)
            if cache is True:
                _write_cache(file, stamp, arrays)
        keep = arrays["level"] >= silence
        if silence == 0:
            keep &= arrays["level"] > 0
        params = atlas.cqt_params
        # each column filtered, then let go of, so the whole and the kept never all coexist
        sample_ids = arrays.pop("sample_ids")[keep].astype(np.int64, copy=False)
        frames = arrays.pop("frames")[keep].astype(np.int32, copy=False)
        points = np.ascontiguousarray(arrays.pop("points")[keep], dtype=np.float32)
        return cls(model=reg.name, model_id=int(reg.id), sample_ids=sample_ids, frames=frames,
                   points=points,
                   frame_period=params.hop_length / params.sr,
                   sample_rates=dict(zip(arrays["rate_ids"].tolist(), arrays["rates"].tolist())),
                   from_cache=from_cache)

    def without(self, sample_ids: Iterable[int]) -> "FrameIndex":
        """The same index less every frame of some samples.

        Parameters
        ----------
        sample_ids : iterable of int
            The samples to leave out.

        Returns
        -------
        FrameIndex
            A new index, or ``self`` when nothing is dropped.
        """
        drop = np.fromiter((int(s) for s in sample_ids), dtype=np.int64)
        if len(drop) == 0:
            return self
        keep = ~np.isin(self.sample_ids, drop)
        if keep.all():
            return self
        return FrameIndex(self.model, self.model_id, self.sample_ids[keep], self.frames[keep],
                          self.points[keep], self.frame_period, self.sample_rates)

    def nearest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The nearest candidate frame to each point.

        Parameters
        ----------
        points : array_like, shape (m, dims)
            Points in the map.

        Returns
        -------
        rows : ndarray of int64, shape (m,)
            Each point's nearest row of the index.
        distances : ndarray of float64, shape (m,)
            The distance to it.

        Raises
        ------
        SoundAtlasError
            The index is empty.
        ParameterError
            A point lies so far outside the map that its distance overflows.
        """
        if len(self) == 0:
            raise SoundAtlasError("no candidate frames left to snap to (every sample excluded "
                                  "or silent)")
        points = np.asarray(points, dtype=np.float64)
        bad = ~np.isfinite(points).all(axis=-1)  # (a glide between far points overflows)
        if bad.any():
            i = int(np.argmax(bad))
            raise ParameterError(f"point {i} of the path lies too far outside the map to be "
                                 "compared with it (its coordinates overflow)")
        dist, rows = self.tree.query(points, k=1)
        rows, dist = np.asarray(rows, dtype=np.int64), np.asarray(dist, dtype=np.float64)
        far = ~np.isfinite(dist) | (rows >= len(self))  # the distance overflowed: no neighbour
        if far.any():
            i = int(np.argmax(far))
            raise ParameterError(f"point {i} of the path ({', '.join(f'{x:g}' for x in points[i])})"
                                 " lies too far outside the map to be compared with it")
        return rows, dist

    def bounds(self, q: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """The map's bounding box: the ``q``-th and ``100 - q``-th percentiles per axis.

        Returns
        -------
        low, high : ndarray, shape (dims,)
        """
        return (np.percentile(self.points, q, axis=0), np.percentile(self.points, 100 - q, axis=0))

    def most_common_sr(self) -> int:
        """The most common original sample rate among the indexed samples.

        Returns
        -------
        int
            The rate (ties: the highest; 44100 when no sample is indexed).
        """
        present = set(np.unique(self.sample_ids).tolist())
        counts = collections.Counter(r for s, r in self.sample_rates.items() if s in present)
        if not counts:
            return 44100
        return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]


def _build_arrays(atlas, model_id: int, ids: np.ndarray, progress) -> dict[str, np.ndarray]:
    """Every frame's point, (sample, frame) and level (energy / the sample's loudest frame)."""
    from soundatlas.embed import frame_energy

    compression = atlas.cqt_params.compression
    # One array per column per chunk of 256 samples, not per sample: at a million samples the
    # per-sample arrays were four million small numpy objects (about 100 bytes each beside their
    # data) alive until the final concatenation, a fifth of the build's peak memory.
    parts: dict[str, list[np.ndarray]] = {"sample_ids": [], "frames": [], "points": [],
                                          "level": []}
    rate_ids, rates = [], []
    dims = 3
    done = 0
    damaged: dict = {}  # every damaged feature file, named once all are read
    for start in range(0, len(ids), 256):
        chunk = ids[start : start + 256].tolist()
        trajectories = atlas.trajectories(model_id, chunk)
        sids, frames, points, levels = [], [], [], []
        for rec, F in atlas.each_features(atlas.samples(chunk), damaged=damaged):
            traj = trajectories[rec.id]
            energy = frame_energy(F, compression=compression)
            n = min(len(traj), len(energy))
            peak = float(energy[:n].max()) if n else 0.0
            sids.append(np.full(n, rec.id, np.int64))
            frames.append(np.arange(n, dtype=np.int32))
            points.append(traj[:n])
            levels.append((energy[:n] / peak if peak > 0 else np.zeros(n)).astype(np.float32))
            rate_ids.append(rec.id)
            rates.append(rec.orig_sr)
            dims = traj.shape[1]
        if sids:
            parts["sample_ids"].append(np.concatenate(sids))
            parts["frames"].append(np.concatenate(frames))
            parts["points"].append(np.concatenate(points).astype(np.float32, copy=False))
            parts["level"].append(np.concatenate(levels))
        done = min(len(ids), start + 256)
        if progress:
            progress(done, len(ids))
    if damaged:
        from soundatlas.atlas.samples import damaged_features

        raise damaged_features(damaged)
    empty = {"sample_ids": np.zeros(0, np.int64), "frames": np.zeros(0, np.int32),
             "points": np.zeros((0, dims), np.float32), "level": np.zeros(0, np.float32)}
    arrays = {}
    for key in ("sample_ids", "frames", "points", "level"):
        arrays[key] = np.concatenate(parts[key]) if parts[key] else empty[key]
        parts[key] = []  # each column's chunks go as soon as it is joined
    return {**arrays, "rate_ids": np.array(rate_ids, np.int64), "rates": np.array(rates, np.int64)}


def _read_cache(file: Path, stamp: str) -> dict[str, np.ndarray] | None:
    from soundatlas.atlas.store import read_arrays

    try:
        arrays = read_arrays(file, unless=("stamp", stamp))
        if arrays is None:
            return None
        return {k: v for k, v in arrays.items() if k != "stamp"}
    except Exception:  # noqa: BLE001 - absent, stale or damaged (OSError, BadZipFile, ...): rebuild
        return None


def _write_cache(file: Path, stamp: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically; an atlas we may not write to just goes without one."""
    tmp = file.with_name(file.name + f".{os.getpid()}.tmp.npz")
    try:
        file.parent.mkdir(exist_ok=True)
        np.savez(tmp, stamp=np.array(stamp), **arrays)
        os.replace(tmp, file)
    except OSError:
        tmp.unlink(missing_ok=True)


def embedded_model(atlas, name: str | None = None) -> ModelRecord:
    """The registration of a model of the atlas that has embeddings.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    name : str, optional
        The model's name. None picks 'default' when it has embeddings, else the first model
        that has some.

    Returns
    -------
    ModelRecord
        The model's record, as ``atlas.models()`` lists it.

    Raises
    ------
    AtlasError
        No such model, or it has no embeddings; the message says which command to run.
    """
    models = atlas.models()
    where = f"--atlas {atlas.path}"
    if name is None:
        embedded = [m for m in models if m.n_embedded > 0]
        for m in embedded:
            if m.name == "default":
                return m
        if embedded:
            return embedded[0]
        raise AtlasError(f"no model has embeddings in {atlas.path}; run `soundatlas embed "
                         f"{where}` (or `soundatlas map LIBRARY`) first")
    for m in models:
        if m.name == name:
            if m.n_embedded == 0:
                raise AtlasError(f"model {name!r} has no embeddings in {atlas.path}; run "
                                 f"`soundatlas embed {where} --model {name}` first")
            return m
    from soundatlas.artifact import resolve_model

    resolve_model(atlas, name)  # raises 'no model ... (known: ...)' for an unknown name
    raise AtlasError(f"model {name!r} is not embedded in {atlas.path}; run `soundatlas embed "
                     f"{where} --model {name}` first")

