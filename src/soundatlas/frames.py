"""Training data in memory: the frames of the training samples, their windows and centres, and
the paper's input noise.

:class:`TrainingData` holds the log-CQT frames of every training sample in one array (read from
the atlas once, no file I/O afterwards); a neighbourhood (:mod:`soundatlas.neighbourhoods`) draws
(sample, centre frame) pairs from it with :func:`draw_centres`; :func:`windows` cuts the windows
out, zero-padded at the sample's edges; :func:`add_noise` adds the paper's Gaussian noise to the
linear CQT magnitudes. :mod:`soundatlas.sampling` ties these into batches of triples.

Window convention (shared with the model and the embedder): the window *centred* at frame ``c``
spans frames ``[c - window // 2, c - window // 2 + window)`` -- frames c-5..c+4 for
``window=10`` -- and frames outside the sample are zeros (in the log domain, i.e. silence).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from soundatlas.cqt_params import PAPER_CQT
from soundatlas.errors import ParameterError
from soundatlas.labels import label_of, label_parts

if TYPE_CHECKING:  # pragma: no cover
    from soundatlas.atlas import Atlas

__all__ = [
    "TrainingData",
    "windows",
    "window_bounds",
    "window_valid",
    "draw_centres",
    "SILENCE",
    "frame_energy",
    "sounding_span",
    "sample_sounding_span",
    "add_noise",
    "DEFAULT_NOISE",
    "NOISE_RNGS",
]

NOISE_RNGS = ("numpy", "torch")
DEFAULT_NOISE = (0.1, 0.01)  # mean and standard deviation of the noise on linear CQT magnitudes


# -- the training data, in memory --------------------------------------------------------------


#: frames quieter than this share of their sample's loudest frame are near-silence: a map path
#: never snaps to them (``soundatlas.synth``) and the page does not draw them at a trajectory's
#: ends, where their measured pitch (none, or the noise floor's) would swing the path's height
SILENCE = 0.05


def sounding_span(frames: np.ndarray, *, compression: float = PAPER_CQT.compression,
                  silence: float = SILENCE) -> tuple[int, int]:
    """The first and the last frame of a sample at least ``silence`` x its loudest frame's
    energy (:func:`frame_energy`): its sounding part, without the near-silence before and after.

    Parameters
    ----------
    frames : array-like of shape (n_frames, n_bins)
        The sample's log-CQT frames (at least one).
    compression : float, default=PAPER_CQT.compression
        The compression the frames were made with.
    silence : float, default SILENCE
        The share of the loudest frame below which a frame is near-silence.

    Returns
    -------
    (int, int)
        Row indices, first <= last; (0, n_frames - 1) for a sample that is all silence.

    Raises
    ------
    ParameterError
        For no frames.
    """
    energy = frame_energy(frames, compression=compression)
    if not len(energy):
        raise ParameterError("a sample has at least one frame")
    loud = np.flatnonzero(energy >= silence * energy.max()) if energy.max() > 0 else []
    if not len(loud):
        return 0, len(energy) - 1
    return int(loud[0]), int(loud[-1])


def sample_sounding_span(atlas, sample, n_frames: int, *,
                         features: np.ndarray | None = None) -> tuple[int, int]:
    """:func:`sounding_span` of a sample's stored features, for a trajectory of ``n_frames``
    frames; all of them where features and trajectory do not match frame for frame (the file
    was indexed again since it was embedded).

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    sample : SampleRecord
        The sample.
    n_frames : int
        Frames of its trajectory.
    features : array-like of shape (n_frames, n_bins), optional
        The sample's features, where the caller has already read them.

    Returns
    -------
    (int, int)
        The first and last frame of its sounding part; (0, 0) for no frames.
    """
    if features is None:
        features = atlas.features(sample)
    if n_frames == 0 or len(features) != n_frames:
        return 0, max(n_frames - 1, 0)
    return sounding_span(features, compression=atlas.cqt_params.compression)


def frame_energy(frames: np.ndarray, *, compression: float = PAPER_CQT.compression) -> np.ndarray:
    """Summed linear CQT magnitude of each frame: sum over bins of expm1(F) / compression.

    Parameters
    ----------
    frames : array-like of shape (n_frames, n_bins)
        Log-CQT frames, log(compression * |C| + 1).
    compression : float, default=PAPER_CQT.compression
        The compression the frames were made with.

    Returns
    -------
    numpy.ndarray of float64, shape (n_frames,)
    """
    out = np.empty(len(frames), dtype=np.float64)
    step = 16384  # bounded temporaries for ~200k-frame libraries
    for i in range(0, len(frames), step):
        chunk = np.asarray(frames[i : i + step], dtype=np.float64)
        out[i : i + step] = np.expm1(chunk).sum(axis=1) / compression
    return out


def absent_labels(atlas, label_keys, known: set[str] | None = None) -> dict[str, str]:
    """Each of ``label_keys`` (or ``A+B`` pairs) the atlas has no sample of, with the message
    that says so and names the labels there are (read before any feature file); ``known``:
    the atlas's label names, where the caller has read them."""
    if not label_keys:
        return {}
    known = set(atlas.label_summary()) if known is None else known
    absent = {}
    for key in label_keys:
        lacking = [p for p in label_parts(key, known) if p not in known]
        if lacking:
            absent[key] = (f"label {lacking[0]!r} is not in the atlas {atlas.path}; "
                           f"available labels: {', '.join(sorted(known)) or '(none)'}")
    return absent


