"""Sound out: paths through the map turned back into audio, mosaics, and trajectory figures.

The last stage: it reads the atlas (embeddings, sample records) and the library's original files.

**Frame index.** Every frame of every embedded sample is a point of the map (its trajectory).
:class:`FrameIndex` holds them all, with (sample id, frame), in a k-d tree; frames of near-silence
(summed linear CQT magnitude below ``silence`` x the sample's loudest frame) are left out, so a
path never snaps to silence. It is built once per (atlas, model) and cached in
``ATLAS/cache/frames-ID-MODEL.npz``, rebuilt when the model's embeddings change. Memory: about
60 bytes a frame with the tree (3-D points, ids, frames, the tree's own copy), 12 MB for the demo
library's ~200k frames, ~0.6 GB for 10 M frames (140 hours of audio).

**Rendering** (:func:`render`, the reference of the paper's "concatenative synthesis": points
snapped to the nearest frames, 0.5 s grains overlap-added with a Hann window at 50%). Grain ``k``
is centred at ``k * hop`` seconds of the output (``hop = grain * (1 - overlap)``); the path's point
at that time snaps to the nearest candidate frame; the grain is cut from the ORIGINAL file around
that frame's centre (frame ``f`` is centred at ``f * hop_length / sr`` = ``f * 0.05`` s), at the
output rate: a file is decoded once (a bounded LRU of decoded originals) and resampled with soxr
only when its rate differs from the output's (default: the most common original rate). Each grain
is multiplied by a periodic Hann window and added in. The windows' sum is constant for overlaps
of 1 - 1/n (0.5, 0.75, ...): then nothing else happens; for other overlaps the output is divided
by the windows' sum (floored at a tenth of its mean, so gaps fade rather than blow up).

**Loudness rule.** Each grain gets one gain: target RMS / the grain's windowed RMS, at most
``max_gain`` (8, +18 dB, so a quiet tail is not pumped into noise). The target is the median
grain RMS of the render for :func:`render` (a level line: every grain as loud as the typical
one), and for :func:`mosaic` the target file's own windowed RMS at that time (the mosaic follows
the target's loudness envelope). Gains change once per grain under overlapping windows, so the
envelope is smooth. A look-ahead limiter (10 ms; gain = moving average of a moving minimum of the
needed gain, which never exceeds it) keeps every sample within ``CEILING`` (-0.2 dBFS): the
output never clips. No clicks: every grain is a continuous stretch of a file under a window
that starts and ends at zero; files shorter than a grain are zero-padded after a 2 ms fade at
their edges; the whole output fades in and out over 10 ms.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from soundatlas.errors import AtlasError, AudioReadError, ParameterError, SoundAtlasError

__all__ = [
    "SILENCE", "MAX_GAIN", "CEILING", "MAX_DURATION", "FrameIndex", "MapPath", "Rendering",
    "AudioCache", "embedded_model", "read_path", "random_walk", "knn_walk", "resolve_exclusions",
    "self_exclusions", "render", "mosaic", "find_sample", "plot_trajectory", "write_wav",
    "wav_bytes",
    "hann", "window_ripple",
]

SILENCE = 0.05         # frames below this fraction of their sample's loudest frame never sound
MAX_GAIN = 8.0         # the most a grain is amplified to meet the loudness target (+18 dB)
CEILING = 0.977        # the limiter's ceiling (-0.2 dBFS)
MAX_DURATION = 600.0   # seconds: the longest render (10 minutes of float32 at 48 kHz: 115 MB)
LIMITER_S = 0.010      # the limiter's look-ahead and smoothing, seconds
FADE_S = 0.010         # the output's fade in and out, seconds
EDGE_FADE_S = 0.002    # fade at a decoded file's start and end (only matters when zero-padded)
CACHE_VERSION = 1


# -- the frame index -------------------------------------------------------------------------------


@dataclass(eq=False)
class FrameIndex:
    """Candidate frames of a model's map: ``points[i]`` is frame ``frames[i]`` of sample
    ``sample_ids[i]`` (rows sorted by sample, then frame). ``sample_rates`` maps each indexed
    sample id to its file's original rate. Build with :meth:`load`; restrict with
    :meth:`without`."""

    model: str
    model_id: int
    sample_ids: np.ndarray   # int64 (n,)
    frames: np.ndarray       # int32 (n,)
    points: np.ndarray       # float32 (n, dims)
    frame_period: float      # seconds between frames (hop_length / sr = 0.05)
    sample_rates: dict[int, int] = field(default_factory=dict)
    from_cache: bool = False
    _tree: object = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def dims(self) -> int:
        return self.points.shape[1]

    @property
    def tree(self):
        """A scipy cKDTree over ``points``, built on first use."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.points, leafsize=32, balanced_tree=False, compact_nodes=False)
        return self._tree

    @classmethod
    def load(cls, atlas, model: dict | str | None = None, *, silence: float = SILENCE,
             cache: bool | str = True,
             progress: Callable[[int, int], None] | None = None) -> "FrameIndex":
        """The index of ``model`` (a registration from ``atlas.model``, a name, or None for the
        default), from the cache when it is current, else built (and cached when ``cache`` is
        True; ``cache="read"`` uses a current cache but never writes one, as a read-only
        reader of the atlas such as the web server must)."""
        if cache not in (True, False, "read"):
            raise ParameterError(f"cache={cache!r} must be True, False or 'read'")
        if not 0 <= silence < 1:
            raise ParameterError(f"silence={silence} must be in [0, 1)")
        reg = model if isinstance(model, dict) else embedded_model(atlas, model)
        ids, _ = atlas.points(reg["id"])
        if len(ids) == 0:
            raise AtlasError(f"model {reg['name']!r} has no embeddings in {atlas.path}; run "
                             f"`soundatlas embed --atlas {atlas.path} --model {reg['name']}` first")
        digest = hashlib.blake2b(ids.astype("<i8").tobytes(), digest_size=16).hexdigest()
        stamp = json.dumps([CACHE_VERSION, reg["id"], reg["name"], reg["created"], len(ids),
                            digest])
        file = atlas.path / "cache" / f"frames-{reg['id']}-{_slug(reg['name'])}.npz"
        arrays = _read_cache(file, stamp) if cache else None
        from_cache = arrays is not None
        if arrays is None:
            arrays = _build_arrays(atlas, reg["id"], ids, progress)
            if cache is True:
                _write_cache(file, stamp, arrays)
        keep = arrays["level"] >= silence
        if silence == 0:
            keep &= arrays["level"] > 0
        params = atlas.cqt_params
        return cls(model=reg["name"], model_id=int(reg["id"]),
                   sample_ids=arrays["sample_ids"][keep].astype(np.int64),
                   frames=arrays["frames"][keep].astype(np.int32),
                   points=np.ascontiguousarray(arrays["points"][keep], dtype=np.float32),
                   frame_period=params.hop_length / params.sr,
                   sample_rates=dict(zip(arrays["rate_ids"].tolist(), arrays["rates"].tolist())),
                   from_cache=from_cache)

    def without(self, sample_ids: Iterable[int]) -> "FrameIndex":
        """The same index less every frame of ``sample_ids`` (self when nothing is dropped)."""
        drop = np.fromiter((int(s) for s in sample_ids), dtype=np.int64)
        if len(drop) == 0:
            return self
        keep = ~np.isin(self.sample_ids, drop)
        if keep.all():
            return self
        return FrameIndex(self.model, self.model_id, self.sample_ids[keep], self.frames[keep],
                          self.points[keep], self.frame_period, self.sample_rates)

    def nearest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, distance) of the nearest candidate frame to each of ``points`` (m x dims)."""
        if len(self) == 0:
            raise SoundAtlasError("no candidate frames left to snap to (every sample excluded "
                                  "or silent)")
        points = np.asarray(points, dtype=np.float64)
        dist, rows = self.tree.query(points, k=1)
        rows, dist = np.asarray(rows, dtype=np.int64), np.asarray(dist, dtype=np.float64)
        far = ~np.isfinite(dist) | (rows >= len(self))  # the distance overflowed: no neighbour
        if far.any():
            i = int(np.argmax(far))
            raise ParameterError(f"point {i} of the path ({', '.join(f'{x:g}' for x in points[i])})"
                                 " lies too far outside the map to be compared with it")
        return rows, dist

    def bounds(self, q: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """The map's bounding box: the ``q``-th and ``100 - q``-th percentiles per axis."""
        return (np.percentile(self.points, q, axis=0), np.percentile(self.points, 100 - q, axis=0))

    def most_common_sr(self) -> int:
        """The most common original sample rate among the indexed samples (ties: the highest)."""
        present = set(np.unique(self.sample_ids).tolist())
        counts = collections.Counter(r for s, r in self.sample_rates.items() if s in present)
        if not counts:
            return 44100
        return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]


