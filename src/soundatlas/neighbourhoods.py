"""Neighbourhoods: which windows belong together, as swappable contrastive partitions.

A neighbourhood is fitted on :class:`~soundatlas.sampling.TrainingData` and then draws triples of
(sample index, window centre) -- anchor, positive, negative. A new neighbourhood is a new class
here (registered in :data:`NEIGHBOURHOODS`), never an ``if`` in the trainer. Like a scikit-learn
estimator, a neighbourhood stores its constructor arguments as-is (:meth:`Neighbourhood.get_params`
is what the model's JSON config records) and sets learned state, ending in ``_``, in ``fit``.

Label neighbourhoods (the paper's reference sampling): pick a key uniformly; draw the anchor from
the key's anchor samples and the positive, a *different* sample, from its positive set; draw the
negative uniformly from every usable sample outside that positive set; choose each window centre
by frame energy (:func:`~soundatlas.sampling.draw_centres`).

- :class:`Instrument` -- key = instrument (any label column: ``Instrument(label="folder")``);
- :class:`Pitch` -- key = MIDI pitch;
- :class:`InstrumentPitch` -- key = (instrument, pitch);
- :class:`InstrumentPitch2` -- key = (instrument, pitch); positives: same instrument within
  +/- ``semitones``.

Samples lacking a needed label (or whose pitch is not a pitch, or that have no frames) are left out
and counted (``n_excluded_``, ``excluded_``). A key whose positive set holds a single sample
cannot give an anchor and a *different* positive: such a key is dropped as a key (counted in
``n_dropped_keys_``) but its samples stay in play as negatives for the other keys. Using the same
sample twice (two windows of one file) would teach the map "same file", not "same class".

:class:`InputKNN` needs no labels: positives are input-space nearest neighbours of the anchor
window, negatives are windows far from it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar, Hashable

import numpy as np

from soundatlas.errors import ParameterError
from soundatlas.labels import normalise_pitch
from soundatlas.sampling import TrainingData, draw_centres, windows

__all__ = [
    "Triples",
    "Neighbourhood",
    "LabelNeighbourhood",
    "Instrument",
    "Pitch",
    "InstrumentPitch",
    "InstrumentPitch2",
    "InputKNN",
    "NEIGHBOURHOODS",
    "make_neighbourhood",
]


@dataclass(frozen=True)
class Triples:
    """n triples as (sample index into the TrainingData, window centre frame), int64 arrays."""

    anchor_sample: np.ndarray
    anchor_centre: np.ndarray
    positive_sample: np.ndarray
    positive_centre: np.ndarray
    negative_sample: np.ndarray
    negative_centre: np.ndarray

    def __len__(self) -> int:
        return len(self.anchor_sample)

    @property
    def samples(self) -> np.ndarray:
        """(n, 3): anchor, positive, negative sample indices."""
        return np.stack([self.anchor_sample, self.positive_sample, self.negative_sample], axis=1)

    @property
    def centres(self) -> np.ndarray:
        """(n, 3): anchor, positive, negative window centres."""
        return np.stack([self.anchor_centre, self.positive_centre, self.negative_centre], axis=1)


class Neighbourhood:
    """Base class: constructor arguments stored as-is, ``fit(data)``, ``draw(rng, n, data)``."""

    name: ClassVar[str] = ""

    # -- configuration ---------------------------------------------------------------------------

    def get_params(self) -> dict:
        """The constructor arguments (JSON-ready), as the model's config records them."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def to_config(self) -> dict:
        """{"name": ..., "params": ...}; ``make_neighbourhood(**to_config())`` rebuilds it."""
        return {"name": self.name, "params": self.get_params()}

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The label columns the neighbourhood needs in the TrainingData."""
        return ()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- learning and drawing -------------------------------------------------------------------

    def is_fitted(self) -> bool:
        return hasattr(self, "n_samples_")

    def fit(self, data: TrainingData) -> "Neighbourhood":
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        raise NotImplementedError

    def summary(self) -> dict:
        """Learned scalar facts (counts) for logs and the model config."""
        return {}

    def _check_draw(self, n: int, data: TrainingData) -> None:
        if not self.is_fitted():
            raise ParameterError(f"{self!r} is not fitted; call fit(data) first")
        if data.n_samples != self.n_samples_:
            raise ParameterError(
                f"{self.name} was fitted on {self.n_samples_} samples, not these {data.n_samples}"
            )
        if n < 0:
            raise ParameterError(f"n={n} must not be negative")


# -- label neighbourhoods ----------------------------------------------------------------------


class _Sets:
    """A family of sorted sets of positions in range(universe), stored flat, drawn from vectorised.

    ``pick``: a uniform member; ``pick_other``: a uniform member other than a given member;
    ``pick_outside``: a uniform position not in the set -- all for one set id per row.
    """

    def __init__(self, sets: list[np.ndarray], universe: int):
        self.universe = universe
        self.counts = np.array([len(s) for s in sets], dtype=np.int64)
        self.starts = np.zeros(len(sets), dtype=np.int64)
        np.cumsum(self.counts[:-1], out=self.starts[1:])
        self.members = np.concatenate(sets).astype(np.int64) if sets else np.zeros(0, np.int64)
        set_of = np.repeat(np.arange(len(sets), dtype=np.int64), self.counts)
        rank = np.arange(len(self.members), dtype=np.int64) - self.starts[set_of]
        stride = universe + 1
        self._keyed = set_of * stride + self.members  # globally increasing
        self._gaps = set_of * stride + (self.members - rank)  # non-decreasing

    def pick(self, rng, set_ids):
        j = rng.integers(0, self.counts[set_ids])
        return self.members[self.starts[set_ids] + j]

    def pick_other(self, rng, set_ids, member):
        """Needs counts >= 2 and ``member`` in the set."""
        stride = self.universe + 1
        where = np.searchsorted(self._keyed, set_ids * stride + member) - self.starts[set_ids]
        j = rng.integers(0, self.counts[set_ids] - 1)
        j = j + (j >= where)
        return self.members[self.starts[set_ids] + j]

    def pick_outside(self, rng, set_ids):
        """Needs counts < universe. The j-th non-member is j + #{i : members[i] - i <= j}."""
        stride = self.universe + 1
        j = rng.integers(0, self.universe - self.counts[set_ids])
        t = np.searchsorted(self._gaps, set_ids * stride + j, side="right") - self.starts[set_ids]
        return j + t


