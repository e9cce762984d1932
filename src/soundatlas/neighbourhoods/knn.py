"""Neighbourhoods without labels by nearness: input-space neighbours (``input-knn``) and
neighbours in a teacher network's hidden layer (``teacher-knn``)."""

from __future__ import annotations

import numpy as np

from soundatlas.errors import ParameterError
from soundatlas.frames import DEFAULT_NOISE, TrainingData, add_noise, draw_centres, windows
from soundatlas.neighbourhoods.base import Neighbourhood, Triples, _is_int, register


@register
class InputKNN(Neighbourhood):
    """No labels: positives are input-space nearest neighbours, negatives far-away windows.

    ``fit`` draws up to ``n_candidates`` distinct candidate windows (every sample in turn, its
    centre by energy; seeded by ``seed``), represents each by its flattened log-CQT window
    (``window`` x n_bins) reduced by PCA to ``n_components``, and finds every candidate's
    neighbours once (exact k-NN).
    ``draw``: anchor = a uniform candidate; positive = one of its ``k`` nearest candidates;
    negative = a uniform candidate not among its ``far`` nearest. With ``exclude_same_sample``
    the anchor's own sample's windows are neither (they do not count in the ``k`` or ``far``
    nearest either), so the map cannot score by recognising "the same file".
    """

    name = "input-knn"
    seed_param = "seed"
    _PCA_FIT_WINDOWS = 8192  # PCA is fitted on at most this many candidates
    _CHUNK = 4096

    def __init__(self, k: int = 10, n_candidates: int = 50_000, n_components: int = 32,
                 far: int = 200, exclude_same_sample: bool = True, window: int = 10,
                 seed: int = 0):
        for pname, value, low in (("k", k, 1), ("n_candidates", n_candidates, 2),
                                  ("n_components", n_components, 1), ("far", far, 1),
                                  ("window", window, 1)):
            if not _is_int(value) or value < low:
                raise ParameterError(f"{pname}={value!r} must be an integer >= {low}")
        if far < k:
            raise ParameterError(f"far={far} must be at least k={k} (positives lie within the k "
                                 "nearest, negatives outside the far nearest)")
        self.k = int(k)
        self.n_candidates = int(n_candidates)
        self.n_components = int(n_components)
        self.far = int(far)
        self.exclude_same_sample = bool(exclude_same_sample)
        self.window = int(window)
        self.seed = int(seed)

    @classmethod
    def from_model_config(cls, params: dict) -> "InputKNN":
        # model configs written before the window length had its own name call it n_frames
        params = dict(params)
        if "n_frames" in params and "window" not in params:
            params["window"] = params.pop("n_frames")
        return super().from_model_config(params)

    # -- fit -----------------------------------------------------------------------------------

    def fit(self, data: TrainingData) -> "InputKNN":
        rng = np.random.default_rng(self.seed)
        eligible = np.flatnonzero(data.lengths > 0)
        if len(eligible) < 2:
            raise ParameterError(
                f"input-knn needs at least 2 samples with frames, got {len(eligible)}"
            )
        s = np.resize(rng.permutation(eligible), self.n_candidates)  # every sample in turn
        c = draw_centres(data, s, rng)
        _, first = np.unique(s * (int(data.lengths.max()) + 1) + c, return_index=True)
        first.sort()
        s, c = s[first], c[first]
        n = len(s)
        per_sample = np.bincount(s, minlength=data.n_samples)
        same_max = int(per_sample.max()) if self.exclude_same_sample else 1
        # a small library has too few windows for ``far``: the negatives then lie outside its
        # nearest half (recorded as the summary's ``far``), as long as that holds k positives;
        # where there are enough, ``far`` stands as it always did
        if n - same_max >= self.far + 1:
            self.far_ = self.far
        else:
            self.far_ = (n - same_max - 1) // 2
            if self.far_ < self.k:
                raise ParameterError(
                    f"{self.name} has {n} distinct candidate windows, {n - same_max} of them "
                    f"outside the best-covered sample: too few for its k={self.k} positives and "
                    "negatives beyond them; give it more sounds (or longer ones)")

        z = self._fit_pca(data, s, c, rng)
        if not np.any(z != z[0]):
            raise ParameterError("input-knn: every candidate window is the same (silence?); "
                                 "there are no near and far windows to tell apart")
        positives, far_radius = self._neighbours(z, s, n_query=self.far_ + same_max)
        self.n_samples_ = data.n_samples
        self.n_excluded_ = data.n_samples - len(eligible)  # samples without frames
        self.cand_sample_ = s
        self.cand_centre_ = c
        self.embedding_ = z
        self.positives_ = positives
        self.far_radius_ = far_radius
        self.n_candidates_ = n
        return self

    def _fit_pca(self, data, s, c, rng) -> np.ndarray:
        """Fit PCA on a subset of the candidate windows; return every candidate's coordinates."""
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        n = len(s)
        sub = np.sort(rng.choice(n, size=min(n, self._PCA_FIT_WINDOWS), replace=False))
        x = self._represent(windows(data, s[sub], c[sub], window=self._window_frames))
        n_comp = min(self.n_components, x.shape[0], x.shape[1])
        pca = PCA(n_components=n_comp, svd_solver="randomized",
                  random_state=int(rng.integers(2**31 - 1)))
        # small problems gain nothing from BLAS threads and lose a lot on a busy machine
        with threadpool_limits(1 if x.size < 2**23 else None, user_api="blas"), \
                np.errstate(invalid="ignore", divide="ignore"):  # all-silent input: caught below
            pca.fit(x)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        self.n_components_ = n_comp
        z = np.empty((n, n_comp), dtype=np.float64)
        for lo in range(0, n, self._CHUNK):
            w = windows(data, s[lo : lo + self._CHUNK], c[lo : lo + self._CHUNK],
                        window=self._window_frames)
            z[lo : lo + self._CHUNK] = self.transform(self._represent(w))
        return z

    @property
    def _window_frames(self) -> int:
        return self.window

    def _represent(self, w: np.ndarray) -> np.ndarray:
        """What is compared, before PCA: here the flattened log-CQT window."""
        return np.asarray(w, dtype=np.float32).reshape(len(w), -1)

    def _neighbours(self, z: np.ndarray, s: np.ndarray, *, n_query: int):
        """For every candidate: its k nearest admissible candidates, and the distance to its
        far-th nearest admissible one (admissible: not itself, and not of its own sample when
        ``exclude_same_sample``). Exact brute force (scikit-learn's chunked, multi-threaded
        k-NN): in 32 dimensions it is ~2x faster than a k-d tree."""
        from sklearn.neighbors import NearestNeighbors

        n = len(z)
        knn = NearestNeighbors(n_neighbors=n_query, algorithm="brute").fit(z)
        positives = np.empty((n, self.k), dtype=np.int64)
        far_radius = np.empty(n, dtype=np.float64)
        for lo in range(0, n, self._CHUNK):
            rows = np.arange(lo, min(lo + self._CHUNK, n))
            idx = knn.kneighbors(z[rows], return_distance=False)
            ok = idx != rows[:, None]
            if self.exclude_same_sample:
                ok &= s[idx] != s[rows][:, None]
            order = np.argsort(~ok, axis=1, kind="stable")[:, : self.far_]
            near = np.take_along_axis(idx, order, axis=1)  # the `far` nearest admissible
            positives[rows] = near[:, : self.k]
            far_radius[rows] = _dist(z[rows], z[near[:, -1]])
        return positives, far_radius

    def transform(self, x: np.ndarray) -> np.ndarray:
        """PCA coordinates (n, n_components_) of represented windows (:meth:`_represent`)."""
        x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        return ((x - self.mean_) @ self.components_.T).astype(np.float64)

    def summary(self) -> dict:
        return {"n_candidates": self.n_candidates_, "n_components": self.n_components_,
                "n_samples_used": int(len(np.unique(self.cand_sample_))),
                "n_excluded": self.n_excluded_, "far": self.far_}

    # -- draw ----------------------------------------------------------------------------------

    def draw(self, rng: np.random.Generator, n: int, data: TrainingData) -> Triples:
        self._check_draw(n, data)
        z, s = self.embedding_, self.cand_sample_
        a = rng.integers(0, self.n_candidates_, size=n)
        p = self.positives_[a, rng.integers(0, self.k, size=n)]
        q = rng.integers(0, self.n_candidates_, size=n)
        bad = self._too_near(a, q)
        rounds = 0
        while bad.any():  # rejection: about (far + same-sample) / n_candidates_ are refused
            rounds += 1
            if rounds > 10_000:  # only when (nearly) every window is identical, e.g. silence
                raise ParameterError("input-knn finds no far negatives: the candidate windows "
                                     "are (nearly) all identical")
            q[bad] = rng.integers(0, self.n_candidates_, size=int(bad.sum()))
            bad[bad] = self._too_near(a[bad], q[bad])
        c = self.cand_centre_
        return Triples(s[a], c[a], s[p], c[p], s[q], c[q])

    def _too_near(self, a, q):
        bad = _dist(self.embedding_[a], self.embedding_[q]) <= self.far_radius_[a]
        if self.exclude_same_sample:
            bad |= self.cand_sample_[a] == self.cand_sample_[q]
        return bad


