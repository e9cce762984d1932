"""Neighbourhoods: which windows belong together, as swappable contrastive partitions.

A neighbourhood is fitted on :class:`~soundatlas.sampling.TrainingData` and then draws triples of
(sample index, window centre) -- anchor, positive, negative. A new neighbourhood is a new class
here (registered in :data:`NEIGHBOURHOODS`), never an ``if`` in the trainer: what is particular
to one -- the label columns it needs (``label_keys``), the paper's origin-penalty weight for it
(``origin_weight``), which constructor argument ``--label`` and the run's seed set
(``label_param``, ``seed_param``), the augmentation its windows need (``Triples.augments``) --
is asked of the object. Like a scikit-learn estimator, a neighbourhood stores its constructor
arguments as-is (:meth:`Neighbourhood.get_params`; :meth:`Neighbourhood.to_model_config` is what
the model's JSON config records) and sets learned state, ending in ``_``, in ``fit``.

Label neighbourhoods (the paper's reference sampling): pick a key uniformly; draw the anchor from
the key's anchor samples and the positive, a *different* sample, from its positive set; draw the
negative uniformly from every usable sample outside that positive set; choose each window centre
by frame energy (:func:`~soundatlas.sampling.draw_centres`).

- :class:`Label` -- key = the value of any label column (``label:family``, ``label:drum_class``);
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
window, negatives are windows far from it. :class:`AugmentPair` needs none either: the positive
is the anchor's own window under another draw of its augmentation, the negative another sample.

:class:`Mixture` is itself a neighbourhood: K partitions with weights, each triple drawn from a
part picked by weight (the paper's K contrastive partitions interpolated by one network).
:func:`parse_neighbourhood` reads the command line's ``instrument:1,label:family:1,input-knn:0.5``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar, Hashable, Sequence

import numpy as np

from soundatlas.augment import Augment
from soundatlas.errors import ParameterError
from soundatlas.labels import normalise_pitch
from soundatlas.sampling import TrainingData, draw_centres, windows

__all__ = [
    "Triples",
    "Neighbourhood",
    "LabelNeighbourhood",
    "Label",
    "Instrument",
    "Pitch",
    "InstrumentPitch",
    "InstrumentPitch2",
    "InputKNN",
    "AugmentPair",
    "Mixture",
    "NEIGHBOURHOODS",
    "make_neighbourhood",
    "parse_neighbourhood",
    "neighbourhood_from_config",
]


@dataclass(frozen=True)
class Triples:
    """n triples as (sample index into the TrainingData, window centre frame), int64 arrays.

    ``augments`` and ``augment_of``: the augmentations some triples' windows need whatever the
    run's (``augment_of[i]`` indexes ``augments``; -1 or None: the run's own). ``part``: which
    part of a :class:`Mixture` drew each triple (None outside a mixture).
    """

    anchor_sample: np.ndarray
    anchor_centre: np.ndarray
    positive_sample: np.ndarray
    positive_centre: np.ndarray
    negative_sample: np.ndarray
    negative_centre: np.ndarray
    augments: tuple[Augment, ...] = ()
    augment_of: np.ndarray | None = None
    part: np.ndarray | None = None

    @classmethod
    def concat(cls, chunks: Sequence["Triples"], parts: Sequence[int]) -> "Triples":
        """The triples of ``chunks`` one after another, ``part`` = the given part of each."""
        cols = ("anchor_sample", "anchor_centre", "positive_sample", "positive_centre",
                "negative_sample", "negative_centre")
        empty = np.zeros(0, np.int64)
        arrays = {k: np.concatenate([empty] + [getattr(t, k) for t in chunks]) for k in cols}
        augments, codes = [], [empty]
        for t in chunks:
            own = np.full(len(t), -1, np.int64) if t.augment_of is None else t.augment_of
            codes.append(np.where(own >= 0, own + len(augments), -1))
            augments.extend(t.augments)
        part = np.concatenate([empty] + [np.full(len(t), p, np.int64)
                                         for t, p in zip(chunks, parts)])
        return cls(**arrays, augments=tuple(augments),
                   augment_of=np.concatenate(codes) if augments else None, part=part)

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
    """Base class: constructor arguments stored as-is, ``fit(data)``, ``draw(rng, n, data)``.

    Facts the trainer asks of a neighbourhood, with the base's answers: ``label_keys`` (none),
    ``origin_weight`` (the paper's origin-penalty weight: 0.002), ``label_param`` (the
    constructor argument ``--label`` sets: none), ``seed_param`` (the constructor argument the
    run's seed sets: none).
    """

    name: ClassVar[str] = ""
    origin_weight: float = 0.002
    label_param: ClassVar[str | None] = None
    seed_param: ClassVar[str | None] = None

    # -- configuration ---------------------------------------------------------------------------

    def get_params(self) -> dict:
        """The constructor arguments, as stored."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters
                if p != "self" and sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                                   inspect.Parameter.VAR_KEYWORD)}

    def to_config(self) -> dict:
        """{"name": ..., "params": ...} (JSON-ready); ``make_neighbourhood(**to_config())``
        rebuilds it."""
        return {"name": self.name, "params": _jsonable(self.get_params())}

    def to_model_config(self) -> dict:
        """What the model's config.json records: {"name": ..., **params};
        :func:`neighbourhood_from_config` reads it back."""
        return {"name": self.name, **_jsonable(self.get_params())}

    @classmethod
    def from_model_config(cls, params: dict) -> "Neighbourhood":
        """Rebuild from :meth:`to_model_config`'s params (the entries besides "name")."""
        return _construct(cls, dict(params))

    def clone(self) -> "Neighbourhood":
        """A new, unfitted neighbourhood with the same parameters (and teacher)."""
        twin = type(self)(**self.get_params())
        twin.set_teacher(getattr(self, "teacher_", None))
        return twin

    def set_teacher(self, model) -> None:
        """The network a run starts from (``init_from``), for neighbourhoods that keep its
        structure (``teacher-knn``); the others ignore it."""

    @property
    def spec(self) -> str:
        """How the command line names it (``instrument``, ``label:family``)."""
        return self.name

    @property
    def slug(self) -> str:
        """A file-name-safe short name, for default model names."""
        return self.spec.replace(":", "-")

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