class LabelNeighbourhood(Neighbourhood):
    """Base of the label neighbourhoods: subclasses say what a sample's key is (``_keys``) and,
    when it differs from "the samples with that key", what a key's positive set is."""

    def _keys(self, data: TrainingData) -> tuple[list[Hashable | None], dict[str, int]]:
        """Each sample's key (None: left out) and {reason: count} of the samples left out."""
        raise NotImplementedError

    def _positive_sets(self, keys: list, anchor_sets: list[np.ndarray]) -> list[np.ndarray]:
        return anchor_sets

    def fit(self, data: TrainingData) -> "LabelNeighbourhood":
        keys, excluded = self._keys(data)
        no_frames = 0
        groups: dict[Hashable, list[int]] = {}
        eligible: list[int] = []
        for i, key in enumerate(keys):
            if key is None:
                continue
            if data.lengths[i] == 0:
                no_frames += 1
                continue
            groups.setdefault(key, []).append(len(eligible))
            eligible.append(i)
        if no_frames:
            excluded["no frames"] = no_frames
        all_keys = sorted(groups)
        anchor_sets = [np.array(groups[k], dtype=np.int64) for k in all_keys]
        positive_sets = self._positive_sets(all_keys, anchor_sets)
        n_eligible = len(eligible)
        usable = [i for i, pos in enumerate(positive_sets) if 2 <= len(pos) < n_eligible]

        self.excluded_ = {k: v for k, v in excluded.items() if v}
        self.n_excluded_ = int(sum(self.excluded_.values()))
        self.n_dropped_keys_ = len(all_keys) - len(usable)
        self.keys_ = [_json_key(all_keys[i]) for i in usable]
        if len(usable) < 2:
            raise ParameterError(
                f"the {self.name} neighbourhood needs at least 2 keys with 2 or more samples each "
                f"and others outside them; these data give {len(usable)} "
                f"({len(all_keys)} keys in {n_eligible} usable samples; "
                f"{self.n_excluded_} samples left out: {self.excluded_ or 'none'})"
            )
        self.n_samples_ = data.n_samples  # set last: a failed fit leaves it unfitted
        self.eligible_ = np.array(eligible, dtype=np.int64)
        self._anchors = _Sets([anchor_sets[i] for i in usable], n_eligible)
        self._positives = _Sets([positive_sets[i] for i in usable], n_eligible)
        return self

    def summary(self) -> dict:
        return {
            "n_keys": len(self.keys_),
            "n_samples_used": int(len(self.eligible_)),
            "n_excluded": self.n_excluded_,
            "excluded": dict(self.excluded_),
            "n_dropped_keys": self.n_dropped_keys_,
        }

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        self._check_draw(n, data)
        k = rng.integers(0, len(self.keys_), size=n)
        a = self._anchors.pick(rng, k)
        p = self._positives.pick_other(rng, k, a)
        q = self._positives.pick_outside(rng, k)
        samples = self.eligible_[np.concatenate([a, p, q])]
        centres = draw_centres(data, samples, rng)
        return Triples(samples[:n], centres[:n], samples[n : 2 * n], centres[n : 2 * n],
                       samples[2 * n :], centres[2 * n :])