@dataclass(eq=False)
class TrainingData:
    """The frames of a set of samples, concatenated in one float32 array, plus their labels.

    ``frames[offsets[i] : offsets[i] + lengths[i]]`` are sample ``i``'s log-CQT frames (atlas id
    ``sample_ids[i]``). Treat it as read-only: the energy table used by :func:`draw_centres` is
    computed once and cached. Built by :meth:`from_atlas` or :meth:`from_arrays`.

    Parameters
    ----------
    sample_ids : numpy.ndarray of int64, shape (n_samples,)
        Atlas id of each sample.
    frames : numpy.ndarray of float32, shape (total_frames, n_bins)
        Every sample's log-CQT frames, one after the other.
    offsets : numpy.ndarray of int64, shape (n_samples,)
        Row of each sample's first frame in ``frames``.
    lengths : numpy.ndarray of int64, shape (n_samples,)
        Frames of each sample.
    energy : numpy.ndarray of float64, shape (total_frames,)
        Each frame's summed linear magnitude (:func:`frame_energy`).
    labels : dict of str to numpy.ndarray of object
        ``labels[key][i]`` is sample ``i``'s value of label ``key`` (a str) or None.
    compression : float, default=PAPER_CQT.compression
        The CQT's compression.
    bins_per_octave : int, default=PAPER_CQT.bins_per_octave
        The CQT's resolution, for augmentation.
    frame_seconds : float, default=hop_length / sr of PAPER_CQT
        Duration of one frame, for augmentation.
    absent_labels : dict of str to str
        Why a label asked for was not loaded, per key (:meth:`label` raises it).
    suggested_only : dict of str to int
        Per key, the samples whose only value is a suggestion from the map, which was not read.
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
    suggested_only: dict[str, int] = field(default_factory=dict)
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
        suggested: bool = False,
    ) -> "TrainingData":
        """Read samples and their labels from an atlas.

        Parameters
        ----------
        atlas : Atlas
            The atlas to read.
        sample_ids : iterable of int, optional
            The samples' atlas ids, kept in that order (all samples when None).
        label_keys : sequence of str, default=()
            Labels to load.
        compression : float, optional
            Defaults to the atlas's CQT compression (50 for the paper CQT).
        missing_labels : {'raise', 'skip'}, default='raise'
            For a label key the atlas has never seen: raise, or leave the key out and let
            :meth:`label` raise that error when it is asked for (``train`` refuses such a
            key first, :func:`absent_labels`; a mixture fitted here leaves its part out).
        suggested : bool, default False
            Read the values ``suggest --apply`` stored and nobody accepted too. A model taught
            its map's guesses learns their mistakes as truth, so training reads the index's
            labels and the user's own alone (a suggestion the user accepts is the user's).

        Returns
        -------
        TrainingData
            The samples in the order asked, with the labels found.

        Raises
        ------
        ParameterError
            For an id the atlas does not hold, for an unknown label key with
            ``missing_labels='raise'``, or for another value of ``missing_labels``.
        AtlasError
            When feature files cannot be read: every damaged one is named, with the repair
            (``Atlas.each_features``).
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
        known = set(atlas.label_summary()) if label_keys else set()
        absent = absent_labels(atlas, label_keys, known)
        if label_keys:
            if absent and missing_labels == "raise":
                raise ParameterError(next(iter(absent.values())))
            label_keys = [k for k in label_keys if k not in absent]
        lengths = np.array([r.n_frames for r in records], dtype=np.int64)
        offsets = _offsets(lengths)
        n_bins = atlas.cqt_params.n_bins
        frames = np.empty((int(lengths.sum()), n_bins), dtype=np.float32)
        offset_of = dict(zip((r.id for r in records), offsets.tolist()))
        for rec, F in atlas.each_features(r for r in records if r.n_frames):
            off = offset_of[rec.id]
            frames[off : off + rec.n_frames] = F
        labels, suggested_only = {}, {}
        for key in label_keys:
            values = label_of(atlas, key, known, suggested=suggested)
            labels[key] = _object_array([values.get(r.id) for r in records])
            if not suggested:  # what a user may mean to train on: named if training fails
                guessed = label_of(atlas, key, known).keys() - values.keys()
                n = sum(r.id in guessed for r in records)
                if n:
                    suggested_only[key] = n
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
            suggested_only=suggested_only,
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
        """Training data from log-CQT arrays in memory (tests, in-memory use).

        Parameters
        ----------
        arrays : sequence of array-like of shape (frames, n_bins)
            One array per sample, all with the same ``n_bins``.
        labels : dict of str to sequence of str or None, optional
            One value per sample per label key (values turned into strings).
        sample_ids : sequence of int, optional
            Ids of the samples (default: 0, 1, ...).
        compression, bins_per_octave, frame_seconds
            The CQT's, as for the class.

        Returns
        -------
        TrainingData

        Raises
        ------
        ParameterError
            If ``arrays`` is empty or not 2-D with one ``n_bins``, or ``sample_ids`` or a
            label does not have one entry per array.
        """
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
        """A new TrainingData holding some of the samples.

        Parameters
        ----------
        indices : sequence of int or numpy.ndarray
            Positions of the samples (not atlas ids), in the order wanted.

        Returns
        -------
        TrainingData
            With copies of the samples' frames, energy and labels.

        Raises
        ------
        ParameterError
            If an index lies outside [0, n_samples).
        """
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
        """Number of samples."""
        return len(self.sample_ids)

    @property
    def n_bins(self) -> int:
        """CQT bins per frame."""
        return self.frames.shape[1]

    @property
    def n_frames_total(self) -> int:
        """Frames of all samples together."""
        return len(self.frames)

    def sample_frames(self, i: int) -> np.ndarray:
        """Sample ``i``'s frames.

        Parameters
        ----------
        i : int
            Position of the sample.

        Returns
        -------
        numpy.ndarray of shape (lengths[i], n_bins)
            A view into ``frames``.
        """
        return self.frames[self.offsets[i] : self.offsets[i] + self.lengths[i]]

    def label(self, key: str) -> np.ndarray:
        """The values of a label, one per sample.

        Parameters
        ----------
        key : str
            The label key.

        Returns
        -------
        numpy.ndarray of object, shape (n_samples,)
            A str or None per sample.

        Raises
        ------
        ParameterError
            When the label was not loaded: the reason from ``absent_labels``, or a message
            naming the loaded keys.
        """
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


