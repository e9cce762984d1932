"""Scoring a map the way the reference did: k-NN classification of frame embeddings.

Protocol (DESIGN.md §1): per-frame embeddings; a k-NN classifier fitted on up to 100k frame
points of training files, k chosen on validation frames from {1,5,9,15,21,35,51,75,101}, accuracy
on test frames. Frames are drawn per file with probability proportional to their energy (8 per
file by default, as in the demo-library measurements of DESIGN.md), so the silence after a note,
which is the same for every instrument, does not dominate the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundatlas.errors import ParameterError

__all__ = ["KS", "knn_accuracy", "FrameSet", "frame_set", "evaluate_points"]

KS = (1, 5, 9, 15, 21, 35, 51, 75, 101)


@dataclass
class FrameSet:
    """Chosen frames: which sample (atlas id) and which frame, per split."""

    sample_ids: np.ndarray
    frames: np.ndarray
    split: np.ndarray  # 'train' | 'valid' | 'test'


def frame_set(atlas, *, n_per_file: int = 8, seed: int = 0) -> FrameSet:
    """Up to ``n_per_file`` energy-weighted frames of every sample, with its split."""
    from soundatlas.embed import frame_energy

    if n_per_file < 1:
        raise ParameterError(f"n_per_file={n_per_file} must be at least 1")
    rng = np.random.default_rng(seed)
    splits = atlas.splits()
    sids, frames, split = [], [], []
    for rec in atlas.samples():
        energy = frame_energy(atlas.features(rec))
        p = energy / energy.sum() if energy.sum() > 0 else None
        n = min(n_per_file, int(np.count_nonzero(energy)) if p is not None else len(energy))
        chosen = rng.choice(len(energy), size=max(1, n), replace=False, p=p)
        sids += [rec.id] * len(chosen)
        frames += list(np.sort(chosen))
        split += [splits[rec.id]] * len(chosen)
    return FrameSet(np.array(sids, np.int64), np.array(frames, np.int64), np.array(split))


def knn_accuracy(
    X_train, y_train, X_valid, y_valid, X_test, y_test, *,
    ks=KS, max_train: int = 100_000, seed: int = 0,
) -> dict:
    """Fit k-NN on (at most ``max_train``) training points, pick k on validation, score test.

    Labels are any hashable values; points whose label is None are left out. Returns
    {'k', 'valid_accuracy', 'test_accuracy', 'valid_by_k', 'n_train', 'n_test'}.
    """
    from sklearn.neighbors import KNeighborsClassifier

    X_train, y_train = _labelled(X_train, y_train)
    X_valid, y_valid = _labelled(X_valid, y_valid)
    X_test, y_test = _labelled(X_test, y_test)
    if len(X_train) == 0 or len(X_test) == 0:
        raise ParameterError("k-NN accuracy needs labelled training and test points")
    if len(X_train) > max_train:
        keep = np.random.default_rng(seed).choice(len(X_train), max_train, replace=False)
        X_train, y_train = X_train[keep], y_train[keep]
    ks = [k for k in ks if k <= len(X_train)] or [1]
    clf = KNeighborsClassifier(n_neighbors=max(ks)).fit(X_train, y_train)
    valid_by_k = {}
    if len(X_valid):
        for k, pred in zip(ks, _predict_many(clf, X_valid, ks, y_train)):
            valid_by_k[k] = float(np.mean(pred == y_valid))
        best = max(ks, key=lambda k: (valid_by_k[k], -k))
    else:
        best = ks[0]
    pred = _predict_many(clf, X_test, [best], y_train)[0]
    return {"k": int(best), "valid_accuracy": valid_by_k.get(best), "test_accuracy":
            float(np.mean(pred == y_test)), "valid_by_k": valid_by_k,
            "n_train": int(len(X_train)), "n_test": int(len(X_test))}


def _labelled(X, y):
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=object)
    keep = np.array([v is not None for v in y], dtype=bool)
    return X[keep], y[keep].astype(str)


def _predict_many(clf, X, ks, y_train):
    """Majority votes among the k nearest for several k from one neighbour search."""
    _, idx = clf.kneighbors(X, n_neighbors=max(ks))
    classes, codes = np.unique(y_train, return_inverse=True)
    neigh = codes[idx]
    out = []
    for k in ks:
        counts = np.zeros((len(X), len(classes)), dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(len(X)), k), neigh[:, :k].ravel()), 1)
        # ties go to the class of the nearest neighbour among the tied ones
        best = counts.max(axis=1, keepdims=True)
        tied = counts == best
        first = np.array([next(c for c in row if tied[i, c]) for i, row in enumerate(neigh[:, :k])])
        out.append(classes[first])
    return out


def evaluate_points(points: np.ndarray, fs: FrameSet, labels: dict[str, dict[int, str]], *,
                    seed: int = 0) -> dict:
    """k-NN accuracy per label key for frame points (one row per entry of ``fs``)."""
    out = {}
    for key, by_id in labels.items():
        y = np.array([by_id.get(int(s)) for s in fs.sample_ids], dtype=object)
        parts = {name: fs.split == name for name in ("train", "valid", "test")}
        try:
            out[key] = knn_accuracy(points[parts["train"]], y[parts["train"]],
                                    points[parts["valid"]], y[parts["valid"]],
                                    points[parts["test"]], y[parts["test"]], seed=seed)
        except ParameterError as exc:
            out[key] = {"error": str(exc)}
    return out


def model_frame_points(atlas, model_id: int, fs: FrameSet) -> np.ndarray:
    """The model's embedding of each chosen frame (from the stored trajectories)."""
    out = np.zeros((len(fs.sample_ids), 0), np.float32)
    rows = []
    cache_id, traj = None, None
    for sid, f in zip(fs.sample_ids, fs.frames):
        if sid != cache_id:
            traj, cache_id = atlas.trajectory(model_id, int(sid)), sid
        rows.append(traj[f])
    return np.stack(rows) if rows else out
