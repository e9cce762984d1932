"""Paths through the map: drawn or read from a file (:class:`MapPath`, :func:`read_path`), or
walked over the frame index (:func:`random_walk`, :func:`knn_walk`)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundatlas.errors import ParameterError, SoundAtlasError
from soundatlas.synth.index import FrameIndex

__all__ = ["MIN_DURATION", "MAX_DURATION", "MapPath", "read_path", "random_walk", "knn_walk",
           "check_duration"]

MIN_DURATION = 0.01  # seconds: shorter than a click
MAX_DURATION = 600.0   # seconds: the longest render (10 minutes of float32 at 48 kHz: 115 MB)


@dataclass(frozen=True, eq=False)
class MapPath:
    """A path through the map: points, each held for a time or glided from to the next.

    Parameters
    ----------
    points : array_like, shape (n, dims)
        The path's points in the map's coordinates (at least one, all finite).
    durations : array_like, shape (n,)
        Seconds spent at (or, with ``glide``, moving on from) each point; all positive, at most
        ``MAX_DURATION`` in all.
    glide : bool, default False
        Move in a straight line from each point to the next over its duration, instead of
        holding it.

    Raises
    ------
    ParameterError
        The points or durations are malformed, or the path is too long.
    """

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
            raise ParameterError(f"durations[{int(bad[0])}] = {float(d[bad[0]]):g} must be "
                                 "positive seconds")
        if d.sum() > MAX_DURATION:
            raise ParameterError(f"the path lasts {d.sum():.6g} s; the most is "
                                 f"{MAX_DURATION:g} s")
        if d.sum() < MIN_DURATION:  # (1e-9 s made a WAV of one sample)
            raise ParameterError(f"the path lasts {d.sum():g} s; the least is {MIN_DURATION:g} s")
        object.__setattr__(self, "points", p)
        object.__setattr__(self, "durations", d)

    @property
    def duration(self) -> float:
        """The path's length in seconds."""
        return float(self.durations.sum())

    @property
    def starts(self) -> np.ndarray:
        """The second at which each point starts."""
        return np.concatenate([[0.0], np.cumsum(self.durations)[:-1]])

    def at(self, times: np.ndarray) -> np.ndarray:
        """The path's point at given times.

        Parameters
        ----------
        times : array_like of float
            Seconds from the path's start; the first point holds before 0 and the last after
            the end.

        Returns
        -------
        ndarray, shape (len(times), dims)
        """
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        starts = self.starts
        i = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
        if not self.glide:
            return self.points[i]
        frac = np.clip((t - starts[i]) / self.durations[i], 0.0, 1.0)[:, None]
        nxt = np.minimum(i + 1, len(starts) - 1)
        # between points far apart the difference overflows: the frame index names such a
        # point as too far outside the map (FrameIndex.nearest), without numpy's warnings
        with np.errstate(over="ignore", invalid="ignore"):
            return self.points[i] + frac * (self.points[nxt] - self.points[i])


def read_path(file: str | os.PathLike, *, dims: int | None = None) -> MapPath:
    """A path read from a JSON file.

    The file holds ``{"points": [[x, y, z], ...], "durations": [s, ...]}``, or one
    ``"duration"`` for every point instead of ``"durations"``, and optionally ``"glide": true``.

    Parameters
    ----------
    file : str or path-like
        The JSON file.
    dims : int, optional
        The coordinates every point must have (default: as many as the first point has).

    Returns
    -------
    MapPath
        The path as the file gives it.

    Raises
    ------
    ParameterError
        The file cannot be read or is malformed; the message names the problem.
    """
    file = Path(file)
    try:
        obj = json.loads(file.read_text(encoding="utf-8"), parse_int=_json_int)
    except FileNotFoundError:
        raise ParameterError(f"path file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"cannot read the path file {file}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno})") from None
    except _HugeNumber as exc:
        raise ParameterError(f"{file}: the number {exc} is too large for a coordinate or "
                             "seconds") from None
    except RecursionError:
        raise ParameterError(f"{file}: lists or objects nested too deeply to read (a point is "
                             "[x, y, z])") from None
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


