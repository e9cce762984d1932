"""Rendering a path by concatenative synthesis.

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

**A held point** (``hold``). Where consecutive grains snap to the same frame (the path stays
on one point, or near it), ``hold="advance"`` (the default) reads each grain ``hop`` further into
the file than the one before was read (where a grain near the file's start or end is shifted to
lie inside it, from there): the parts of grains that overlap are then the same stretch of the
file, and the output is the sound itself, played on from that frame. A grain whose centre would
pass the sample's last sounding frame, or whose end would pass the file's decoded part, goes
back to the held frame (a loop back, crossfaded by the windows): a frame less than a hop before
the sound's end, or a file shorter than a grain, repeats as with "repeat". Grains before the
output's start (overlaps above 0.5) lead up to the first one, which reads the snapped frame.
``hold="repeat"``, the reference, re-reads the frame's grain every time; a tone's copies ``hop``
apart then interfere (a comb filter: at 110 Hz and the default grain, dips of more than 20 dB).

**Loudness rule.** Each grain gets one gain: target RMS / the grain's windowed RMS, at most
``max_gain`` (8, +18 dB, so a quiet tail is not pumped into noise). The target is the median
grain RMS of the render for :func:`render` (a level line: every grain as loud as the typical
one), and for :func:`~soundatlas.synth.mosaic.mosaic` the target file's own windowed RMS at that
time (the mosaic follows the target's loudness envelope). Gains change once per grain under
overlapping windows, so the envelope is smooth. A look-ahead limiter (10 ms; gain = moving
average of a moving minimum of the needed gain, which never exceeds it) keeps every sample within
``CEILING`` (-0.2 dBFS): the output never clips. No clicks: every grain is a continuous stretch
of a file under a window that starts and ends at zero; files shorter than a grain are zero-padded
after a 2 ms fade at their edges; the whole output fades in and out over 10 ms.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from soundatlas.errors import AudioReadError, ParameterError, SoundAtlasError
from soundatlas.synth.cache import AudioCache, fade_ends
from soundatlas.synth.exclusions import resolve_exclusions
from soundatlas.synth.index import FrameIndex, embedded_model
from soundatlas.synth.paths import MapPath, check_duration

if TYPE_CHECKING:  # pragma: no cover
    from soundatlas.atlas import ModelRecord

__all__ = ["MAX_GAIN", "CEILING", "HOLDS", "Rendering", "render", "hann", "window_ripple",
           "check_grain", "check_hold", "check_rate", "RATES"]

MAX_GAIN = 8.0         # the most a grain is amplified to meet the loudness target (+18 dB)
CEILING = 0.977        # the limiter's ceiling (-0.2 dBFS)
LIMITER_S = 0.010      # the limiter's look-ahead and smoothing, seconds
FADE_S = 0.010         # the output's fade in and out, seconds
HOLDS = ("advance", "repeat")  # what grains snapped to one frame read (see the module doc)


class RenderCancelled(SoundAtlasError):
    """A render stopped because the one who asked for it no longer wants it (see
    :func:`cancellable`)."""


_cancelled: ContextVar[Callable[[], bool] | None] = ContextVar("render_cancelled", default=None)


@contextmanager
def cancellable(cancelled: Callable[[], bool]):
    """Renders (and mosaics) in this block stop with :class:`RenderCancelled` as soon as
    ``cancelled()`` is true: it is asked before each grain is read. The server passes "the
    client has disconnected"."""
    token = _cancelled.set(cancelled)
    try:
        yield
    finally:
        _cancelled.reset(token)


def _check_cancelled() -> None:
    cancelled = _cancelled.get()
    if cancelled is not None and cancelled():
        raise RenderCancelled("the render was cancelled")


