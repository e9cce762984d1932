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
from dataclasses import dataclass
from typing import Callable

import numpy as np
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
# samples (clips x N) transformed at once: the kernel runs some 50 torch operations per chunk,
# and on a busy machine each multi-threaded one can wait for a descheduled thread
_MULTIRATE_CHUNK = 1 << 23


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
        self._frame_index: dict[int, torch.Tensor] = {}
        # d -> (lo, hi, size N', M', the kernel as real numbers (M', 2 hop, 2 bins))
        self.folds: dict[int, tuple] = {}
        fold_octaves: dict[int, list[tuple[_Octave, np.ndarray]]] = {}
        for i, octave in enumerate(self.octaves):
            spectra = _octave_basis(params, octave)
            if _uses_frames(octave):
                used = np.flatnonzero(np.any(spectra != 0, axis=0))  # the octave's band
                band = spectra[:, used[0] : used[-1] + 1].T.astype(np.complex64)
                self.frames[i] = (int(used[0]), torch.from_numpy(np.ascontiguousarray(band)))
                most = n_frames(self.n_max, hop_length=params.hop_length)
                starts = np.arange(most) * octave.hop - octave.n_fft // 2
                index = (starts[:, None] + np.arange(octave.n_fft)[None, :]) % (N // octave.d)
                self._frame_index[i] = torch.from_numpy(index.reshape(-1))
            else:
                fold_octaves.setdefault(octave.d, []).append((octave, spectra))
        for d, members in fold_octaves.items():
            self.folds[d] = self._fold(d, members)

    def frame_index(self, i: int, count: int) -> torch.Tensor:
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
        # as real numbers (torch's complex bmm is many times slower than its real one): for
        # interleaved (re, im) inputs, out_re = re c - im d and out_im = re d + im c
        c, d_ = G.real.astype(np.float32), G.imag.astype(np.float32)
        kernel = np.empty((M, hop, 2, G.shape[2], 2), np.float32)
        kernel[:, :, 0, :, 0], kernel[:, :, 1, :, 0] = c, -d_
        kernel[:, :, 0, :, 1], kernel[:, :, 1, :, 1] = d_, c
        kernel = torch.from_numpy(kernel.reshape(M, 2 * hop, 2 * G.shape[2]))
        lo = min(o.lo for o, _ in members)
        hi = max(o.hi for o, _ in members)
        return lo, hi, size, M, kernel


def _rolloff(n_bins: int) -> tuple[int, torch.Tensor]:
    """The band a decimation stage keeps, as rfft bins 0..n_bins-1 of the new size: gain 1 up to
    _PASSBAND of the new Nyquist frequency, then a raised cosine down to 0 at it. Returns the
    first bin below 1 and the gains from there on."""
    x = np.arange(n_bins) / max(1, n_bins - 1)
    r = np.clip((x - _PASSBAND) / (1 - _PASSBAND), 0, 1)
    gain = 0.5 * (1 + np.cos(np.pi * r))
    gain[-1] = 0.0
    start = int(np.argmax(gain < 1))
    return start, torch.from_numpy(gain[start:].astype(np.float32))


_multirate_kernel = _KernelCache(lambda params, N: _MultirateKernel(params, N),
                                 KERNEL_CACHE_BYTES)


def _multirate_same_size(kernel: _MultirateKernel, ys: list[np.ndarray]) -> torch.Tensor:
    """|C| for clips that share one FFT size: (batch, frames, n_bins) float32."""
    params, N, B = kernel.params, kernel.N, len(ys)
    lengths = np.array([len(y) for y in ys], np.int64)
    n_out = n_frames(int(lengths.max()), hop_length=params.hop_length)
    batch = np.zeros((B, N), dtype=np.float32)
    for b, y in enumerate(ys):
        batch[b, : len(y)] = y
    # d -> (the clips at rate sr / d, times d: the stages keep the band, not the 1 / factor
    # amplitude of a decimated signal, which the basis makes up; their lengths)
    signals = {1: (torch.from_numpy(batch), lengths)}
    for parent, d in kernel.stages:
        z, n = signals[parent]
        start, gain = kernel.rolloff[d]
        band = torch.fft.rfft(z, dim=1)[:, : start + len(gain)]
        band[:, start:].mul_(gain)
        z = torch.fft.irfft(band, n=N // d, dim=1)
        n = -(-n // (d // parent))  # librosa's resampler returns ceil(len / factor) samples
        _cut(z, n)
        signals[d] = (z, n)
    C = torch.empty((B, n_out, params.n_bins), dtype=torch.complex64)
    for i, octave in enumerate(kernel.octaves):
        if i not in kernel.frames:
            continue
        first, basis = kernel.frames[i]
        z, _ = signals[octave.d]
        frames = z.index_select(1, kernel.frame_index(i, n_out)).view(B, n_out, octave.n_fft)
        spectra = torch.fft.rfft(frames, dim=2)[:, :, first : first + len(basis)]
        C[:, :, octave.lo : octave.hi] = spectra @ basis
    for d, (lo, hi, size, M, G) in kernel.folds.items():
        z, n = signals[d]
        Z = torch.fft.fft(z[:, : max(1, int(n.max()))], n=size, dim=1)  # N' = hop * M
        Z = torch.view_as_real(Z.view(B, -1, M).permute(2, 0, 1).contiguous())  # q = k M + r
        folded = torch.view_as_complex(torch.bmm(Z.view(M, B, -1), G).view(M, B, -1, 2))
        C[:, :, lo:hi] = torch.fft.ifft(folded, dim=0, norm="forward")[:n_out].permute(1, 0, 2)
    return _magnitude(C)


def _magnitude(C: torch.Tensor) -> torch.Tensor:
    """|C| as sqrt(re^2 + im^2): a few times faster than torch.abs on complex tensors."""
    parts = torch.view_as_real(C)
    re, im = parts[..., 0], parts[..., 1]
    return torch.addcmul(re * re, im, im).sqrt_()


def _cut(z: torch.Tensor, n: np.ndarray) -> None:
    """Zero each row of ``z`` from its length on (librosa's resampled signals end there)."""
    if (n == n[0]).all():
        z[:, int(n[0]) :] = 0
    else:
        z.masked_fill_(torch.arange(z.shape[1])[None, :] >= torch.from_numpy(n)[:, None], 0)


def cqt_batch(
    ys: list[np.ndarray], *, params: CQTParams = PAPER_CQT, compressed: bool = True
) -> list[np.ndarray]:
    """Constant-Q transform of many clips at once.

    ``params.kernel`` says how (module doc). Clips are grouped by FFT size, and each group is
    transformed in batched chunks.

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
    for key, idx in groups.items():
        kernel = _multirate_kernel(params, key) if multirate else _kernel(params, key)
        chunk_samples = _MULTIRATE_CHUNK if multirate else 1 << 22
        for chunk in _chunks(idx, max(1, chunk_samples // kernel.N)):
            run = _multirate_same_size if multirate else _cqt_same_size
            mags = run(kernel, [ys[i] for i in chunk])
            if compressed:  # once per chunk: per-clip torch calls are slow on a busy machine
                torch.log1p(mags.mul_(params.compression), out=mags)
            mags = mags.numpy()
            for i, C in zip(chunk, mags):
                out[i] = C[: n_frames(len(ys[i]), hop_length=params.hop_length)].copy()
    return out  # type: ignore[return-value]


def _chunks(seq: list[int], size: int):
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _cqt_same_size(kernel: _Kernel, ys: list[np.ndarray]) -> torch.Tensor:
    """|C| for clips that share one FFT size: (batch, M, n_bins) float32."""
    params = kernel.params
    # the batch is laid out (N, B) directly, so the sparse product reads a contiguous
    # (N/2 + 1, B) spectrum (transposing the real signal is cheaper than the complex spectrum)
    batch = np.zeros((kernel.N, len(ys)), dtype=np.float32)
    for b, y in enumerate(ys):
        batch[: len(y), b] = y
    Y = torch.fft.rfft(torch.from_numpy(batch), dim=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        folded = kernel.fold @ Y  # (n_bins * M, B)
    C = torch.fft.ifft(folded.view(params.n_bins, kernel.M, len(ys)), dim=1, norm="forward")
    return C.abs().permute(2, 1, 0).contiguous()


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