def window_bounds(centres, *, window: int = 10):
    """First frame and stop of each window centred at ``centres``.

    Parameters
    ----------
    centres : array-like of int
        Centre frames.
    window : int, default=10
        Frames per window.

    Returns
    -------
    first, stop : numpy.ndarray
        ``c - window // 2`` and ``first + window`` per centre ``c``.
    """
    first = np.asarray(centres) - window // 2
    return first, first + window


def windows(data: TrainingData, sample_idx, centres, *, window: int = 10,
            before: int = 0) -> np.ndarray:
    """Cut the windows centred at ``centres`` out of samples ``sample_idx``.

    Frames outside a sample are zero (see the module doc for the window convention).

    Parameters
    ----------
    data : TrainingData
        The frames.
    sample_idx : array-like of int, shape (n,)
        Positions of the samples in ``data``.
    centres : array-like of int, shape (n,)
        Centre frame of each window, within its sample.
    window : int, default=10
        Frames per window (>= 1).
    before : int, default=0
        Frames (>= 0) to start each window earlier by, for context; the window proper comes
        last.

    Returns
    -------
    numpy.ndarray of float32, shape (n, before + window, n_bins)
        A new array.

    Raises
    ------
    ParameterError
        If ``window`` < 1, ``before`` < 0, or the two index arrays differ in length.
    """
    rows, valid = _window_rows(data, sample_idx, centres, window=window, before=before)
    out = data.frames[rows]  # (n, before + window, n_bins), a fresh array
    out[~valid] = 0.0
    return out