def _build_arrays(atlas, model_id: int, ids: np.ndarray, progress) -> dict[str, np.ndarray]:
    """Every frame's point, (sample, frame) and level (energy / the sample's loudest frame)."""
    from soundatlas.embed import frame_energy

    compression = atlas.cqt_params.compression
    sids, frames, points, levels, rate_ids, rates = [], [], [], [], [], []
    done = 0
    for start in range(0, len(ids), 256):
        chunk = ids[start : start + 256].tolist()
        trajectories = atlas.trajectories(model_id, chunk)
        for rec in atlas.samples(chunk):
            traj = trajectories[rec.id]
            energy = frame_energy(atlas.features(rec), compression=compression)
            n = min(len(traj), len(energy))
            peak = float(energy[:n].max()) if n else 0.0
            sids.append(np.full(n, rec.id, np.int64))
            frames.append(np.arange(n, dtype=np.int32))
            points.append(traj[:n])
            levels.append((energy[:n] / peak if peak > 0 else np.zeros(n)).astype(np.float32))
            rate_ids.append(rec.id)
            rates.append(rec.orig_sr)
        done = min(len(ids), start + 256)
        if progress:
            progress(done, len(ids))
    dims = points[0].shape[1] if points else 3
    return {
        "sample_ids": np.concatenate(sids) if sids else np.zeros(0, np.int64),
        "frames": np.concatenate(frames) if frames else np.zeros(0, np.int32),
        "points": (np.concatenate(points).astype(np.float32) if points
                   else np.zeros((0, dims), np.float32)),
        "level": np.concatenate(levels) if levels else np.zeros(0, np.float32),
        "rate_ids": np.array(rate_ids, np.int64),
        "rates": np.array(rates, np.int64),
    }


def _read_cache(file: Path, stamp: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(file, allow_pickle=False) as npz:
            if str(npz["stamp"]) != stamp:
                return None
            return {k: npz[k] for k in npz.files if k != "stamp"}
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


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]


def embedded_model(atlas, name: str | None = None) -> dict:
    """The registration of model ``name`` in the atlas, which must have embeddings.

    None picks 'default' when it has embeddings, else the first model that has some. The
    errors say which command to run.
    """
    models = atlas.models()
    where = f"--atlas {atlas.path}"
    if name is None:
        embedded = [m for m in models if m["n_embedded"] > 0]
        for m in embedded:
            if m["name"] == "default":
                return m
        if embedded:
            return embedded[0]
        raise AtlasError(f"no model has embeddings in {atlas.path}; run `soundatlas embed "
                         f"{where}` (or `soundatlas map LIBRARY`) first")
    for m in models:
        if m["name"] == name:
            if m["n_embedded"] == 0:
                raise AtlasError(f"model {name!r} has no embeddings in {atlas.path}; run "
                                 f"`soundatlas embed {where} --model {name}` first")
            return m
    from soundatlas.artifact import resolve_model

    resolve_model(atlas, name)  # raises 'no model ... (known: ...)' for an unknown name
    raise AtlasError(f"model {name!r} is not embedded in {atlas.path}; run `soundatlas embed "
                     f"{where} --model {name}` first")