class Label(LabelNeighbourhood):
    """Key = the value of label column ``label`` (family, drum_class, folder, ...): any class
    partition, so a new label needs no new class. Its origin weight is the paper's for a class
    partition (its instrument neighbourhood's), 0.001."""

    name = "label"
    origin_weight = 0.001
    label_param = "label"

    def __init__(self, label: str):
        _check_label("label", label)
        self.label = label

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.label}"

    @property
    def label_keys(self) -> tuple[str, ...]:
        return (self.label,)

    def _keys(self, data):
        values = data.label(self.label)
        keys = [None if v is None else str(v) for v in values]
        return keys, {f"no {self.label}": sum(k is None for k in keys)}


class Instrument(Label):
    """Key = the value of label ``label`` (instrument class, folder, ...)."""

    name = "instrument"

    def __init__(self, label: str = "instrument"):
        super().__init__(label)

    @property
    def spec(self) -> str:
        return self.name


class Pitch(LabelNeighbourhood):
    """Key = the MIDI pitch in label ``label`` (MIDI numbers or note names)."""

    name = "pitch"
    label_param = "label"

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
    label_param = "instrument_label"

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
    seed_param = "seed"
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
        x = self._represent(windows(data, s[sub], c[sub], n_frames=self._window_frames))
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
                        n_frames=self._window_frames)
            z[lo : lo + self._CHUNK] = self.transform(self._represent(w))
        return z

    @property
    def _window_frames(self) -> int:
        return self.n_frames

    def _represent(self, w: np.ndarray) -> np.ndarray:
        """What is compared, before PCA: here the flattened log-CQT window."""
        return np.asarray(w, dtype=np.float32).reshape(len(w), -1)

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
        """PCA coordinates (n, n_components_) of represented windows (:meth:`_represent`)."""
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


class TeacherKNN(InputKNN):
    """No labels: like ``input-knn``, but windows are compared in the hidden layer (the 256 tanh
    units before the output) of the network the run starts from, its *teacher* (``init_from``:
    ``adapt``'s base model), not in the input space.

    Fine-tuning on input-space neighbours alone pulls a map towards what the input space orders
    well (pitch) and away from what its base learned (timbre). The base's hidden layer holds
    more of that than its three output coordinates (the similarity space measures better than
    the map on unseen banks), so its neighbours keep the base's structure while the map adapts.
    Windows are as long as the teacher's (``n_frames`` is not used); the other parameters are
    input-knn's.
    """

    name = "teacher-knn"
    _BATCH = 2048

    def set_teacher(self, model) -> None:
        if model is not None and not hasattr(model, "l3"):
            raise ParameterError(f"teacher-knn needs a network with a hidden layer (l3); "
                                 f"{type(model).__name__} has none")
        self.teacher_ = model

    def fit(self, data: TrainingData) -> "TeacherKNN":
        if getattr(self, "teacher_", None) is None:
            raise ParameterError("teacher-knn keeps the neighbours of the model a run starts "
                                 "from: give one (train --init-from MODEL, or adapt)")
        return super().fit(data)

    @property
    def _window_frames(self) -> int:
        return int(self.teacher_.n_frames)

    def _represent(self, w: np.ndarray) -> np.ndarray:
        import torch

        model, out = self.teacher_, []
        hidden: list = []
        handle = model.l3.register_forward_hook(lambda _m, _i, o: hidden.append(torch.tanh(o)))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for lo in range(0, len(w), self._BATCH):
                    model(torch.as_tensor(np.asarray(w[lo : lo + self._BATCH], np.float32)))
                    out.append(hidden.pop().numpy())
        finally:
            handle.remove()
            model.train(was_training)
        return np.concatenate(out).astype(np.float32)