def _json_key(key):
    return list(key) if isinstance(key, tuple) else key


def _pitches(data: TrainingData, label: str) -> tuple[list[int | None], int, int]:
    """Each sample's MIDI pitch (None when missing or not a pitch), #missing, #unparseable."""
    out, missing, bad = [], 0, 0
    for v in data.label(label):
        if v is None:
            missing += 1
            out.append(None)
            continue
        midi = normalise_pitch(str(v))
        if midi is None:
            bad += 1
        out.append(None if midi is None else int(midi))
    return out, missing, bad


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_label(name: str, value) -> None:
    if not isinstance(value, str) or not value:
        raise ParameterError(f"{name}={value!r} must be a label name (a non-empty string)")


class Instrument(LabelNeighbourhood):
    """Key = the value of label ``label`` (instrument class, folder, ...)."""

    name = "instrument"

    def __init__(self, label: str = "instrument"):
        _check_label("label", label)
        self.label = label

    @property
    def label_keys(self) -> tuple[str, ...]:
        return (self.label,)

    def _keys(self, data):
        values = data.label(self.label)
        keys = [None if v is None else str(v) for v in values]
        return keys, {f"no {self.label}": sum(k is None for k in keys)}


class Pitch(LabelNeighbourhood):
    """Key = the MIDI pitch in label ``label`` (MIDI numbers or note names)."""

    name = "pitch"

    def __init__(self, label: str = "pitch"):
        _check_label("label", label)
        self.label = label

    @property
    def label_keys(self) -> tuple[str, ...]:
        return (self.label,)

    def _keys(self, data):
        keys, missing, bad = _pitches(data, self.label)
        return keys, {f"no {self.label}": missing, f"{self.label} not a pitch": bad}


