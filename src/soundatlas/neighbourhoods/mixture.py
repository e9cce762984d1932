"""Several neighbourhoods at once (:class:`Mixture`: the paper's K contrastive partitions, one
network) and :func:`parse_neighbourhood`, the command line's ``instrument:1,label:family:0.5``."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from soundatlas.errors import ParameterError
from soundatlas.frames import DEFAULT_NOISE, TrainingData
from soundatlas.neighbourhoods.base import (
    NEIGHBOURHOODS,
    Neighbourhood,
    Triples,
    make_neighbourhood,
    neighbourhood_from_config,
    register,
)


@register
class Mixture(Neighbourhood):
    """K neighbourhoods with weights, one network: the paper's K contrastive partitions.

    ``fit`` fits every part and leaves out, with the reason (``skipped_``), a part that cannot
    be fitted on these data (e.g. a label on too few samples); it fails only when no part fits.
    (``train`` refuses a part naming a label the atlas lacks before it gets here: a typo.)
    ``draw`` picks each triple's part independently with probability proportional to its weight
    (a multinomial split of the batch, so every batch mixes the parts and the counts follow the
    weights), then lets each part draw its share; the triples come part by part,
    ``Triples.part`` saying whose they are. The origin weight is the parts' mean, weighted like
    the draws.

    Parameters
    ----------
    parts : sequence
        (neighbourhood, weight) pairs, or their :meth:`to_model_config` dicts with a
        ``weight`` (default 1); weights finite and > 0.

    Attributes
    ----------
    parts : list of (Neighbourhood, float)
        The parts and their weights, as given.
    active_ : numpy.ndarray of int64
        Indices of the parts that were fitted.
    weights_ : numpy.ndarray of float
        Their weights, normalised to sum 1.
    skipped_ : list of dict
        {'part', 'spec', 'reason'} for each part that could not be fitted.
    n_samples_ : int
        Samples of the data it was fitted on.

    Raises
    ------
    ParameterError
        If ``parts`` is empty or a string, a part is not a (Neighbourhood, weight) pair or a
        config, or a weight is not a finite number > 0.
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
            out.append((nb, _check_weight(nb, weight)))
        self.parts = out

    def to_config(self) -> dict:
        """The name and parts, JSON-ready; ``make_neighbourhood(**to_config())`` rebuilds it.

        Returns
        -------
        dict
            {'name': 'mixture', 'params': {'parts': [...]}}, each part its model config plus
            'weight'.
        """
        return {"name": self.name, "params": {"parts": self._part_configs()}}

    def to_model_config(self) -> dict:
        """What the model's config.json records.

        Returns
        -------
        dict
            {'name': 'mixture', 'spec': ..., 'parts': [...]}, each part its model config plus
            'weight'.
        """
        return {"name": self.name, "spec": self.spec, "parts": self._part_configs()}

    def _part_configs(self) -> list[dict]:
        return [{**nb.to_model_config(), "weight": w} for nb, w in self.parts]

    @classmethod
    def from_model_config(cls, params: dict) -> "Mixture":
        """Rebuild from :meth:`to_model_config`'s entries besides "name" (its 'parts').

        Parameters
        ----------
        params : dict
            Holds 'parts'; other entries ('spec') are ignored.

        Returns
        -------
        Mixture
            Unfitted.

        Raises
        ------
        ParameterError
            If the parts are missing or cannot be read.
        """
        return cls(parts=params.get("parts", []))

    def clone(self) -> "Mixture":
        """A new, unfitted mixture of clones of the parts.

        A fitted mixture's clone holds only the parts that were fitted.

        Returns
        -------
        Mixture
        """
        keep = self.active_ if self.is_fitted() else range(len(self.parts))
        return Mixture([(self.parts[i][0].clone(), self.parts[i][1]) for i in keep])

    def set_teacher(self, model, *, noise=DEFAULT_NOISE) -> None:
        """Give every part the network a run starts from.

        Parameters
        ----------
        model : torch.nn.Module or None
            The starting network.
        noise : (float, float), default=DEFAULT_NOISE
            The input noise it embeds with.
        """
        for nb, _ in self.parts:
            nb.set_teacher(model, noise=noise)

    @property
    def spec(self) -> str:
        """How the command line names it: ``PART:WEIGHT,PART:WEIGHT,...``."""
        return ",".join(f"{nb.spec}:{w:g}" for nb, w in self.parts)

    @property
    def slug(self) -> str:
        """The parts' slugs joined by ``+``, for default model names."""
        return "+".join(nb.slug for nb, _ in self.parts)

    @property
    def label_keys(self) -> tuple[str, ...]:
        """Every part's label columns, each once, in order."""
        return tuple(dict.fromkeys(k for nb, _ in self.parts for k in nb.label_keys))

    @property
    def origin_weight(self) -> float:
        """The parts' origin weights averaged with their weights (fitted parts only, once fit)."""
        idx = self.active_ if self.is_fitted() else np.arange(len(self.parts))
        w = np.array([self.parts[i][1] for i in idx])
        return float(np.dot(w, [self.parts[i][0].origin_weight for i in idx]) / w.sum())

    def fit(self, data: TrainingData) -> "Mixture":
        """Fit every part, leaving out those that cannot be fitted on these data.

        As :meth:`Neighbourhood.fit`; raises ParameterError only when no part can be fitted
        (for a single part, its own error).
        """
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
        """Each fitted part's spec, weight and summary, and the parts skipped.

        Returns
        -------
        dict
            {'parts': [...], 'skipped': [...]}.
        """
        return {
            "parts": [{"spec": self.parts[i][0].spec, "weight": self.parts[i][1],
                       **self.parts[i][0].summary()} for i in self.active_],
            "skipped": list(self.skipped_),
        }

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        """Split n triples among the fitted parts by weight and let each draw its share.

        The triples come part by part, ``part`` naming each one's part index. Parameters,
        result and errors as :meth:`Neighbourhood.draw`.
        """
        self._check_draw(n, data)
        counts = rng.multinomial(n, self.weights_)
        chunks, parts = [], []
        for i, k in zip(self.active_, counts):
            if k:
                chunks.append(self.parts[i][0].draw(rng, int(k), data))
                parts.append(int(i))
        return Triples.concat(chunks, parts)


