"""The similarity space: where "nearest sounds" and query by example search, beside the 3-D map.

Three display coordinates cannot hold everything that makes two sounds alike. Measured on
rendered libraries (benchmarks/RESULTS.md, "Similar sounds"), per-sample precision at 10 of the
network's hidden layer beats the 3-D map on every label, and the input space (the mean log-CQT)
on instrument and drum class; analogies a - b + c find the right instrument and pitch more often
there too. The map stays for display and paths.

A sample's **similarity vector** has two blocks, side by side:

- **timbre**: the energy-weighted mean over its frames (weights as for its point on the map:
  ``embed.point_of``) of the hidden layer L3's activations, tanh(l3(...)), the 256 numbers the
  last layer maps to the 3-D point, times the block's weight ``HIDDEN_WEIGHT`` (0.7). The
  network is taught that pitches two semitones apart are alike (instrument-pitch-2), and this
  block keeps that blur; its weight sets how much of a distance is timbre and how much pitch.
- **pitch profile** (:func:`pitch_block`): the energy-weighted mean log-CQT frame, less its
  running mean over one octave (the spectral envelope goes, the harmonic peaks stay), averaged
  to one number per semitone, scaled to unit length and squashed by ``tanh(20 x)``: which
  semitones hold the sound's partials, whatever its loudness and colour. 96 numbers for the
  default CQT.

Side by side they find the same instrument, family and drum more often than the hidden layer
alone, and the same pitch nearly as often as the profile alone (docs/RESULTS.md, "Nearest sounds
with a pitch profile" and the sections after it). Both blocks are stored as int8,
``round(127 v)`` (both lie in [-1, 1]): 352 bytes per sample for the default CQT. Distances are
Euclidean between the decoded vectors ``codes / 127``. Nothing is fitted to the library: a
sample's vector depends on its file and the model only, so an upload is encoded exactly as the
atlas encodes a file, in the space the atlas recorded (:func:`hidden_weight` of it). Older
atlases hold an older space: the timbre block alone (``hidden-mean``), or both blocks at weight 1
(version 2 of ``hidden-mean+pitch``); ``soundatlas embed`` (or ``map`` again) replaces their
vectors, and :func:`is_current` says whether it is needed.

:class:`VectorIndex` answers exact k-nearest-neighbour queries over the decoded vectors. Small
sets (up to ``brute_below`` vectors) are searched by one float32 matrix product; larger ones
through a lower bound: a PCA of the vectors (``project_dims`` components, fitted on a seeded
sample) gives each vector's coordinates in the subspace and its distance to it, from which
``|P(x - q)|^2 + (r_x - r_q)^2 <= |x - q|^2``. The rows of smallest bound are measured exactly
(float64), then every other row whose bound does not exceed the k-th distance found, so answers
equal a brute-force search's (ties in id order). Where the bound prunes little (vectors with no
low-dimensional structure, as uniform random codes), one float32 pass over all rows bounds instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from soundatlas.errors import ParameterError

if TYPE_CHECKING:
    from soundatlas.atlas.records import ModelRecord

__all__ = ["SPACE_NAME", "HIDDEN_WEIGHT", "space_for", "semitone_peaks", "pitch_block", "has_pitch",
           "hidden_weight", "is_current", "same_space", "timbre", "timbre_space", "describe",
           "encode", "decode", "VectorIndex", "ApproximateIndex", "vector_index",
           "missing_message", "embed_command"]

SPACE_NAME = "hidden-mean+pitch"
HIDDEN_ONLY = "hidden-mean"  # the space before the pitch profile, which older atlases hold
SCALE = 127  # int8 code = round(SCALE * value); both blocks lie in [-1, 1]
#: the pitch profile's squash, tanh(PITCH_GAIN x) of the unit-length profile: chosen on the
#: tuning set among 2, 5, 10, 20 and 40 (docs/RESULTS.md, "Nearest sounds with a pitch profile")
PITCH_GAIN = 20.0
#: the timbre block's weight beside the pitch profile (its codes are round(127 w x activation)):
#: chosen on the tuning sets among 1, 0.7, 0.5, 0.35 and 0.25, the weight that keeps the most
#: instrument among those whose pitch reaches the input space's (docs/RESULTS.md, "Nearest
#: sounds against the input space pooled alike"); 1 is version 2 of the space
HIDDEN_WEIGHT = 0.7


def _semitone_pool(bins_per_octave: int) -> int:
    """CQT bins averaged into one number of the pitch profile: one semitone's worth where the
    bins divide the octave into semitones, else 1 (every bin kept)."""
    return bins_per_octave // 12 if bins_per_octave >= 12 and bins_per_octave % 12 == 0 else 1


def space_for(model, cqt=None, *, weight: float = HIDDEN_WEIGHT) -> dict | None:
    """The similarity space of ``model``'s vectors, as the atlas records it.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    cqt : CQTParams, optional
        The features' CQT, which sizes the pitch profile; without it, the timbre block alone
        (the space ``hidden-mean`` of atlases embedded before the pitch profile).
    weight : float, default HIDDEN_WEIGHT
        The timbre block's weight beside the pitch profile, in (0, 1]; 1 gives version 2 of the
        space, as atlases embedded before the weight recorded it.

    Returns
    -------
    dict or None
        name, dims, dtype and spec (what the vector is, its blocks, scale and distance); None
        for a network without a hidden layer ``l3``.
    """
    l3 = getattr(model, "l3", None)
    if l3 is None or not hasattr(l3, "out_features"):
        return None
    return _space(int(l3.out_features), cqt, weight)


def _space(hidden: int, cqt, weight: float) -> dict:
    """``space_for`` of a network whose hidden layer has ``hidden`` units."""
    if not 0 < weight <= 1:
        raise ParameterError(f"the timbre block's weight {weight:g} must lie in (0, 1]")
    spec = {"layer": "l3", "activation": "tanh", "pooling": "energy-weighted mean over frames",
            "scale": 1 / SCALE, "normalisation": "none (int8 code = round(127 x activation))",
            "distance": "euclidean", "version": 1}
    if cqt is None:
        return {"name": HIDDEN_ONLY, "dims": hidden, "dtype": "int8", "spec": spec}
    pool = _semitone_pool(cqt.bins_per_octave)
    n_pitch = cqt.n_bins // pool
    spec.update(version=2, blocks={"hidden": hidden, "pitch": n_pitch}, pitch={
        "frame": "energy-weighted mean log-CQT frame",
        "flatten": f"less its running mean over {cqt.bins_per_octave} bins (one octave)",
        "pool": f"mean of each {pool} bins", "normalisation": "unit length",
        "squash": f"tanh({PITCH_GAIN:g} x)"})
    if weight != 1:
        spec.update(version=3, weights={"hidden": float(weight), "pitch": 1.0})
    return {"name": SPACE_NAME, "dims": hidden + n_pitch, "dtype": "int8", "spec": spec}


def hidden_weight(space: dict | None) -> float:
    """The timbre block's weight in a space's vectors: what an upload's hidden layer is scaled
    by to be searched among them (1 for the spaces recorded before the weight, and for none)."""
    return float(((space or {}).get("spec") or {}).get("weights", {}).get("hidden", 1.0))


def is_current(space: dict, cqt) -> bool:
    """Whether a recorded space is the one ``soundatlas embed`` computes now for the atlas's
    CQT ``cqt`` (False: an older space, whose vectors ``embed`` replaces)."""
    hidden = space["spec"].get("blocks", {}).get("hidden", space["dims"])
    return same_space(space, _space(int(hidden), cqt, HIDDEN_WEIGHT))


def same_space(a: dict, b: dict) -> bool:
    """Whether two recorded spaces are one (name, size, type and definition, not when their
    vectors were stored): only then may their vectors be searched together."""
    return all(a.get(k) == b.get(k) for k in ("name", "dims", "dtype", "spec"))


def semitone_peaks(mean_frame: np.ndarray, bins_per_octave: int) -> np.ndarray:
    """The pitch profile before its length and squash: the frame less its running mean over
    one octave, averaged over each semitone's bins (float64, in log-CQT units)."""
    from scipy.ndimage import uniform_filter1d

    m = np.asarray(mean_frame, dtype=np.float64)
    flat = m - uniform_filter1d(m, size=max(1, int(bins_per_octave)), mode="nearest")
    pool = _semitone_pool(bins_per_octave)
    return flat[: len(flat) // pool * pool].reshape(-1, pool).mean(axis=1)


def pitch_block(mean_frame: np.ndarray, bins_per_octave: int) -> np.ndarray:
    """A sample's pitch profile (the second block of its similarity vector), before encoding.

    Parameters
    ----------
    mean_frame : ndarray, shape (n_bins,)
        The sample's energy-weighted mean log-CQT frame (``embed.point_of`` of its frames).
    bins_per_octave : int
        The CQT's bins per octave.

    Returns
    -------
    ndarray of float32, shape (n_bins // pool,)
        ``tanh(PITCH_GAIN p)``, ``p`` the frame less its running mean over one octave, averaged
        over each semitone's bins, at unit length (all 0 for a frame with no peaks: silence, or
        a flat spectrum).
    """
    p = semitone_peaks(mean_frame, bins_per_octave)
    norm = np.linalg.norm(p)
    if not np.isfinite(norm) or norm <= 1e-12:
        return np.zeros(len(p), np.float32)
    return np.tanh(PITCH_GAIN * p / norm).astype(np.float32)


def has_pitch(space: dict | None) -> bool:
    """Whether a space's vectors hold a pitch profile beside the hidden layer (``hidden-mean``,
    the space of atlases embedded before it, does not)."""
    return bool(space and space["spec"].get("blocks"))


def timbre(codes: np.ndarray, space: dict) -> np.ndarray:
    """The timbre block of similarity vectors (the hidden layer's units, without the pitch
    profile): what ``space="timbre"`` searches, for the same instrument at any pitch. A space
    without a pitch profile (``hidden-mean``) is all timbre.

    Parameters
    ----------
    codes : ndarray of shape (n, dims) or (dims,)
        Vectors of ``space``.
    space : dict
        Their space, as the atlas records it.

    Returns
    -------
    ndarray
        The leading ``spec["blocks"]["hidden"]`` numbers of each vector (contiguous).
    """
    hidden = space["spec"].get("blocks", {}).get("hidden", space["dims"])
    return np.ascontiguousarray(np.asarray(codes)[..., :hidden])


def timbre_space(space: dict) -> dict:
    """The record of :func:`timbre`'s vectors: ``space`` less its pitch profile."""
    if not has_pitch(space):
        return space
    spec = {k: v for k, v in space["spec"].items() if k not in ("blocks", "pitch")}
    return {**space, "name": HIDDEN_ONLY, "dims": space["spec"]["blocks"]["hidden"], "spec": spec}


def describe(space: dict) -> str:
    """One line for people: what the vectors are."""
    blocks = space["spec"].get("blocks")
    if blocks:
        return (f"{space['name']}: the hidden layer's {blocks['hidden']} units, "
                f"{space['spec'].get('pooling', 'pooled')}, at weight "
                f"{hidden_weight(space):g} beside a "
                f"{blocks['pitch']}-number pitch profile, {space['dtype']}")
    w = hidden_weight(space)  # the timbre block of a weighted space keeps its weight
    return (f"{space['name']}: the hidden layer's {space['dims']} units, "
            f"{space['spec'].get('pooling', 'pooled')}{f', at weight {w:g}' if w != 1 else ''}, "
            f"{space['dtype']}")


def encode(vectors: np.ndarray) -> np.ndarray:
    """int8 codes of activations.

    Parameters
    ----------
    vectors : array_like
        Activations in [-1, 1], of any shape.

    Returns
    -------
    ndarray of int8
        ``round(127 v)``, clipped to [-127, 127], of the same shape.
    """
    v = np.asarray(vectors, dtype=np.float64)
    return np.clip(np.rint(v * SCALE), -SCALE, SCALE).astype(np.int8)


def decode(codes: np.ndarray, space: dict | None = None) -> np.ndarray:
    """Vectors of int8 codes.

    Parameters
    ----------
    codes : array_like
        int8 codes.
    space : dict, optional
        The space whose ``spec["scale"]`` decodes them (default 1/127).

    Returns
    -------
    ndarray of float32
        ``codes * scale``.
    """
    scale = (space or {}).get("spec", {}).get("scale", 1 / SCALE)
    return np.asarray(codes, dtype=np.float32) * np.float32(scale)


def missing_message(atlas, model: ModelRecord, n_vectors: int) -> str:
    """Why a model's neighbours come from the map, and the command that adds the vectors.

    Parameters
    ----------
    atlas : Atlas
        The model's atlas.
    model : ModelRecord
        The model.
    n_vectors : int
        How many of its embedded samples have a vector.

    Returns
    -------
    str
    """
    have = (f"has similarity vectors for only {n_vectors} of its {model.n_embedded} samples"
            if n_vectors else "has no similarity vectors (embedded before they existed)")
    return (f"model {model.name!r} {have}; neighbours come from the 3-D map. "
            f"`{embed_command(atlas, model)}` adds them")


def embed_command(atlas, model: ModelRecord) -> str:
    """The command that computes (or brings up to date) a model's similarity vectors."""
    import shlex

    return (f"soundatlas embed --atlas {shlex.quote(str(atlas.path))} --model "
            f"{shlex.quote(model.name)}")


def _checked(ids, codes) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ids, codes) as arrays; ParameterError when they do not match, or the ids are not
    ascending and distinct."""
    ids = np.asarray(ids, dtype=np.int64)
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != len(ids):
        raise ParameterError(f"codes of shape {codes.shape} for {len(ids)} ids")
    if len(ids) > 1 and np.any(np.diff(ids) <= 0):
        raise ParameterError("ids must be ascending and distinct")
    return ids, codes


def _ranked(ids: np.ndarray, rows: np.ndarray, distance: np.ndarray, excluded: set[int],
            k: int) -> list[tuple[int, float]]:
    """The first ``k`` (sample id, distance) of ``rows`` not excluded, by distance, then row
    (= id) order."""
    out = []
    for j in np.lexsort((rows, distance)):
        sid = int(ids[rows[j]])
        if sid not in excluded:
            out.append((sid, float(distance[j])))
            if len(out) == k:
                break
    return out


def _present(ids: np.ndarray, wanted: set[int]) -> int:
    """How many of ``wanted`` are among the ascending ``ids`` (binary search, not a pass)."""
    if not wanted:
        return 0
    w = np.fromiter(wanted, dtype=np.int64, count=len(wanted))
    rows = np.minimum(np.searchsorted(ids, w), max(len(ids) - 1, 0))
    return int(np.count_nonzero(ids[rows] == w)) if len(ids) else 0


class VectorIndex:
    """Exact nearest neighbours among int8-coded vectors (Euclidean, on ``codes * scale``).

    Parameters
    ----------
    ids : ndarray of int64
        Sample ids, ascending.
    codes : ndarray of int8, shape (n, dims)
        Their vectors' codes.
    scale : float, default 1/127
        What a code is worth.
    brute_below : int, default 50000
        Up to this many vectors, one float32 product per query; above, the PCA lower bound of
        the module doc.
    project_dims : int, default 32
        Components of that PCA.
    seed : int, default 0
        Seeds the sample the PCA is fitted on.

    Raises
    ------
    ParameterError
        When ``codes`` and ``ids`` do not match, or ``ids`` are not ascending and distinct.
    """

    def __init__(self, ids: np.ndarray, codes: np.ndarray, *, scale: float = 1 / SCALE,
                 brute_below: int = 50_000, project_dims: int = 32, seed: int = 0):
        ids, codes = _checked(ids, codes)
        self.ids, self.codes, self.scale = ids, codes, float(scale)
        n, d = codes.shape
        self.dims = d
        self._block = max(1, (1 << 24) // max(d, 1))  # rows per float32 block: 64 MB
        self.projected = n > brute_below
        if not self.projected:
            self._x = self._decoded(0, n)
            self._sq = np.einsum("ij,ij->i", self._x, self._x)
            self._bound = float(self._sq.max()) if n else 0.0
            return
        p = min(project_dims, d)
        rng = np.random.default_rng(seed)
        fit = self._decoded_rows(np.sort(rng.choice(n, size=min(n, 20_000), replace=False)))
        self._mean = fit.mean(axis=0, dtype=np.float64).astype(np.float32)
        centred = (fit - self._mean).astype(np.float64)
        _, vecs = np.linalg.eigh(centred.T @ centred)
        self._basis = np.ascontiguousarray(vecs[:, ::-1][:, :p], dtype=np.float32)
        self._proj = np.empty((n, p), np.float32)
        self._res = np.empty(n, np.float32)
        bound = 0.0
        for i in range(0, n, self._block):
            x = self._decoded(i, min(n, i + self._block)) - self._mean
            pr = x @ self._basis
            total = np.einsum("ij,ij->i", x, x)
            self._proj[i:i + len(x)] = pr
            self._res[i:i + len(x)] = np.sqrt(np.maximum(total - np.einsum("ij,ij->i", pr, pr),
                                                         0))
            bound = max(bound, float(total.max()))
        self._psq = np.einsum("ij,ij->i", self._proj, self._proj)
        self._bound = bound

    @property
    def nbytes(self) -> int:
        """Memory the index holds besides its ids and codes."""
        if not self.projected:
            return self._x.nbytes + self._sq.nbytes
        return self._proj.nbytes + self._res.nbytes + self._psq.nbytes

    def __len__(self) -> int:
        return len(self.ids)

    def _decoded(self, start: int, stop: int) -> np.ndarray:
        return self.codes[start:stop].astype(np.float32) * np.float32(self.scale)

    def _decoded_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.codes[rows].astype(np.float32) * np.float32(self.scale)

    def vector(self, sample_id: int) -> np.ndarray | None:
        """A sample's vector (float64, exactly as distances decode it), or None without one."""
        row = int(np.searchsorted(self.ids, sample_id))
        if row < len(self.ids) and self.ids[row] == sample_id:
            return self.codes[row].astype(np.float64) * self.scale
        return None

    approximate = False  # every answer is exact

    def searches_all(self, vector) -> bool:
        """Always True: every query searches every vector."""
        return True

    def nearest(self, vector, k: int, *, exclude: Iterable[int] = (),
                exact: bool = True) -> list[tuple[int, float]]:
        """The ``k`` samples nearest ``vector``.

        Parameters
        ----------
        vector : array_like, shape (dims,)
            The query, decoded (float).
        k : int
            How many neighbours.
        exclude : iterable of int, default ()
            Sample ids never answered.
        exact : bool, default True
            Accepted for :class:`ApproximateIndex`'s sake: this search is always exact.

        Returns
        -------
        list of (int, float)
            (sample id, Euclidean distance), nearest first, ties in id order.

        Raises
        ------
        ParameterError
            When the query is not of the space's dimension.
        """
        q = np.asarray(vector, dtype=np.float64).ravel()
        if q.shape != (self.dims,):
            raise ParameterError(f"a query of {q.size} numbers for a {self.dims}-d space")
        n = len(self.ids)
        excluded = {int(i) for i in exclude}
        skip = _present(self.ids, excluded)
        want = min(n, k + skip)
        if want <= 0:
            return []
        # |error| of float32 squared distances, far above their rounding (squared norms <= ~256)
        slack = np.float32(1e-4 * (1.0 + self._bound + float(q @ q)))
        lower = self._lower_bounds(q) - slack
        m = min(n, max(4 * want, 64))
        rows = np.argpartition(lower, m - 1)[:m] if m < n else np.arange(n)
        exact = self._exact(rows, q)
        if m < n:
            # every row whose bound is not above the k-th distance so far may be nearer: measure
            # those (the k-th distance only falls as rows are added, so no other row can be)
            kth = np.partition(exact, want - 1)[want - 1]
            maybe = lower <= kth
            maybe[rows] = False
            if np.count_nonzero(maybe) > n // 8:  # a loose bound here: one float32 pass is tighter
                maybe = self._approx_all(q) - slack <= kth
                maybe[rows] = False
            more = np.flatnonzero(maybe)
            rows = np.concatenate([rows, more])
            exact = np.concatenate([exact, self._exact(more, q)])
        return _ranked(self.ids, rows, np.sqrt(exact), excluded, k)

    def _lower_bounds(self, q: np.ndarray) -> np.ndarray:
        """A lower bound of every row's squared distance to ``q`` (float32, up to rounding)."""
        if not self.projected:
            q32 = q.astype(np.float32)
            return self._sq - 2 * (self._x @ q32) + np.float32(q @ q)
        c = (q - self._mean).astype(np.float32)
        pq = c @ self._basis
        rq = np.float32(np.sqrt(max(float(c @ c) - float(pq @ pq), 0.0)))
        return self._psq - 2 * (self._proj @ pq) + np.float32(pq @ pq) + (self._res - rq) ** 2

    def _approx_all(self, q: np.ndarray) -> np.ndarray:
        """Every row's squared distance to ``q`` in float32 (blocks of ``_block`` rows)."""
        if not self.projected:
            return self._lower_bounds(q)
        q32 = q.astype(np.float32)
        out = np.empty(len(self.ids), np.float32)
        for i in range(0, len(out), self._block):
            x = self._decoded(i, i + self._block)
            out[i:i + len(x)] = np.einsum("ij,ij->i", x, x) - 2 * (x @ q32)
        return out + np.float32(q @ q)

    def _exact(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Squared distances of ``rows`` to ``q`` in float64 (blocks of 16384 rows)."""
        out = np.empty(len(rows), np.float64)
        for i in range(0, len(rows), 16384):
            x = self.codes[rows[i:i + 16384]].astype(np.float64) * self.scale
            out[i:i + len(x)] = ((x - q) ** 2).sum(axis=1)
        return out


class ApproximateIndex:
    """Nearest neighbours among int8-coded vectors through an inverted file (FAISS), with an
    exact search on demand.

    The vectors are clustered (k-means, ``nlist`` cells, on a seeded sample); a query measures
    the vectors of the ``nprobe`` cells whose centres are nearest it, so a neighbour in a cell
    not probed is missed. The cells hold the int8 codes themselves (FAISS's signed 8-bit
    "direct" scalar quantiser: a byte a number, 352 a vector of the shipped space, and a scan
    twice as fast as in fp16, which was the largest part of a nearest-sounds request at 1M
    samples), so distances are not approximated, only the candidates are; the candidates are
    measured again in float64 and ordered as :class:`VectorIndex` orders them. FAISS's 8-bit
    kernels turn the *query* into a code too, which is exact for a query that is one (a
    sample's own vector, an uploaded file's int8 vector) and wrong for any other (an analogy's
    a - b + c beyond the codes' range, or a vector between codes): such a query is searched
    exactly (:meth:`searches_all` says which).

    ``nprobe`` is chosen at build time: starting at 8 cells, doubled until the recall at 10
    (the share of the exact 10 nearest found, ties counted by distance) of ``calibration``
    seeded queries (samples of the set, each excluding itself, as a neighbours request does)
    reaches ``target_recall``. The measured recall is :attr:`recall`.

    Parameters
    ----------
    ids : ndarray of int64
        Sample ids, ascending.
    codes : ndarray of int8, shape (n, dims)
        Their vectors' codes.
    scale : float, default 1/127
        What a code is worth.
    nlist : int, optional
        Cells (default: about the square root of n, between 16 and 4096).
    target_recall : float, default 0.95
        The recall at 10 that ``nprobe`` is raised to reach.
    calibration : int, default 64
        Queries measured to choose ``nprobe``.
    seed : int, default 0
        Seeds the k-means sample and the calibration queries.

    Raises
    ------
    ParameterError
        As :class:`VectorIndex`, or for a ``target_recall`` outside (0, 1].

    Notes
    -----
    Why FAISS: it is the field's library for this, and an exact search of 1M vectors of 256
    numbers cannot answer 20 concurrent clients within 100 ms on two cores (each query reads the
    whole set's projection; benchmarks/RESULTS.md, "Nearest sounds at a million samples").
    Searches may run from many threads at once; ``nprobe`` is fixed after the build.
    """

    approximate = True  # answers are exact only when asked (``exact=True``)

    def __init__(self, ids: np.ndarray, codes: np.ndarray, *, scale: float = 1 / SCALE,
                 nlist: int | None = None, target_recall: float = 0.95,
                 calibration: int = 64, seed: int = 0):
        import threading

        import faiss

        if not 0 < target_recall <= 1:
            raise ParameterError(f"target_recall {target_recall} must lie in (0, 1]")
        self._exact_index = None
        self._exact_lock = threading.Lock()
        self.ids, self.codes = _checked(ids, codes)
        self.scale = float(scale)
        n, d = self.codes.shape
        self.dims = d
        self.nlist = int(nlist or min(4096, max(16, round(np.sqrt(n)))))
        self.nlist = max(1, min(self.nlist, n))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, self.nlist, faiss.ScalarQuantizer.QT_8bit_direct_signed,
            faiss.METRIC_L2, False)  # the codes' values, not residuals to the cell's centre
        index.cp.seed = seed
        index.cp.niter = 10  # k-means iterations: cells need not be optimal, only reasonable
        index.cp.min_points_per_centroid = 1  # no warning for a small training sample
        rng = np.random.default_rng(seed)
        train = np.sort(rng.choice(n, size=min(n, 40 * self.nlist), replace=False))
        index.train(self.codes[train].astype(np.float32))
        for i in range(0, n, 65536):  # row numbers are FAISS's ids
            index.add(self.codes[i:i + 65536].astype(np.float32))
        self._faiss = index
        self._quantizer = quantizer  # the IVF index refers to it: keep it alive
        self.nprobe, self.recall = self._calibrate(target_recall, calibration, rng)
        index.nprobe = self.nprobe

    @property
    def nbytes(self) -> int:
        """Memory the index holds besides its ids and codes (FAISS's cells and centres)."""
        return len(self.ids) * (self.dims + 8) + self.nlist * self.dims * 4

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def exact_index(self) -> VectorIndex:
        """The exact :class:`VectorIndex` of the same vectors (built on first use)."""
        with self._exact_lock:
            if self._exact_index is None:
                self._exact_index = VectorIndex(self.ids, self.codes, scale=self.scale)
            return self._exact_index

    vector = VectorIndex.vector  # the same lookup over the same ids and codes

    def searches_all(self, vector) -> bool:
        """Whether :meth:`nearest` searches every vector for this query: one that is not a code
        (``codes x scale``, as a sample's own vector is), which FAISS's 8-bit kernel would
        round."""
        c = np.asarray(vector, dtype=np.float64).ravel() / self.scale
        return not (c.shape == (self.dims,) and np.all((c >= -128 - 1e-6) & (c <= 127 + 1e-6))
                    and np.all(np.abs(c - np.round(c)) <= 1e-6))

    def nearest(self, vector, k: int, *, exclude: Iterable[int] = (), exact: bool = False,
                fall_back: bool = True) -> list[tuple[int, float]] | None:
        """The ``k`` samples nearest ``vector`` among those of the probed cells, as
        :meth:`VectorIndex.nearest` answers (where the probed cells hold too few, the search
        is exact); ``exact=True``, or a query that is not a code (:meth:`searches_all`),
        searches every vector (:attr:`exact_index`). With ``fall_back=False``, None instead
        of any search of every vector (a caller that must not take that long)."""
        if exact or self.searches_all(vector):
            return self.exact_index.nearest(vector, k, exclude=exclude) if fall_back else None
        return self._search(vector, k, exclude, self.nprobe, fall_back=fall_back)

    def _search(self, vector, k: int, exclude: Iterable[int], nprobe: int, *,
                fall_back: bool = True):
        import faiss

        q = np.asarray(vector, dtype=np.float64).ravel()
        if q.shape != (self.dims,):
            raise ParameterError(f"a query of {q.size} numbers for a {self.dims}-d space")
        excluded = {int(i) for i in exclude}
        skip = _present(self.ids, excluded)
        want = min(len(self.ids), k + skip)
        if want <= 0:
            return []
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        # a code's integers exactly (FAISS's 8-bit kernel truncates x + 128 to a byte)
        _, found = self._faiss.search(np.rint(q / self.scale).astype(np.float32)[None], want,
                                      params=params)
        rows = found[0][found[0] >= 0]
        if len(rows) < want:  # the probed cells hold too few vectors
            return self.exact_index.nearest(q, k, exclude=excluded) if fall_back else None
        x = self.codes[rows].astype(np.float64) * self.scale
        return _ranked(self.ids, rows, np.sqrt(((x - q) ** 2).sum(axis=1)), excluded, k)

    def _calibrate(self, target: float, queries: int, rng) -> tuple[int, float]:
        """(nprobe, its recall at 10): the fewest cells, doubling from 8, reaching ``target``."""
        n = len(self.ids)
        k = min(10, n - 1)
        if k <= 0:
            return self.nlist, 1.0
        rows = rng.choice(n, size=min(n, queries), replace=False)
        truth = []
        for r in rows:
            q = self.codes[r].astype(np.float64) * self.scale
            found = self.exact_index.nearest(q, k, exclude=[int(self.ids[r])])
            truth.append((q, int(self.ids[r]), found[-1][1]))
        nprobe = min(8, self.nlist)
        while True:
            hits = 0
            for q, sid, kth in truth:
                got = self._search(q, k, [sid], nprobe)
                # a neighbour at the k-th exact distance or nearer is right (ties count)
                hits += sum(1 for _, dist in got if dist <= kth * (1 + 1e-9) + 1e-12)
            recall = hits / (k * len(truth))
            if recall >= target or nprobe >= self.nlist:
                return nprobe, recall
            nprobe = min(self.nlist, 2 * nprobe)


def vector_index(ids: np.ndarray, codes: np.ndarray, *, scale: float = 1 / SCALE,
                 approximate_above: int | None = None, **approximate):
    """The index of a set of vectors: exact up to ``approximate_above`` vectors, approximate
    (:class:`ApproximateIndex`, with ``approximate``'s options) above; None: always exact."""
    if approximate_above is not None and len(ids) > approximate_above:
        return ApproximateIndex(ids, codes, scale=scale, **approximate)
    return VectorIndex(ids, codes, scale=scale)