class InstrumentPitch(LabelNeighbourhood):
    """Key = (instrument, MIDI pitch)."""

    name = "instrument-pitch"

    def __init__(self, instrument_label: str = "instrument", pitch_label: str = "pitch"):
        _check_label("instrument_label", instrument_label)
        _check_label("pitch_label", pitch_label)
        self.instrument_label = instrument_label
        self.pitch_label = pitch_label

    @property
    def label_keys(self) -> tuple[str, ...]:
        return (self.instrument_label, self.pitch_label)

    def _keys(self, data):
        instruments = data.label(self.instrument_label)
        pitches, _, _ = _pitches(data, self.pitch_label)
        keys, reasons = [], {f"no {self.instrument_label}": 0, f"no {self.pitch_label}": 0,
                             f"{self.pitch_label} not a pitch": 0}
        for inst, pitch, raw in zip(instruments, pitches, data.label(self.pitch_label)):
            if inst is None:
                reasons[f"no {self.instrument_label}"] += 1
            elif raw is None:
                reasons[f"no {self.pitch_label}"] += 1
            elif pitch is None:
                reasons[f"{self.pitch_label} not a pitch"] += 1
            keys.append(None if inst is None or pitch is None else (str(inst), pitch))
        return keys, reasons


class InstrumentPitch2(InstrumentPitch):
    """Key = (instrument, pitch p); anchors have exactly that key, positives the same instrument
    and a pitch within p +/- ``semitones``; negatives anything else."""

    name = "instrument-pitch-2"

    def __init__(self, instrument_label: str = "instrument", pitch_label: str = "pitch",
                 semitones: int = 2):
        super().__init__(instrument_label, pitch_label)
        if not _is_int(semitones) or semitones < 0:
            raise ParameterError(f"semitones={semitones!r} must be a non-negative integer")
        self.semitones = int(semitones)

    def _positive_sets(self, keys, anchor_sets):
        by_key = dict(zip(keys, anchor_sets))
        out = []
        for inst, pitch in keys:
            span = range(pitch - self.semitones, pitch + self.semitones + 1)
            near = [by_key[(inst, q)] for q in span if (inst, q) in by_key]
            out.append(np.sort(np.concatenate(near)))
        return out


# -- input-space nearest neighbours ------------------------------------------------------------