# -- paths ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MapPath:
    """A path through the map: ``points`` (n x dims), each held for ``durations[i]`` seconds, or,
    with ``glide``, moving in a straight line to the next point over that time."""

    points: np.ndarray
    durations: np.ndarray
    glide: bool = False

    def __post_init__(self):
        p = np.asarray(self.points, dtype=np.float64)
        d = np.asarray(self.durations, dtype=np.float64).reshape(-1)
        if p.ndim != 2 or len(p) == 0:
            raise ParameterError(f"a path needs at least one point (points of shape {p.shape})")
        if len(d) != len(p):
            raise ParameterError(f"a path has {len(d)} durations for {len(p)} points")
        if not np.isfinite(p).all():
            bad_point = int(np.argmin(np.isfinite(p).all(1)))
            raise ParameterError(f"path point {bad_point} is not finite")
        bad = np.flatnonzero(~(np.isfinite(d) & (d > 0)))
        if len(bad):
            raise ParameterError(f"path duration {int(bad[0])} = {d[bad[0]]!r} must be positive "
                                 "seconds")
        if d.sum() > MAX_DURATION:
            raise ParameterError(f"the path lasts {d.sum():.0f} s; the most is "
                                 f"{MAX_DURATION:.0f} s")
        object.__setattr__(self, "points", p)
        object.__setattr__(self, "durations", d)

    @property
    def duration(self) -> float:
        return float(self.durations.sum())

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.durations)[:-1]])

    def at(self, times: np.ndarray) -> np.ndarray:
        """The path's point at each of ``times`` (seconds; held before 0 and after the end):
        an array (len(times) x dims)."""
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        starts = self.starts
        i = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
        if not self.glide:
            return self.points[i]
        frac = np.clip((t - starts[i]) / self.durations[i], 0.0, 1.0)[:, None]
        nxt = np.minimum(i + 1, len(starts) - 1)
        return self.points[i] + frac * (self.points[nxt] - self.points[i])


def read_path(file: str | os.PathLike, *, dims: int | None = None) -> MapPath:
    """A path from a JSON file ``{"points": [[x, y, z], ...], "durations": [s, ...]}`` (or one
    ``"duration"`` for every point; optional ``"glide": true``). Errors name the problem."""
    file = Path(file)
    try:
        obj = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParameterError(f"path file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"cannot read the path file {file}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno})") from None
    where = f"{file}:"
    if not isinstance(obj, dict):
        raise ParameterError(f"{where} expected an object {{\"points\": [...], \"durations\": "
                             f"[...]}}, found {type(obj).__name__}")
    unknown = sorted(set(obj) - {"points", "durations", "duration", "glide"})
    if unknown:
        raise ParameterError(f"{where} unknown key {unknown[0]!r} (known: points, durations, "
                             "duration, glide)")
    points = obj.get("points")
    if not isinstance(points, list):
        raise ParameterError(f"{where} 'points' must be a list of [x, y, z] points")
    if not points:
        raise ParameterError(f"{where} 'points' is empty: a path needs at least one point")
    want = dims if dims is not None else (len(points[0]) if isinstance(points[0], list) else 0)
    for i, p in enumerate(points):
        if (not isinstance(p, list) or len(p) != want or want == 0
                or not all(_is_number(x) and math.isfinite(x) for x in p)):
            raise ParameterError(f"{where} points[{i}] = {json.dumps(p)[:60]} is not a list of "
                                 f"{want or 'dims'} finite numbers")
    if "durations" in obj and "duration" in obj:
        raise ParameterError(f"{where} give 'durations' (one per point) or 'duration' (for every "
                             "point), not both")
    if "durations" in obj:
        durations = obj["durations"]
        if not isinstance(durations, list):
            raise ParameterError(f"{where} 'durations' must be a list of seconds, one per point")
        if len(durations) != len(points):
            raise ParameterError(f"{where} 'durations' has {len(durations)} entries for "
                                 f"{len(points)} points")
    elif "duration" in obj:
        durations = [obj["duration"]] * len(points)
    else:
        raise ParameterError(f"{where} no 'durations' (seconds, one per point) or 'duration'")
    for i, d in enumerate(durations):
        if not (_is_number(d) and math.isfinite(d) and d > 0):
            name = f"durations[{i}]" if "durations" in obj else "duration"
            raise ParameterError(f"{where} {name} = {json.dumps(d)} must be a positive number of "
                                 "seconds")
    glide = obj.get("glide", False)
    if not isinstance(glide, bool):
        raise ParameterError(f"{where} 'glide' must be true or false")
    try:
        return MapPath(np.array(points, dtype=np.float64), np.array(durations, dtype=np.float64),
                       glide=glide)
    except ParameterError as exc:
        raise ParameterError(f"{where} {exc}") from None


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _walk_steps(duration: float, step: float) -> tuple[int, np.ndarray]:
    if not (math.isfinite(duration) and 0 < duration <= MAX_DURATION):
        raise ParameterError(f"duration={duration} must be positive seconds, at most "
                             f"{MAX_DURATION:.0f}")
    if not step > 0:
        raise ParameterError(f"step={step} must be positive seconds")
    n = max(1, math.ceil(duration / step - 1e-9))
    return n, np.full(n, duration / n)


def random_walk(index: FrameIndex, *, duration: float, seed: int = 0, step: float = 0.1,
                speed: float = 0.15, smooth: float = 1.0) -> MapPath:
    """A smoothed random walk inside the map's bounding box (1st to 99th percentile per axis).

    It starts at a random candidate frame; its velocity is Gaussian noise low-pass filtered
    over ``smooth`` seconds, scaled to ``speed`` box widths per second, and it reflects off the
    box's walls. Points every ``step`` seconds, glided between. The same ``seed``, the same walk.
    """
    from scipy.ndimage import gaussian_filter1d

    n, durations = _walk_steps(duration, step)
    if len(index) == 0:
        raise SoundAtlasError("no candidate frames to walk among")
    rng = np.random.default_rng(seed)
    lo, hi = index.bounds(1.0)
    size = np.maximum(hi - lo, 1e-6)
    v = rng.standard_normal((n, index.dims))
    v = gaussian_filter1d(v, sigma=max(smooth / step, 1e-3), axis=0, mode="reflect")
    v /= np.maximum(v.std(axis=0, keepdims=True), 1e-12)
    start = index.points[rng.integers(len(index))].astype(np.float64)
    x = start + np.cumsum(v * speed * size * step, axis=0) - v[0] * speed * size * step
    u = np.mod((x - lo) / size, 2.0)  # reflect into the box: a triangle wave of period 2
    x = lo + size * np.where(u > 1.0, 2.0 - u, u)
    return MapPath(x, durations, glide=True)


