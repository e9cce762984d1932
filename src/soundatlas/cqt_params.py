"""The numbers that define the constant-Q transform (:class:`CQTParams`, ``PAPER_CQT``) and its
frame count, apart from the transform itself (:mod:`soundatlas.cqt`) so that what only reads
them (the atlas, model configs, the command line) does not load torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from soundatlas.errors import ParameterError

__all__ = ["CQTParams", "PAPER_CQT", "KERNELS", "n_frames", "AS_STORED", "AsStored",
           "DEFAULT_MAX_DURATION"]

KERNELS = ("folded", "multirate")  # see the module docstring
_HANN_BANDWIDTH = 1.50018310546875  # librosa.filters.window_bandwidth("hann")


@dataclass(frozen=True)
class CQTParams:
    """The numbers that define the transform; a model refuses features made with others.

    ``kernel`` defaults to ``"folded"`` so that params stored without it (atlases and models
    made before it existed) read as what they were made with; new atlases use ``PAPER_CQT``
    (``"multirate"``), and ``dataclasses.replace(PAPER_CQT, ...)`` varies it.

    Parameters
    ----------
    sr : int, default=16000
        Sample rate in Hz (> 0).
    hop_length : int, default=800
        Samples between frames (> 0).
    fmin : float, default=27.5
        Centre frequency of the lowest bin in Hz (> 0).
    n_bins : int, default=192
        Bins per frame (> 0).
    bins_per_octave : int, default=24
        Bins per octave (> 0).
    compression : float, default=50.0
        Features are ``log(compression * |C| + 1)``.
    sparsity : float, default=0.01
        Fraction of each filter's L1 mass dropped, as librosa does, in [0, 1).
    kernel : {'folded', 'multirate'}, default='folded'
        How the transform is computed: one of :data:`KERNELS` (module doc).

    Raises
    ------
    ParameterError
        If a number is out of its range, the top filter reaches above ``sr / 2``, or the
        kernel is unknown.
    """

    sr: int = 16000
    hop_length: int = 800
    fmin: float = 27.5
    n_bins: int = 192
    bins_per_octave: int = 24
    compression: float = 50.0  # features are log(compression * |C| + 1)
    sparsity: float = 0.01  # fraction of each filter's L1 mass dropped, as librosa does
    kernel: str = "folded"  # how the transform is computed: one of KERNELS

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
        if self.kernel not in KERNELS:
            raise ParameterError(f"kernel={self.kernel!r} is not one of {', '.join(KERNELS)}")

    @property
    def freqs(self) -> np.ndarray:
        """Centre frequencies of the bins in Hz, geometric from ``fmin``: shape (n_bins,)."""
        return self.fmin * 2.0 ** (np.arange(self.n_bins) / self.bins_per_octave)

    @property
    def Q(self) -> float:
        """The filters' quality factor (centre frequency over bandwidth), librosa's."""
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
        return float(self.freqs[-1] * (1 + 0.5 * _HANN_BANDWIDTH / self.Q))

    def to_dict(self) -> dict:
        """The fields as a dict (``CQTParams(**d)`` rebuilds them).

        Returns
        -------
        dict
        """
        return asdict(self)

    def differs_only_in_kernel(self, other: "CQTParams") -> bool:
        """Whether ``other`` has the same numbers and another kernel.

        Parameters
        ----------
        other : CQTParams

        Returns
        -------
        bool
        """
        return self.kernel != other.kernel and replace(other, kernel=self.kernel) == self


PAPER_CQT = CQTParams(kernel="multirate")


def n_frames(n_samples: int, *, hop_length: int = PAPER_CQT.hop_length) -> int:
    """Frames of a centred transform of ``n_samples`` samples (librosa's count).

    Parameters
    ----------
    n_samples : int
        Length of the clip in samples.
    hop_length : int, default=PAPER_CQT.hop_length
        Samples between frames.

    Returns
    -------
    int
        ``1 + n_samples // hop_length``.
    """
    return 1 + int(n_samples) // hop_length


class AsStored:
    """The type of :data:`AS_STORED`."""

    def __repr__(self) -> str:
        return "AS_STORED"


#: ``index --max-duration`` not given: the atlas's own limit (its last run's); here, beside the
#: CQT's numbers, because the command line needs it without importing the indexing code
AS_STORED = AsStored()
#: seconds of each file a new atlas's first run analyses
DEFAULT_MAX_DURATION = 30.0
