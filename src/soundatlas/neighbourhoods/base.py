"""The base of every neighbourhood: :class:`Triples`, :class:`Neighbourhood`, and the registry
(:data:`NEIGHBOURHOODS`, :func:`register`, :func:`make_neighbourhood`,
:func:`neighbourhood_from_config`)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from soundatlas.augment import Augment
from soundatlas.errors import ParameterError
from soundatlas.frames import DEFAULT_NOISE, TrainingData


@dataclass(frozen=True)
class Triples:
    """n triples as (sample index into the TrainingData, window centre frame), int64 arrays.

    ``len(triples)`` is n.

    Parameters
    ----------
    anchor_sample, anchor_centre : numpy.ndarray of int64, shape (n,)
        The anchors' sample positions and window centres.
    positive_sample, positive_centre : numpy.ndarray of int64, shape (n,)
        The positives'.
    negative_sample, negative_centre : numpy.ndarray of int64, shape (n,)
        The negatives'.
    augments : tuple of Augment, default=()
        The augmentations some triples' windows need whatever the run's.
    augment_of : numpy.ndarray of int64, shape (n,), optional
        ``augment_of[i]`` indexes ``augments``; -1 (or None for all): the run's own.
    part : numpy.ndarray of int64, shape (n,), optional
        Which part of a :class:`Mixture` drew each triple (None outside a mixture).
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
        """The triples of ``chunks`` one after another.

        Parameters
        ----------
        chunks : sequence of Triples
            The triples to join; their ``augments`` are joined and ``augment_of`` renumbered.
        parts : sequence of int
            The part of each chunk, recorded per triple in ``part``.

        Returns
        -------
        Triples
        """
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
        """Anchor, positive, negative sample indices, shape (n, 3)."""
        return np.stack([self.anchor_sample, self.positive_sample, self.negative_sample], axis=1)

    @property
    def centres(self) -> np.ndarray:
        """Anchor, positive, negative window centres, shape (n, 3)."""
        return np.stack([self.anchor_centre, self.positive_centre, self.negative_centre], axis=1)


class Neighbourhood:
    """Base class: constructor arguments stored as-is, ``fit(data)``, ``draw(rng, n, data)``.

    A subclass sets ``name``, stores its constructor arguments under their own names (so
    :meth:`get_params` finds them), learns in :meth:`fit` (state in attributes ending in ``_``,
    ``n_samples_`` among them) and draws in :meth:`draw`; :func:`register` makes it known by
    name. Facts the trainer asks of a neighbourhood, with the base's answers, are the class
    attributes below and :attr:`label_keys` (none).

    Attributes
    ----------
    name : str
        The registry name (class attribute).
    origin_weight : float
        The paper's origin-penalty weight for this neighbourhood: 0.002.
    label_param : str or None
        The constructor argument ``--label`` sets: none.
    seed_param : str or None
        The constructor argument the run's seed sets: none.
    n_samples_ : int
        Samples of the data it was fitted on (set by ``fit``).
    """

    name: ClassVar[str] = ""
    origin_weight: float = 0.002
    label_param: ClassVar[str | None] = None
    seed_param: ClassVar[str | None] = None

    # -- configuration ---------------------------------------------------------------------------

    def get_params(self) -> dict:
        """The constructor arguments, as stored.

        Returns
        -------
        dict
            Each named parameter of ``__init__`` with the attribute of the same name.
        """
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters
                if p != "self" and sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                                   inspect.Parameter.VAR_KEYWORD)}

    def to_config(self) -> dict:
        """The name and parameters, JSON-ready; ``make_neighbourhood(**to_config())`` rebuilds it.

        Returns
        -------
        dict
            {'name': ..., 'params': {...}}; an Augment or a neighbourhood among the parameters
            appears as its config.
        """
        return {"name": self.name, "params": _jsonable(self.get_params())}

    def to_model_config(self) -> dict:
        """What the model's config.json records; :func:`neighbourhood_from_config` reads it back.

        Returns
        -------
        dict
            {'name': ..., **params}, JSON-ready.
        """
        return {"name": self.name, **_jsonable(self.get_params())}

    @classmethod
    def from_model_config(cls, params: dict) -> "Neighbourhood":
        """Rebuild from :meth:`to_model_config`'s params.

        Parameters
        ----------
        params : dict
            The entries besides "name".

        Returns
        -------
        Neighbourhood
            A new one of this class, not fitted yet.

        Raises
        ------
        ParameterError
            For an unknown parameter or a missing required one.
        """
        return _construct(cls, dict(params))

    def clone(self) -> "Neighbourhood":
        """A new, unfitted neighbourhood with the same parameters (and teacher).

        Returns
        -------
        Neighbourhood
        """
        twin = type(self)(**self.get_params())
        twin.set_teacher(getattr(self, "teacher_", None),
                         noise=getattr(self, "teacher_noise_", DEFAULT_NOISE))
        return twin

    def set_teacher(self, model, *, noise=DEFAULT_NOISE) -> None:
        """Give the network a run starts from (``init_from``).

        For neighbourhoods that keep its structure (``teacher-knn``); the others ignore it.

        Parameters
        ----------
        model : torch.nn.Module or None
            The starting network.
        noise : (float, float), default=DEFAULT_NOISE
            The input noise it embeds with (``embed.prediction_noise``): it reads windows as
            ``embed`` gives them to it.
        """

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
        """Whether :meth:`fit` has run (``n_samples_`` is set).

        Returns
        -------
        bool
        """
        return hasattr(self, "n_samples_")

    def fit(self, data: TrainingData) -> "Neighbourhood":
        """Learn what drawing needs from the training data (each subclass implements it).

        Parameters
        ----------
        data : TrainingData
            The training samples.

        Returns
        -------
        Neighbourhood
            ``self``, fitted.

        Raises
        ------
        ParameterError
            When the data cannot give a triple (too few samples, labels or classes).
        """
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        """Draw n triples (each subclass implements it).

        Parameters
        ----------
        rng : numpy.random.Generator
            The source of every random choice.
        n : int
            Triples to draw (>= 0).
        data : TrainingData
            The data the neighbourhood was fitted on.

        Returns
        -------
        Triples

        Raises
        ------
        ParameterError
            If not fitted, fitted on other data, or ``n`` < 0.
        """
        raise NotImplementedError

    def summary(self) -> dict:
        """Learned scalar facts (counts) for logs and the model config.

        Returns
        -------
        dict
        """
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