def knn_walk(index: FrameIndex, *, duration: float, seed: int = 0, k: int = 8,
             step: float = 0.25) -> MapPath:
    """A walk on the k-NN graph of frames: from a random frame, each step hops, uniformly, to
    the next frame of its own sample or to one of its nearest frames of ``k`` *other* samples
    (the nearest frame of each of the ``k`` nearest other samples, so the walk is not trapped
    among the many near-identical frames of one sustained note). Each frame is held ``step``
    seconds. The same ``seed``, the same walk."""
    if k < 1:
        raise ParameterError(f"k={k} must be at least 1")
    n, durations = _walk_steps(duration, step)
    if len(index) == 0:
        raise SoundAtlasError("no candidate frames to walk among")
    rng = np.random.default_rng(seed)
    sids, frames, tree = index.sample_ids, index.frames, index.tree
    n_samples = len(np.unique(sids))
    row = int(rng.integers(len(index)))
    rows = [row]
    for _ in range(n - 1):
        sid = int(sids[row])
        options = []
        if row + 1 < len(index) and sids[row + 1] == sid and frames[row + 1] == frames[row] + 1:
            options.append(row + 1)
        want = min(len(index), 4 * k + 16)
        while True:
            _, near = tree.query(index.points[row], k=want)
            others: dict[int, int] = {}  # sample -> its nearest frame, in order of distance
            for j in np.atleast_1d(near).tolist():
                if sids[j] != sid and int(sids[j]) not in others:
                    others[int(sids[j])] = j
                    if len(others) == k:
                        break
            if len(others) >= min(k, n_samples - 1) or want >= len(index):
                break
            want = min(len(index), want * 4)
        options += list(others.values())
        row = int(options[rng.integers(len(options))]) if options else row
        rows.append(row)
    return MapPath(index.points[np.array(rows)], durations, glide=False)


# -- exclusions ---------------------------------------------------------------------------------


def resolve_exclusions(atlas, items: Iterable[str | int]) -> set[int]:
    """Sample ids named by ``items``: sample ids (numbers) or library folders / files (paths
    relative to the library, or absolute inside it). An item that matches nothing is an error."""
    items = list(items)
    if not items:
        return set()
    rows = [(sid, p) for sid, _h, p in atlas.iter_ids_hashes()]
    known_ids = {sid for sid, _ in rows}
    library = atlas.library.resolve()
    out: set[int] = set()
    for item in items:
        text = str(item).strip()
        if isinstance(item, int) or text.isdigit():
            sid = int(text)
            if sid not in known_ids:
                raise ParameterError(f"exclude {text}: no sample with that id")
            out.add(sid)
            continue
        rel = _relative(atlas, text)
        if rel is None:
            raise ParameterError(f"exclude {text!r} is outside the library {library}")
        matched = {sid for sid, p in rows
                   if rel in ("", ".") or p == rel or p.startswith(rel + "/")}
        if not matched:
            raise ParameterError(f"exclude {text!r} matches no sample (give a sample id or a "
                                 "folder or file relative to the library)")
        out |= matched
    return out


def _relative(atlas, text: str) -> str | None:
    """``text`` as a path relative to the library, forward slashes (None: outside it)."""
    if Path(text).is_absolute():
        try:
            return Path(text).resolve().relative_to(atlas.library.resolve()).as_posix()
        except ValueError:
            return None
    rel = text.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    return rel.strip("/")


def self_exclusions(atlas, target: str | os.PathLike, content_hash: str | None = None) -> set[int]:
    """Ids of samples with the same content as ``target`` or at its path in the library."""
    from soundatlas.pipeline import content_hash as hash_of

    digest = content_hash or hash_of(target)
    out = {sid for sid, h, _p in atlas.iter_ids_hashes() if h == digest}
    try:
        rel = Path(target).resolve().relative_to(atlas.library.resolve()).as_posix()
    except ValueError:
        return out
    out |= {v[0] for v in atlas.lookup_paths([rel]).values()}
    return out


# -- decoded originals -----------------------------------------------------------------------------


