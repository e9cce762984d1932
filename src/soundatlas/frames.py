"""Training data in memory: the frames of the training samples, their windows and centres, and
the paper's input noise.

:class:`TrainingData` holds the log-CQT frames of every training sample in one array (read from
the atlas once, no file I/O afterwards); a neighbourhood (:mod:`soundatlas.neighbourhoods`) draws
(sample, centre frame) pairs from it with :func:`draw_centres`; :func:`windows` cuts the windows
out, zero-padded at the sample's edges; :func:`add_noise` adds the paper's Gaussian noise to the
linear CQT magnitudes. :mod:`soundatlas.sampling` ties these into batches of triples.

Window convention (shared with the model and the embedder): the window *centred* at frame ``c``
spans frames ``[c - n_frames // 2, c - n_frames // 2 + n_frames)`` -- frames c-5..c+4 for
``n_frames=10`` -- and frames outside the sample are zeros (in the log domain, i.e. silence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch

from soundatlas.cqt import PAPER_CQT
from soundatlas.errors import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    from soundatlas.atlas import Atlas

__all__ = [
    "TrainingData",
    "windows",
    "window_bounds",
    "window_valid",
    "draw_centres",
    "frame_energy",
    "add_noise",
    "DEFAULT_NOISE",
    "NOISE_RNGS",
]

NOISE_RNGS = ("numpy", "torch")
DEFAULT_NOISE = (0.1, 0.01)  # mean and standard deviation of the noise on linear CQT magnitudes


# -- the training data, in memory --------------------------------------------------------------


def frame_energy(frames: np.ndarray, *, compression: float = PAPER_CQT.compression) -> np.ndarray:
    """Summed linear CQT magnitude of each frame: sum over bins of expm1(F) / compression.

    ``frames``: (n_frames x n_bins) log-CQT, log(compression * |C| + 1).
    Returns float64 (n_frames,).
    """
    out = np.empty(len(frames), dtype=np.float64)
    step = 16384  # bounded temporaries for ~200k-frame libraries
    for i in range(0, len(frames), step):
        chunk = np.asarray(frames[i : i + step], dtype=np.float64)
        out[i : i + step] = np.expm1(chunk).sum(axis=1) / compression
    return out


@dataclass(eq=False)
class TrainingData:
    """The frames of a set of samples, concatenated in one float32 array, plus their labels.

    ``frames[offsets[i] : offsets[i] + lengths[i]]`` are sample ``i``'s log-CQT frames (atlas id
    ``sample_ids[i]``); ``energy`` is each frame's summed linear magnitude (:func:`frame_energy`);
    ``labels[key][i]`` is sample ``i``'s value of label ``key`` (a str) or None;
    ``absent_labels[key]`` says why a label asked for was not loaded (:meth:`label` raises it).
    ``bins_per_octave`` and ``frame_seconds`` (hop_length / sr) are the CQT's, for augmentation.
    Treat it as read-only: the energy table used by :func:`draw_centres` is computed once and
    cached.
    """

    sample_ids: np.ndarray  # int64 (n_samples,)
    frames: np.ndarray  # float32 (total_frames, n_bins)
    offsets: np.ndarray  # int64 (n_samples,)
    lengths: np.ndarray  # int64 (n_samples,)
    energy: np.ndarray  # float64 (total_frames,)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # object arrays, None = absent
    compression: float = PAPER_CQT.compression
    bins_per_octave: int = PAPER_CQT.bins_per_octave
    frame_seconds: float = PAPER_CQT.hop_length / PAPER_CQT.sr
    absent_labels: dict[str, str] = field(default_factory=dict)
    _cum: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_atlas(
        cls,
        atlas: "Atlas",
        sample_ids: Iterable[int] | None = None,
        *,
        label_keys: Sequence[str] = (),
        compression: float | None = None,
        missing_labels: str = "raise",
    ) -> "TrainingData":
        """Read the given samples (all of them when None), in that order, and their labels.

        ``compression`` defaults to the atlas's CQT compression (50 for the paper CQT).
        Raises ParameterError for an id the atlas does not hold, and for a label key it has never
        seen unless ``missing_labels="skip"``: then the key is left out and :meth:`label` raises
        that error when it is asked for (a mixture of neighbourhoods leaves out the parts whose
        labels this atlas lacks).
        """
        if missing_labels not in {"raise", "skip"}:
            raise ParameterError(f"missing_labels={missing_labels!r} must be 'raise' or 'skip'")
        if compression is None:
            compression = float(atlas.cqt_params.compression)
        ids = None if sample_ids is None else [int(i) for i in sample_ids]
        records = atlas.samples(ids)
        if ids is not None:
            by_id = {r.id: r for r in records}
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise ParameterError(
                    f"{len(missing)} sample id(s) are not in the atlas {atlas.path} "
                    f"(first: {missing[:5]})"
                )
            records = [by_id[i] for i in ids]
        absent = {}
        if label_keys:
            known = set(atlas.label_summary())
            for key in label_keys:
                if key not in known:
                    absent[key] = (f"label {key!r} is not in the atlas {atlas.path}; "
                                   f"available labels: {', '.join(sorted(known)) or '(none)'}")
            if absent and missing_labels == "raise":
                raise ParameterError(next(iter(absent.values())))
            label_keys = [k for k in label_keys if k not in absent]
        lengths = np.array([r.n_frames for r in records], dtype=np.int64)
        offsets = _offsets(lengths)
        n_bins = atlas.cqt_params.n_bins
        frames = np.empty((int(lengths.sum()), n_bins), dtype=np.float32)
        for rec, off in zip(records, offsets):
            if rec.n_frames:
                frames[off : off + rec.n_frames] = atlas.features(rec)
        labels = {}
        for key in label_keys:
            values = atlas.labels(key)
            labels[key] = _object_array([values.get(r.id) for r in records])
        return cls(
            sample_ids=np.array([r.id for r in records], dtype=np.int64),
            frames=frames,
            offsets=offsets,
            lengths=lengths,
            energy=frame_energy(frames, compression=compression),
            labels=labels,
            compression=float(compression),
            bins_per_octave=int(atlas.cqt_params.bins_per_octave),
            frame_seconds=atlas.cqt_params.hop_length / atlas.cqt_params.sr,
            absent_labels=absent,
        )

    @classmethod
    def from_arrays(
        cls,
        arrays: Sequence[np.ndarray],
        *,
        labels: dict[str, Sequence[str | None]] | None = None,
        sample_ids: Sequence[int] | None = None,
        compression: float = PAPER_CQT.compression,
        bins_per_octave: int = PAPER_CQT.bins_per_octave,
        frame_seconds: float = PAPER_CQT.hop_length / PAPER_CQT.sr,
    ) -> "TrainingData":
        """Training data from a list of (frames x n_bins) log-CQT arrays (tests, in-memory use)."""
        if not arrays:
            raise ParameterError("from_arrays needs at least one frame array")
        n_bins = {np.shape(a)[1] if np.ndim(a) == 2 else -1 for a in arrays}
        if len(n_bins) != 1 or -1 in n_bins:
            raise ParameterError(
                "every frame array must be 2-D (frames x n_bins) with the same n_bins"
            )
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        frames = np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays]).reshape(
            -1, n_bins.pop()
        )
        ids = np.arange(len(arrays), dtype=np.int64) if sample_ids is None else np.asarray(
            sample_ids, dtype=np.int64
        )
        if len(ids) != len(arrays):
            raise ParameterError(f"{len(ids)} sample_ids for {len(arrays)} frame arrays")
        out_labels = {}
        for key, values in (labels or {}).items():
            if len(values) != len(arrays):
                raise ParameterError(
                    f"label {key!r} has {len(values)} values for {len(arrays)} samples"
                )
            out_labels[key] = _object_array([None if v is None else str(v) for v in values])
        return cls(
            sample_ids=ids,
            frames=frames,
            offsets=_offsets(lengths),
            lengths=lengths,
            energy=frame_energy(frames, compression=compression),
            labels=out_labels,
            compression=float(compression),
            bins_per_octave=int(bins_per_octave),
            frame_seconds=float(frame_seconds),
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> "TrainingData":
        """A new TrainingData holding the samples at ``indices`` (positions, not atlas ids)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_samples):
            raise ParameterError(f"subset indices must lie in [0, {self.n_samples})")
        lengths = self.lengths[idx]
        rows = _ranges(self.offsets[idx], lengths)
        return TrainingData(
            sample_ids=self.sample_ids[idx].copy(),
            frames=self.frames[rows],
            offsets=_offsets(lengths),
            lengths=lengths.copy(),
            energy=self.energy[rows],
            labels={k: v[idx].copy() for k, v in self.labels.items()},
            compression=self.compression,
            bins_per_octave=self.bins_per_octave,
            frame_seconds=self.frame_seconds,
            absent_labels=dict(self.absent_labels),
        )

    # -- shape -----------------------------------------------------------------------------------

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    @property
    def n_bins(self) -> int:
        return self.frames.shape[1]

    @property
    def n_frames_total(self) -> int:
        return len(self.frames)

    def sample_frames(self, i: int) -> np.ndarray:
        """Sample ``i``'s frames (a view)."""
        return self.frames[self.offsets[i] : self.offsets[i] + self.lengths[i]]

    def label(self, key: str) -> np.ndarray:
        """The values of label ``key``; ParameterError naming the loaded keys when absent."""
        if key in self.absent_labels:
            raise ParameterError(self.absent_labels[key])
        if key not in self.labels:
            raise ParameterError(
                f"label {key!r} is not in the training data; available labels: "
                f"{', '.join(sorted(self.labels)) or '(none loaded)'}"
            )
        return self.labels[key]

    # -- energy-weighted centres ------------------------------------------------------------------

    def _centre_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(G, last): G[r] = s + (cumulative energy of sample s up to frame r) / (its total),
        for the frame r of sample s -- a global increasing table searchable for every sample at
        once; a sample with no energy counts every frame as 1. last[s] = the last frame index of
        s with positive weight (guards the rounding of s + u at u -> 1)."""
        if self._cum is None:
            n = self.n_samples
            owner = np.repeat(np.arange(n, dtype=np.int64), self.lengths)
            w = np.maximum(self.energy, 0.0)
            totals = np.bincount(owner, weights=w, minlength=n)
            silent = totals[owner] <= 0
            w = np.where(silent, 1.0, w)
            totals = np.bincount(owner, weights=w, minlength=n)
            cum = np.cumsum(w)
            start = np.concatenate([[0.0], cum])[self.offsets]  # cumulative before each sample
            local = (cum - start[owner]) / np.where(totals[owner] > 0, totals[owner], 1.0)
            g = owner + np.minimum(local, 1.0)
            pos = np.flatnonzero(w > 0)
            last = np.full(n, -1, dtype=np.int64)
            np.maximum.at(last, owner[pos], pos - self.offsets[owner[pos]])
            self._cum = (g, last)
        return self._cum


def _object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=out[1:])
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_off = _offsets(lengths)
    return np.repeat(starts - out_off, lengths) + np.arange(total, dtype=np.int64)


# -- windows and centres ---------------------------------------------------------------------


def window_bounds(centres, *, n_frames: int = 10):
    """First frame and stop of each window centred at ``centres``: c - n_frames // 2, + n_frames."""
    first = np.asarray(centres) - n_frames // 2
    return first, first + n_frames


