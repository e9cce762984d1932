"""Labels suggested from the map: for samples without a label, a vote of their nearest
labelled neighbours.

A sample without label KEY gets the value most of its ``k`` nearest samples *that have KEY*
carry, with a confidence: the share of those ``k`` that carry it (ties go to the value of the
nearest; with fewer than ``k`` samples labelled, all of them vote and the share is still one
of ``k``). Nearest is measured by default in the timbre block of a model's similarity vectors
(``space="timbre"``: its hidden layer, which suggests labels better than the 3-D map and, for
instruments, better than the whole vectors, whose pitch profile draws same-pitch notes of other
instruments near: ``docs/RESULTS.md``, "Label suggestions beside the pitch profile"), in the
whole vectors (``space="similarity"``, better for drum classes), on its map (``space="map"``),
or in the input space (each sample's mean log-CQT frame, ``space="input"``, the baseline). The user's tags count as labels, so suggestions fill in what a user began.

:func:`suggest` answers the suggestions; :func:`hidden_label_curve` measures them by hiding a
share of the labels that exist and scoring the suggestions against them (precision against
coverage as the confidence threshold varies; ``benchmarks/bench_suggest.py``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from soundatlas.errors import ParameterError

__all__ = ["Suggestion", "SPACES", "REACH_SAMPLE", "REACH_PAIRS", "REACH_MIN", "REACH_QUANTILE",
           "suggest", "reference_model", "vote", "reach", "reach_sample_size", "majority",
           "representation", "hidden_label_curve", "reference_label_curve"]

SPACES = ("similarity", "timbre", "map", "input")


#: At most this many voters (a seeded sample of them beyond) measure the voters' reach, and
#: fewer where they would make more than :data:`REACH_PAIRS` distances (each is searched
#: against all voters), but never fewer than :data:`REACH_MIN`: the page asks for the reach
#: while a musician waits (about 2 s for 200,000 labelled samples on 2 cores).
REACH_SAMPLE = 5000
REACH_PAIRS = 200_000_000
REACH_MIN = 200
#: The share of the voters' leave-one-out nearest distances the reach lies beyond.
REACH_QUANTILE = 0.99


@dataclass(frozen=True)
class Suggestion:
    """A value suggested for a sample: ``confidence`` is the share of its ``k`` nearest
    labelled samples that carry ``value``; ``far``: its nearest labelled sample lies beyond
    the voters' :func:`reach`, so its sound is like none that voted (a pad among drums)."""

    sample_id: int
    value: str
    confidence: float
    far: bool = False