class AudioCache:
    """Grains of the original files at the output rate ``sr``, read as cheaply as the file
    allows, kept while they fit in ``max_bytes`` (least recently used dropped first).

    A file already at ``sr`` that can seek (WAV, AIFF, FLAC, ...) gives each grain by reading
    only that grain's frames; any other (one that needs resampling, or cannot seek) is decoded
    once, whole (its analysed part plus ``margin`` s), and grains are cut from it. Either way a
    grain is exactly ``_cut(decode_original(...), start, n)``: the same samples, the same 2 ms
    fades at the decoded part's ends. ``n_decoded`` counts the distinct files read,
    ``frames_read`` the frames decoded from them."""

    def __init__(self, library: str | os.PathLike, sr: int, *, max_bytes: int = 256 << 20,
                 margin: float = 1.0, spans: bool = True):
        self.library = Path(library)
        self.sr = int(sr)
        self.max_bytes = int(max_bytes)
        self.margin = float(margin)
        self.spans = spans  # False: always decode whole files (for comparison: bench_synth)
        self.n_decoded = 0
        self.frames_read = 0
        self._read: set[str] = set()
        self._items: collections.OrderedDict[object, np.ndarray] = collections.OrderedDict()
        self._bytes = 0
        self._lengths: dict[str, int | None] = {}  # path -> decoded length (None: decode whole)

    def get(self, rec) -> np.ndarray:
        """The file of sample record ``rec`` as mono float32 at ``sr``: the analysed part plus
        ``margin`` seconds. Raises AudioReadError when it cannot be read now."""
        y = self._recall(rec.path)
        if y is None:
            y = decode_original(self.library / rec.path, sr=self.sr,
                                max_duration=rec.duration + self.margin)
            self._counted(rec.path)
            self.frames_read += len(y)
            self._keep(rec.path, y)
        return y

    def grain(self, rec, start: int, n: int) -> np.ndarray:
        """``n`` samples of ``rec``'s decoded file from ``start`` (shifted inside it, or
        zero-padded when it is shorter), as :func:`_cut` gives them."""
        whole = self._recall(rec.path)
        if whole is not None:
            return _cut(whole, start, n)
        length = self._length(rec) if self.spans else None
        if length is None:
            return _cut(self.get(rec), start, n)
        key = (rec.path, start, n)
        y = self._recall(key)
        if y is None:
            y = self._read_span(rec, length, start, n)
            if y is None:  # the file holds fewer frames than its header says: decode it whole
                self._lengths[rec.path] = None
                return _cut(self.get(rec), start, n)
            self._keep(key, y)
        return y

    def _length(self, rec) -> int | None:
        """Samples of ``rec``'s decoded part when grains can be read as spans (the file is at
        ``sr`` and seekable), else None. Raises AudioReadError when it cannot be opened."""
        if rec.path not in self._lengths:
            from soundatlas import audio

            with audio.open_sound(self.library / rec.path) as f:
                native = f.samplerate == self.sr and f.seekable() and f.frames > 0
                limit = max(1, round((rec.duration + self.margin) * f.samplerate))
                self._lengths[rec.path] = min(f.frames, limit) if native else None
        return self._lengths[rec.path]

    def _read_span(self, rec, length: int, start: int, n: int) -> np.ndarray | None:
        from soundatlas import audio

        if length >= n:
            lo = min(max(start, 0), length - n)
            hi = lo + n
        else:
            lo, hi = max(start, 0), min(start + n, length)
        path = self.library / rec.path
        y = np.zeros(hi - lo if length >= n else n, dtype=np.float32)
        if hi > lo:
            with audio.open_sound(path) as f:
                try:
                    f.seek(lo)
                    x = f.read(hi - lo, dtype="float32", always_2d=True)
                except Exception as exc:  # noqa: BLE001 - corrupt data: the reason, as load gives
                    raise AudioReadError(path, audio.decode_reason(exc)) from exc
            self.frames_read += len(x)
            if len(x) < hi - lo:
                return None
            mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float64)
            if not np.isfinite(mono).all():
                raise AudioReadError(path, "non-finite samples (NaN or inf)")
            seg = mono.astype(np.float32)
            _fade_edges(seg, lo, length, self.sr)
            if length >= n:
                y = seg
            else:
                y[lo - start : hi - start] = seg
        self._counted(rec.path)
        return y

    def _counted(self, path: str) -> None:
        if path not in self._read:
            self._read.add(path)
            self.n_decoded += 1

    def _recall(self, key):
        y = self._items.get(key)
        if y is not None:
            self._items.move_to_end(key)
        return y

    def _keep(self, key, y: np.ndarray) -> None:
        self._items[key] = y
        self._bytes += y.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes


