"""The same sound under two augmentations (``augment-pair``): a neighbourhood without labels."""

from __future__ import annotations

import numpy as np

from soundatlas.augment import Augment
from soundatlas.errors import ParameterError
from soundatlas.frames import TrainingData, draw_centres
from soundatlas.neighbourhoods.base import Neighbourhood, Triples, register


@register
class AugmentPair(Neighbourhood):
    """The positive is the anchor's own window under another draw of the augmentation.

    No labels: the positive is the anchor's own window (same sample, same centre) under an
    independent draw of ``augment``; the negative a window of another sample, augmented alike.
    It teaches the map to ignore what the augmentation changes (level, EQ, room, noise floor, a
    small detune, where the onset falls: the augmentation's shift moves the two windows apart).
    Anchors are uniform over the samples with frames, centres by energy.

    Parameters
    ----------
    augment : Augment, dict or str, default='default'
        An :class:`~soundatlas.augment.Augment`, its ``get_params()`` or a spec (default:
        ``Augment.default()``); its windows get it instead of the run's augmentation.

    Attributes
    ----------
    n_samples_ : int
        Samples of the data it was fitted on.
    eligible_ : numpy.ndarray of int64
        Positions of the samples with frames.
    n_excluded_ : int
        Samples left out (no frames).

    Raises
    ------
    ParameterError
        If ``augment`` cannot be read or changes nothing.
    """

    name = "augment-pair"

    def __init__(self, augment: "Augment | dict | str" = "default"):
        aug = Augment.from_params(augment)
        if aug is None or not aug.active:
            raise ParameterError(f"augment-pair needs an augmentation that changes something, "
                                 f"not augment={augment!r}")
        self.augment = aug

    def fit(self, data: TrainingData) -> "AugmentPair":
        """Find the samples with frames; as :meth:`Neighbourhood.fit`.

        Raises ParameterError with fewer than 2 samples with frames.
        """
        eligible = np.flatnonzero(data.lengths > 0)
        if len(eligible) < 2:
            raise ParameterError(f"augment-pair needs at least 2 samples with frames (one for the "
                                 f"pair, another for the negative), got {len(eligible)}")
        self.n_samples_ = data.n_samples
        self.eligible_ = eligible.astype(np.int64)
        self.n_excluded_ = data.n_samples - len(eligible)
        return self

    def summary(self) -> dict:
        """Counts and the augmentation, for logs and the model config: {'n_samples_used',
        'n_excluded', 'augment'} (the augmentation's spec)."""
        return {"n_samples_used": int(len(self.eligible_)), "n_excluded": self.n_excluded_,
                "augment": self.augment.spec()}

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        """Draw n triples: anchor and positive one window, the negative another sample's.

        Every triple names ``augment`` as its augmentation. Parameters, result and errors as
        :meth:`Neighbourhood.draw`.
        """
        self._check_draw(n, data)
        m = len(self.eligible_)
        ia = rng.integers(0, m, size=n)
        iq = rng.integers(0, m - 1, size=n)
        iq += iq >= ia
        a, q = self.eligible_[ia], self.eligible_[iq]
        c = draw_centres(data, np.concatenate([a, q]), rng)
        return Triples(a, c[:n], a.copy(), c[:n].copy(), q, c[n:],
                       augments=(self.augment,), augment_of=np.zeros(n, np.int64))