class _HugeNumber(Exception):
    """An integer of a path file beyond any float (its text, shortened, is the message)."""


def _json_int(text: str) -> int:
    """An integer of a path file, refused (:class:`_HugeNumber`) where no float holds it: such
    a number is no coordinate or duration, and its digits may be past Python's limit on
    converting them."""
    if not math.isfinite(float(text)):
        short = text if len(text) <= 24 else f"{text[:12]}...{text[-6:]}"
        raise _HugeNumber(f"{short} ({len(text.lstrip('-'))} digits)")
    return int(text)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_duration(seconds: float) -> None:
    """Check the length of a render or a walk.

    Parameters
    ----------
    seconds : float
        From ``MIN_DURATION`` to ``MAX_DURATION``.

    Raises
    ------
    ParameterError
        ``seconds`` is out of range.
    """
    if not (math.isfinite(seconds) and MIN_DURATION <= seconds <= MAX_DURATION):
        raise ParameterError(f"duration={seconds:g} must be from {MIN_DURATION:g} to "
                             f"{MAX_DURATION:.0f} seconds")


def _walk_steps(index: FrameIndex, duration: float, step: float) -> tuple[int, np.ndarray]:
    """How many points a walk of ``duration`` s takes a point every ``step`` s, and their
    durations; the walk's arguments and its index checked."""
    check_duration(duration)
    if not step > 0:
        raise ParameterError(f"step={step} must be positive seconds")
    if len(index) == 0:
        raise SoundAtlasError("no candidate frames to walk among")
    n = max(1, math.ceil(duration / step - 1e-9))
    return n, np.full(n, duration / n)


def random_walk(index: FrameIndex, *, duration: float, seed: int = 0, step: float = 0.1,
                speed: float = 0.15, smooth: float = 1.0) -> MapPath:
    """A smoothed random walk inside the map's bounding box (1st to 99th percentile per axis).

    It starts at a random candidate frame; its velocity is Gaussian noise low-pass filtered
    over ``smooth`` seconds, scaled to ``speed`` box widths per second, and it reflects off the
    box's walls. The same ``seed``, the same walk.

    Parameters
    ----------
    index : FrameIndex
        The map to walk in.
    duration : float
        Seconds, positive and at most ``MAX_DURATION``.
    seed : int, default 0
        Seed of the walk's random numbers.
    step : float, default 0.1
        Seconds between the path's points (glided between).
    speed : float, default 0.15
        Box widths per second.
    smooth : float, default 1.0
        Seconds over which the velocity is smoothed.

    Returns
    -------
    MapPath
        A point every ``step`` seconds, glided between.

    Raises
    ------
    ParameterError
        ``duration`` or ``step`` is out of range.
    SoundAtlasError
        The index is empty.
    """
    from scipy.ndimage import gaussian_filter1d

    n, durations = _walk_steps(index, duration, step)
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
    """A walk on the k-NN graph of frames.

    From a random frame, each step hops, uniformly, to the next frame of its own sample or to
    one of its nearest frames of ``k`` *other* samples (the nearest frame of each of the ``k``
    nearest other samples, so the walk is not trapped among the many near-identical frames of
    one sustained note). The same ``seed``, the same walk.

    Parameters
    ----------
    index : FrameIndex
        The frames to walk on.
    duration, seed
        As for :func:`random_walk`.
    k : int, default 8
        How many other samples each frame links to.
    step : float, default 0.25
        Seconds each frame is held.

    Returns
    -------
    MapPath
        Each frame's point, held (no glide).

    Raises
    ------
    ParameterError, SoundAtlasError
        ``k`` is below 1, or as for :func:`random_walk`.
    """
    if k < 1:
        raise ParameterError(f"k={k} must be at least 1")
    n, durations = _walk_steps(index, duration, step)
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
