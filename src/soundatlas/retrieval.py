"""Per-sample retrieval for ``soundatlas.evaluate``: precision at k and MAP@R of each test
sample against all others (``metrics.retrieval``), in a model's similarity space (the stored
vectors the page's nearest sounds search) and in the input space pooled as those vectors are;
a query's copies (the same content at another path, or in the other atlas) are left out of
what it may find. In a cross-bank run a query finds the reference's samples alone.

``parts`` are ``evaluate``'s: each atlas's share of the evaluated frames, with the offset its
sample ids are shifted by (``CROSS_OFFSET`` for the scored atlas of a cross-bank run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from soundatlas.errors import ParameterError

if TYPE_CHECKING:
    from soundatlas.evaluate import FrameSet

__all__ = ["CROSS_OFFSET", "similarity_retrieval", "input_similarity_retrieval", "per_label",
           "test_samples", "groups", "shared_files", "searched"]

#: In a cross-bank frame set, the scored atlas's sample ids are shifted by this much so that
#: they never meet the reference's (SQLite ids stay far below it).
CROSS_OFFSET = 1 << 48


def similarity_retrieval(parts, per_atlas, fs: FrameSet, labels: dict[str, dict[int, str]],
                         *, k: int = 10, content: dict[int, str] | None = None) -> dict:
    """Per-sample retrieval in the model's similarity space, beside ``retrieval`` (on the map).

    The similarity space is ``soundatlas.similarity``'s: the stored vectors the page's nearest
    sounds search. The samples, queries (test samples) and labels are those of the map's.

    Parameters
    ----------
    parts : list of _Part
        Each atlas's share of the frames.
    per_atlas : list of ModelRecord
        The model's registration in each of those atlases.
    fs : FrameSet
        Every evaluated frame (ids shifted per part).
    labels : dict
        label key -> {sample id: value}.
    k : int
        Neighbours for precision at k.
    content : dict, optional
        sample id -> content hash (``score_points``).

    Returns
    -------
    dict
        {'retrieval_similarity': {label: metrics.retrieval(...)}, 'retrieval_spaces': {key:
        what it searched}}; without vectors for every evaluated sample, 'retrieval_similarity'
        is {'error': why, with the command that adds them}.
    """
    from soundatlas.similarity import (decode, describe, embed_command, is_current,
                                       missing_message, same_space)

    spaces = {"retrieval": "map: the 3-D points (each sample's mean evaluated frame point)"}
    ids = np.unique(fs.sample_ids)
    vectors, space, seen = None, None, []
    for p, m in zip(parts, per_atlas):
        s = p.atlas.similarity_space(m.id)
        have_ids, codes = p.atlas.similarity_vectors(m.id)
        mine = ids[(ids >= p.offset) & (ids < p.offset + CROSS_OFFSET)] - p.offset
        rows = np.searchsorted(have_ids, mine)
        found = (rows < len(have_ids)) & (have_ids[np.minimum(rows, len(have_ids) - 1)] == mine) \
            if len(have_ids) else np.zeros(len(mine), bool)
        seen.append((p, m, s))
        if s is None or not found.all():
            why = missing_message(p.atlas, m, int(found.sum()))
            return {"retrieval_similarity": {"error": why}, "retrieval_spaces": spaces}
        if space is not None and not same_space(s, space):
            # two versions of one space (the same name and size) must not be searched together
            older = [f"`{embed_command(a.atlas, rec)}`" for a, rec, sp in seen
                     if not is_current(sp, a.atlas.cqt_params)]
            why = (f"the similarity spaces differ between the atlases ({describe(space)}; "
                   f"{describe(s)})" + (f": {' and '.join(older)} brings them up to date"
                                         if older else ""))
            return {"retrieval_similarity": {"error": why}, "retrieval_spaces": spaces}
        space = s
        block = decode(codes[rows], s)
        vectors = block if vectors is None else np.concatenate([vectors, block])
    spaces["retrieval_similarity"] = "similarity: " + describe(space)
    sample_labels = {key: np.array([by_id.get(int(i)) for i in ids], dtype=object)
                     for key, by_id in labels.items()}
    out = per_label(vectors, test_samples(ids, fs), sample_labels, k=k,
                    groups=groups(ids, content), database=searched(ids))
    return {"retrieval_similarity": out, "retrieval_spaces": spaces}


def input_similarity_retrieval(parts, fs: FrameSet, labels: dict[str, dict[int, str]],
                               *, k: int = 10, content: dict[int, str] | None = None) -> dict:
    """Per-sample retrieval in the input space with each sample pooled as its similarity
    vector is (``embed.sample_vector``): the energy-weighted mean log-CQT frame of all of the
    file's frames, where the map's per-sample retrieval pools 8 evaluated frames. It stands
    beside a model's ``retrieval_similarity`` (the same samples, queries and labels), which
    pools the network's activations of every frame alike.

    Returns
    -------
    dict
        {'retrieval_similarity': {label: metrics.retrieval(...)}, 'retrieval_spaces': ...}.
    """
    from soundatlas.embed import point_of
    from soundatlas.frames import frame_energy

    ids = np.unique(fs.sample_ids)
    rows = []
    for p in parts:
        mine = ids[(ids >= p.offset) & (ids < p.offset + CROSS_OFFSET)] - p.offset
        for record in p.atlas.samples(mine.tolist()):  # by id, as ``mine``
            frames = p.atlas.features(record)
            rows.append(point_of(frames, frame_energy(frames)))
    sample_labels = {key: np.array([by_id.get(int(i)) for i in ids], dtype=object)
                     for key, by_id in labels.items()}
    return {"retrieval_similarity": per_label(np.stack(rows), test_samples(ids, fs),
                                              sample_labels, k=k, groups=groups(ids, content),
                                              database=searched(ids)),
            "retrieval_spaces": {
                "retrieval": "input: each sample's mean evaluated window",
                "retrieval_similarity": "input: each sample's energy-weighted mean log-CQT "
                                        "frame over all its frames (pooled as the similarity "
                                        "vectors are)"}}


def test_samples(ids: np.ndarray, fs: FrameSet) -> np.ndarray:
    """For each sample id of ``ids``, whether its frames are test frames."""
    split_of = dict(zip(fs.sample_ids.tolist(), fs.split.tolist()))
    return np.array([split_of[int(i)] == "test" for i in ids])


def shared_files(parts, content: dict[int, str]) -> int:
    """How many of the scored atlas's samples have a copy among the reference's fitted ones
    (its training and validation files, by content)."""
    ref, held = parts
    fitted = {content[int(s)] for s in np.unique(ref.ids()[ref.fs.split != "test"])}
    return sum(content[int(s)] in fitted for s in np.unique(held.ids()))


def groups(ids: np.ndarray, content: dict[int, str] | None) -> np.ndarray | None:
    """Each sample's content hash, in the order of ``ids`` (None without ``content``)."""
    return None if content is None else np.array([content[int(i)] for i in ids], dtype=object)


