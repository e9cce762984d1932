"""Label-free adaptation: fine-tune a model to the user's own library (docs/DESIGN.md §5).

A user's folder has no labels the map could learn from, but some neighbourhoods need none: a
window's nearest neighbours on the base model's own map (``teacher-map``), in its hidden layer
(``teacher-knn``) or in the input space (``input-knn``), and the same sound under two
augmentations (``augment-pair``). ``adapt`` starts from a model (the shipped ``default`` unless
told otherwise), trains on a mixture of them (by default ``teacher-map`` and ``augment-pair``,
chosen on tuning sets: docs/RESULTS.md) on the atlas's training split, registers the result
beside its base and embeds the whole library with it, so the page's model switcher offers both
maps. Everything flows from the seed: a run killed and resumed (``resume=True``) ends with
the weights an uninterrupted one ends with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from soundatlas.errors import ParameterError

__all__ = ["ADAPT_NEIGHBOURHOOD", "AdaptSettings", "adapt", "adapt_settings"]

#: The label-free neighbourhoods an adaptation trains on, with their weights: keep what the base
#: shows (its map's neighbours), learn what the user's recordings vary (augment-pair). Chosen
#: with the learning rate on MuseScore tuning sets, never on the held-out bank (docs/RESULTS.md).
ADAPT_NEIGHBOURHOOD = "teacher-map:1,augment-pair:1"


@dataclass(frozen=True)
class AdaptSettings:
    """How an adaptation trains: the fast preset's step at a fine-tuning learning rate.

    Parameters
    ----------
    iterations : int, default=3000
        Training steps of 32 triples.
    lr : float, default=0.001
        The SGD learning rate.
    augment : str, default='none'
        The augmentation of the training windows (an :mod:`soundatlas.augment` spec). Off by
        default: ``augment-pair`` draws its own pairs of augmentations whatever this says.
    neighbourhood : str, default=ADAPT_NEIGHBOURHOOD
        Label-free neighbourhoods with weights (``input-knn``, ``teacher-knn``, ``teacher-map``,
        ``augment-pair``), as ``train -n`` reads them.
    anchor : float, default=4.0
        Weight of the pull towards the base model's points (``TrainSettings.anchor``); 0: none.

    Raises
    ------
    ParameterError
        When ``iterations`` < 1, ``lr`` is not positive, ``anchor`` is negative or not finite,
        or the neighbourhood needs labels.
    """

    iterations: int = 3000
    lr: float = 0.001  # chosen with the shipped model on tuning sets (docs/RESULTS.md)
    augment: str = "none"
    neighbourhood: str = ADAPT_NEIGHBOURHOOD
    anchor: float = 4.0  # chosen from 0, 1 and 4 on the tuning sets (docs/RESULTS.md)

    def __post_init__(self):
        import math

        if self.iterations < 1:
            raise ParameterError(f"iterations={self.iterations} must be at least 1")
        if not self.lr > 0:
            raise ParameterError(f"lr={self.lr} must be positive")
        if not (math.isfinite(self.anchor) and self.anchor >= 0):
            raise ParameterError(f"anchor={self.anchor} must be a finite number >= 0")
        from soundatlas.neighbourhoods import parse_neighbourhood

        keys = parse_neighbourhood(self.neighbourhood).label_keys
        if keys:
            raise ParameterError(f"neighbourhood={self.neighbourhood!r} needs labels "
                                 f"({', '.join(keys)}); adaptation uses label-free ones only "
                                 "(input-knn, teacher-knn, teacher-map, augment-pair)")


def adapt_settings(adapt: AdaptSettings, **overrides):
    """The TrainSettings of an adaptation: the fast preset with ``adapt``'s numbers.

    Parameters
    ----------
    adapt : AdaptSettings
        Iterations, learning rate, augmentation and anchor weight.
    **overrides
        Further TrainSettings fields (e.g. ``threads``).

    Returns
    -------
    TrainSettings
        Validated; checkpoints and validation every 500 steps (or at the end of a shorter run).
    """
    from soundatlas.augment import parse_augment
    from soundatlas.settings import settings_for

    return settings_for("fast", iterations=adapt.iterations, lr=adapt.lr,
                        augment=parse_augment(adapt.augment), anchor=adapt.anchor,
                        checkpoint_every=min(500, adapt.iterations),
                        valid_every=min(500, adapt.iterations), **overrides)


def adapt(
    atlas,
    *,
    base: str = "default",
    name: str | None = None,
    settings: AdaptSettings | None = None,
    seed: int = 0,
    resume: bool = False,
    stop_after: int | None = None,
    minutes: float | None = None,
    threads: int | None = None,
    replace: bool = False,
    train_progress: Callable[[int, int, dict], None] | None = None,
    embed_progress: Callable[[int, int], None] | None = None,
    precision: str = "auto",
    device: str = "cpu",
) -> dict:
    """Fine-tune ``base`` on ``atlas`` without labels, register it and embed every sample with it.

    Parameters
    ----------
    atlas : Atlas
        Open for writing; it must hold the base model's CQT parameters.
    base : str, default='default'
        The model to start from: the atlas's or a shipped one.
    name : str, optional
        The adapted model's name (default ``BASE-adapted``); not the base's
        (``atlas.models.check_model_name``).
    settings : AdaptSettings, optional
        How to train (default: ``AdaptSettings()``).
    seed : int, default=0
        Seeds the sampler, the augmentation and the neighbourhoods' draws.
    resume : bool, default=False
        Continue from the run's checkpoint: a killed run resumed ends with the weights an
        uninterrupted one ends with.
    stop_after : int, optional
        Pause after this many steps of this call (resumable).
    minutes : float, optional
        Train for at most this many minutes in this call, then finish the model at the step
        reached (``settings.iterations`` steps at most; the embedding follows, not counted).
        ``iterations`` set to the steps taken makes the same model.
    threads : int, optional
        Torch threads (default: all cores).
    replace : bool, default=False
        Adapt again under the name of a model the atlas holds, in its place (``train``'s
        ``replace``); without it (or ``resume``) that name is refused.
    train_progress, embed_progress : callable, optional
        ``(done, total, stats)`` per logged training step; ``(done, total)`` per embedded batch.
    precision, device : str, default "auto", "cpu"
        The arithmetic and the device of the embedding (``embed.embed_atlas``).

    Returns
    -------
    dict
        The summary: name, base, iterations, seconds, neighbourhood, augmentation, learning rate,
        seed, ``done`` and, when done, what was embedded and the first and last validation loss.
        When ``stop_after`` ends training early nothing is embedded and ``done`` is False; when
        ``minutes`` ended it, ``time_limited`` is True and ``iterations`` says how far it got.

    Raises
    ------
    ParameterError
        For a name equal to the base's, ``minutes`` that is not a positive number, or settings
        the trainer refuses.
    """
    from soundatlas.artifact import resolve_model
    from soundatlas.atlas.models import check_model_name
    from soundatlas.embed import embed_atlas
    from soundatlas.train import train

    settings = settings or AdaptSettings()
    base_artifact, _ = resolve_model(atlas, base)
    name = check_model_name(f"{base_artifact.name}-adapted" if name is None else name)
    if name == base_artifact.name:
        raise ParameterError(f"name={name!r} is the base model's: the adapted model goes beside it")
    if minutes is not None and not (isinstance(minutes, (int, float)) and 0 < minutes < math.inf):
        raise ParameterError(f"minutes={minutes!r} must be a positive number")
    overrides = {"threads": threads} if threads else {}
    result = train(atlas, neighbourhood=settings.neighbourhood, init_from=base_artifact,
                   settings=adapt_settings(settings, **overrides), seed=seed, name=name,
                   resume=resume, replace=replace, stop_after=stop_after, progress=train_progress,
                   time_limit=None if minutes is None else 60.0 * minutes)
    summary = {"name": name, "base": base_artifact.name, "iterations": result.iterations,
               "of": settings.iterations, "train_seconds": round(result.seconds, 1),
               "neighbourhood": settings.neighbourhood, "augment": settings.augment,
               "lr": settings.lr, "anchor": settings.anchor, "seed": seed,
               "resumed_from": result.resumed_from, "minutes": minutes,
               "time_limited": result.time_limited,
               "done": result.iterations >= settings.iterations or result.time_limited}
    if not summary["done"]:
        return summary
    artifact, registration = resolve_model(atlas, name)
    embedded = embed_atlas(atlas, artifact, registration.id, progress=embed_progress,
                           precision=precision, device=device)
    base_record = atlas.find_model(base_artifact.name)  # None: the base was never embedded here
    summary.update(n_embedded=embedded.n_embedded, n_already=embedded.n_already,
                   embed_seconds=round(embedded.seconds, 1),
                   base_embedded=base_record.n_embedded if base_record else 0)
    history = result.history
    if history:
        summary["valid_loss"] = {"first": history[0].get("valid_loss"),
                                 "last": history[-1].get("valid_loss"),
                                 "n_measured": sum(h.get("valid_loss") is not None
                                                   for h in history)}
    return summary