# -- the same sound under two augmentations ------------------------------------------------------


class AugmentPair(Neighbourhood):
    """No labels: the positive is the anchor's own window (same sample, same centre) under an
    independent draw of ``augment``; the negative a window of another sample, augmented alike.

    It teaches the map to ignore what the augmentation changes (level, EQ, room, noise floor, a
    small detune, where the onset falls: the augmentation's shift moves the two windows apart).
    ``augment``: an :class:`~soundatlas.augment.Augment`, its ``get_params()`` or a spec
    (default: ``Augment.default()``); its windows get it instead of the run's augmentation.
    Anchors are uniform over the samples with frames, centres by energy.
    """

    name = "augment-pair"

    def __init__(self, augment: "Augment | dict | str" = "default"):
        aug = Augment.from_params(augment)
        if aug is None or not aug.active:
            raise ParameterError(f"augment-pair needs an augmentation that changes something, "
                                 f"not augment={augment!r}")
        self.augment = aug

    def fit(self, data: TrainingData) -> "AugmentPair":
        eligible = np.flatnonzero(data.lengths > 0)
        if len(eligible) < 2:
            raise ParameterError(f"augment-pair needs at least 2 samples with frames (one for the "
                                 f"pair, another for the negative), got {len(eligible)}")
        self.n_samples_ = data.n_samples
        self.eligible_ = eligible.astype(np.int64)
        self.n_excluded_ = data.n_samples - len(eligible)
        return self

    def summary(self) -> dict:
        return {"n_samples_used": int(len(self.eligible_)), "n_excluded": self.n_excluded_,
                "augment": self.augment.spec()}

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        self._check_draw(n, data)
        m = len(self.eligible_)
        ia = rng.integers(0, m, size=n)
        iq = rng.integers(0, m - 1, size=n)
        iq += iq >= ia
        a, q = self.eligible_[ia], self.eligible_[iq]
        c = draw_centres(data, np.concatenate([a, q]), rng)
        return Triples(a, c[:n], a.copy(), c[:n].copy(), q, c[n:],
                       augments=(self.augment,), augment_of=np.zeros(n, np.int64))


# -- several neighbourhoods at once --------------------------------------------------------------


