"""Grains of the library's original files at the output rate: :class:`AudioCache` reads each
grain as cheaply as its file allows and keeps what it read (least recently used dropped first)."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np

from soundatlas.errors import AudioReadError

__all__ = ["AudioCache", "decode_original"]

EDGE_FADE_S = 0.002    # fade at a decoded file's start and end (only matters when zero-padded)


class AudioCache:
    """Grains of the original files at one output rate, kept while they fit in memory.

    A file already at ``sr`` that can seek (WAV, AIFF, FLAC, ...) gives each grain by reading
    only that grain's frames; any other (one that needs resampling, or cannot seek) is decoded
    once, whole (its analysed part plus ``margin`` s), and grains are cut from it. Either way a
    grain is exactly ``_cut(decode_original(...), start, n)``: the same samples, the same 2 ms
    fades at the decoded part's ends.

    Parameters
    ----------
    library : str or path-like
        The library folder the records' paths are relative to.
    sr : int
        The output rate.
    max_bytes : int, default 256 MiB
        What the kept grains and files may hold; the least recently used go first.
    margin : float, default 1.0
        Seconds read past each sample's analysed part.
    spans : bool, default True
        Read grains as spans of files that allow it; False always decodes whole files (for
        comparison, in ``benchmarks/bench_synth.py``).

    Attributes
    ----------
    n_decoded : int
        The distinct files read.
    frames_read : int
        The frames decoded from them.
    """

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
        """A sample's file, decoded whole: its analysed part plus ``margin`` seconds.

        Parameters
        ----------
        rec : SampleRecord
            The sample.

        Returns
        -------
        ndarray of float32
            Mono, at ``sr``, with 2 ms fades at both ends.

        Raises
        ------
        AudioReadError
            The file cannot be read now.
        """
        y = self._recall(rec.path)
        if y is None:
            y = decode_original(self.library / rec.path, sr=self.sr,
                                max_duration=rec.duration + self.margin)
            self._counted(rec.path)
            self.frames_read += len(y)
            self._keep(rec.path, y)
        return y

    def grain(self, rec, start: int, n: int) -> np.ndarray:
        """``n`` samples of a sample's decoded file from ``start``.

        The span is shifted to lie inside the file, or zero-padded when the file is shorter
        than ``n``, exactly as :func:`_cut` cuts it from :meth:`get`'s samples.

        Parameters
        ----------
        rec : SampleRecord
            The sample.
        start : int
            The first sample, at ``sr`` (may be negative).
        n : int
            The grain's length in samples.

        Returns
        -------
        ndarray of float32, shape (n,)

        Raises
        ------
        AudioReadError
            The file cannot be read now.
        """
        whole, length = self._source(rec)
        if whole is not None:
            return _cut(whole, start, n)
        key = (rec.path, start, n)
        y = self._recall(key)
        if y is None:
            y = self._read_span(rec, length, start, n)
            if y is None:  # the file holds fewer frames than its header says: decode it whole
                self._lengths[rec.path] = None
                return _cut(self.get(rec), start, n)
            self._keep(key, y)
        return y

    def length(self, rec) -> int:
        """Samples of ``rec``'s decoded part at ``sr`` (what :meth:`grain` cuts from).

        Raises
        ------
        AudioReadError
            The file cannot be read now.
        """
        whole, length = self._source(rec)
        return len(whole) if whole is not None else length

    def _source(self, rec) -> tuple[np.ndarray | None, int]:
        """(the decoded file, 0) when it is kept or must be decoded whole; else (None, the
        length of the file its grains are read from as spans)."""
        whole = self._recall(rec.path)
        if whole is not None:
            return whole, 0
        length = self._length(rec) if self.spans else None
        return (self.get(rec), 0) if length is None else (None, length)

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
    """A library file decoded as the synthesis uses it.

    Parameters
    ----------
    path : str or path-like
        The audio file.
    sr : int
        The rate to decode at (resampled with soxr only when the file's own rate differs).
    max_duration : float or None
        Seconds to decode from the start (None: all).

    Returns
    -------
    ndarray of float32
        Mono, with a 2 ms fade at both ends (so zero padding never makes a step).

    Raises
    ------
    AudioReadError
        The file cannot be read.
    """
    from soundatlas import audio

    y = audio.load(path, sr=sr, max_duration=max_duration, min_duration=0.0).y
    n = min(len(y) // 2, max(1, int(EDGE_FADE_S * sr)))
    if n:
        y = y.copy()
        fade_ends(y, n)
    return y


def fade_ends(y: np.ndarray, n: int) -> None:
    """Fade ``y`` in over its first ``n`` samples and out over its last ``n``, in place.

    Parameters
    ----------
    y : ndarray of float32
        The signal, at least ``2 * n`` samples long.
    n : int
        The fades' length in samples (0: nothing happens).
    """
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        y[:n] *= ramp
        y[len(y) - n :] *= ramp[::-1]


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
