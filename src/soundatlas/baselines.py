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
"""

from __future__ import annotations

import numpy as np

from soundatlas.errors import ParameterError

__all__ = ["BASELINES", "input_windows", "baseline_points"]

BASELINES = ("pca", "pca-lda", "umap", "input")


def input_windows(atlas, fs, *, n_frames: int = 10, noise=(0.1, 0.01), seed: int = 0,
                  chunk: int = 4096) -> np.ndarray:
    """The noised input window of every frame in ``fs``, flattened: (n, n_frames * n_bins)."""
    from soundatlas.sampling import TrainingData, add_noise, windows

    ids, first = np.unique(fs.sample_ids, return_inverse=True)
    data = TrainingData.from_atlas(atlas, ids.tolist())
    rng = np.random.default_rng(seed)
    out = np.empty((len(fs.sample_ids), n_frames * data.n_bins), np.float32)
    for start in range(0, len(out), chunk):
        sl = slice(start, start + chunk)
        w = windows(data, first[sl], fs.frames[sl], n_frames=n_frames)
        if noise is not None:
            w = add_noise(w, rng, mean=noise[0], std=noise[1], compression=data.compression)
        out[sl] = w.reshape(len(w), -1)
    return out


def baseline_points(name: str, X: np.ndarray, train: np.ndarray, *, lda_labels=None,
                    dims: int = 3, seed: int = 0) -> np.ndarray:
    """Map the windows ``X`` with baseline ``name`` fitted on the rows where ``train`` is true.

    ``lda_labels``: one label per row (None where unknown), used by ``pca-lda`` only.
    """
    train = np.asarray(train, dtype=bool)
    if train.sum() <= dims:
        raise ParameterError(f"baseline {name!r} needs more than {dims} training frames")
    if name == "input":
        return X
    from sklearn.decomposition import PCA

    if name == "pca":
        return PCA(n_components=dims, random_state=seed).fit(X[train]).transform(X).astype(np.float32)
    if name == "pca-lda":
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        if lda_labels is None:
            raise ParameterError("baseline 'pca-lda' needs labels for its LDA")
        y = np.asarray(lda_labels, dtype=object)
        fit = train & np.array([v is not None for v in y])
        n_classes = len(set(y[fit]))
        if n_classes <= dims:
            raise ParameterError(
                f"baseline 'pca-lda' needs more than {dims} classes to reach {dims}-D "
                f"(the training frames have {n_classes})"
            )
        n_pca = min(256, int(fit.sum()) - 1, X.shape[1])
        pca = PCA(n_components=n_pca, whiten=True, random_state=seed).fit(X[fit])
        lda = LinearDiscriminantAnalysis(n_components=dims).fit(pca.transform(X[fit]),
                                                                y[fit].astype(str))
        return lda.transform(pca.transform(X)).astype(np.float32)
    if name == "umap":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # umap/numba chatter about threads and seeds
            import umap

            pca = PCA(n_components=min(64, int(train.sum()) - 1, X.shape[1]),
                      random_state=seed).fit(X[train])
            reducer = umap.UMAP(n_components=dims, random_state=seed, n_jobs=1)
            reducer.fit(pca.transform(X[train]))
            out = np.empty((len(X), dims), np.float32)
            out[train] = reducer.embedding_
            if (~train).any():
                out[~train] = reducer.transform(pca.transform(X[~train]))
        return out
    raise ParameterError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
