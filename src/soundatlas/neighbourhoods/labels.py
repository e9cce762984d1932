"""Label neighbourhoods (the paper's reference sampling): a sample's *key* comes from its labels;
anchor and positive share a key, the negative lies outside the key's positive set."""

from __future__ import annotations

from typing import Hashable

import numpy as np

from soundatlas.errors import ParameterError
from soundatlas.frames import TrainingData, draw_centres
from soundatlas.labels import normalise_pitch
from soundatlas.neighbourhoods.base import Neighbourhood, Triples, _check_label, _is_int, register


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
    """Base of the label neighbourhoods.

    Subclasses say what a sample's key is (``_keys``) and, when it differs from "the samples
    with that key", what a key's positive set is (``_positive_sets``). A draw picks a key
    uniformly, an anchor with that key, a positive from the key's positive set (not the anchor)
    and a negative outside it; centres are drawn by energy. Keys with fewer than 2 positives, or
    whose positive set holds every usable sample, are dropped.

    Attributes
    ----------
    n_samples_ : int
        Samples of the data it was fitted on.
    eligible_ : numpy.ndarray of int64
        Positions of the samples used: with a key and with frames.
    keys_ : list
        The keys drawn from (tuple keys as lists, JSON-ready).
    excluded_ : dict of str to int
        Samples left out, by reason (only reasons with a count).
    n_excluded_ : int
        Samples left out in all.
    n_dropped_keys_ : int
        Keys dropped for too few positives or no negatives.
    """

    def _keys(self, data: TrainingData) -> tuple[list[Hashable | None], dict[str, int]]:
        """Each sample's key (None: left out) and {reason: count} of the samples left out."""
        raise NotImplementedError

    def _positive_sets(self, keys: list, anchor_sets: list[np.ndarray]) -> list[np.ndarray]:
        return anchor_sets

    def _negative_sets(self, keys: list, anchor_sets: list[np.ndarray],
                       positive_sets: list[np.ndarray]) -> list[np.ndarray] | None:
        """Each key's negatives, when not "every usable sample outside its positive set"
        (None, the reference). A key with no negative is dropped."""
        return None

    def fit(self, data: TrainingData) -> "LabelNeighbourhood":
        """Group the samples by key; as :meth:`Neighbourhood.fit`.

        ``data`` needs the labels of :attr:`label_keys`. Raises ParameterError when fewer than
        2 keys have 2 or more samples each and others outside them (the neighbourhood stays
        unfitted), or a label is not loaded.
        """
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
        negative_sets = self._negative_sets(all_keys, anchor_sets, positive_sets)
        n_eligible = len(eligible)
        usable = [i for i, pos in enumerate(positive_sets) if 2 <= len(pos) < n_eligible
                  and (negative_sets is None or len(negative_sets[i]))]

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
        self._negatives = (None if negative_sets is None
                           else _Sets([negative_sets[i] for i in usable], n_eligible))
        return self

    def summary(self) -> dict:
        """Counts for logs and the model config: {'n_keys', 'n_samples_used', 'n_excluded',
        'excluded', 'n_dropped_keys'}."""
        return {
            "n_keys": len(self.keys_),
            "n_samples_used": int(len(self.eligible_)),
            "n_excluded": self.n_excluded_,
            "excluded": dict(self.excluded_),
            "n_dropped_keys": self.n_dropped_keys_,
        }

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        """Draw n triples: a key, an anchor and a positive of it, a negative outside it (or
        from the key's own negatives, where the class has them).

        Parameters, result and errors as :meth:`Neighbourhood.draw`.
        """
        self._check_draw(n, data)
        k = rng.integers(0, len(self.keys_), size=n)
        a = self._anchors.pick(rng, k)
        p = self._positives.pick_other(rng, k, a)
        q = (self._positives.pick_outside(rng, k) if self._negatives is None
             else self._negatives.pick(rng, k))
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