def searched(ids: np.ndarray) -> np.ndarray | None:
    """What a query may find among samples ``ids``: every sample (None) within one atlas; in a
    cross-bank frame set (the scored atlas's ids shifted by ``CROSS_OFFSET``), the reference's
    alone, so that a sound is scored by where it lands among another library's sounds."""
    cross = ids >= CROSS_OFFSET
    return ~cross if cross.any() else None


def per_label(points: np.ndarray, test: np.ndarray, sample_labels: dict[str, np.ndarray], *,
              k: int = 10, groups: np.ndarray | None = None,
              database: np.ndarray | None = None) -> dict:
    """Per-sample retrieval for each label: the labelled test samples query all others but
    their copies (``groups``: each point's content hash), or those of ``database`` (a mask:
    :func:`searched`); a label that cannot be scored (no labelled test sample, or no more than
    ``k`` labelled samples to find) has {'error': why}."""
    from soundatlas import metrics

    out = {}
    for key, y in sample_labels.items():
        queries = test & np.array([v is not None for v in y])
        if not queries.any():
            out[key] = {"error": f"no labelled test sample for {key!r}"}
            continue
        try:
            out[key] = metrics.retrieval(points, y, queries=queries, k=k, groups=groups,
                                         database=database)
        except ParameterError as exc:  # too few labelled samples for k: this label, not all
            out[key] = {"error": str(exc)}
    return out