@dataclass(eq=False)
class Rendering:
    """What :func:`render` made.

    Attributes
    ----------
    y : ndarray of float32
        The output, mono, within +-``CEILING``.
    sr : int
        Its rate.
    grains : list of (int, int)
        Each grain's (sample id, frame).
    times : ndarray
        Each grain's centre in the output, seconds.
    distances : ndarray
        Each grain's snap distance (from the path's point to its frame's).
    gains : ndarray
        Each grain's gain (0: silent).
    model : str
        The model whose map was followed.
    grain, overlap : float
        The grain's length in seconds and the fraction of it shared with the next.
    window_ripple : float
        (max - min) / mean of the windows' sum: 0 when they add up to a constant.
    limiter_db : float
        The limiter's largest gain reduction in dB (0: it never acted).
    seconds : float
        Wall time of the render.
    failures : list of (str, str)
        (path, reason) of each file that could not be read and was left out.
    n_excluded : int
        Samples left out by the exclusions.
    n_decoded : int
        Files read for this render.
    hold : str
        What grains snapped to the frame before theirs read (:data:`HOLDS`); a grain's frame in
        ``grains`` is the one it snapped to, which with "advance" it may read on from.
    """

    y: np.ndarray
    sr: int
    grains: list[tuple[int, int]]
    times: np.ndarray
    distances: np.ndarray
    gains: np.ndarray
    model: str
    grain: float
    overlap: float
    window_ripple: float
    limiter_db: float
    seconds: float
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_excluded: int = 0
    n_decoded: int = 0
    hold: str = "advance"

    @property
    def duration(self) -> float:
        """The output's length in seconds."""
        return len(self.y) / self.sr

    @property
    def n_samples_used(self) -> int:
        """How many distinct samples lent grains."""
        return len({s for s, _ in self.grains})

    def summary(self) -> dict:
        """The numbers the CLI prints (JSON-ready)."""
        return {
            "model": self.model, "duration": round(self.duration, 4), "sr": self.sr,
            "n_grains": len(self.grains), "n_samples_used": self.n_samples_used,
            "grain": self.grain, "overlap": self.overlap, "hold": self.hold,
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
    """The periodic Hann window.

    Parameters
    ----------
    n : int
        Its length in samples.

    Returns
    -------
    ndarray of float32, shape (n,)
        The window; its shifts by ``n / 2`` add up to exactly 1.
    """
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def window_ripple(n: int, hop: int) -> tuple[float, float]:
    """How far the steady-state sum of Hann windows is from a constant.

    Parameters
    ----------
    n : int
        The windows' length in samples.
    hop : int
        Samples from one window's start to the next.

    Returns
    -------
    mean : float
        The sum's mean.
    ripple : float
        (max - min) / mean of the sum (0: a constant; inf when the mean is 0).
    """
    w = hann(n).astype(np.float64)
    total = np.zeros(hop)
    for start in range(0, n, hop):
        part = w[start : start + hop]
        total[: len(part)] += part
    mean = float(total.mean())
    return mean, float((total.max() - total.min()) / mean) if mean > 0 else math.inf


def check_grain(grain: float, overlap: float) -> None:
    """Check a grain length and overlap.

    Parameters
    ----------
    grain : float
        Seconds per grain: 0.01 to 10.
    overlap : float
        The fraction of a grain shared with the next: 0 to 0.95.

    Raises
    ------
    ParameterError
        Either is out of range.
    """
    if not (math.isfinite(grain) and 0.01 <= grain <= 10.0):
        raise ParameterError(f"grain={grain} must be between 0.01 and 10 seconds")
    if not (math.isfinite(overlap) and 0.0 <= overlap <= 0.95):
        raise ParameterError(f"overlap={overlap} must be between 0 and 0.95")


def check_hold(hold: str) -> None:
    """Check a ``hold`` (one of :data:`HOLDS`); a ParameterError naming them otherwise."""
    if hold not in HOLDS:
        raise ParameterError(f"hold={hold!r} must be one of {', '.join(HOLDS)}")


#: the output rates a render writes, in Hz
RATES = (1000, 384000)


def check_rate(sr) -> None:
    """Check an output rate (an integer in :data:`RATES`); a ParameterError otherwise."""
    if not (isinstance(sr, (int, np.integer)) and RATES[0] <= sr <= RATES[1]):
        raise ParameterError(f"sr={sr!r} must be an integer rate between {RATES[0]} and "
                             f"{RATES[1]} Hz")


def render(atlas, model: ModelRecord | str | None, path: MapPath, *, sr: int | None = None,
           grain: float = 0.5, overlap: float = 0.5, hold: str = "advance",
           exclude: Iterable[str | int] = (),
           duration: float | None = None,
           loudness: Callable[[np.ndarray, float], np.ndarray] | None = None,
           max_gain: float = MAX_GAIN, index: FrameIndex | None = None,
           cache: AudioCache | None = None) -> Rendering:
    """Render a path through the map by concatenative synthesis (see the module's doc).

    Parameters
    ----------
    atlas : Atlas
        The open atlas; grains are read from its library's original files.
    model : ModelRecord or str or None
        The model's record, its name, or None for the default embedded model.
    path : MapPath
        The path to follow.
    sr : int, optional
        The output rate, 1000 to 384000 Hz (default: the most common original rate).
    grain : float, default 0.5
        Seconds per grain.
    overlap : float, default 0.5
        The fraction of a grain shared with the next.
    hold : {"advance", "repeat"}, default "advance"
        What grains that snap to the frame the grain before them snapped to read: on through
        the file from there, or that frame again (the reference; see the module doc).
    exclude : iterable of str or int, default ()
        Sample ids or library folders / files never used (see :func:`resolve_exclusions`).
    duration : float, optional
        Seconds to render (default: the path's length).
    loudness : callable, optional
        ``loudness(times, seconds)``: the target RMS of the grains of ``seconds`` centred at
        ``times`` (default: the median RMS of the render's grains).
    max_gain : float, default MAX_GAIN
        The most a grain is amplified, at least 1.
    index : FrameIndex, optional
        The model's index, already loaded (the exclusions still apply).
    cache : AudioCache, optional
        A cache to share read grains between renders (used when its rate is the output's).

    Returns
    -------
    Rendering

    Raises
    ------
    ParameterError
        An argument is out of range, or the path's points do not match the map's dimensions.
    SoundAtlasError
        No candidate frame is left (every one excluded, or no file readable).
    """
    start_time = time.perf_counter()
    check_grain(grain, overlap)
    check_hold(hold)
    if not max_gain >= 1:
        raise ParameterError(f"max_gain={max_gain} must be at least 1")
    if sr is not None:
        check_rate(sr)
    if index is None:
        reg = embedded_model(atlas, model) if model is None or isinstance(model, str) else model
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
    check_duration(total)

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
    grains = _Grains.read(atlas, candidates, points, cache, hann(n_win), sr,
                          frame_period=index.frame_period, advance=hop if hold == "advance" else 0,
                          first=int(np.searchsorted(centres, 0)))
    if loudness is None:
        sounding = grains.rms[grains.rms > 0]
        target = np.full(len(grains.rms), float(np.median(sounding)) if len(sounding) else 0.0)
    else:
        target = np.asarray(loudness(times, n_win / sr), dtype=np.float64)
    gains = np.where(grains.rms > 0,
                     np.minimum(target / np.maximum(grains.rms, 1e-12), max_gain), 0.0)

    y, ripple = _overlap_add(grains, gains, centres, n_out, hop)
    fade_ends(y, min(len(y) // 2, int(FADE_S * sr)))
    y, limiter_db = _limit(y, sr)
    return Rendering(
        y=y, sr=sr, grains=list(zip(grains.sids.tolist(), grains.frames.tolist())), times=times,
        distances=grains.distances, gains=gains, model=index.model, grain=grain, overlap=overlap,
        window_ripple=ripple, limiter_db=limiter_db, seconds=time.perf_counter() - start_time,
        failures=grains.failures, n_excluded=len(excluded),
        n_decoded=cache.n_decoded - n_decoded_before, hold=hold)


@dataclass(eq=False)
class _Grains:
    """The grains of a render: each one's sample, frame, snap distance and windowed RMS, and the
    means to read it (windowed) again."""

    sids: np.ndarray
    frames: np.ndarray
    distances: np.ndarray
    rms: np.ndarray
    failures: list[tuple[str, str]]
    window: np.ndarray
    cache: AudioCache
    records: dict[int, object]
    sources: list[int]

    @classmethod
    def read(cls, atlas, candidates: FrameIndex, points: np.ndarray, cache: AudioCache,
             window: np.ndarray, sr: int, *, frame_period: float, advance: int = 0,
             first: int = 0) -> "_Grains":
        """Snap ``points`` to ``candidates`` and measure each grain's RMS under ``window``; a
        file that fails now is left out and its grains snap again. With ``advance`` (samples),
        a grain that snaps to the frame the grain before it did reads on from that one
        (:func:`_held_sources`; ``first``: the first grain centred in the output)."""
        half = len(window) // 2
        w2 = float((window.astype(np.float64) ** 2).sum())
        failures: list[tuple[str, str]] = []
        records: dict[int, object] = {}
        while True:
            rows, dist = candidates.nearest(points)
            sids = candidates.sample_ids[rows]
            need = sorted(set(sids.tolist()) - set(records))
            for rec in atlas.samples(need):
                records[rec.id] = rec
            frames = candidates.frames[rows]
            sources = [int(round(f * frame_period * sr)) - half for f in frames.tolist()]
            if advance:

                def length(sid: int) -> int:
                    try:
                        return cache.length(records[sid]) if sid in records else 0
                    except AudioReadError:
                        return 0  # read below, and left out

                sources = _held_sources(rows, sources, candidates, advance, len(window),
                                        frame_period * sr, length, first=first)
            grains = cls(sids, frames, dist, np.zeros(len(points)), failures, window, cache,
                         records, sources)
            bad: set[int] = set()
            for k, sid in enumerate(sids.tolist()):
                if sid in bad:
                    continue
                if sid not in records:  # removed from the atlas after the index was made
                    failures.append((f"sample {sid}", "no longer in the atlas"))
                    bad.add(sid)
                    continue
                try:
                    g = grains.windowed(k)
                except AudioReadError as exc:
                    failures.append((records[sid].path, exc.reason))
                    bad.add(sid)
                    continue
                grains.rms[k] = math.sqrt(float(np.dot(g, g)) / w2)
            if not bad:
                return grains
            candidates = candidates.without(bad)
            if len(candidates) == 0:
                raise SoundAtlasError(f"no readable file left to render with ({len(failures)} "
                                      f"could not be read, e.g. {failures[0][0]}: "
                                      f"{failures[0][1]})")

    def windowed(self, k: int) -> np.ndarray:
        """Grain ``k`` under the window, read (again: from the cache when kept)."""
        _check_cancelled()
        rec = self.records[int(self.sids[k])]
        return self.cache.grain(rec, self.sources[k], len(self.window)) * self.window


def _held_sources(rows: np.ndarray, sources: list[int], candidates: FrameIndex, advance: int,
                  n_win: int, frame_samples: float, length: Callable[[int], int], *,
                  first: int = 0) -> list[int]:
    """Where each grain starts in its file when grains that snap to the row the grain before
    them did read on (see the module doc).

    Parameters
    ----------
    rows : ndarray
        Each grain's row of ``candidates``.
    sources : list of int
        Each grain's start when it reads its snapped frame.
    candidates : FrameIndex
        The index the rows are of (its rows sorted by sample, then frame).
    advance : int
        Samples a held grain reads further on than the one before.
    n_win : int
        Samples per grain.
    frame_samples : float
        Samples per frame.
    length : callable
        Sample id -> samples of its decoded file (0: unknown).
    first : int, default 0
        The first grain centred at or after the output's start: a held run that begins before
        it reads the snapped frame there, the grains before leading up to it.
    """
    out = list(sources)
    if len(rows) < 2 or not (rows[1:] == rows[:-1]).any():
        return out
    half = n_win // 2
    sids = candidates.sample_ids[rows]
    # rows are sorted by sample, then frame: a sample's last row is its last sounding frame
    last = candidates.frames[np.searchsorted(candidates.sample_ids, sids, side="right") - 1]
    end_centres = np.round(last * frame_samples).astype(np.int64)

    def placed(start: int, n: int) -> int:  # where the cache cuts a grain asked for at start
        return min(max(start, 0), n - n_win)

    for k in range(max(1, first + 1), len(rows)):
        if rows[k] != rows[k - 1]:
            continue  # a new frame: read as snapped
        n = length(int(sids[k]))
        if n < n_win:
            continue  # a file shorter than a grain: nothing to read on into
        on = placed(out[k - 1], n) + advance
        if on + half <= end_centres[k] and on + n_win <= n:
            out[k] = on  # else back to the held frame
    for k in range(min(first, len(rows) - 1) - 1, -1, -1):
        if rows[k] != rows[k + 1] or (n := length(int(sids[k]))) < n_win:
            break
        out[k] = placed(out[k + 1], n) - advance
    return out


def _overlap_add(grains: _Grains, gains: np.ndarray, centres: np.ndarray, n_out: int,
                 hop: int) -> tuple[np.ndarray, float]:
    """The grains, scaled by ``gains``, added in at ``centres``: (``n_out`` samples, the
    windows' ripple). A windows' sum that is not constant is divided out (floored, so that gaps
    fade and never blow up)."""
    window = grains.window
    n_win = len(window)
    half = n_win // 2
    mean, ripple = window_ripple(n_win, hop)
    out = np.zeros(n_out + 2 * n_win, dtype=np.float32)  # offset n_win: grains may start before 0
    wsum = np.zeros_like(out) if ripple > 1e-6 else None
    for k, c in enumerate(centres.tolist()):
        s = c - half + n_win
        if gains[k] > 0:
            out[s : s + n_win] += np.float32(gains[k]) * grains.windowed(k)
        if wsum is not None:
            wsum[s : s + n_win] += window
    y = out[n_win : n_win + n_out]
    if wsum is not None:
        y /= np.maximum(wsum[n_win : n_win + n_out], np.float32(0.1 * mean))
    elif abs(mean - 1.0) > 1e-6:
        y /= np.float32(mean)
    return y, ripple


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


