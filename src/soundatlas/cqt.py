"""The paper's constant-Q transform, batched.

The reference is ``librosa.cqt(y, sr=16000, hop_length=800, fmin=27.5, n_bins=192,
bins_per_octave=24)`` (magnitude), compressed as ``log(50 * |C| + 1)``. ``CQTParams.kernel`` names
how it is computed; both kernels build librosa's filters (Hann-windowed complex exponentials of
length ``Q * sr / f``, L1 normalised, scaled by ``sqrt(length)``) once per FFT size and evaluate a
whole batch of clips at a time.

``"multirate"`` (``PAPER_CQT``) is librosa's algorithm, step for step. Octave by octave from the
top, the clip is halved in rate while the hop stays even (here down to 500 Hz), each octave's 24
filters are sparsified at librosa's FFT size for that octave (``sparsity`` of their L1 mass), and
each halved signal ends where librosa's resampler ends it (``ceil(len / 2)`` samples). The halving
is done in the frequency domain: one real FFT of the padded clip, then per stage an inverse FFT of
the lower band (a raised-cosine roll-off from 0.913 of the new Nyquist frequency, as soxr's HQ
resampler passes 91.3 %) and a forward FFT of the cut signal. Octaves whose frames barely overlap
take an FFT per frame, as librosa does; octaves at a low rate with long, overlapping frames are
correlated with the filters' time-domain responses in one FFT of the whole (short) decimated
signal, folded modulo the frame count:

    C_k[m] = sum_q Z(q) G_k(q) exp(2 pi i q hop m / N) / N,   N = hop * M

Both give the correlation of each frame with librosa's sparsified filter, so the transform
agrees with librosa on the first and last frames, on clicks and on onsets as in steady state
(``tests/test_cqt.py``: correlation >= 0.995 on each; ``benchmarks/bench_cqt.py`` measures it).

``"folded"`` (the default of ``CQTParams()``: params stored without a ``kernel`` are this one) is
the single-rate kernel the shipped model before 2026-12-03 was trained on: every bin of a clip
from one FFT of the whole clip, each filter's frequency response sparsified at that FFT size,
folded modulo ``M`` and finished with an inverse FFT of size ``M``. It departs from librosa twice. Sparsifying at the
clip's FFT size keeps other side lobes than librosa's per-octave size does, and spreads what it
drops over the whole clip (a floor some 50 dB under the peak: pre-echo before onsets). And it
correlates the clip at its own rate, where librosa's lower octaves read resampled copies that
end where its resampler ends them, so frames near the end of a tone or a click differ most (up
to about one log unit on quiet bins).

A clip's features depend on that clip alone, bit for bit: not on the other clips of its batch,
their order or number, nor on the number of threads. So an atlas's features do not depend on how
indexing batched its files, in how many processes, or where a run was resumed. Three choices
make it so. Every FFT is scipy's (pocketfft), which transforms each row on its own, whatever the
batch and the threads (torch's MKL FFT rounds a row otherwise in a batch than alone, or with two
threads than with one). Each clip meets the multirate kernel's matrices in products of its own
(its frames an octave's basis, its spectrum slices the folds), whose shapes follow from the clip's
length alone: a product of many rows rounds a row by where it lies among them (OpenBLAS's
Haswell kernels, as an AMD EPYC picks them, give rows 6 to 15 of 16 other bits than row 0). The
folded kernel's sparse product takes the batch in groups of ``_FOLD_ROWS`` columns, zeros filling
the last: a single column would go another way (a matrix-vector product) whose sums round
otherwise, and within a group torch's product does not round a column by its place, as
``tests/test_cqt.py`` checks.

Why our own instead of librosa: librosa (even batched) resamples each octave with soxr and
redesigns the filters per call; see benchmarks/RESULTS.md for the measured ratio.
"""

from __future__ import annotations

import collections
import functools
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.fft
import torch

from soundatlas.cqt_params import _HANN_BANDWIDTH, KERNELS, PAPER_CQT, CQTParams, n_frames
from soundatlas.errors import ParameterError

__all__ = ["CQTParams", "PAPER_CQT", "KERNELS", "cqt", "cqt_batch", "n_frames", "compress"]


