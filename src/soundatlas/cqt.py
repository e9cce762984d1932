"""The paper's constant-Q transform, batched.

The reference is ``librosa.cqt(y, sr=16000, hop_length=800, fmin=27.5, n_bins=192,
bins_per_octave=24)`` (magnitude), compressed as ``log(50 * |C| + 1)``. librosa computes it octave
by octave, resampling the signal down between octaves and rebuilding its filter bank on every call.
We compute the same filters (Hann-windowed complex exponentials of length ``Q * sr / f``, L1
normalised, scaled by ``sqrt(length)``) once, in the frequency domain, and evaluate every bin of a
whole batch of clips from a single FFT per clip:

    C_k[m] = sum_f Y(f) H_k(f) exp(2 pi i f hop m / N) / N

With ``N = hop * M`` the exponential is periodic in ``f`` with period ``M``, so each bin's narrow
band of ``Y * H_k`` is folded modulo ``M`` and finished with an inverse FFT of size ``M``. There is
no resampling, no per-call filter design, and the work is one real FFT plus a sparse product per
clip. ``benchmarks/bench_cqt.py`` measures it against librosa; ``tests/test_cqt.py`` checks it
matches (peak bin, 0.5 dB, correlation >= 0.995, identical frame count).

Why our own instead of librosa: librosa (even batched) resamples each octave and redesigns the
filters per call; see benchmarks/RESULTS.md for the measured ratio.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from soundatlas.errors import ParameterError

__all__ = ["CQTParams", "PAPER_CQT", "cqt", "cqt_batch", "n_frames", "compress"]


@dataclass(frozen=True)
class CQTParams:
    """The numbers that define the transform; a model refuses features made with others."""

    sr: int = 16000
    hop_length: int = 800
    fmin: float = 27.5
    n_bins: int = 192
    bins_per_octave: int = 24
    compression: float = 50.0  # features are log(compression * |C| + 1)
    sparsity: float = 0.01  # fraction of each filter's L1 mass dropped, as librosa does

    def __post_init__(self):
        if self.sr <= 0:
            raise ParameterError(f"sr={self.sr} must be positive")
        if self.hop_length <= 0:
            raise ParameterError(f"hop_length={self.hop_length} must be positive")
        if self.n_bins <= 0 or self.bins_per_octave <= 0:
            raise ParameterError(
                f"n_bins={self.n_bins} and bins_per_octave={self.bins_per_octave} must be positive"
            )
        if self.fmin <= 0:
            raise ParameterError(f"fmin={self.fmin} must be positive")
        if self.cutoff >= self.sr / 2:
            raise ParameterError(
                f"the top filter reaches {self.cutoff:.0f} Hz, above sr/2={self.sr / 2:.0f} Hz: "
                "lower n_bins or fmin"
            )
        if not 0 <= self.sparsity < 1:
            raise ParameterError(f"sparsity={self.sparsity} must be in [0, 1)")

    @property
    def freqs(self) -> np.ndarray:
        return self.fmin * 2.0 ** (np.arange(self.n_bins) / self.bins_per_octave)

    @property
    def Q(self) -> float:
        # librosa's relative bandwidth for geometric spacing: alpha = (r^2 - 1) / (r^2 + 1)
        r2 = 2.0 ** (2.0 / self.bins_per_octave)
        return (r2 + 1) / (r2 - 1)

    @property
    def lengths(self) -> np.ndarray:
        """Filter lengths in samples (fractional, as librosa defines them)."""
        return self.Q * self.sr / self.freqs

    @property
    def cutoff(self) -> float:
        """Highest frequency any filter passes (Hann main lobe), in Hz."""
        hann_bandwidth = 1.50018310546875
        return float(self.freqs[-1] * (1 + 0.5 * hann_bandwidth / self.Q))

    def to_dict(self) -> dict:
        return asdict(self)


PAPER_CQT = CQTParams()


def n_frames(n_samples: int, *, hop_length: int = PAPER_CQT.hop_length) -> int:
    """Frames of a centred transform of ``n_samples`` samples (librosa's count)."""
    return 1 + int(n_samples) // hop_length


def compress(C: np.ndarray | torch.Tensor, *, compression: float = PAPER_CQT.compression):
    """``log(compression * |C| + 1)``."""
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


@functools.lru_cache(maxsize=16)
def _kernel(params: CQTParams, M: int) -> _Kernel:
    return _Kernel(params, M)


def _frames_for(params: CQTParams, n_samples: int) -> int:
    """FFT frame count M (N = hop * M) that holds a clip and its filters without wrap-around."""
    reach = int(math.ceil(params.lengths[0] / 2)) + params.hop_length
    return _fast_size(-(-(n_samples + reach) // params.hop_length))


def cqt_batch(
    ys: list[np.ndarray], *, params: CQTParams = PAPER_CQT, compressed: bool = True
) -> list[np.ndarray]:
    """Constant-Q transform of many clips at once.

    ``ys``: 1-D float arrays at ``params.sr`` (any lengths). Returns, per clip, a float32 array
    (frames x n_bins) with ``frames = 1 + len(y) // hop_length``: ``log(50|C| + 1)`` when
    ``compressed`` else ``|C|``. Clips are grouped by FFT size; within a group the work is one
    batched FFT and one sparse product.
    """
    out: list[np.ndarray | None] = [None] * len(ys)
    groups: dict[int, list[int]] = {}
    for i, y in enumerate(ys):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ParameterError(f"clip {i} has shape {y.shape}; expected 1-D mono samples")
        groups.setdefault(_frames_for(params, len(y)), []).append(i)
    for M, idx in groups.items():
        kernel = _kernel(params, M)
        for chunk in _chunks(idx, max(1, (1 << 22) // kernel.N)):
            mags = _cqt_same_size(kernel, [ys[i] for i in chunk])
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
    """Constant-Q transform of one clip: (frames x n_bins) float32; see :func:`cqt_batch`."""
    return cqt_batch([y], params=params, compressed=compressed)[0]