def windows(data: TrainingData, sample_idx, centres, *, n_frames: int = 10,
            before: int = 0) -> np.ndarray:
    """The windows centred at ``centres`` of samples ``sample_idx``: (n, n_frames, n_bins) float32.

    Frames outside a sample are zero (see the module doc for the window convention). With
    ``before`` > 0 each window starts that many frames earlier: (n, before + n_frames, n_bins),
    the window proper last.
    """
    rows, valid = _window_rows(data, sample_idx, centres, n_frames=n_frames, before=before)
    out = data.frames[rows]  # (n, before + n_frames, n_bins), a fresh array
    out[~valid] = 0.0
    return out


def window_valid(data: TrainingData, sample_idx, centres, *, n_frames: int = 10) -> np.ndarray:
    """(n, n_frames) bool: which frames of each window lie inside its sample."""
    return _window_rows(data, sample_idx, centres, n_frames=n_frames)[1]


def _window_rows(data, sample_idx, centres, *, n_frames: int, before: int = 0):
    if n_frames < 1:
        raise ParameterError(f"n_frames={n_frames} must be at least 1")
    if before < 0:
        raise ParameterError(f"before={before} must not be negative")
    s = np.asarray(sample_idx, dtype=np.int64).reshape(-1)
    c = np.asarray(centres, dtype=np.int64).reshape(-1)
    if len(s) != len(c):
        raise ParameterError(f"{len(s)} sample indices for {len(c)} centres")
    rel = (c - n_frames // 2 - before)[:, None] + np.arange(before + n_frames, dtype=np.int64)
    valid = (rel >= 0) & (rel < data.lengths[s][:, None])
    return np.where(valid, data.offsets[s][:, None] + rel, 0), valid


def draw_centres(data: TrainingData, sample_idx, rng: np.random.Generator) -> np.ndarray:
    """One window centre per entry of ``sample_idx``, drawn with probability proportional to the
    frame's summed linear CQT energy (uniformly over a sample whose energy is all zero).

    A sample without frames gets centre 0 (its window is all zeros).
    """
    s = np.asarray(sample_idx, dtype=np.int64).reshape(-1)
    g, last = data._centre_table()
    u = s + rng.random(len(s))
    rows = np.searchsorted(g, u, side="right")
    centres = rows - data.offsets[s]
    return np.clip(centres, 0, np.maximum(last[s], 0))


# -- noise -------------------------------------------------------------------------------------


def add_noise(x, rng=None, *, mean: float = DEFAULT_NOISE[0], std: float = DEFAULT_NOISE[1],
              compression: float = PAPER_CQT.compression):
    """Gaussian noise N(mean, std) on the *linear* CQT magnitudes of log-CQT input ``x``.

    lin = expm1(x) / compression; lin += noise; returns log1p(compression * max(lin, 0)).
    ``x`` a numpy array (``rng``: np.random.Generator, or None for a fresh one) or a torch tensor
    (``rng``: torch.Generator on any device, or None for torch's global generator). Returns the
    same kind and dtype as ``x``; ``x`` is not modified.
    """
    if std < 0:
        raise ParameterError(f"noise std={std} must not be negative")
    if compression <= 0:
        raise ParameterError(f"compression={compression} must be positive")
    if isinstance(x, torch.Tensor):
        if rng is not None and not isinstance(rng, torch.Generator):
            raise ParameterError("add_noise on a torch tensor needs a torch.Generator (or None)")
        device = rng.device if rng is not None else x.device
        z = torch.randn(x.shape, generator=rng, device=device, dtype=x.dtype).to(x.device)
        lin = torch.expm1(x) / compression + (mean + std * z)
        return torch.log1p(compression * lin.clamp_min(0))
    if rng is None:
        rng = np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise ParameterError("add_noise on a numpy array needs a np.random.Generator (or None)")
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    z = rng.standard_normal(x.shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    lin = np.expm1(x.astype(dtype, copy=False)) / dtype.type(compression)
    z *= dtype.type(std)
    z += dtype.type(mean)
    lin += z
    np.maximum(lin, 0, out=lin)
    lin *= dtype.type(compression)
    return np.log1p(lin, out=lin)