def _fade_edges(seg: np.ndarray, lo: int, length: int, sr: int) -> None:
    """Apply to ``seg`` (samples ``lo`` onwards of a decoded part of ``length`` samples) the
    fades :func:`decode_original` gives that part's first and last 2 ms, in place."""
    n = min(length // 2, max(1, int(EDGE_FADE_S * sr)))
    if not n:
        return
    ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
    hi = lo + len(seg)
    if lo < n:  # the head: sample i of the part is scaled by ramp[i]
        seg[: min(n, hi) - lo] *= ramp[lo : min(n, hi)]
    tail = length - n
    if hi > tail:  # the tail: sample tail + j by ramp[n - 1 - j]
        a = max(lo, tail)
        seg[a - lo : hi - lo] *= ramp[::-1][a - tail : hi - tail]


def decode_original(path: str | os.PathLike, *, sr: int, max_duration: float | None) -> np.ndarray:
    """A library file as mono float32 at ``sr`` (soxr only when its own rate differs), its first
    ``max_duration`` s, with a 2 ms fade at both ends (so zero padding never makes a step)."""
    from soundatlas import audio

    y = audio.load(path, sr=sr, max_duration=max_duration, min_duration=0.0).y
    n = min(len(y) // 2, max(1, int(EDGE_FADE_S * sr)))
    if n:
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        y = y.copy()
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    return y


# -- rendering -------------------------------------------------------------------------------------


@dataclass(eq=False)
class Rendering:
    """What :func:`render` made: ``y`` (float32 mono, within +-CEILING) at ``sr``, and each
    grain's (sample id, frame), centre time in the output, snap distance and gain."""

    y: np.ndarray
    sr: int
    grains: list[tuple[int, int]]
    times: np.ndarray
    distances: np.ndarray
    gains: np.ndarray
    model: str
    grain: float
    overlap: float
    window_ripple: float     # (max - min) / mean of the windows' sum: 0 when they add to a constant
    limiter_db: float        # the limiter's largest gain reduction (0: it never acted)
    seconds: float           # wall time of the render
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), skipped
    n_excluded: int = 0      # samples left out (exclusions)
    n_decoded: int = 0       # files decoded

    @property
    def duration(self) -> float:
        return len(self.y) / self.sr

    @property
    def n_samples_used(self) -> int:
        return len({s for s, _ in self.grains})

    def summary(self) -> dict:
        """The numbers the CLI prints (JSON-ready)."""
        return {
            "model": self.model, "duration": round(self.duration, 4), "sr": self.sr,
            "n_grains": len(self.grains), "n_samples_used": self.n_samples_used,
            "grain": self.grain, "overlap": self.overlap,
            "mean_snap_distance": (round(float(self.distances.mean()), 5) if len(self.grains)
                                   else None),
            "window_ripple": round(self.window_ripple, 6), "limiter_db": round(self.limiter_db, 2),
            "peak": round(float(np.abs(self.y).max()), 4) if len(self.y) else 0.0,
            "seconds": round(self.seconds, 4),
            "realtime_factor": round(self.duration / self.seconds, 1) if self.seconds > 0 else None,
            "n_excluded": self.n_excluded, "n_decoded": self.n_decoded,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
        }


def hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples (its shifts by n/2 add up to exactly 1)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def window_ripple(n: int, hop: int) -> tuple[float, float]:
    """(mean, (max - min) / mean) of the steady-state sum of Hann windows of ``n`` every ``hop``."""
    w = hann(n).astype(np.float64)
    total = np.zeros(hop)
    for start in range(0, n, hop):
        part = w[start : start + hop]
        total[: len(part)] += part
    mean = float(total.mean())
    return mean, float((total.max() - total.min()) / mean) if mean > 0 else math.inf


def _check_grain(grain: float, overlap: float) -> None:
    if not (math.isfinite(grain) and 0.01 <= grain <= 10.0):
        raise ParameterError(f"grain={grain} must be between 0.01 and 10 seconds")
    if not (math.isfinite(overlap) and 0.0 <= overlap <= 0.95):
        raise ParameterError(f"overlap={overlap} must be between 0 and 0.95")


def render(atlas, model: str | dict | None, path: MapPath, *, sr: int | None = None,
           grain: float = 0.5, overlap: float = 0.5, exclude: Iterable[str | int] = (),
           duration: float | None = None,
           loudness: Callable[[np.ndarray, float], np.ndarray] | None = None,
           max_gain: float = MAX_GAIN, index: FrameIndex | None = None,
           cache: AudioCache | None = None) -> Rendering:
    """Render ``path`` (a :class:`MapPath`) by concatenative synthesis; see the module doc.

    ``model``: a name, a registration or None (the default embedded model). ``sr``: output rate
    (default: the most common original rate). ``grain`` seconds per grain, ``overlap`` the
    fraction of a grain shared with the next. ``exclude``: sample ids or library folders/files
    never used. ``duration``: seconds to render (default the path's). ``loudness(times, grain)``:
    the target RMS of the grains centred at ``times`` (default: their median RMS). ``index``: a
    :class:`FrameIndex` already loaded (exclusions still apply); ``cache``: an :class:`AudioCache`
    to share decoded files between renders. Returns a :class:`Rendering`.
    """
    start_time = time.perf_counter()
    _check_grain(grain, overlap)
    if not max_gain >= 1:
        raise ParameterError(f"max_gain={max_gain} must be at least 1")
    if sr is not None and not (isinstance(sr, (int, np.integer)) and 1000 <= sr <= 384000):
        raise ParameterError(f"sr={sr!r} must be an integer rate between 1000 and 384000 Hz")
    if index is None:
        reg = model if isinstance(model, dict) else embedded_model(atlas, model)
        index = FrameIndex.load(atlas, reg)
    excluded = resolve_exclusions(atlas, exclude)
    candidates = index.without(excluded)
    if path.points.shape[1] != index.dims:
        raise ParameterError(f"the path's points have {path.points.shape[1]} coordinates; model "
                             f"{index.model!r} maps to {index.dims}")
    if len(candidates) == 0:
        raise SoundAtlasError("every sounding frame is excluded: nothing left to render with")
    sr = int(sr or candidates.most_common_sr())
    total = path.duration if duration is None else float(duration)
    if not (math.isfinite(total) and 0 < total <= MAX_DURATION):
        raise ParameterError(f"duration={total} must be positive seconds, at most "
                             f"{MAX_DURATION:.0f}")

    n_out = max(1, int(round(total * sr)))
    n_win = max(2, 2 * int(round(grain * sr / 2)))  # even: the window's centre is a sample
    hop = max(1, int(round(n_win * (1 - overlap))))
    half = n_win // 2
    # grain centres k*hop, every k whose window reaches into [0, n_out)
    k_min, k_max = -((half - 1) // hop), (n_out - 1 + half) // hop
    centres = np.arange(k_min, k_max + 1, dtype=np.int64) * hop
    times = centres / sr
    points = path.at(np.clip(times, 0.0, total))

    cache = cache if cache is not None and cache.sr == sr else AudioCache(atlas.library, sr)
    n_decoded_before = cache.n_decoded
    window = hann(n_win)
    w2 = float((window.astype(np.float64) ** 2).sum())
    failures: list[tuple[str, str]] = []
    records: dict[int, object] = {}
    while True:  # snap, read; a file that fails now is left out and its grains snap again
        rows, dist = candidates.nearest(points)
        sids = candidates.sample_ids[rows]
        need = sorted(set(sids.tolist()) - set(records))
        for rec in atlas.samples(need):
            records[rec.id] = rec
        frames = candidates.frames[rows]
        sources = [int(round(f * index.frame_period * sr)) - half for f in frames.tolist()]

        def windowed(k: int) -> np.ndarray:  # read again in the second pass (from the cache
            return cache.grain(records[int(sids[k])], sources[k], n_win) * window  # if kept)

        bad: set[int] = set()
        rms = np.zeros(len(centres))
        for k, sid in enumerate(sids.tolist()):  # the first pass: every grain's RMS
            if sid in bad:
                continue
            if sid not in records:  # removed from the atlas after the index was made
                failures.append((f"sample {sid}", "no longer in the atlas"))
                bad.add(sid)
                continue
            try:
                g = windowed(k)
            except AudioReadError as exc:
                failures.append((records[sid].path, exc.reason))
                bad.add(sid)
                continue
            rms[k] = math.sqrt(float(np.dot(g, g)) / w2)
        if not bad:
            break
        candidates = candidates.without(bad)
        if len(candidates) == 0:
            raise SoundAtlasError(f"no readable file left to render with ({len(failures)} could "
                                  f"not be read, e.g. {failures[0][0]}: {failures[0][1]})")
    if loudness is None:
        sounding = rms[rms > 0]
        target = np.full(len(rms), float(np.median(sounding)) if len(sounding) else 0.0)
    else:
        target = np.asarray(loudness(times, n_win / sr), dtype=np.float64)
    gains = np.where(rms > 0, np.minimum(target / np.maximum(rms, 1e-12), max_gain), 0.0)

    mean, ripple = window_ripple(n_win, hop)
    out = np.zeros(n_out + 2 * n_win, dtype=np.float32)  # offset n_win: grains may start before 0
    wsum = np.zeros_like(out) if ripple > 1e-6 else None
    for k, c in enumerate(centres.tolist()):
        s = c - half + n_win
        if gains[k] > 0:
            out[s : s + n_win] += np.float32(gains[k]) * windowed(k)
        if wsum is not None:
            wsum[s : s + n_win] += window
    y = out[n_win : n_win + n_out]
    if wsum is not None:  # not a constant sum: divide by it (floored: gaps fade, never blow up)
        y /= np.maximum(wsum[n_win : n_win + n_out], np.float32(0.1 * mean))
    elif abs(mean - 1.0) > 1e-6:
        y /= np.float32(mean)
    _fade_ends(y, sr)
    y, limiter_db = _limit(y, sr)
    return Rendering(
        y=y, sr=sr, grains=list(zip(sids.tolist(), frames.tolist())), times=times,
        distances=dist, gains=gains, model=index.model, grain=grain, overlap=overlap,
        window_ripple=ripple, limiter_db=limiter_db, seconds=time.perf_counter() - start_time,
        failures=failures, n_excluded=len(excluded), n_decoded=cache.n_decoded - n_decoded_before)


def _cut(y: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` samples of ``y`` from ``start``: shifted to lie inside ``y`` when it is long enough,
    else zero-padded (``y`` fades at its ends, so padding makes no step)."""
    if len(y) >= n:
        start = min(max(start, 0), len(y) - n)
        return y[start : start + n]
    out = np.zeros(n, dtype=np.float32)
    lo, hi = max(start, 0), min(start + n, len(y))
    if hi > lo:
        out[lo - start : hi - start] = y[lo:hi]
    return out


def _fade_ends(y: np.ndarray, sr: int) -> None:
    n = min(len(y) // 2, int(FADE_S * sr))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        y[:n] *= ramp
        y[len(y) - n :] *= ramp[::-1]


def _limit(y: np.ndarray, sr: int, *, ceiling: float = CEILING) -> tuple[np.ndarray, float]:
    """A look-ahead limiter: |y| <= ceiling everywhere. Returns (y, largest reduction in dB).

    The needed gain min(1, ceiling/|y|) goes through a moving minimum then a moving average of
    the same width: every average is over minima of windows that contain the sample, so the
    smooth gain never exceeds the needed one."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak <= ceiling:
        return y, 0.0
    need = np.minimum(np.float32(1), np.float32(ceiling) / np.maximum(np.abs(y), np.float32(1e-12)))
    width = 2 * max(1, int(LIMITER_S * sr)) + 1
    gain = uniform_filter1d(minimum_filter1d(need, width, mode="nearest"), width, mode="nearest")
    y = np.clip(y * gain, -ceiling, ceiling).astype(np.float32)  # the clip only trims rounding
    return y, float(-20 * math.log10(max(float(gain.min()), 1e-12)))


# -- mosaic ---------------------------------------------------------------------------------------


def mosaic(atlas, model: str | None, target: str | os.PathLike, *, exclude_self: bool = False,
           exclude: Iterable[str | int] = (), sr: int | None = None, grain: float = 0.5,
           overlap: float = 0.5, max_gain: float = MAX_GAIN, index: FrameIndex | None = None,
           cache: AudioCache | None = None) -> tuple[Rendering, dict]:
    """Rebuild ``target`` (an audio file) from the library: its trajectory, computed exactly as
    the query-by-example endpoint does (the atlas's CQT at feature precision, embedded with the
    file's content hash), is followed with grains (glided between frames, 20 per second), each
    scaled to the target's own windowed RMS at its time. ``exclude_self`` leaves out samples
    with the target's content hash or path. Returns the rendering and facts about the target."""
    from soundatlas.artifact import check_cqt, resolve_model
    from soundatlas.embed import embed_outside_file
    from soundatlas.pipeline import content_hash

    _check_grain(grain, overlap)
    reg = embedded_model(atlas, model)
    artifact, _ = resolve_model(atlas, reg["name"])
    check_cqt(artifact, atlas.cqt_params)
    params = atlas.cqt_params
    digest = content_hash(target)
    decoded, _F, traj, _point = embed_outside_file(atlas, artifact, target, content_hash=digest)
    period = params.hop_length / params.sr
    path = MapPath(traj, np.full(len(traj), period), glide=True)
    excluded = set(resolve_exclusions(atlas, exclude))
    n_self = 0
    if exclude_self:
        own = self_exclusions(atlas, target, digest)
        n_self = len(own - excluded)
        excluded |= own
    y16 = decoded.y.astype(np.float64)

    def loudness(times: np.ndarray, seconds: float) -> np.ndarray:
        n = max(2, 2 * int(round(seconds * params.sr / 2)))
        w = hann(n).astype(np.float64)
        padded = np.pad(y16, (n, n))
        out = np.empty(len(times))
        for k, t in enumerate(times):
            s = int(round(t * params.sr)) - n // 2 + n
            seg = padded[max(0, s) : max(0, s) + n] if 0 <= s <= len(padded) - n else np.zeros(n)
            out[k] = math.sqrt(float(np.dot(seg * w, seg * w)) / float(np.dot(w, w)))
        return out

    result = render(atlas, reg, path, sr=sr, grain=grain, overlap=overlap, exclude=excluded,
                    duration=decoded.duration, loudness=loudness, max_gain=max_gain,
                    index=index if index is not None else FrameIndex.load(atlas, reg), cache=cache)
    facts = {"target": str(target), "hash": digest, "duration": decoded.duration,
             "truncated": decoded.truncated, "n_frames": len(traj), "n_self_excluded": n_self,
             "excluded_ids": sorted(excluded)}
    return result, facts


# -- trajectories ----------------------------------------------------------------------------------


def find_sample(atlas, text: str | int):
    """The sample record named by ``text``: a sample id, or a path relative to the library (or
    absolute inside it)."""
    s = str(text).strip()
    if isinstance(text, int) or s.isdigit():
        recs = atlas.samples([int(s)])
        if recs:
            return recs[0]
    found = atlas.lookup_paths([_relative(atlas, s) or s])
    if found:
        return atlas.samples([next(iter(found.values()))[0]])[0]
    raise ParameterError(f"no sample {s!r} in {atlas.path} (give a sample id or a path relative "
                         "to the library, as `soundatlas serve` or the atlas lists them)")


def plot_trajectory(atlas, model: str | dict | None, sample, output: str | os.PathLike, *,
                    dpi: int = 100) -> Path:
    """Draw ``sample``'s trajectory (a record, id or path) in 3-D over the faint map, start,
    middle (the median frame) and end marked as in the report (o, ■, X; * its point), beside its
    coordinates and loudness over time. Writes a PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from soundatlas.embed import frame_energy
    from soundatlas.report import VIEWS

    reg = model if isinstance(model, dict) else embedded_model(atlas, model)
    rec = sample if hasattr(sample, "path") else find_sample(atlas, sample)
    try:
        t = atlas.trajectory(reg["id"], rec.id)
    except AtlasError:
        raise AtlasError(f"sample {rec.id} ({rec.path}) has no embedding for model "
                         f"{reg['name']!r}; run `soundatlas embed --atlas {atlas.path} "
                         f"--model {reg['name']}`") from None
    ids, pts = atlas.points(reg["id"])
    if t.shape[1] < 3:
        raise ParameterError(f"model {reg['name']!r} maps to {t.shape[1]} dimensions; a 3-D "
                             "figure needs 3")
    point = pts[np.searchsorted(ids, rec.id)]
    energy = frame_energy(atlas.features(rec), compression=atlas.cqt_params.compression)
    period = atlas.cqt_params.hop_length / atlas.cqt_params.sr
    secs = np.arange(len(t)) * period
    labels = atlas.sample_labels(rec.id)
    name = rec.path + (f"  ({', '.join(f'{k} {v}' for k, v in sorted(labels.items()))})"
                       if labels else "")

    fig = plt.figure(figsize=(13, 6))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c="#cccccc", s=2, linewidths=0, alpha=0.35)
    ax.plot(t[:, 0], t[:, 1], t[:, 2], color="#333333", lw=0.8, alpha=0.7)
    sc = ax.scatter(t[:, 0], t[:, 1], t[:, 2], c=secs, cmap="viridis", s=10, linewidths=0)
    mid = len(t) // 2
    for i, marker, size, what in ((0, "o", 60, "start"), (mid, "s", 60, "median frame"),
                                  (len(t) - 1, "X", 90, "end")):
        colour = plt.get_cmap("viridis")(i / max(1, len(t) - 1))
        ax.scatter(t[i, 0], t[i, 1], t[i, 2], color=colour, marker=marker, s=size,
                   edgecolors="k", label=f"{what} ({secs[i]:.2f} s)")
    ax.scatter(*point[:3], color="#d62728", marker="*", s=160, edgecolors="k",
               label="the sample's point")
    ax.view_init(elev=VIEWS[0][0], azim=VIEWS[0][1])
    ax.legend(fontsize=8, loc="upper left")
    ax.tick_params(labelsize=7)
    fig.colorbar(sc, ax=ax, shrink=0.6, label="seconds")
    ax.set_title(f"trajectory over the map of {reg['name']!r} (grey: every sample)", fontsize=9)

    ax2 = fig.add_subplot(1, 2, 2)
    for d, colour in zip(range(min(3, t.shape[1])), ("#1f77b4", "#ff7f0e", "#2ca02c")):
        ax2.plot(secs, t[:, d], color=colour, lw=1.2, label="xyz"[d])
    for i in (0, mid, len(t) - 1):
        ax2.axvline(secs[i], color="k", lw=0.5, ls=":")
    ax2.set_xlabel("seconds")
    ax2.set_ylabel("coordinate")
    ax3 = ax2.twinx()
    n = min(len(energy), len(t))
    ax3.fill_between(secs[:n], 0, energy[:n] / max(float(energy.max()), 1e-12), color="#999999",
                     alpha=0.25, label="loudness (CQT energy)")
    ax3.set_ylim(0, 1.05)
    ax3.set_yticks([])
    ax2.legend(fontsize=8, loc="upper right")
    ax2.set_title("coordinates over time (grey: frame loudness)", fontsize=9)
    fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    out = Path(output)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


# -- output ---------------------------------------------------------------------------------------


WAV_SUBTYPES = {"pcm16": ("PCM_16", "16-bit PCM WAV"), "float": ("FLOAT", "32-bit float WAV")}


def wav_bytes(y: np.ndarray, sr: int, *, fmt: str = "pcm16") -> bytes:
    """Mono ``y`` as the bytes of a WAV file (``fmt``: 'pcm16' or 'float'), made in memory."""
    import io

    import soundfile as sf

    if fmt not in WAV_SUBTYPES:
        raise ParameterError(f"fmt={fmt!r} must be one of {', '.join(WAV_SUBTYPES)}")
    buf = io.BytesIO()
    sf.write(buf, np.asarray(y, dtype=np.float32), int(sr), format="WAV",
             subtype=WAV_SUBTYPES[fmt][0])
    return buf.getvalue()


def write_wav(path: str | os.PathLike, y: np.ndarray, sr: int, *, fmt: str = "pcm16") -> Path:
    """Write mono ``y`` as a WAV file (``fmt``: 'pcm16' or 'float'), atomically."""
    import soundfile as sf

    if fmt not in WAV_SUBTYPES:
        raise ParameterError(f"fmt={fmt!r} must be one of {', '.join(WAV_SUBTYPES)}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        sf.write(tmp, np.asarray(y, dtype=np.float32), int(sr), format="WAV",
                 subtype=WAV_SUBTYPES[fmt][0])
        os.replace(tmp, path)
    except (OSError, sf.LibsndfileError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or exc
        raise SoundAtlasError(f"cannot write {path}: {reason}") from exc
    return path