# -- registry ---------------------------------------------------------------------------------

#: Every neighbourhood by the name the command line and model configs use, in registration order.
NEIGHBOURHOODS: dict[str, type[Neighbourhood]] = {}


def register(cls: type[Neighbourhood]) -> type[Neighbourhood]:
    """Class decorator: add a :class:`Neighbourhood` subclass to :data:`NEIGHBOURHOODS`.

    Parameters
    ----------
    cls : type
        The class; its ``name`` is how ``train -n``, ``adapt -n`` and model configs call it.

    Returns
    -------
    type
        ``cls`` itself.

    Raises
    ------
    ParameterError
        When ``cls`` is not a Neighbourhood, has no name, or its name is taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Neighbourhood)):
        raise ParameterError(f"{cls!r} is not a Neighbourhood subclass")
    name = cls.name
    if not name or not isinstance(name, str) or "," in name or ":" in name:
        raise ParameterError(f"{cls.__name__}.name={name!r} must be a non-empty name without "
                             "',' or ':'")
    if NEIGHBOURHOODS.get(name, cls) is not cls:
        raise ParameterError(f"the neighbourhood name {name!r} is taken by "
                             f"{NEIGHBOURHOODS[name].__qualname__}")
    NEIGHBOURHOODS[name] = cls
    return cls


def make_neighbourhood(name: str, *, label: str | None = None, params: dict | None = None,
                       **kw) -> Neighbourhood:
    """A neighbourhood by registry name.

    Parameters
    ----------
    name : str
        A key of :data:`NEIGHBOURHOODS`.
    label : str, optional
        Sets the class's ``label_param`` (the instrument label; for ``pitch`` its pitch label;
        for ``label`` the column), e.g. ``label="folder"``.
    params : dict, optional
        Constructor arguments, as in :meth:`Neighbourhood.to_config`.
    **kw
        More constructor arguments (over ``params``).

    Returns
    -------
    Neighbourhood
        Unfitted.

    Raises
    ------
    ParameterError
        For an unknown name, a ``label`` for a class that uses none, or an unknown or missing
        constructor argument.
    """
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
    """The neighbourhood a model's config records.

    Parameters
    ----------
    config : dict
        The flat ``{"name": ..., **params}`` of :meth:`Neighbourhood.to_model_config` (what
        model configs hold), or ``{"name": ..., "params": {...}}`` of
        :meth:`Neighbourhood.to_config`.

    Returns
    -------
    Neighbourhood
        Of the class the name registers, unfitted.

    Raises
    ------
    ParameterError
        For an unknown name, or parameters the class does not take.
    """
    if not isinstance(config, dict) or config.get("name") not in NEIGHBOURHOODS:
        name = config.get("name") if isinstance(config, dict) else config
        raise ParameterError(f"unknown neighbourhood {name!r} in the config; known: "
                             f"{', '.join(NEIGHBOURHOODS)}")
    rest = {k: v for k, v in config.items() if k != "name"}
    params = rest["params"] if set(rest) == {"params"} else rest
    return NEIGHBOURHOODS[config["name"]].from_model_config(params)


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


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_label(name: str, value) -> None:
    if not isinstance(value, str) or not value:
        raise ParameterError(f"{name}={value!r} must be a label name (a non-empty string)")