def _dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance, computed the same way at fit and draw time."""
    d = x - y
    return np.sqrt(np.einsum("ij,ij->i", d, d))


@register
class TeacherKNN(InputKNN):
    """No labels: like ``input-knn``, but windows are compared in the hidden layer (the 256 tanh
    units before the output) of the network the run starts from, its *teacher* (``init_from``:
    ``adapt``'s base model), not in the input space.

    Fine-tuning on input-space neighbours alone pulls a map towards what the input space orders
    well (pitch) and away from what its base learned (timbre). The base's hidden layer holds
    more of that than its three output coordinates (the similarity space measures better than
    the map on unseen banks), so its neighbours keep the base's structure while the map adapts.
    Windows are as long as the teacher's (``window`` is not used); the other parameters are
    input-knn's.
    """

    name = "teacher-knn"
    _BATCH = 2048
    _layer = "hidden"  # what is compared: the hidden layer; teacher-map's is "map"

    def set_teacher(self, model, *, noise=DEFAULT_NOISE) -> None:
        if model is not None and not hasattr(model, "l3"):
            raise ParameterError(f"{self.name} needs a network with a hidden layer (l3); "
                                 f"{type(model).__name__} has none")
        self.teacher_ = model
        self.teacher_noise_ = (float(noise[0]), float(noise[1]))

    def fit(self, data: TrainingData) -> "TeacherKNN":
        if getattr(self, "teacher_", None) is None:
            raise ParameterError(f"{self.name} keeps the neighbours of the model a run starts "
                                 "from: give one (train --init-from MODEL, or adapt)")
        self.compression_ = data.compression  # for the noise the teacher reads windows with
        return super().fit(data)

    @property
    def _window_frames(self) -> int:
        return int(self.teacher_.window)

    def _represent(self, w: np.ndarray) -> np.ndarray:
        """The teacher's hidden layer (``_layer = "hidden"``) or its map ("map") per window."""
        import torch

        model, out, hidden = self.teacher_, [], []
        # as embed gives windows to the network: with its input noise (mean 0.1 on the linear
        # magnitudes sets a floor the network was trained on; without it the teacher's
        # neighbours are barely better than chance), drawn from the neighbourhood's seed
        mean, std = self.teacher_noise_
        heights = getattr(model, "pitch_axis", False)  # read from the frames before the noise
        clean = np.asarray(w, np.float32)[:, model.window // 2] if heights else None
        w = add_noise(w, np.random.default_rng(self.seed), mean=mean, std=std,
                      compression=self.compression_)
        handle = None
        if self._layer == "hidden":
            handle = model.l3.register_forward_hook(lambda _m, _i, o: hidden.append(torch.tanh(o)))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for lo in range(0, len(w), self._BATCH):
                    z = model(torch.as_tensor(np.asarray(w[lo : lo + self._BATCH], np.float32)),
                              height_frames=None if clean is None
                              else torch.from_numpy(clean[lo : lo + self._BATCH]))
                    out.append((hidden.pop() if handle is not None else z).numpy())
        finally:
            if handle is not None:
                handle.remove()
            model.train(was_training)
        return np.concatenate(out).astype(np.float32)


@register
class TeacherMap(TeacherKNN):
    """No labels: like ``teacher-knn``, but windows are compared on the teacher's map (its output
    coordinates), so an adaptation keeps the neighbours its base shows the user and learns from
    the other parts of its mixture (augment-pair: robustness to the user's recording chain).
    """

    name = "teacher-map"
    _layer = "map"