class Mixture(Neighbourhood):
    """K neighbourhoods with weights, one network: the paper's K contrastive partitions.

    ``parts``: (neighbourhood, weight) pairs (or their :meth:`to_model_config` dicts with a
    ``weight``), weights > 0. ``fit`` fits every part and leaves out, with the reason
    (``skipped_``), a part that cannot be fitted on these data (e.g. a label this atlas lacks);
    it fails only when no part fits. ``draw`` picks each triple's part independently with
    probability proportional to its weight (a multinomial split of the batch, so every batch
    mixes the parts and the counts follow the weights), then lets each part draw its share; the
    triples come part by part, ``Triples.part`` saying whose they are. The origin weight is the
    parts' mean, weighted like the draws.
    """

    name = "mixture"

    def __init__(self, parts: Sequence):
        if isinstance(parts, (str, bytes)) or not parts:
            raise ParameterError(f"parts={parts!r} must be a non-empty list of "
                                 "(neighbourhood, weight) pairs")
        out = []
        for part in parts:
            if isinstance(part, dict):
                part = dict(part)
                weight = part.pop("weight", 1.0)
                nb = neighbourhood_from_config(part)
            else:
                try:
                    nb, weight = part
                except (TypeError, ValueError):
                    raise ParameterError(f"mixture part {part!r} must be a (neighbourhood, "
                                         "weight) pair") from None
            if not isinstance(nb, Neighbourhood):
                raise ParameterError(f"mixture part {nb!r} is not a Neighbourhood")
            if (isinstance(weight, bool) or not isinstance(weight, (int, float, np.number))
                    or not np.isfinite(weight) or weight <= 0):
                raise ParameterError(f"the weight of {nb.spec} is {weight!r}; it must be a "
                                     "finite number > 0")
            out.append((nb, float(weight)))
        self.parts = out

    def to_config(self) -> dict:
        return {"name": self.name, "params": {"parts": self._part_configs()}}

    def to_model_config(self) -> dict:
        return {"name": self.name, "spec": self.spec, "parts": self._part_configs()}

    def _part_configs(self) -> list[dict]:
        return [{**nb.to_model_config(), "weight": w} for nb, w in self.parts]

    @classmethod
    def from_model_config(cls, params: dict) -> "Mixture":
        return cls(parts=params.get("parts", []))

    def clone(self) -> "Mixture":
        """Unfitted; a fitted mixture's clone holds only the parts that were fitted."""
        keep = self.active_ if self.is_fitted() else range(len(self.parts))
        return Mixture([(self.parts[i][0].clone(), self.parts[i][1]) for i in keep])

    def set_teacher(self, model) -> None:
        for nb, _ in self.parts:
            nb.set_teacher(model)

    @property
    def spec(self) -> str:
        return ",".join(f"{nb.spec}:{w:g}" for nb, w in self.parts)

    @property
    def slug(self) -> str:
        return "+".join(nb.slug for nb, _ in self.parts)

    @property
    def label_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for nb, _ in self.parts for k in nb.label_keys))

    @property
    def origin_weight(self) -> float:
        idx = self.active_ if self.is_fitted() else np.arange(len(self.parts))
        w = np.array([self.parts[i][1] for i in idx])
        return float(np.dot(w, [self.parts[i][0].origin_weight for i in idx]) / w.sum())

    def fit(self, data: TrainingData) -> "Mixture":
        active, skipped = [], []
        for i, (nb, _) in enumerate(self.parts):
            try:
                nb.fit(data)
            except ParameterError as exc:
                skipped.append({"part": i, "spec": nb.spec, "reason": str(exc)})
            else:
                active.append(i)
        if not active:
            if len(self.parts) == 1:
                self.parts[0][0].fit(data)  # its own error
            raise ParameterError("no neighbourhood of the mixture can be fitted on these data: "
                                 + "; ".join(f"{s['spec']}: {s['reason']}" for s in skipped))
        w = np.array([self.parts[i][1] for i in active])
        self.active_ = np.array(active, dtype=np.int64)
        self.weights_ = w / w.sum()
        self.skipped_ = skipped
        self.n_samples_ = data.n_samples
        return self

    def summary(self) -> dict:
        return {
            "parts": [{"spec": self.parts[i][0].spec, "weight": self.parts[i][1],
                       **self.parts[i][0].summary()} for i in self.active_],
            "skipped": list(self.skipped_),
        }

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        self._check_draw(n, data)
        counts = rng.multinomial(n, self.weights_)
        chunks, parts = [], []
        for i, k in zip(self.active_, counts):
            if k:
                chunks.append(self.parts[i][0].draw(rng, int(k), data))
                parts.append(int(i))
        return Triples.concat(chunks, parts)


# -- registry ---------------------------------------------------------------------------------

NEIGHBOURHOODS: dict[str, type[Neighbourhood]] = {
    "input-knn": InputKNN,
    "instrument": Instrument,
    "pitch": Pitch,
    "instrument-pitch": InstrumentPitch,
    "instrument-pitch-2": InstrumentPitch2,
    "label": Label,
    "augment-pair": AugmentPair,
    "teacher-knn": TeacherKNN,
    "mixture": Mixture,
}


def make_neighbourhood(name: str, *, label: str | None = None, params: dict | None = None,
                       **kw) -> Neighbourhood:
    """A neighbourhood by registry name. ``label`` sets the class's ``label_param`` (the
    instrument label; for ``pitch`` its pitch label; for ``label`` the column), e.g.
    ``label="folder"``; other keywords (or ``params``, as in :meth:`Neighbourhood.to_config`)
    go to the constructor."""
    if name not in NEIGHBOURHOODS:
        raise ParameterError(
            f"unknown neighbourhood {name!r}; choose one of: {', '.join(NEIGHBOURHOODS)}"
        )
    cls = NEIGHBOURHOODS[name]
    kw = {**(params or {}), **kw}
    if label is not None:
        if cls.label_param is None:
            raise ParameterError(f"the {name} neighbourhood uses no labels; label={label!r} "
                                 "cannot apply")
        kw[cls.label_param] = label
    return _construct(cls, kw)


