"""Baselines a learned map has to beat, on the same frames and split as the model.

Every baseline sees what the network sees: the 10-frame log-CQT window centred on each evaluated
frame, zero-padded at the edges, with the reference input noise (seeded, so a run is
repeatable). Each is fitted on the training files' windows only and then maps every window:

- ``pca``: PCA to 3-D.
- ``pca-lda``: PCA to 256 whitened dimensions, then linear discriminant analysis to 3-D on the
  instrument label (the thesis baseline).
- ``umap``: UMAP to 3-D (umap-learn), on a PCA-64 reduction of the windows (UMAP's
  neighbour search on the 1,920 raw dimensions is ~10x slower for the same neighbours).
- ``input``: the windows themselves (1,920-D): what k-NN can do with no learning at all.

A baseline is a :class:`Baseline` subclass registered in :data:`BASELINES` with
:func:`register_baseline`; ``soundatlas evaluate --baselines`` and ``soundatlas report`` offer
every registered name::

    @register_baseline
    class Random(Baseline):
        name = "random"

        def fit(self, X, y=None):
            self.projection_ = np.random.default_rng(self.seed).normal(size=(X.shape[1], self.dims))
            return self

        def transform(self, X):
            return (X @ self.projection_).astype(np.float32)
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import ClassVar

import numpy as np

from soundatlas.errors import ParameterError

__all__ = ["Baseline", "BASELINES", "register_baseline", "make_baseline", "input_windows",
           "baseline_points", "PCA3", "PCALDA", "UMAP3", "InputSpace"]


class Baseline:
    """A map of input windows to points, fitted on the training frames' windows.

    Subclasses set ``name`` (the registry and command-line name) and implement :meth:`fit` and
    :meth:`transform`; :meth:`points` is what the evaluation calls.

    Parameters
    ----------
    dims : int, default 3
        The dimension of the points (the learned maps are 3-D).
    seed : int, default 0
        Seed of every random choice the fit makes.

    Attributes
    ----------
    name : str
        The registry name (``BASELINES[name]`` is the class).
    uses_labels : bool
        Whether :meth:`fit` needs one label per training window (``y``).
    """

    name: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = False

    def __init__(self, *, dims: int = 3, seed: int = 0):
        self.dims, self.seed = dims, seed

    @property
    def params(self) -> dict:
        """The constructor arguments: ``{'dims': ..., 'seed': ...}``."""
        return {"dims": self.dims, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "Baseline":
        """Learn the map from the training windows.

        Parameters
        ----------
        X : ndarray of shape (n_train, n_features)
            The training frames' flattened input windows.
        y : ndarray of shape (n_train,), optional
            One label per window (None where unknown); given to baselines with ``uses_labels``.

        Returns
        -------
        Baseline
            ``self``, fitted.
        """
        raise NotImplementedError

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The points of windows ``X`` (n, n_features) under the fitted map: (n, dims)."""
        raise NotImplementedError

    def points(self, X: np.ndarray, train: np.ndarray, labels=None) -> np.ndarray:
        """Fit on the rows of ``X`` where ``train`` is true, then map every row.

        Parameters
        ----------
        X : ndarray of shape (n, n_features)
            Every evaluated frame's input window.
        train : ndarray of bool, shape (n,)
            The training frames.
        labels : sequence, optional
            One label per row (None where unknown), for baselines with ``uses_labels``.

        Returns
        -------
        ndarray of shape (n, dims)
            One point per row of ``X``.

        Raises
        ------
        ParameterError
            When there are too few training frames, or labels are needed and missing.
        """
        self.fit_rows(X, train, labels)
        return self.transform(X)

    def fit_rows(self, X: np.ndarray, train: np.ndarray, labels=None) -> np.ndarray:
        """Fit on the rows of ``X`` where ``train`` is true; returns ``train`` as a bool array.

        Raises
        ------
        ParameterError
            When there are no more than ``dims`` training rows.
        """
        train = np.asarray(train, dtype=bool)
        if train.sum() <= self.dims:
            raise ParameterError(f"baseline {self.name!r} needs more than {self.dims} "
                                 "training frames")
        y = None if labels is None or not self.uses_labels else \
            np.asarray(labels, dtype=object)[train]
        self.fit(X[train], y)
        return train


#: name -> Baseline subclass, in the order ``--baselines all`` scores them.
BASELINES: dict[str, type[Baseline]] = {}


def register_baseline(cls: type[Baseline]) -> type[Baseline]:
    """Class decorator: add ``cls`` to :data:`BASELINES` under ``cls.name``.

    Raises
    ------
    ParameterError
        When ``cls`` has no name, or another class holds that name.
    """
    if not cls.name:
        raise ParameterError(f"baseline class {cls.__name__} has no name")
    if BASELINES.get(cls.name, cls) is not cls:
        raise ParameterError(f"baseline {cls.name!r} is registered already "
                             f"({BASELINES[cls.name].__name__})")
    BASELINES[cls.name] = cls
    return cls


