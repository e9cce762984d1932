"""Neighbourhoods: which windows belong together, as swappable contrastive partitions.

A neighbourhood is fitted on :class:`~soundatlas.sampling.TrainingData` and then draws triples of
(sample index, window centre) -- anchor, positive, negative. A new neighbourhood is a new class
decorated with :func:`register` (which adds it to :data:`NEIGHBOURHOODS`), never an ``if`` in the
trainer: what is particular
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
- :class:`PitchWithin` -- as InstrumentPitch2, with negatives of the same instrument beyond the
  span (pitch order inside each instrument, nothing for or against instruments; not the paper's).

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

The package's parts: :mod:`.base` (:class:`Triples`, :class:`Neighbourhood`, the registry),
:mod:`.labels` (the label neighbourhoods), :mod:`.knn` (input-knn, teacher-knn, teacher-map),
:mod:`.augment_pair`, :mod:`.mixture` (:class:`Mixture` and the command line's spec).

Adding a neighbourhood, in one place::

    from soundatlas.neighbourhoods import Neighbourhood, Triples, register

    @register
    class SameFolder(Neighbourhood):
        name = "same-folder"          # what ``train -n`` and model configs call it
        def fit(self, data): ...      # learn what draw needs; set ``n_samples_`` last
        def draw(self, rng, n, data): ...  # return Triples
"""

from soundatlas.neighbourhoods.base import (
    NEIGHBOURHOODS,
    Neighbourhood,
    Triples,
    make_neighbourhood,
    neighbourhood_from_config,
    register,
)
from soundatlas.neighbourhoods.labels import (
    Instrument,
    InstrumentPitch,
    InstrumentPitch2,
    Label,
    LabelNeighbourhood,
    Pitch,
    PitchWithin,
)
from soundatlas.neighbourhoods.knn import InputKNN, TeacherKNN, TeacherMap
from soundatlas.neighbourhoods.augment_pair import AugmentPair
from soundatlas.neighbourhoods.mixture import Mixture, parse_neighbourhood

__all__ = [
    "Triples",
    "Neighbourhood",
    "LabelNeighbourhood",
    "Label",
    "Instrument",
    "Pitch",
    "InstrumentPitch",
    "InstrumentPitch2",
    "PitchWithin",
    "InputKNN",
    "TeacherKNN",
    "TeacherMap",
    "AugmentPair",
    "Mixture",
    "NEIGHBOURHOODS",
    "register",
    "make_neighbourhood",
    "parse_neighbourhood",
    "neighbourhood_from_config",
]