def compress(C: np.ndarray | torch.Tensor, *, compression: float = PAPER_CQT.compression):
    """Compress CQT magnitudes: ``log(compression * |C| + 1)``.

    Parameters
    ----------
    C : numpy.ndarray or torch.Tensor
        Magnitudes ``|C|``.
    compression : float, default=PAPER_CQT.compression

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Of the same type and shape as ``C``.
    """
    if isinstance(C, torch.Tensor):
        return torch.log1p(compression * C)
    return np.log1p(compression * C)


def _fast_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (pocketfft is fastest on such sizes)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class _Kernel:
    """The folded frequency-domain filter bank for one FFT size ``N = hop * M``."""

    def __init__(self, params: CQTParams, M: int):
        self.params = params
        self.M = M
        self.N = N = params.hop_length * M
        n_rfft = N // 2 + 1
        rows, cols, vals = [], [], []
        for k, (length, freq) in enumerate(zip(params.lengths, params.freqs)):
            H = _filter_response(length, freq, params.sr, N)[:n_rfft]
            keep = _significant(H, params.sparsity)
            # sqrt(length): librosa's scale=True normalisation of an L1-normalised filter
            scale = math.sqrt(length) / N
            rows.append(keep)
            cols.append(k * M + keep % M)
            vals.append(H[keep] * scale)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        vals = np.concatenate(vals).astype(np.complex64)
        self.nnz = len(vals)
        # The folding as a sparse (n_bins * M) x (N/2 + 1) matrix: one sparse product per batch.
        order = np.lexsort((rows, cols))
        indptr = np.searchsorted(cols[order], np.arange(params.n_bins * M + 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self.fold = torch.sparse_csr_tensor(
                torch.from_numpy(indptr.astype(np.int64)),
                torch.from_numpy(rows[order].astype(np.int64)),
                torch.from_numpy(vals[order]),
                size=(params.n_bins * M, n_rfft),
                check_invariants=True,
            )


def _filter_response(length: float, freq: float, sr: int, N: int) -> np.ndarray:
    """N-point DFT of the time-reversed filter, so that ``Y * H`` is the filter's correlation.

    The filter is librosa's: ``hann(len) * exp(2 pi i f n / sr)`` for ``n`` in
    ``[-len // 2, len // 2)``, normalised to unit L1 norm.
    """
    n = np.arange(-length // 2, length // 2, dtype=np.float64)
    window = np.hanning(len(n) + 1)[:-1]  # periodic Hann, as scipy.signal.get_window('hann')
    window /= window.sum()
    # correlation with g[n] = w[n] exp(-2 pi i f n / sr) is convolution with h[j] = g[-j]
    buf = np.zeros(N, dtype=np.complex128)
    buf[(-n).astype(np.int64) % N] = window * np.exp(-2j * np.pi * freq * n / sr)
    return np.fft.fft(buf)


def _significant(H: np.ndarray, sparsity: float) -> np.ndarray:
    """Indices of H whose magnitudes hold all but the ``sparsity`` fraction of its L1 mass."""
    mag = np.abs(H)
    order = np.argsort(mag)
    cumulative = np.cumsum(mag[order])
    n_drop = int(np.searchsorted(cumulative, sparsity * cumulative[-1], side="right"))
    return np.sort(order[n_drop:])


class _KernelCache:
    """Kernels by (params, FFT size), built on first use, the least recently used dropped once
    they hold more than ``budget`` bytes (the budget is per cache and process: each index worker
    has its own).

    A kernel serves the clips of one FFT size, and a library's clips have many: one-shots of
    5 ms to 2 s need 69 multirate sizes at 16 kHz (135 MiB of kernels), each built in about
    25 ms. A cache of 16 kernels rebuilt them batch after batch: a third of ``index``'s time
    on a library of one-shots (py-spy, session 16), the budget's whole point.
    """

    def __init__(self, build: Callable, budget: int):
        self.build, self.budget = build, budget
        self._kernels: collections.OrderedDict = collections.OrderedDict()
        self._sizes: dict = {}
        self._lock = threading.Lock()
        self.builds = 0  # kernels built since the last cache_clear (tests read it)
        if hasattr(os, "register_at_fork"):  # a fork while a thread held the lock must not hang
            os.register_at_fork(after_in_child=self._new_lock)

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, params: CQTParams, size: int):
        key = (params, size)
        with self._lock:
            kernel = self._kernels.get(key)
            if kernel is not None:
                self._kernels.move_to_end(key)
                return kernel
        kernel = self.build(params, size)  # outside the lock: other sizes need not wait
        with self._lock:
            if key in self._kernels:  # another thread built it meanwhile
                return self._kernels[key]
            self.builds += 1
            self._kernels[key] = kernel
            self._sizes[key] = _nbytes(kernel)
            while sum(self._sizes.values()) > self.budget and len(self._kernels) > 1:
                old, _ = self._kernels.popitem(last=False)
                del self._sizes[old]
        return kernel

    def cache_clear(self) -> None:
        with self._lock:
            self._kernels.clear()
            self._sizes.clear()
            self.builds = 0


def _nbytes(obj) -> int:
    """Bytes of the arrays and tensors an object holds (in its attributes, dicts, tuples)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, torch.Tensor):
        if obj.layout == torch.sparse_csr:
            return sum(_nbytes(t) for t in (obj.crow_indices(), obj.col_indices(), obj.values()))
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(v) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, (CQTParams, type)):
        return sum(_nbytes(v) for v in vars(obj).values())
    return 0


#: bytes of kernels each of a process's two kernel caches (multirate, folded) keeps
#: (``_KernelCache``); a process uses one of them unless it reads atlases of both kernels
KERNEL_CACHE_BYTES = 256 << 20

_kernel = _KernelCache(lambda params, M: _Kernel(params, M), KERNEL_CACHE_BYTES)


def _frames_for(params: CQTParams, n_samples: int) -> int:
    """FFT frame count M (N = hop * M) that holds a clip and its filters without wrap-around."""
    reach = int(math.ceil(params.lengths[0] / 2)) + params.hop_length
    return _fast_size(-(-(n_samples + reach) // params.hop_length))


# --- the multirate kernel: librosa's algorithm, octave by octave ---------------------------------

_PASSBAND = 0.913  # soxr HQ's passband edge, a fraction of the new Nyquist frequency
_MIN_TAIL = 32  # zero samples after a clip at the lowest rate, where the roll-off's ringing dies
# samples (clips x N) transformed at once: 2^21 (8 MB) was fastest of 2^19..2^23 on clips of
# 2.5 s and of 10 s, with one thread and two (2026-12-05, 2 cores; 2^23 was 15-25 % slower)
_MULTIRATE_CHUNK = 1 << 21
# the batch's rows in a fold's product (and the folded kernel's columns) come in multiples of
# this, so that one clip alone takes the same path as in a batch (module doc)
_FOLD_ROWS = 16
# samples (clips x N) from which a lone chunk's FFTs use more than one thread
_THREADED_CHUNK = 1 << 20


def _twos(x: int) -> int:
    """How many times 2 divides ``x`` (> 0)."""
    return (x & -x).bit_length() - 1


@dataclass(frozen=True)
class _Octave:
    lo: int  # its first bin
    hi: int  # one past its last bin
    d: int  # decimation of the signal it reads
    hop: int  # hop at that rate
    n_fft: int  # librosa's FFT size for its filters


def _librosa_freqs(params: CQTParams) -> tuple[np.ndarray, np.ndarray]:
    """Centre frequencies and quality factors, computed as librosa.cqt computes them."""
    bpo = params.bins_per_octave
    ratios = 2.0 ** (np.arange(0, bpo, dtype=float) / bpo)
    octaves = 2.0 ** np.arange(np.ceil(params.n_bins / bpo))
    freqs = np.multiply.outer(octaves, ratios).flatten()[: params.n_bins] * params.fmin
    if len(freqs) == 1:
        r2 = 2.0 ** (2.0 / bpo)
        return freqs, np.array([(r2 + 1) / (r2 - 1)])
    logf = np.log2(freqs)
    local_bpo = np.empty_like(freqs)
    local_bpo[0] = 1 / (logf[1] - logf[0])
    local_bpo[-1] = 1 / (logf[-1] - logf[-2])
    local_bpo[1:-1] = 2 / (logf[2:] - logf[:-2])
    alpha = (2.0 ** (2 / local_bpo) - 1) / (2.0 ** (2 / local_bpo) + 1)
    return freqs, 1.0 / alpha


def _octave_plan(params: CQTParams) -> list[_Octave]:
    """librosa's octaves, top first: bins, decimation (its early downsampling, then halving while
    the hop stays even), hop and FFT size of each."""
    freqs, Q = _librosa_freqs(params)
    n_octaves = math.ceil(params.n_bins / params.bins_per_octave)
    n_filters = min(params.bins_per_octave, params.n_bins)
    cutoff = float(np.max(freqs * (1 + 0.5 * _HANN_BANDWIDTH / Q)))
    early = min(
        max(0, int(np.ceil(np.log2(params.sr / 2.0 / cutoff)) - 1) - 1),
        max(0, _twos(params.hop_length) - n_octaves + 1),
    )
    d, hop = 2**early, params.hop_length >> early
    plan = []
    for i in range(n_octaves):
        hi = params.n_bins - n_filters * i
        lo = max(0, hi - n_filters)
        longest = float(np.max(Q[lo:hi] * (params.sr / d) / freqs[lo:hi]))
        plan.append(_Octave(lo, hi, d, hop, int(2.0 ** np.ceil(np.log2(longest)))))
        if hop % 2 == 0:
            hop //= 2
            d *= 2
    return plan


def _sparsify_rows(x: np.ndarray, quantile: float) -> np.ndarray:
    """librosa.util.sparsify_rows, dense: zero each row's smallest entries holding < quantile of
    its L1 mass (the same float32 arithmetic, so the same entries go)."""
    mags = np.abs(x)
    norms = np.sum(mags, axis=1, keepdims=True)
    mag_sort = np.sort(mags, axis=1)
    cumulative = np.cumsum(mag_sort / norms, axis=1)
    threshold = mag_sort[np.arange(len(x)), np.argmin(cumulative < quantile, axis=1)]
    return np.where(mags >= threshold[:, None], x, 0).astype(x.dtype)


@functools.lru_cache(maxsize=64)
def _octave_basis(params: CQTParams, octave: _Octave) -> np.ndarray:
    """librosa's sparsified filter spectra for one octave, (bins, n_fft // 2 + 1), divided by
    ``sqrt(length)``. librosa also multiplies by ``d`` (``sqrt(d)`` for the resampled filters,
    ``sqrt(d)`` for its resampler's ``scale=True``); our decimation stages leave that factor in
    the signal (module doc).

    The same construction as ``librosa.core.constantq.__vqt_filter_fft`` (complex64 filters,
    L1 normalised, centred in ``n_fft``, scaled by ``length / n_fft``, FFT, sparsified).
    """
    from scipy.signal import get_window

    freqs, Q = _librosa_freqs(params)
    f, q = freqs[octave.lo : octave.hi], Q[octave.lo : octave.hi]
    sr = params.sr / octave.d
    lengths = q * sr / f
    filters = np.zeros((len(f), octave.n_fft), np.complex64)
    for i, (length, freq) in enumerate(zip(lengths, f)):
        angles = np.arange(-length // 2, length // 2, dtype=float) * 2 * np.pi * freq / sr
        sig = (np.cos(angles) + 1j * np.sin(angles)) * get_window("hann", len(angles))
        sig /= np.sum(np.abs(sig))
        start = (octave.n_fft - len(sig)) // 2
        filters[i, start : start + len(sig)] = sig
    filters *= lengths[:, None] / float(octave.n_fft)
    spectra = np.fft.fft(filters, axis=1)[:, : octave.n_fft // 2 + 1]
    spectra = _sparsify_rows(spectra, params.sparsity)
    basis = spectra.astype(np.complex128) / np.sqrt(q * params.sr / f)[:, None]
    basis.flags.writeable = False  # cached: every kernel of every FFT size shares it
    return basis


def _uses_frames(octave: _Octave) -> bool:
    """An FFT per frame where frames overlap little; else one FFT of the whole decimated clip."""
    return octave.n_fft <= 2 * octave.hop


def _multirate_size(params: CQTParams, n_samples: int) -> int:
    """FFT size N at the clip's rate: the clip, then zeros (for the roll-off's ringing at every
    rate, and for frames reaching past either end, which read the tail); divisible by the largest
    decimation so that every stage halves it exactly."""
    tail, top = _tail_and_top(params)
    return top * _fast_size(-(-(n_samples + tail) // top))


@functools.lru_cache(maxsize=8)
def _tail_and_top(params: CQTParams) -> tuple[int, int]:
    """Zero samples N keeps after a clip, and the largest decimation."""
    plan = _plan(params)
    top = max(o.d for o in plan)
    reach = [o.d * (o.n_fft // 2 + 1) for o in plan if _uses_frames(o)]
    return max([_MIN_TAIL * top] + reach), top


@functools.lru_cache(maxsize=8)
def _plan(params: CQTParams) -> tuple[_Octave, ...]:
    return tuple(_octave_plan(params))


class _MultirateKernel:
    """Everything the multirate kernel needs for clips that share the FFT size ``N``."""

    def __init__(self, params: CQTParams, N: int):
        self.params, self.N = params, N
        self.octaves = _plan(params)
        self.n_max = N - _tail_and_top(params)[0]  # the longest clip it holds
        # the decimation stages: (parent d, d), each the cut band-limited signal of its parent
        ds = sorted({o.d for o in self.octaves})
        self.stages = list(zip([1] + ds[:-1], ds)) if ds[0] != 1 else list(zip(ds[:-1], ds[1:]))
        self.rolloff = {d: _rolloff(N // d // 2 + 1) for _, d in self.stages}
        self.frames: dict[int, tuple] = {}  # octave index -> (first rfft bin, basis (bins', bins))
        # octave index -> where the frames of the longest clip read (frame_index): built here,
        # whole, so that the kernel cache's budget counts it
        self._frame_index: dict[int, np.ndarray] = {}
        # d -> (lo, hi, size N', M', the kernel as real numbers (M', 2 hop, 2 bins))
        self.folds: dict[int, tuple] = {}
        fold_octaves: dict[int, list[tuple[_Octave, np.ndarray]]] = {}
        for i, octave in enumerate(self.octaves):
            spectra = _octave_basis(params, octave)
            if _uses_frames(octave):
                used = np.flatnonzero(np.any(spectra != 0, axis=0))  # the octave's band
                band = spectra[:, used[0] : used[-1] + 1].T.astype(np.complex64)
                self.frames[i] = (int(used[0]), np.ascontiguousarray(band))
                most = n_frames(self.n_max, hop_length=params.hop_length)
                starts = np.arange(most) * octave.hop - octave.n_fft // 2
                index = (starts[:, None] + np.arange(octave.n_fft)[None, :]) % (N // octave.d)
                self._frame_index[i] = index.reshape(-1)
            else:
                fold_octaves.setdefault(octave.d, []).append((octave, spectra))
        for d, members in fold_octaves.items():
            self.folds[d] = self._fold(d, members)

    def frame_index(self, i: int, count: int) -> np.ndarray:
        """Where octave i's first ``count`` centred frames read its signal, frame after frame
        (``count`` x n_fft positions); frames reaching past either end read the signal's zero
        tail. A frame's positions do not depend on how many follow it, so this is a prefix of
        the index of the longest clip the kernel holds."""
        return self._frame_index[i][: count * self.octaves[i].n_fft]

    def _fold(self, d: int, members: list[tuple[_Octave, np.ndarray]]) -> tuple:
        """The octaves at rate d as time-domain correlations folded modulo M' (module doc)."""
        members = sorted(members, key=lambda m: m[0].lo)  # bins ascending, as out[..., lo:hi]
        hop = members[0][0].hop
        reach = max(o.n_fft for o, _ in members) // 2
        longest = -(-self.n_max // d) + 1
        M = _fast_size(-(-(longest + reach) // hop))
        size = hop * M  # N' >= clip + reach: frame windows never wrap onto the clip
        rows = []
        for octave, spectra in members:
            full = np.zeros((len(spectra), octave.n_fft), np.complex128)
            full[:, : spectra.shape[1]] = spectra
            h = np.fft.fft(full, axis=1)  # frame-domain response: C = sum_n frame[n] h[n]
            buf = np.zeros((len(spectra), size), np.complex128)
            buf[:, (np.arange(octave.n_fft) - octave.n_fft // 2) % size] = h
            rows.append(np.fft.ifft(buf, axis=1))  # G / N', negative frequencies included
        G = np.concatenate(rows).reshape(-1, hop, M).transpose(2, 1, 0)  # (M, hop, bins)
        # as real numbers (a complex product is several times slower than a real one): for
        # interleaved (re, im) inputs, out_re = re c - im d and out_im = re d + im c
        c, d_ = G.real.astype(np.float32), G.imag.astype(np.float32)
        kernel = np.empty((M, hop, 2, G.shape[2], 2), np.float32)
        kernel[:, :, 0, :, 0], kernel[:, :, 1, :, 0] = c, -d_
        kernel[:, :, 0, :, 1], kernel[:, :, 1, :, 1] = d_, c
        kernel = kernel.reshape(M, 2 * hop, 2 * G.shape[2])
        lo = min(o.lo for o, _ in members)
        hi = max(o.hi for o, _ in members)
        return lo, hi, size, M, kernel


def _rolloff(n_bins: int) -> tuple[int, np.ndarray]:
    """The band a decimation stage keeps, as rfft bins 0..n_bins-1 of the new size: gain 1 up to
    _PASSBAND of the new Nyquist frequency, then a raised cosine down to 0 at it. Returns the
    first bin below 1 and the gains from there on."""
    x = np.arange(n_bins) / max(1, n_bins - 1)
    r = np.clip((x - _PASSBAND) / (1 - _PASSBAND), 0, 1)
    gain = 0.5 * (1 + np.cos(np.pi * r))
    gain[-1] = 0.0
    start = int(np.argmax(gain < 1))
    return start, gain[start:].astype(np.float32)


_multirate_kernel = _KernelCache(lambda params, N: _MultirateKernel(params, N),
                                 KERNEL_CACHE_BYTES)


def _multirate_same_size(kernel: _MultirateKernel, ys: list[np.ndarray],
                         workers: int = 1) -> np.ndarray:
    """|C| for clips that share one FFT size: (batch, frames, n_bins) float32, each clip's rows
    a function of that clip alone (module doc); ``workers``: threads for each FFT."""
    params, N, B = kernel.params, kernel.N, len(ys)
    lengths = np.array([len(y) for y in ys], np.int64)
    n_out = n_frames(int(lengths.max()), hop_length=params.hop_length)
    signals = {1: (_padded(ys, N), lengths)}
    for parent, d in kernel.stages:
        signals[d] = _decimated(kernel, *signals[parent], parent, d, workers)
    out = np.zeros((B, n_out, params.n_bins), dtype=np.complex64)
    counts = [n_frames(len(y), hop_length=params.hop_length) for y in ys]
    for i in kernel.frames:
        _frames_octave(kernel, i, signals[kernel.octaves[i].d][0], counts, out, workers)
    for d in kernel.folds:
        _folded_octaves(kernel, d, *signals[d], out, workers)
    return _magnitude(out)


def _padded(ys: list[np.ndarray], N: int) -> np.ndarray:
    """The clips as rows of a (batch, N) float32 array, zero after each clip."""
    batch = np.zeros((len(ys), N), dtype=np.float32)
    for b, y in enumerate(ys):
        batch[b, : len(y)] = y
    return batch


def _decimated(kernel: _MultirateKernel, z: np.ndarray, n: np.ndarray, parent: int, d: int,
               workers: int) -> tuple[np.ndarray, np.ndarray]:
    """One halving stage: the clips at rate sr / parent to sr / d, and their lengths. The stages
    keep the band, not the 1 / factor amplitude of a decimated signal, which the basis makes up."""
    start, gain = kernel.rolloff[d]
    band = scipy.fft.rfft(z, axis=1, workers=workers)[:, : start + len(gain)]
    band[:, start:] *= gain
    z = scipy.fft.irfft(band, n=kernel.N // d, axis=1, workers=workers)
    n = -(-n // (d // parent))  # librosa's resampler returns ceil(len / factor) samples
    _cut(z, n)
    return z, n


def _frames_octave(kernel: _MultirateKernel, i: int, z: np.ndarray, counts: list[int],
                   out: np.ndarray, workers: int) -> None:
    """Octave i's bins from an FFT per frame, into ``out``; each clip's frames times the basis
    in a product of its own (a clip's frame count depends on its length alone)."""
    octave = kernel.octaves[i]
    first, basis = kernel.frames[i]
    B, n_out = out.shape[:2]
    frames = np.take(z, kernel.frame_index(i, n_out), axis=1).reshape(B, n_out, octave.n_fft)
    spectra = scipy.fft.rfft(frames, axis=2, workers=workers)[:, :, first : first + len(basis)]
    for b, count in enumerate(counts):
        out[b, :count, octave.lo : octave.hi] = spectra[b, :count] @ basis


def _folded_octaves(kernel: _MultirateKernel, d: int, z: np.ndarray, n: np.ndarray,
                    out: np.ndarray, workers: int) -> None:
    """The octaves at rate sr / d, folded from one FFT of each decimated clip, into ``out``.

    The fold is a product per frame offset r of a clip's (2 hop) spectrum slice with that
    offset's kernel, each clip's in products of its own, so that a clip's bits do not depend
    on the batch (module doc)."""
    lo, hi, size, M, G = kernel.folds[d]
    B, n_out = out.shape[:2]
    Z = scipy.fft.fft(z[:, : max(1, int(n.max()))], n=size, axis=1, workers=workers)  # N' = hop M
    # q = k M + r: rows[b, r, k] = Z[b, q], each clip's rows contiguous
    rows = np.ascontiguousarray(Z.reshape(B, -1, M).transpose(0, 2, 1))
    # as (re, im) pairs for the real kernel, (M, 1, 2 hop) @ (M, 2 hop, 2 bins), each clip in a
    # product of its own: a product of many rows rounds a row by where it lies among them
    # (module doc)
    product = np.empty((B, M, G.shape[2] // 2), np.complex64)
    real = rows.view(np.float32)[:, :, None, :]
    into = product.view(np.float32)[:, :, None, :]
    for b in range(B):
        np.matmul(real[b], G, out=into[b])
    C = scipy.fft.ifft(product, axis=1, norm="forward", workers=workers)
    out[:, :, lo:hi] = C[:, :n_out]


def _magnitude(C: np.ndarray) -> np.ndarray:
    """|C| as sqrt(re^2 + im^2), float32: about twice as fast as numpy.abs (hypot) on complex64."""
    mag = np.square(C.real)
    mag += np.square(C.imag)
    return np.sqrt(mag, out=mag)


def _cut(z: np.ndarray, n: np.ndarray) -> None:
    """Zero each row of ``z`` from its length on (librosa's resampled signals end there)."""
    for row, length in zip(z, n):
        row[int(length) :] = 0


def cqt_batch(
    ys: list[np.ndarray], *, params: CQTParams = PAPER_CQT, compressed: bool = True
) -> list[np.ndarray]:
    """Constant-Q transform of many clips at once.

    ``params.kernel`` says how (module doc). Clips are grouped by FFT size, and each group is
    transformed in batched chunks. Each clip's result is the one it would get alone, bit for
    bit, with any number of threads (module doc).

    Parameters
    ----------
    ys : list of numpy.ndarray
        1-D float arrays at ``params.sr``, of any lengths.
    params : CQTParams, default=PAPER_CQT
        The transform.
    compressed : bool, default=True
        Return ``log(compression * |C| + 1)`` (else ``|C|``).

    Returns
    -------
    list of numpy.ndarray
        Per clip, a float32 array of shape (frames, n_bins) with
        ``frames = 1 + len(y) // hop_length``.

    Raises
    ------
    ParameterError
        If a clip is not 1-D.
    """
    out: list[np.ndarray | None] = [None] * len(ys)
    multirate = params.kernel == "multirate"
    size = _multirate_size if multirate else _frames_for
    groups: dict[int, list[int]] = {}
    for i, y in enumerate(ys):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ParameterError(f"clip {i} has shape {y.shape}; expected 1-D mono samples")
        groups.setdefault(size(params, len(y)), []).append(i)
    run = _multirate_same_size if multirate else _cqt_same_size
    threads = torch.get_num_threads()  # the threads this process gives its transforms

    def transform(kernel, chunk: list[int], workers: int) -> None:
        mags = run(kernel, [ys[i] for i in chunk], workers)
        if compressed:  # once per chunk: per-clip calls are slow on a busy machine
            np.log1p(np.multiply(mags, params.compression, out=mags), out=mags)
        for i, C in zip(chunk, mags):
            out[i] = C[: n_frames(len(ys[i]), hop_length=params.hop_length)].copy()

    # With more than one thread, a group's chunks go to a pool, one chunk per thread at least;
    # a clip's result does not depend on its chunk (module doc), so neither does the output.
    # BLAS gets one thread: the products are small, and its threads would fight the pool's.
    pool = ThreadPoolExecutor(threads) if threads > 1 and len(ys) > 1 else None
    try:
        with _blas_controller().limit(limits=1, user_api="blas"):
            for key, idx in groups.items():
                kernel = _multirate_kernel(params, key) if multirate else _kernel(params, key)
                chunk_samples = _MULTIRATE_CHUNK if multirate else 1 << 22
                per_chunk = max(1, chunk_samples // kernel.N)
                if pool is not None:
                    per_chunk = min(per_chunk, -(-len(idx) // threads))
                chunks = list(_chunks(idx, per_chunk))
                if pool is not None and len(chunks) > 1:
                    list(pool.map(lambda chunk: transform(kernel, chunk, 1), chunks))
                else:  # one chunk, or one thread: the FFTs take the threads where it pays
                    workers = threads if len(idx) * kernel.N >= _THREADED_CHUNK else 1
                    for chunk in chunks:
                        transform(kernel, chunk, workers)
    finally:
        if pool is not None:
            pool.shutdown()
    return out  # type: ignore[return-value]


@functools.cache
def _blas_controller():
    """threadpoolctl's controller of the loaded BLAS, made on first use (it looks the libraries
    up once: 1 ms; a limit then costs 10 us)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _chunks(seq: list[int], size: int):
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _cqt_same_size(kernel: _Kernel, ys: list[np.ndarray], workers: int = 1) -> np.ndarray:
    """|C| for clips that share one FFT size: (batch, M, n_bins) float32; ``workers``: threads
    for each FFT."""
    params = kernel.params
    # the batch is laid out (N, B): the sparse product reads the spectrum's columns, _FOLD_ROWS
    # at a time, and zero columns fill the last group, so every sparse product has one shape
    # (one clip alone would take a matrix-vector path, whose sums round otherwise)
    B = len(ys)
    width = -(-B // _FOLD_ROWS) * _FOLD_ROWS
    batch = np.zeros((kernel.N, width), dtype=np.float32)
    for b, y in enumerate(ys):
        batch[: len(y), b] = y
    Y = scipy.fft.rfft(batch, axis=0, workers=workers)
    folded = np.empty((kernel.fold.shape[0], width), np.complex64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        for g in range(0, width, _FOLD_ROWS):
            group = torch.from_numpy(np.ascontiguousarray(Y[:, g : g + _FOLD_ROWS]))
            folded[:, g : g + _FOLD_ROWS] = (kernel.fold @ group).numpy()  # (n_bins * M, 16)
    C = scipy.fft.ifft(folded[:, :B].reshape(params.n_bins, kernel.M, B), axis=1,
                       norm="forward", workers=workers)
    return np.ascontiguousarray(_magnitude(C).transpose(2, 1, 0))


def cqt(y: np.ndarray, *, params: CQTParams = PAPER_CQT, compressed: bool = True) -> np.ndarray:
    """Constant-Q transform of one clip; see :func:`cqt_batch`.

    Parameters
    ----------
    y : numpy.ndarray
        1-D float samples at ``params.sr``.
    params, compressed
        As for :func:`cqt_batch`.

    Returns
    -------
    numpy.ndarray of float32, shape (frames, n_bins)
        ``frames = 1 + len(y) // hop_length``.

    Raises
    ------
    ParameterError
        If ``y`` is not 1-D.
    """
    return cqt_batch([y], params=params, compressed=compressed)[0]
