"""More ways to score a map than k-NN accuracy (evaluate.py): pure functions on arrays.

- retrieval: leave-one-out search among the labelled points. precision@k is the share of a
  query's k nearest other points that carry its label; MAP@R (Musgrave et al. 2020) averages
  AP@R = (1/R) sum_{i<=R} P(i) rel(i), R being the number of other points with the query's label.
- manifold_quality: trustworthiness (are the map's k nearest neighbours also near in the original
  space?) and continuity (are the original k nearest neighbours still near on the map?) per k.
- analogies: the query a1 - a0 + b0 (a0, a1 one instrument at two pitches; b0 another instrument
  at a0's pitch) should land among points with b0's instrument and a1's pitch; scored by the
  majority label of its k nearest points, against a control that queries b0 alone.
- confusion: confusion matrix, recall per class and balanced accuracy (their mean).
- accuracy_interval: how far an accuracy (or the difference of two maps' accuracies on the same
  test frames) could move with other test files: a percentile bootstrap that resamples whole
  files, since the frames of one file are not independent draws.

Labels are arrays of hashable values; None marks an unlabelled point, which these functions leave
out. Point subsets (``queries``, ``candidates``) are boolean masks or integer indices.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from soundatlas.errors import ParameterError

__all__ = ["retrieval", "manifold_quality", "analogies", "confusion", "accuracy_interval"]


def retrieval(X, y, *, queries=None, k: int = 10, groups=None, database=None) -> dict:
    """precision@k and MAP@R of labelled queries against all other labelled points (or those
    of ``database``).

    A query never matches itself (excluded by index), nor, with ``groups``, the other points
    of its group: copies of the same file at other paths, which would be found at distance 0
    and count as hits for free.

    Parameters
    ----------
    X : array-like of shape (n, dims)
        The points.
    y : sequence of length n
        Their labels (None: unlabelled, left out).
    queries : bool mask or int indices, optional
        The points that query (default: every labelled point).
    k : int
        Neighbours for precision at k.
    groups : sequence of length n, optional
        Each point's group (a file's content hash): a query's own group is left out of what
        it may find, and out of R. None: each point its own.
    database : bool mask or int indices, optional
        The points a query may find (default: every labelled point). Cross-bank scoring gives
        the reference library's: a query then finds only another library's sounds.

    Returns
    -------
    dict
        {'precision_at_k', 'k', 'map_at_r', 'n_queries', 'n_skipped'}, where 'n_skipped' counts
        queries left out of MAP@R because no point it may find has their label ('map_at_r' is
        None when that is all of them).

    Raises
    ------
    ParameterError
        For malformed input, no labelled query, or ``k`` above the labelled points a query
        may find.
    """
    from sklearn.neighbors import NearestNeighbors

    X = _points(X, "X")
    y = _labels(y, len(X), "y")
    _check_k(k)
    labelled = np.array([v is not None for v in y], dtype=bool)
    in_db = labelled.copy()
    if database is not None:
        found = np.zeros(len(X), dtype=bool)
        found[_indices(database, len(X), "database")] = True
        in_db &= found
    db = np.flatnonzero(in_db)
    q = np.flatnonzero(labelled) if queries is None else _indices(queries, len(X), "queries")
    q = q[labelled[q]]
    if len(q) == 0:
        raise ParameterError("retrieval needs at least one labelled query point")
    code = np.full(len(X), -1)
    code[labelled] = _codes(y[labelled])
    if groups is None:
        group = np.arange(len(X))
    else:
        if len(groups) != len(X):
            raise ParameterError(f"groups has {len(groups)} entries for {len(X)} points")
        group = _codes(np.asarray(groups, dtype=object))
    own = in_db[q].astype(np.int64)  # 1 where the query is itself among what it may find
    in_group = np.bincount(group[db], minlength=int(group.max()) + 1)[group[q]]
    others = len(db) - int(own.max())  # the labelled points a query may find but itself
    if k > others:
        raise ParameterError(f"k={k} must be at most the number of other labelled points "
                             f"({others})")
    if k > len(db) - int(in_group.max()):  # with its copies left out too
        raise ParameterError(f"k={k} must be at most the number of labelled points outside a "
                             "query's group")
    # relevant: the points it may find with its label, less itself and its copies with it (the
    # pairs counted by key: a table of groups x classes would not fit at 1M files, 10k folders)
    r = np.bincount(code[db], minlength=int(code.max()) + 1)[code[q]] - own
    if groups is not None:
        pair_key = group.astype(np.int64) * (int(code.max()) + 2) + code
        keys, counts = np.unique(pair_key[db], return_counts=True)
        at = np.minimum(np.searchsorted(keys, pair_key[q]), len(keys) - 1)
        same = np.where(keys[at] == pair_key[q], counts[at], 0)
        r = r - (same - own)
    twins = in_group - own  # the query's copies among what it may find, left out
    keep = max(k, int(r.max()))
    n_neighbors = min(len(db), keep + int(own.max()) + int(twins.max()))
    nn = NearestNeighbors(n_neighbors=n_neighbors).fit(X[db])
    _, idx = nn.kneighbors(X[q], n_neighbors=n_neighbors)
    idx = db[idx]  # as indices of X
    # drop the query itself and its copies; where ties pushed the query out of the list, the
    # farthest go instead (only the first ``keep`` of the rest are read)
    drop = (idx == q[:, None]) | (group[idx] == group[q][:, None])
    order = np.argsort(drop, axis=1, kind="stable")  # the kept first, in distance order
    idx = np.take_along_axis(idx, order, axis=1)[:, :keep]
    rel = code[idx] == code[q][:, None]
    precision = rel[:, :k].mean(axis=1)
    has_r = r > 0
    rel_r, r_q = rel[has_r], r[has_r]
    ranks = np.arange(1, rel.shape[1] + 1)
    within = ranks[None, :] <= r_q[:, None]
    p_at_i = np.cumsum(rel_r, axis=1) / ranks
    ap = (p_at_i * rel_r * within).sum(axis=1) / r_q
    return {"precision_at_k": float(precision.mean()), "k": int(k),
            "map_at_r": float(ap.mean()) if len(ap) else None,
            "n_queries": int(len(q)), "n_skipped": int((~has_r).sum())}


def manifold_quality(X_high, X_low, *, ks=(5, 10, 20, 50), max_points: int = 2000,
                     seed: int = 0) -> dict:
    """Trustworthiness and continuity of the map ``X_low`` of ``X_high`` at each k.

    Parameters
    ----------
    X_high : array-like of shape (n, d_high)
        The points in the original space.
    X_low : array-like of shape (n, d_low)
        The same points on the map.
    ks : sequence of int
        Neighbourhood sizes; k at or above half the scored points cannot be computed and is
        listed in 'skipped_ks'.
    max_points : int
        At most this many rows (the same in both) are scored, chosen with ``seed``.
    seed : int
        Seed of that choice.

    Returns
    -------
    dict
        {'trustworthiness': {k: float}, 'continuity': {k: float}, 'n_points', 'skipped_ks'}.

    Raises
    ------
    ParameterError
        For malformed input, row counts that differ, or a k or ``max_points`` below 1.
    """
    from sklearn.manifold import trustworthiness

    X_high, X_low = _points(X_high, "X_high"), _points(X_low, "X_low")
    if len(X_high) != len(X_low):
        raise ParameterError(f"X_high has {len(X_high)} rows but X_low has {len(X_low)}")
    if max_points < 1:
        raise ParameterError(f"max_points={max_points} must be at least 1")
    for k in ks:
        _check_k(k)
    if len(X_high) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(X_high), max_points, replace=False))
        X_high, X_low = X_high[keep], X_low[keep]
    n = len(X_high)
    used = sorted({int(k) for k in ks if k < n / 2})
    return {"trustworthiness": {k: float(trustworthiness(X_high, X_low, n_neighbors=k))
                                for k in used},
            "continuity": {k: float(trustworthiness(X_low, X_high, n_neighbors=k)) for k in used},
            "n_points": int(n), "skipped_ks": sorted({int(k) for k in ks if k >= n / 2})}


def analogies(X, instrument, pitch, *, n: int = 500, k: int = 10, seed: int = 0,
              candidates=None) -> dict:
    """Score the acoustic analogies a1 - a0 + b0 on up to ``n`` random distinct triples.

    a0, a1 share an instrument and differ in pitch; b0 has a0's pitch and another instrument.
    The k nearest points to the query (among points with both labels, a0, a1 and b0 left out)
    should carry b0's instrument and a1's pitch.

    Parameters
    ----------
    X : array-like of shape (n_points, dims)
        The points.
    instrument, pitch : sequence of length n_points
        The two labels (None: unknown; such points take no part).
    n : int
        Triples to draw (fewer when fewer exist).
    k : int
        Neighbours of each query.
    seed : int
        Seed of the draw.
    candidates : bool mask or int indices, optional
        The points a0, a1 and b0 are drawn from (default: every point with both labels).

    Returns
    -------
    dict
        Per label ('instrument', 'pitch'): 'win_rate' (majority label right; ties go to the
        nearest), 'mean_share' (share of neighbours right) and the same for the query b0 alone
        ('control_win_rate', 'control_mean_share'). Also 'n_triples', 'k' and 'examples' (the
        first 5 triples with the labels found).

    Raises
    ------
    ParameterError
        For malformed input, no valid triple, or ``k`` above the points with both labels
        minus 3.
    """
    from sklearn.neighbors import NearestNeighbors

    X = _points(X, "X")
    instrument = _labels(instrument, len(X), "instrument")
    pitch = _labels(pitch, len(X), "pitch")
    _check_k(k)
    if n < 1:
        raise ParameterError(f"n={n} must be at least 1")
    both = np.array([i is not None and p is not None for i, p in zip(instrument, pitch)])
    database = np.flatnonzero(both)
    cand = database if candidates is None else _indices(candidates, len(X), "candidates")
    cand = cand[both[cand]]
    triples = _draw_triples(cand, _codes(instrument[cand]), _codes(pitch[cand]), n, seed)
    if k > len(database) - 3:
        raise ParameterError(f"k={k} must be at most the number of points with both labels "
                             f"minus 3 ({len(database) - 3})")
    a0, a1, b0 = triples.T
    nn = NearestNeighbors().fit(X[database])
    m = min(k + 3, len(database))
    found = {}
    for name, q in (("analogy", X[a1] - X[a0] + X[b0]), ("control", X[b0])):
        _, idx = nn.kneighbors(q, n_neighbors=m)
        idx = database[idx]
        keep = (idx != a0[:, None]) & (idx != a1[:, None]) & (idx != b0[:, None])
        # the k first kept: rank of each kept neighbour among the kept ones
        keep &= np.cumsum(keep, axis=1) <= k
        found[name] = idx[keep].reshape(len(triples), k)
    out = {"n_triples": int(len(triples)), "k": int(k)}
    tops = {}
    for key, labels, expected in (("instrument", instrument, b0), ("pitch", pitch, a1)):
        codes = np.full(len(X), -1)
        codes[database] = _codes(labels[database])
        scores = {}
        for name, prefix in (("analogy", ""), ("control", "control_")):
            neigh = codes[found[name]]
            right = neigh == codes[expected][:, None]
            top = _majority(neigh)
            scores[prefix + "win_rate"] = float(np.mean(top == codes[expected]))
            scores[prefix + "mean_share"] = float(right.mean())
            if name == "analogy":
                tops[key] = found[name][np.arange(len(triples)), np.argmax(neigh == top[:, None],
                                                                            axis=1)]
        out[key] = scores
    out["examples"] = [
        {**{role: {"index": int(i), "instrument": instrument[i], "pitch": pitch[i]}
            for role, i in (("a0", t[0]), ("a1", t[1]), ("b0", t[2]))},
         "found": {"instrument": instrument[tops["instrument"][j]],
                   "pitch": pitch[tops["pitch"][j]]}}
        for j, t in enumerate(triples[:5])]
    return out


def confusion(y_true, y_pred, *, labels=None) -> dict:
    """Confusion matrix (rows true, columns predicted), recall per class and their mean.

    Parameters
    ----------
    y_true, y_pred : sequence
        True and predicted labels; entries whose true label is None are left out.
    labels : sequence, optional
        The rows and columns, in order (default: every label seen, sorted).

    Returns
    -------
    dict
        {'labels', 'matrix' (lists of int), 'per_class_accuracy' (label -> recall, None for a
        class with no true members), 'balanced_accuracy' (the mean of the recalls that exist)}.

    Raises
    ------
    ParameterError
        When the lengths differ, no entry is labelled, a prediction is None where the truth is
        labelled, or ``labels`` holds none of the true labels.
    """
    from sklearn.metrics import confusion_matrix

    y_true = np.asarray(y_true, dtype=object).ravel()
    y_pred = np.asarray(y_pred, dtype=object).ravel()
    if len(y_true) != len(y_pred):
        raise ParameterError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}")
    keep = np.array([v is not None for v in y_true], dtype=bool)
    y_true, y_pred = y_true[keep], y_pred[keep]
    if len(y_true) == 0:
        raise ParameterError("confusion needs at least one labelled entry in y_true")
    if any(v is None for v in y_pred):
        raise ParameterError("y_pred has None where y_true is labelled")
    if labels is None:
        labels = _sorted(set(y_true) | set(y_pred))
    else:
        labels = list(labels)
        if not set(labels) & set(y_true):
            raise ParameterError(f"labels={labels} contains none of the true labels")
    with warnings.catch_warnings():  # one class is a 1 x 1 matrix, which sklearn warns about
        # even with every label passed; it is the right answer here
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        matrix = confusion_matrix(list(y_true), list(y_pred), labels=labels)
    support = matrix.sum(axis=1)
    recall = {lab: (float(matrix[i, i] / support[i]) if support[i] else None)
              for i, lab in enumerate(labels)}
    present = [r for r in recall.values() if r is not None]
    return {"labels": labels, "matrix": matrix.astype(int).tolist(),
            "per_class_accuracy": recall,
            "balanced_accuracy": float(np.mean(present)) if present else None}


def accuracy_interval(correct, groups, *, against=None, level: float = 0.95,
                      n_resamples: int = 1000, seed: int = 0) -> list[float] | None:
    """A bootstrap interval of an accuracy over frames, resampling whole groups (files).

    The frames of one file are alike, so resampling frames would make the interval too narrow:
    each resample draws as many files as there are, with replacement, and scores all of their
    frames. With ``against``, the interval is of the paired difference ``mean(correct) -
    mean(against)``: the same frames scored by two maps, each resample drawing the same files
    for both. The percentile interval of ``scipy.stats.bootstrap``.

    Parameters
    ----------
    correct : array-like of bool, shape (n,)
        Whether each test frame was predicted right.
    groups : array-like, shape (n,)
        Each frame's file (any hashable ids).
    against : array-like of bool, shape (n,), optional
        Another map's outcome on the same frames.
    level : float
        The interval's confidence level, in (0, 1).
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.

    Returns
    -------
    list of float or None
        ``[low, high]``; None when there are fewer than two files.

    Raises
    ------
    ParameterError
        When the arrays differ in length or ``level`` or ``n_resamples`` is out of range.
    """
    from scipy.stats import bootstrap

    values = np.asarray(correct, dtype=np.float64).ravel()
    groups = np.asarray(groups).ravel()
    if len(groups) != len(values):
        raise ParameterError(f"groups has {len(groups)} entries for {len(values)} outcomes")
    if against is not None:
        other = np.asarray(against, dtype=np.float64).ravel()
        if len(other) != len(values):
            raise ParameterError(f"against has {len(other)} entries for {len(values)} outcomes")
        values = values - other
    if not 0 < level < 1:
        raise ParameterError(f"level={level} must be between 0 and 1")
    if not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ParameterError(f"n_resamples={n_resamples!r} must be a positive integer")
    codes = np.unique(groups, return_inverse=True)[1].ravel()
    sums, counts = np.bincount(codes, weights=values), np.bincount(codes).astype(np.float64)
    if len(counts) < 2:
        return None
    if np.all(sums / counts == sums[0] / counts[0]):  # every file alike: nothing to resample
        return [float(sums[0] / counts[0])] * 2
    # batch: resamples at a time, so that memory stays near 100 x the number of files (all
    # 1,000 at once took 2.4 GB for 100k test files)
    res = bootstrap((sums, counts), lambda s, n, axis: s.sum(axis) / n.sum(axis), paired=True,
                    vectorized=True, n_resamples=n_resamples, batch=100, confidence_level=level,
                    method="percentile", rng=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def _points(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ParameterError(f"{name} must be a 2-D array of points, got shape {X.shape}")
    if len(X) == 0:
        raise ParameterError(f"{name} has no points")
    return X


def _labels(y, n: int, name: str) -> np.ndarray:
    out = np.empty(len(y), dtype=object)
    out[:] = list(y)
    if len(out) != n:
        raise ParameterError(f"{name} has {len(out)} entries but there are {n} points")
    return out


def _check_k(k) -> None:
    if not isinstance(k, numbers.Integral) or k < 1:
        raise ParameterError(f"k={k!r} must be an integer of at least 1")


def _indices(sel, n: int, name: str) -> np.ndarray:
    """Sorted unique indices from a boolean mask or integer indices."""
    sel = np.asarray(sel)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise ParameterError(f"{name} mask has shape {sel.shape}, expected ({n},)")
        return np.flatnonzero(sel)
    if sel.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(sel.dtype, np.integer) or sel.ndim != 1:
        raise ParameterError(f"{name} must be a boolean mask or a 1-D array of integer indices")
    if sel.min() < 0 or sel.max() >= n:
        raise ParameterError(f"{name} has indices outside 0..{n - 1}")
    return np.unique(sel)


def _codes(values) -> np.ndarray:
    """Integer code per hashable value, in order of first appearance."""
    index: dict = {}
    return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)


def _sorted(values) -> list:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


def _majority(neigh: np.ndarray) -> np.ndarray:
    """Most common code per row; ties go to the tied code met first (the nearest)."""
    rows = np.arange(len(neigh))
    counts = np.zeros((len(neigh), int(neigh.max()) + 1), dtype=np.int64)
    np.add.at(counts, (np.repeat(rows, neigh.shape[1]), neigh.ravel()), 1)
    tied = counts[rows[:, None], neigh] == counts.max(axis=1, keepdims=True)
    return neigh[rows, np.argmax(tied, axis=1)]


def _draw_triples(cand: np.ndarray, inst: np.ndarray, pitch: np.ndarray, n: int,
                  seed: int) -> np.ndarray:
    """Up to n distinct (a0, a1, b0) index triples, uniform over all valid ones.

    a0 is drawn with weight (number of valid a1) * (number of valid b0), then a1 and b0 uniformly;
    when there are at most 4n triples in all, they are listed and n chosen without replacement.
    """
    if len(cand) == 0:
        raise ParameterError("no valid analogy triple: no candidate point has both labels")
    rng = np.random.default_rng(seed)
    same_both = _group_sizes(inst * (int(pitch.max()) + 1) + pitch)
    weight = (_group_sizes(inst) - same_both) * (_group_sizes(pitch) - same_both)
    total = int(weight.sum())
    if total == 0:
        raise ParameterError(
            f"no valid analogy triple among {len(cand)} candidate points: it needs an instrument "
            "at two pitches and another instrument at one of those pitches")
    if total <= 4 * n:
        listed = [(a, b, c) for a in np.flatnonzero(weight)
                  for b in np.flatnonzero((inst == inst[a]) & (pitch != pitch[a]))
                  for c in np.flatnonzero((pitch == pitch[a]) & (inst != inst[a]))]
        chosen = np.array(listed)[rng.choice(total, size=min(n, total), replace=False)]
        return cand[chosen]
    seen, out = set(), []
    cdf = np.cumsum(weight)
    while len(out) < n:
        a = int(np.searchsorted(cdf, rng.integers(total), side="right"))
        b = int(rng.choice(np.flatnonzero((inst == inst[a]) & (pitch != pitch[a]))))
        c = int(rng.choice(np.flatnonzero((pitch == pitch[a]) & (inst != inst[a]))))
        if (a, b, c) not in seen:
            seen.add((a, b, c))
            out.append((a, b, c))
    return cand[np.array(out)]


def _group_sizes(codes: np.ndarray) -> np.ndarray:
    """Size of each entry's group of equal codes."""
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    return counts[inverse]