def parse_neighbourhood(spec: str, *, label: str | None = None,
                        seed: int | None = None) -> Neighbourhood:
    """The neighbourhood a command line names.

    A single part is that neighbourhood itself, not a mixture.

    Parameters
    ----------
    spec : str
        ``NAME`` (e.g. ``instrument``), ``NAME:LABEL`` (e.g. ``label:family``,
        ``instrument:folder``: the class's label column), or a weighted mixture
        ``PART[:WEIGHT],PART[:WEIGHT],...`` (weight 1 when left out), e.g.
        ``instrument:1,label:family:1,input-knn:0.5,augment-pair:0.5``.
    label : str, optional
        A single neighbourhood's label column (as ``--label`` sets it).
    seed : int, optional
        Goes to each part's ``seed_param`` (input-knn's candidate draw).

    Returns
    -------
    Neighbourhood
        Unfitted; a :class:`Mixture` for more than one part.

    Raises
    ------
    ParameterError
        For an empty spec or part, an unknown name, a label where none applies or two labels
        for one part, ``label`` with a mixture, or a bad weight.
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
        nb = _parse_one(name, label=label, seed=seed)
        # a single part is no mixture and its weight has no use, but a wrong one is as wrong
        # there: refused as a mixture refuses it, not ignored
        parts.append((nb, _check_weight(nb, weight)))
    return parts[0][0] if len(parts) == 1 else Mixture(parts)


def _check_weight(nb: Neighbourhood, weight) -> float:
    """``weight`` as a float; ParameterError naming ``nb`` unless it is a finite number > 0."""
    if (isinstance(weight, bool) or not isinstance(weight, (int, float, np.number))
            or not np.isfinite(weight) or weight <= 0):
        raise ParameterError(f"the weight of {nb.spec} is {weight!r}; it must be a finite "
                             "number > 0")
    return float(weight)


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