def window_valid(data: TrainingData, sample_idx, centres, *, window: int = 10) -> np.ndarray:
    """Which frames of each window lie inside its sample.

    Parameters
    ----------
    data, sample_idx, centres, window
        As for :func:`windows`.

    Returns
    -------
    numpy.ndarray of bool, shape (n, window)

    Raises
    ------
    ParameterError
        If ``window`` < 1 or the two index arrays differ in length.
    """
    return _window_rows(data, sample_idx, centres, window=window)[1]


def _window_rows(data, sample_idx, centres, *, window: int, before: int = 0):
    if window < 1:
        raise ParameterError(f"window={window} must be at least 1")
    if before < 0:
        raise ParameterError(f"before={before} must not be negative")
    s = np.asarray(sample_idx, dtype=np.int64).reshape(-1)
    c = np.asarray(centres, dtype=np.int64).reshape(-1)
    if len(s) != len(c):
        raise ParameterError(f"{len(s)} sample indices for {len(c)} centres")
    rel = (c - window // 2 - before)[:, None] + np.arange(before + window, dtype=np.int64)
    valid = (rel >= 0) & (rel < data.lengths[s][:, None])
    return np.where(valid, data.offsets[s][:, None] + rel, 0), valid


def draw_centres(data: TrainingData, sample_idx, rng: np.random.Generator) -> np.ndarray:
    """Draw one window centre per entry of ``sample_idx``, weighted by energy.

    Each frame is drawn with probability proportional to its summed linear CQT energy
    (uniformly over a sample whose energy is all zero). A sample without frames gets centre 0
    (its window is all zeros).

    Parameters
    ----------
    data : TrainingData
        The frames and their energy.
    sample_idx : array-like of int
        Positions of the samples in ``data``; repeats draw again.
    rng : numpy.random.Generator
        Source of the draws.

    Returns
    -------
    numpy.ndarray of int64
        One centre frame per entry, within its sample.
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
    """Add Gaussian noise N(mean, std) to the *linear* CQT magnitudes of log-CQT input.

    lin = expm1(x) / compression; lin += noise; the result is
    log1p(compression * max(lin, 0)). ``x`` is not modified.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Log-CQT input of any shape.
    rng : numpy.random.Generator or torch.Generator, optional
        For a numpy ``x``, a numpy Generator (None: a fresh one); for a tensor, a
        torch.Generator on any device (None: torch's global generator).
    mean : float, default=DEFAULT_NOISE[0]
        Mean of the noise.
    std : float, default=DEFAULT_NOISE[1]
        Standard deviation of the noise (>= 0).
    compression : float, default=PAPER_CQT.compression
        The log-CQT's compression (> 0).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        The same kind and dtype as ``x`` (float32 for a numpy ``x`` that is not floating-point).

    Raises
    ------
    ParameterError
        If ``std`` < 0, ``compression`` <= 0, or ``rng`` is of the wrong kind for ``x``.
    """
    if std < 0:
        raise ParameterError(f"noise std={std} must not be negative")
    if compression <= 0:
        raise ParameterError(f"compression={compression} must be positive")
    torch = sys.modules.get("torch")  # not imported for numpy input: a tensor means it is loaded
    if torch is not None and isinstance(x, torch.Tensor):
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