def representation(atlas, model, space: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids ascending, float32 vectors) of a space: ``similarity`` (the model's vectors),
    ``timbre`` (their hidden-layer block, without the pitch profile), ``map`` (its points) or
    ``input`` (each sample's mean log-CQT frame; no model needed).

    Raises
    ------
    ParameterError
        For an unknown space, or a model without similarity vectors for every embedded sample.
    """
    from soundatlas.similarity import decode, timbre, timbre_space

    if space not in SPACES:
        raise ParameterError(f"space {space!r}: one of {', '.join(SPACES)}")
    if space == "input":
        ids = atlas.sample_ids()
        out = np.empty((len(ids), atlas.cqt_params.n_bins), np.float32)
        for i, (_rec, F) in enumerate(atlas.each_features(atlas.samples(ids.tolist()))):
            out[i] = F.mean(axis=0) if len(F) else 0.0
        return ids, out
    if space == "map":
        ids, points = atlas.points(model.id)
        return ids, np.asarray(points, np.float32)
    found = atlas.similarity_space(model.id)
    ids, codes = atlas.similarity_vectors(model.id)
    if found is None or len(ids) < model.n_embedded:
        from soundatlas.similarity import embed_command

        raise ParameterError(f"model {model.name!r} has no similarity vector for every sample "
                             f"of {atlas.path}: `{embed_command(atlas, model)}` adds them; or "
                             "use --space map")
    if space == "timbre":
        return ids, decode(timbre(codes, found), timbre_space(found))
    return ids, decode(codes, found)


def majority(values: list):
    """(the value most of ``values`` are, how many are), ``values`` nearest first: a tie goes
    to the value of the nearest among the tied ones."""
    votes = Counter(values)
    top = max(votes.values())
    return next(v for v in values if votes[v] == top), top


def vote(vectors: np.ndarray, labelled: np.ndarray, values: list[str], queries: np.ndarray,
         k: int, *, batch: int = 4096, with_distance: bool = False) -> tuple:
    """The value and confidence of each query row among its ``k`` nearest labelled rows.

    Parameters
    ----------
    vectors : ndarray (n, d)
        Every row's vector.
    labelled : ndarray of int
        Rows that carry a value.
    values : list of str
        Their values, aligned with ``labelled``.
    queries : ndarray of int
        Rows to suggest for (none of them in ``labelled``).
    k : int
        Neighbours that vote.

    Returns
    -------
    values : list of str
        The winning value of each query.
    confidence : ndarray of float
        The share of the ``k`` that carry it (with fewer than ``k`` labelled rows, still a
        share of ``k``: 1 only when ``k`` neighbours agree).
    distance : ndarray of float
        With ``with_distance``: each query's distance to its nearest labelled row.
    """
    import faiss

    if len(labelled) == 0 or len(queries) == 0:
        return ([], np.zeros(0), np.zeros(0)) if with_distance else ([], np.zeros(0))
    # fewer labelled rows than k: all of them vote, but the share stays one of the k asked
    # for (one labelled neighbour is not the agreement of ten; the page's suggest does the same)
    n_search = min(k, len(labelled))
    index = faiss.IndexFlatL2(vectors.shape[1])  # exact: BLAS over the labelled rows
    index.add(np.ascontiguousarray(vectors[labelled], np.float32))
    codes, names = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    out_values: list[str] = []
    out_conf = np.empty(len(queries))
    out_dist = np.empty(len(queries))
    for start in range(0, len(queries), batch):
        q = np.ascontiguousarray(vectors[queries[start:start + batch]], np.float32)
        d2, nn = index.search(q, n_search)
        out_dist[start:start + len(q)] = np.sqrt(np.maximum(d2[:, 0], 0))
        for j, row in enumerate(nn):
            winner, n = majority(names[row].tolist())
            out_values.append(str(codes[winner]))
            out_conf[start + j] = n / k
    return (out_values, out_conf, out_dist) if with_distance else (out_values, out_conf)


def reach_sample_size(n: int) -> int:
    """How many of ``n`` voters :func:`reach` measures (each against all ``n``)."""
    return min(n, REACH_SAMPLE, max(REACH_MIN, REACH_PAIRS // max(n, 1)))


def reach(voters: np.ndarray, *, seed: int = 0) -> float:
    """How far the voters lie from their nearest other voter: the 99th percentile
    (:data:`REACH_QUANTILE`) of their leave-one-out nearest distances. A query farther than this
    from every voter is farther out than 99 % of them are from each other (``Suggestion.far``).
    Voters with the same vector (copies of one sound) count once.

    Measured on every voter up to :data:`REACH_SAMPLE`, beyond that on a seeded sample of them
    (each searched against all; a smaller sample above 40,000 voters: :func:`reach_sample_size`).

    Chosen on the tuning sets (docs/RESULTS.md, "Labels from another library"): of the 95th and
    99th percentiles and the largest, the 99th told MuseScore's drums (8 % marked) from its
    melodic notes (97-98 % marked) best, labelled from FluidR3 and OPL3 kits in the similarity
    space.

    Returns
    -------
    float
        The distance (inf with fewer than two distinct voters: nothing to measure).
    """
    import faiss

    # copies (a sound at two paths, tagged alike as tags follow content) are one voter: each
    # would find the other at distance 0, and the most isolated sound's copy would hide it
    x = np.unique(np.ascontiguousarray(voters, np.float32), axis=0) if len(voters) else voters
    n = len(x)
    if n < 2:
        return float("inf")
    x = np.ascontiguousarray(x, np.float32)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    size = reach_sample_size(n)
    rows = (np.arange(n) if size == n
            else np.sort(np.random.default_rng(seed).choice(n, size, replace=False)))
    d2, _ = index.search(x[rows], 2)  # the row itself first, then its nearest other
    return float(np.quantile(np.sqrt(np.maximum(d2[:, 1], 0.0)), REACH_QUANTILE))


def suggest(atlas, key: str, *, model=None, space: str = "timbre", k: int = 10,
            min_confidence: float = 0.0, reference=None) -> list[Suggestion]:
    """Suggestions of label ``key`` for every embedded sample without it: those within the
    voters' reach first (``Suggestion.far``), each part most confident first.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    key : str
        The label (a user's tag key counts: ``tag``, ``mood``...).
    model : ModelRecord, optional
        The model whose space is searched (not needed for ``space="input"``).
    space : {'similarity', 'timbre', 'map', 'input'}
        Where nearness is measured.
    k : int
        Neighbours that vote.
    min_confidence : float
        Suggestions below this are left out.
    reference : Atlas, optional
        Another library whose labels vote instead of this atlas's own: its index's and its
        user's labels of ``key`` (not its own suggestions, which are no truth to pass on). The
        same model must have embedded it (:func:`soundatlas.artifact.same_model`), in the same
        space: :func:`reference_model` says what else must agree.

    Raises
    ------
    ParameterError
        For an unknown label, a bad ``k`` or ``min_confidence``, a space the model lacks, or a
        reference that cannot be searched with this atlas.
    """
    if k < 1:
        raise ParameterError(f"k={k} must be at least 1")
    if not 0 <= min_confidence <= 1:
        raise ParameterError(f"min_confidence={min_confidence} must lie in [0, 1]")
    voters = atlas if reference is None else reference
    known = voters.label_keys()
    if key not in known:
        where = "this atlas" if reference is None else f"the reference atlas {reference.path}"
        raise ParameterError(f"no label {key!r} in {where} (known: {', '.join(known) or 'none'})")
    if model is None and space != "input":
        raise ParameterError(f"space {space!r} needs a model")
    ids, vectors = representation(atlas, model, space)
    have = atlas.labels(key) if key in atlas.label_keys() else {}
    rows = np.arange(len(ids))
    mask = np.fromiter((int(i) in have for i in ids), bool, len(ids))
    queries = rows[~mask]
    if reference is None:
        labelled, values = rows[mask], [have[int(ids[r])] for r in rows[mask]]
    else:  # the reference's rows follow this atlas's: only they vote
        ref_ids, ref_vectors = representation(reference, reference_model(atlas, model,
                                                                         reference, space),
                                              space)
        truth = reference.labels(key, suggested=False)
        ref_rows = np.flatnonzero([int(i) in truth for i in ref_ids])
        if not len(ref_rows):
            raise ParameterError(f"no sample of the reference atlas {reference.path} has "
                                 f"{key!r} of its own (its suggestions do not count)")
        labelled, values = len(ids) + ref_rows, [truth[int(ref_ids[r])] for r in ref_rows]
        vectors = np.concatenate([vectors, ref_vectors])
    values, conf, dist = vote(vectors, labelled, values, queries, k, with_distance=True)
    far = dist > reach(vectors[labelled])
    out = [Suggestion(int(ids[r]), v, float(c), bool(f))
           for r, v, c, f in zip(queries, values, conf, far) if c >= min_confidence]
    return sorted(out, key=lambda s: (s.far, -s.confidence, s.sample_id))


def reference_model(atlas, model, reference, space: str):
    """The reference atlas's registration of ``model`` (None for the input space), checked to
    be searchable beside this atlas's: the same CQT parameters, the same model (weights and
    config) embedded in every sample, and for the similarity and timbre spaces the same
    version of the space.

    Raises
    ------
    ParameterError
        Naming what differs, with the command that brings an atlas up to date where one does.
    """
    from soundatlas.artifact import embed_from, model_difference
    from soundatlas.similarity import embed_command, is_current, same_space

    if reference.path.resolve() == atlas.path.resolve():
        raise ParameterError("the reference atlas is this atlas: without a reference, its own "
                             "labels vote")
    if reference.cqt_params != atlas.cqt_params:
        raise ParameterError(f"the reference atlas {reference.path} has other CQT parameters "
                             f"({reference.cqt_params}) than {atlas.path} ({atlas.cqt_params}): "
                             "index both libraries with the same ones")
    if space == "input":
        return None
    theirs = reference.find_model(model.name)
    if theirs is None or theirs.n_embedded < reference.n_samples():
        # the reference knows the model by name once registered; before, by its folder
        fix = embed_command(reference, theirs) if theirs is not None else embed_from(
            reference, atlas, model)
        raise ParameterError(f"model {model.name!r} has not embedded every sample of the "
                             f"reference atlas {reference.path}: `{fix}` does")
    differ = model_difference(atlas, model, reference, theirs)
    if differ:
        raise ParameterError(f"model {model.name!r} of the reference atlas {reference.path} is "
                             f"not the one of {atlas.path} ({differ}): embed both with the "
                             "same model")
    if space in ("similarity", "timbre"):
        mine, other = atlas.similarity_space(model.id), reference.similarity_space(theirs.id)
        if mine is not None and other is not None and not same_space(mine, other):
            older = [f"`{embed_command(a, m)}`" for a, m, sp in
                     ((atlas, model, mine), (reference, theirs, other))
                     if not is_current(sp, a.cqt_params)]
            raise ParameterError("the similarity vectors of the two atlases are of different "
                                 "versions of the space" + (f": {' and '.join(older)} brings "
                                                            "them up to date" if older else ""))
    return theirs


def hidden_label_curve(ids: np.ndarray, vectors: np.ndarray, labels: dict[int, str], *,
                       hide: float, k: int = 10, seed: int = 0,
                       thresholds=(0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> dict:
    """Hide a share of the labels, suggest them back, and score: precision against coverage.

    Parameters
    ----------
    ids, vectors : ndarray
        A space (:func:`representation`).
    labels : dict of int to str
        The true labels (samples without one take no part).
    hide : float
        The share of the labelled samples whose label is hidden (seeded).
    thresholds : sequence of float
        Confidence thresholds.

    Returns
    -------
    dict
        ``n_hidden``, ``n_known`` and per threshold ``{threshold, coverage (share of the hidden
        suggested at or above it), precision (share of those right)}``.
    """
    if not 0 < hide < 1:
        raise ParameterError(f"hide={hide} must lie in (0, 1)")
    rows = np.array([r for r, i in enumerate(ids) if int(i) in labels])
    rng = np.random.default_rng(seed)
    hidden = np.sort(rng.choice(rows, size=max(1, round(hide * len(rows))), replace=False))
    known = np.setdiff1d(rows, hidden)
    values, conf = vote(vectors, known, [labels[int(ids[r])] for r in known], hidden, k)
    truth = np.array([labels[int(ids[r])] for r in hidden], dtype=object)
    right = np.array(values, dtype=object) == truth
    return {"n_hidden": int(len(hidden)), "n_known": int(len(known)),
            "curve": _curve(right, conf, thresholds)}


def reference_label_curve(vectors: np.ndarray, truth: list[str], ref_vectors: np.ndarray,
                          ref_values: list[str], *, k: int = 10,
                          thresholds=(0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> dict:
    """Suggest a label for every sample from another library's labelled samples (what
    ``suggest --from`` does), and score against the true labels, which take no part in it:
    precision against coverage as the confidence threshold varies.

    Parameters
    ----------
    vectors : ndarray (n, d)
        The scored samples, each with its true value in ``truth``.
    ref_vectors : ndarray (m, d)
        The reference's labelled samples, with their values in ``ref_values``.

    Returns
    -------
    dict
        ``n_scored``, ``n_reference``, ``accuracy`` (every suggestion, no threshold),
        ``per_value`` ({value: share of its samples suggested right}) and ``curve``.
    """
    n = len(vectors)
    both = np.concatenate([vectors, ref_vectors]).astype(np.float32)
    values, conf = vote(both, n + np.arange(len(ref_vectors)), list(ref_values), np.arange(n),
                        k)
    truth_a = np.asarray(truth, dtype=object)
    right = np.array(values, dtype=object) == truth_a
    per_value = {str(v): float(right[truth_a == v].mean()) for v in sorted(set(truth))}
    return {"n_scored": n, "n_reference": int(len(ref_vectors)),
            "accuracy": float(right.mean()) if n else None, "per_value": per_value,
            "curve": _curve(right, conf, thresholds)}


def _curve(right: np.ndarray, conf: np.ndarray, thresholds) -> list[dict]:
    """Precision (the share right) and coverage (the share taken) of the suggestions at or
    above each confidence threshold."""
    curve = []
    for t in thresholds:
        taken = conf >= t
        curve.append({"threshold": t, "coverage": float(taken.mean()),
                      "precision": float(right[taken].mean()) if taken.any() else None})
    return curve