@register
class Label(LabelNeighbourhood):
    """Key = the value of label column ``label`` (family, drum_class, folder, ...).

    Any class partition, so a new label needs no new class. Its origin weight is the paper's
    for a class partition (its instrument neighbourhood's), 0.001. Named ``label:COLUMN`` on
    the command line.

    Parameters
    ----------
    label : str
        The label column (set by ``--label``).

    Raises
    ------
    ParameterError
        If ``label`` is not a non-empty string.
    """

    name = "label"
    origin_weight = 0.001
    label_param = "label"

    def __init__(self, label: str):
        _check_label("label", label)
        self.label = label

    @property
    def spec(self) -> str:
        """How the command line names it: ``label:COLUMN``."""
        return f"{self.name}:{self.label}"

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The one label column it reads."""
        return (self.label,)

    def _keys(self, data):
        values = data.label(self.label)
        keys = [None if v is None else str(v) for v in values]
        return keys, {f"no {self.label}": sum(k is None for k in keys)}


@register
class Instrument(Label):
    """Key = the value of label ``label`` (instrument class, folder, ...).

    Parameters
    ----------
    label : str, default='instrument'
        The instrument label (set by ``--label``), checked as :class:`Label` checks it.
    """

    name = "instrument"

    def __init__(self, label: str = "instrument"):
        super().__init__(label)

    @property
    def spec(self) -> str:
        """How the command line names it: ``instrument``."""
        return self.name


@register
class Pitch(LabelNeighbourhood):
    """Key = the MIDI pitch in label ``label`` (MIDI numbers or note names).

    Samples whose value is not a pitch are left out.

    Parameters
    ----------
    label : str, default='pitch'
        The pitch label (set by ``--label``).

    Raises
    ------
    ParameterError
        If ``label`` is not a non-empty string.
    """

    name = "pitch"
    label_param = "label"

    def __init__(self, label: str = "pitch"):
        _check_label("label", label)
        self.label = label

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The one label column it reads."""
        return (self.label,)

    def _keys(self, data):
        keys, missing, bad = _pitches(data, self.label)
        return keys, {f"no {self.label}": missing, f"{self.label} not a pitch": bad}


@register
class InstrumentPitch(LabelNeighbourhood):
    """Key = (instrument, MIDI pitch).

    Parameters
    ----------
    instrument_label : str, default='instrument'
        The instrument label (set by ``--label``).
    pitch_label : str, default='pitch'
        The pitch label (MIDI numbers or note names).

    Raises
    ------
    ParameterError
        If a label is not a non-empty string.
    """

    name = "instrument-pitch"
    label_param = "instrument_label"

    def __init__(self, instrument_label: str = "instrument", pitch_label: str = "pitch"):
        _check_label("instrument_label", instrument_label)
        _check_label("pitch_label", pitch_label)
        self.instrument_label = instrument_label
        self.pitch_label = pitch_label

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The instrument and pitch label columns."""
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


@register
class InstrumentPitch2(InstrumentPitch):
    """Key = (instrument, pitch p), with positives over a span of pitches.

    Anchors have exactly that key, positives the same instrument and a pitch within
    p +/- ``semitones``; negatives anything else.

    Parameters
    ----------
    instrument_label, pitch_label : str
        As for :class:`InstrumentPitch`.
    semitones : int, default=2
        Half-width of the positives' pitch span (>= 0).

    Raises
    ------
    ParameterError
        If a label is not a non-empty string or ``semitones`` is not an integer >= 0.
    """

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


@register
class PitchWithin(InstrumentPitch2):
    """Pitch order inside each instrument: :class:`InstrumentPitch2`'s anchors and positives,
    with negatives of the *same* instrument beyond the span.

    The reference draws the negatives of ``instrument-pitch-2`` from every other sample, so with
    24 instruments 23 of 24 negatives are another instrument: the map learns instrument far
    more than pitch. Here anchor, positive and negative share the instrument, so the triple
    says only "nearer pitches nearer" and nothing for or against any instrument; mixed in
    beside ``instrument-pitch-2`` it sharpens pitch inside each instrument's region. Keys whose
    instrument has no pitch beyond the span are dropped. Not a neighbourhood of the paper.

    Parameters
    ----------
    instrument_label, pitch_label : str
        As for :class:`InstrumentPitch`.
    semitones : int, default=2
        Half-width of the positives' pitch span (>= 0); negatives lie beyond it.
    """

    name = "pitch-within"

    def _negative_sets(self, keys, anchor_sets, positive_sets):
        by_instrument: dict[str, list[np.ndarray]] = {}
        for (inst, _), anchors in zip(keys, anchor_sets):
            by_instrument.setdefault(inst, []).append(anchors)
        same = {inst: np.sort(np.concatenate(sets)) for inst, sets in by_instrument.items()}
        return [np.setdiff1d(same[inst], pos, assume_unique=True)
                for (inst, _), pos in zip(keys, positive_sets)]