def _construct(cls: type[Neighbourhood], kw: dict) -> Neighbourhood:
    params = {p: v for p, v in inspect.signature(cls.__init__).parameters.items() if p != "self"}
    unknown = [k for k in kw if k not in params]
    if unknown:
        raise ParameterError(
            f"the {cls.name} neighbourhood has no parameter {unknown[0]!r}; "
            f"its parameters: {', '.join(params)}"
        )
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty
               and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD) and p not in kw]
    if missing:
        hint = f" (e.g. {cls.name}:family)" if missing[0] == cls.label_param else ""
        raise ParameterError(f"the {cls.name} neighbourhood needs {missing[0]}{hint}")
    return cls(**kw)


def neighbourhood_from_config(config: dict) -> Neighbourhood:
    """The (unfitted) neighbourhood a model's config records: the flat ``{"name": ..., **params}``
    of :meth:`Neighbourhood.to_model_config` (every model config so far), or ``{"name": ...,
    "params": {...}}`` of :meth:`Neighbourhood.to_config`."""
    if not isinstance(config, dict) or config.get("name") not in NEIGHBOURHOODS:
        name = config.get("name") if isinstance(config, dict) else config
        raise ParameterError(f"unknown neighbourhood {name!r} in the config; known: "
                             f"{', '.join(NEIGHBOURHOODS)}")
    rest = {k: v for k, v in config.items() if k != "name"}
    params = rest["params"] if set(rest) == {"params"} else rest
    return NEIGHBOURHOODS[config["name"]].from_model_config(params)


def parse_neighbourhood(spec: str, *, label: str | None = None,
                        seed: int | None = None) -> Neighbourhood:
    """The neighbourhood a command line names: ``NAME`` (e.g. ``instrument``), ``NAME:LABEL``
    (e.g. ``label:family``, ``instrument:folder``: the class's label column), or a weighted
    mixture ``PART[:WEIGHT],PART[:WEIGHT],...`` (weight 1 when left out), e.g.
    ``instrument:1,label:family:1,input-knn:0.5,augment-pair:0.5``.

    A single part is that neighbourhood itself, not a mixture. ``label`` sets a single
    neighbourhood's label column (as ``--label`` does); ``seed`` goes to each part's
    ``seed_param`` (input-knn's candidate draw).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ParameterError(f"neighbourhood={spec!r} must name one or more neighbourhoods")
    items = [item.strip() for item in spec.split(",")]
    if any(not item for item in items):
        raise ParameterError(f"neighbourhood={spec!r} has an empty part")
    if len(items) > 1 and label is not None:
        raise ParameterError(f"label={label!r} sets the label of a single neighbourhood; in a "
                             "mixture give each part its own (e.g. label:family, "
                             "instrument:folder)")
    parts = []
    for item in items:
        name, weight = _split_weight(item)
        parts.append((_parse_one(name, label=label, seed=seed), weight))
    return parts[0][0] if len(parts) == 1 else Mixture(parts)


def _split_weight(item: str) -> tuple[str, float]:
    head, sep, tail = item.rpartition(":")
    if sep:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return item, 1.0


def _parse_one(name: str, *, label: str | None, seed: int | None) -> Neighbourhood:
    base, sep, column = name.partition(":")
    if base not in NEIGHBOURHOODS or base == Mixture.name:
        known = [n for n in NEIGHBOURHOODS if n != Mixture.name]
        raise ParameterError(f"unknown neighbourhood {base!r}; choose from {', '.join(known)} "
                             "(label:KEY for any label column, e.g. label:family)")
    cls = NEIGHBOURHOODS[base]
    kw = {}
    if sep:
        if cls.label_param is None:
            raise ParameterError(f"the {base} neighbourhood uses no labels; {name!r} cannot apply")
        if label is not None:
            raise ParameterError(f"{name!r} names its label already; label={label!r} conflicts")
        if not column:
            raise ParameterError(f"{name!r}: the label column is empty")
        kw[cls.label_param] = column
    if seed is not None and cls.seed_param is not None:
        kw[cls.seed_param] = int(seed)
    return make_neighbourhood(base, label=label, params=kw)


def _jsonable(value):
    """Constructor arguments made JSON-ready: an Augment or a neighbourhood as its config."""
    if isinstance(value, Augment):
        return value.get_params()
    if isinstance(value, Neighbourhood):
        return value.to_model_config()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