def make_baseline(name: str, **params) -> Baseline:
    """The registered baseline ``name``, constructed with ``params`` (``dims``, ``seed``).

    Raises
    ------
    ParameterError
        When no baseline has that name.
    """
    if name not in BASELINES:
        raise ParameterError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    return BASELINES[name](**params)


@register_baseline
class PCA3(Baseline):
    """``pca``: PCA to ``dims`` dimensions."""

    name = "pca"

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        self.pca_ = PCA(n_components=self.dims, random_state=self.seed).fit(X)
        return self

    def transform(self, X):
        return self.pca_.transform(X).astype(np.float32)


@register_baseline
class PCALDA(Baseline):
    """``pca-lda``: whitened PCA (up to 256 dimensions), then LDA to ``dims`` on the labels."""

    name = "pca-lda"
    uses_labels = True

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        if y is None:
            raise ParameterError("baseline 'pca-lda' needs labels for its LDA")
        y = np.asarray(y, dtype=object)
        known = np.array([v is not None for v in y], dtype=bool)
        X, y = X[known], y[known]
        n_classes = len(set(y))
        if n_classes <= self.dims:
            raise ParameterError(
                f"baseline 'pca-lda' needs more than {self.dims} classes to reach {self.dims}-D "
                f"(the training frames have {n_classes})"
            )
        n_pca = min(256, len(X) - 1, X.shape[1])
        self.pca_ = PCA(n_components=n_pca, whiten=True, random_state=self.seed).fit(X)
        self.lda_ = LinearDiscriminantAnalysis(n_components=self.dims).fit(
            self.pca_.transform(X), y.astype(str))
        return self

    def transform(self, X):
        return self.lda_.transform(self.pca_.transform(X)).astype(np.float32)


@register_baseline
class UMAP3(Baseline):
    """``umap``: UMAP to ``dims`` dimensions (umap-learn) on a PCA-64 reduction.

    The training rows keep the points UMAP's fit gave them; the other rows are placed by
    ``transform``.
    """

    name = "umap"

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        with _quiet():
            import umap

            self.pca_ = PCA(n_components=min(64, len(X) - 1, X.shape[1]),
                            random_state=self.seed).fit(X)
            self.umap_ = umap.UMAP(n_components=self.dims, random_state=self.seed, n_jobs=1)
            self.umap_.fit(self.pca_.transform(X))
        return self

    def transform(self, X):
        with _quiet():
            return self.umap_.transform(self.pca_.transform(X)).astype(np.float32)

    def points(self, X, train, labels=None):
        train = self.fit_rows(X, train, labels)
        out = np.empty((len(X), self.dims), np.float32)
        out[train] = self.umap_.embedding_
        if (~train).any():
            out[~train] = self.transform(X[~train])
        return out


@register_baseline
class InputSpace(Baseline):
    """``input``: the windows themselves, unchanged (k-NN with no learning)."""

    name = "input"

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


@contextmanager
def _quiet():
    """Silence umap's and numba's warnings about threads and seeds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def baseline_points(name: str, X: np.ndarray, train: np.ndarray, *, lda_labels=None,
                    dims: int = 3, seed: int = 0) -> np.ndarray:
    """Map the windows ``X`` with baseline ``name`` fitted on the rows where ``train`` is true.

    Parameters
    ----------
    name : str
        A name in :data:`BASELINES`.
    X : ndarray of shape (n, n_features)
        The input windows (:func:`input_windows`).
    train : ndarray of bool, shape (n,)
        The rows to fit on.
    lda_labels : sequence, optional
        One label per row (None where unknown), for baselines that fit on labels (``pca-lda``).
    dims, seed : int
        The baseline's parameters.

    Returns
    -------
    ndarray of shape (n, dims)
        The baseline's point of every row.
    """
    return make_baseline(name, dims=dims, seed=seed).points(X, train, lda_labels)


def input_windows(atlas, fs, *, window: int = 10, noise=(0.1, 0.01), seed: int = 0,
                  chunk: int = 4096) -> np.ndarray:
    """The noised input window of every chosen frame, flattened.

    Parameters
    ----------
    atlas : Atlas
        The atlas holding the frames' features.
    fs : FrameSet
        The chosen frames (``soundatlas.evaluate.frame_set``).
    window : int, default 10
        The window length in frames.
    noise : (mean, std) or None
        The reference input noise, as the network's training adds it; None for none.
    seed : int
        Seed of the noise.
    chunk : int
        Windows built at a time.

    Returns
    -------
    ndarray of shape (len(fs.sample_ids), window * n_bins), float32
    """
    from soundatlas.sampling import TrainingData, add_noise, windows

    ids, first = np.unique(fs.sample_ids, return_inverse=True)
    data = TrainingData.from_atlas(atlas, ids.tolist())
    rng = np.random.default_rng(seed)
    out = np.empty((len(fs.sample_ids), window * data.n_bins), np.float32)
    for start in range(0, len(out), chunk):
        sl = slice(start, start + chunk)
        w = windows(data, first[sl], fs.frames[sl], window=window)
        if noise is not None:
            w = add_noise(w, rng, mean=noise[0], std=noise[1], compression=data.compression)
        out[sl] = w.reshape(len(w), -1)
    return out