class InputKNN(Neighbourhood):
    """No labels: positives are input-space nearest neighbours, negatives far-away windows.

    ``fit`` draws up to ``n_candidates`` distinct candidate windows (every sample in turn, its
    centre by energy; seeded by ``seed``), represents each by its flattened log-CQT window
    (``n_frames`` x n_bins) reduced by PCA to ``n_components``, and finds every candidate's
    neighbours once (exact k-NN).
    ``draw``: anchor = a uniform candidate; positive = one of its ``k`` nearest candidates;
    negative = a uniform candidate not among its ``far`` nearest. With ``exclude_same_sample``
    the anchor's own sample's windows are neither (they do not count in the ``k`` or ``far``
    nearest either), so the map cannot score by recognising "the same file".
    """

    name = "input-knn"
    _PCA_FIT_WINDOWS = 8192  # PCA is fitted on at most this many candidates
    _CHUNK = 4096

    def __init__(self, k: int = 10, n_candidates: int = 50_000, n_components: int = 32,
                 far: int = 200, exclude_same_sample: bool = True, n_frames: int = 10,
                 seed: int = 0):
        for pname, value, low in (("k", k, 1), ("n_candidates", n_candidates, 2),
                                  ("n_components", n_components, 1), ("far", far, 1),
                                  ("n_frames", n_frames, 1)):
            if not _is_int(value) or value < low:
                raise ParameterError(f"{pname}={value!r} must be an integer >= {low}")
        if far < k:
            raise ParameterError(f"far={far} must be at least k={k} (positives lie within the k "
                                 "nearest, negatives outside the far nearest)")
        self.k = int(k)
        self.n_candidates = int(n_candidates)
        self.n_components = int(n_components)
        self.far = int(far)
        self.exclude_same_sample = bool(exclude_same_sample)
        self.n_frames = int(n_frames)
        self.seed = int(seed)

    # -- fit -----------------------------------------------------------------------------------

    def fit(self, data: TrainingData) -> "InputKNN":
        rng = np.random.default_rng(self.seed)
        eligible = np.flatnonzero(data.lengths > 0)
        if len(eligible) < 2:
            raise ParameterError(
                f"input-knn needs at least 2 samples with frames, got {len(eligible)}"
            )
        s = np.resize(rng.permutation(eligible), self.n_candidates)  # every sample in turn
        c = draw_centres(data, s, rng)
        _, first = np.unique(s * (int(data.lengths.max()) + 1) + c, return_index=True)
        first.sort()
        s, c = s[first], c[first]
        n = len(s)
        per_sample = np.bincount(s, minlength=data.n_samples)
        same_max = int(per_sample.max()) if self.exclude_same_sample else 1
        if n - same_max < self.far + 1:
            raise ParameterError(
                f"input-knn has {n} distinct candidate windows, {n - same_max} of them outside "
                f"the best-covered sample: too few for far={self.far} (needs more than far); "
                "lower far (and k) or give more data"
            )

        z = self._fit_pca(data, s, c, rng)
        if not np.any(z != z[0]):
            raise ParameterError("input-knn: every candidate window is the same (silence?); "
                                 "there are no near and far windows to tell apart")
        positives, far_radius = self._neighbours(z, s, n_query=self.far + same_max)
        self.n_samples_ = data.n_samples
        self.n_excluded_ = data.n_samples - len(eligible)  # samples without frames
        self.cand_sample_ = s
        self.cand_centre_ = c
        self.embedding_ = z
        self.positives_ = positives
        self.far_radius_ = far_radius
        self.n_candidates_ = n
        return self

    def _fit_pca(self, data, s, c, rng) -> np.ndarray:
        """Fit PCA on a subset of the candidate windows; return every candidate's coordinates."""
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        n = len(s)
        sub = np.sort(rng.choice(n, size=min(n, self._PCA_FIT_WINDOWS), replace=False))
        x = windows(data, s[sub], c[sub], n_frames=self.n_frames).reshape(len(sub), -1)
        n_comp = min(self.n_components, x.shape[0], x.shape[1])
        pca = PCA(n_components=n_comp, svd_solver="randomized",
                  random_state=int(rng.integers(2**31 - 1)))
        # small problems gain nothing from BLAS threads and lose a lot on a busy machine
        with threadpool_limits(1 if x.size < 2**23 else None, user_api="blas"), \
                np.errstate(invalid="ignore", divide="ignore"):  # all-silent input: caught below
            pca.fit(x)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        self.n_components_ = n_comp
        z = np.empty((n, n_comp), dtype=np.float64)
        for lo in range(0, n, self._CHUNK):
            w = windows(data, s[lo : lo + self._CHUNK], c[lo : lo + self._CHUNK],
                        n_frames=self.n_frames)
            z[lo : lo + self._CHUNK] = self.transform(w)
        return z

    def _neighbours(self, z: np.ndarray, s: np.ndarray, *, n_query: int):
        """For every candidate: its k nearest admissible candidates, and the distance to its
        far-th nearest admissible one (admissible: not itself, and not of its own sample when
        ``exclude_same_sample``). Exact brute force (scikit-learn's chunked, multi-threaded
        k-NN): in 32 dimensions it is ~2x faster than a k-d tree."""
        from sklearn.neighbors import NearestNeighbors

        n = len(z)
        knn = NearestNeighbors(n_neighbors=n_query, algorithm="brute").fit(z)
        positives = np.empty((n, self.k), dtype=np.int64)
        far_radius = np.empty(n, dtype=np.float64)
        for lo in range(0, n, self._CHUNK):
            rows = np.arange(lo, min(lo + self._CHUNK, n))
            idx = knn.kneighbors(z[rows], return_distance=False)
            ok = idx != rows[:, None]
            if self.exclude_same_sample:
                ok &= s[idx] != s[rows][:, None]
            order = np.argsort(~ok, axis=1, kind="stable")[:, : self.far]
            near = np.take_along_axis(idx, order, axis=1)  # the `far` nearest admissible
            positives[rows] = near[:, : self.k]
            far_radius[rows] = _dist(z[rows], z[near[:, -1]])
        return positives, far_radius

    def transform(self, x: np.ndarray) -> np.ndarray:
        """PCA coordinates (n, n_components_) of log-CQT windows (n, n_frames, n_bins)."""
        x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        return ((x - self.mean_) @ self.components_.T).astype(np.float64)

    def summary(self) -> dict:
        return {"n_candidates": self.n_candidates_, "n_components": self.n_components_,
                "n_samples_used": int(len(np.unique(self.cand_sample_))),
                "n_excluded": self.n_excluded_}

    # -- draw ----------------------------------------------------------------------------------

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        self._check_draw(n, data)
        z, s = self.embedding_, self.cand_sample_
        a = rng.integers(0, self.n_candidates_, size=n)
        p = self.positives_[a, rng.integers(0, self.k, size=n)]
        q = rng.integers(0, self.n_candidates_, size=n)
        bad = self._too_near(a, q)
        rounds = 0
        while bad.any():  # rejection: about (far + same-sample) / n_candidates_ are refused
            rounds += 1
            if rounds > 10_000:  # only when (nearly) every window is identical, e.g. silence
                raise ParameterError("input-knn finds no far negatives: the candidate windows "
                                     "are (nearly) all identical")
            q[bad] = rng.integers(0, self.n_candidates_, size=int(bad.sum()))
            bad[bad] = self._too_near(a[bad], q[bad])
        c = self.cand_centre_
        return Triples(s[a], c[a], s[p], c[p], s[q], c[q])

    def _too_near(self, a, q):
        bad = _dist(self.embedding_[a], self.embedding_[q]) <= self.far_radius_[a]
        if self.exclude_same_sample:
            bad |= self.cand_sample_[a] == self.cand_sample_[q]
        return bad


def _dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance, computed the same way at fit and draw time."""
    d = x - y
    return np.sqrt(np.einsum("ij,ij->i", d, d))


# -- registry ---------------------------------------------------------------------------------

NEIGHBOURHOODS: dict[str, type[Neighbourhood]] = {
    "input-knn": InputKNN,
    "instrument": Instrument,
    "pitch": Pitch,
    "instrument-pitch": InstrumentPitch,
    "instrument-pitch-2": InstrumentPitch2,
}

# which constructor argument ``make_neighbourhood(label=...)`` sets: the class label
_LABEL_PARAM = {
    "instrument": "label",
    "pitch": "label",
    "instrument-pitch": "instrument_label",
    "instrument-pitch-2": "instrument_label",
}


def make_neighbourhood(name: str, *, label: str | None = None, params: dict | None = None,
                       **kw) -> Neighbourhood:
    """A neighbourhood by registry name. ``label`` sets the class label column (the instrument
    label; for ``pitch`` its pitch label), e.g. ``label="folder"``; other keywords (or
    ``params``, as in :meth:`Neighbourhood.to_config`) go to the constructor."""
    if name not in NEIGHBOURHOODS:
        raise ParameterError(
            f"unknown neighbourhood {name!r}; choose one of: {', '.join(NEIGHBOURHOODS)}"
        )
    cls = NEIGHBOURHOODS[name]
    kw = {**(params or {}), **kw}
    if label is not None:
        if name not in _LABEL_PARAM:
            raise ParameterError(f"the {name} neighbourhood uses no labels; label={label!r} "
                                 "cannot apply")
        kw[_LABEL_PARAM[name]] = label
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in kw if k not in accepted]
    if unknown:
        raise ParameterError(
            f"the {name} neighbourhood has no parameter {unknown[0]!r}; "
            f"its parameters: {', '.join(accepted)}"
        )
    return cls(**kw)
