"""``soundatlas embed``: every sample becomes a trajectory (one point per frame) and a point.

Each file's frames go through the network fully convolutionally (``model.embed_frames``): each
layer's convolution runs once over the whole file, not once per window. The reference adds
Gaussian noise (mean 0.1, sd 0.01) to the linear CQT magnitudes at prediction as in training; the
noise of a sample is drawn from a generator seeded by its content hash, so a sample embeds the
same way every time and wherever it lives.

A sample's point on the map is the energy-weighted mean of its trajectory: frames weighted by
their summed linear CQT magnitude, so the sounding part of a note places it and the silence
after it does not (a silent sample gets the plain mean).

The same pass gives each sample its similarity vector (``soundatlas.similarity``): the same
energy-weighted mean of the hidden layer's activations, which the page's nearest sounds and query
by example search.

A sample whose feature file is missing or damaged is left out and named in the summary, with the
command that makes it whole; every other sample is embedded (as ``index`` goes on past a file it
cannot decode).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from soundatlas import similarity
from soundatlas.pipeline import run_batches
from soundatlas.sampling import frame_energy  # noqa: F401  (one definition, re-exported)

__all__ = ["embed_features", "embed_many", "embed_file", "embed_outside_file", "prediction_noise",
           "point_of", "sample_vector", "frame_energy",
           "embed_atlas", "EmbedSummary", "ensure_registered", "check_features"]


def prediction_noise(artifact) -> tuple[float, float]:
    """The input noise a model was trained with and predicts with.

    Returns
    -------
    (float, float)
        The mean and standard deviation of the noise added to linear CQT magnitudes.
    """
    settings = artifact.config.get("settings", {})
    return (settings.get("noise_mean", 0.1), settings.get("noise_std", 0.01))


def embed_file(artifact, F: np.ndarray, content_hash: str, *, compression: float = 50.0,
               with_vector: bool = False, precision: str = "auto", space: dict | None = None):
    """Embed one file's log-CQT frames exactly as ``embed_atlas`` stores them.

    Parameters
    ----------
    artifact : ModelArtifact
        The model.
    F : ndarray, shape (n_frames, n_bins)
        The file's log-CQT frames.
    content_hash : str
        The file's content hash (it seeds the prediction noise).
    compression : float, default 50.0
        The CQT's log compression.
    with_vector : bool, default False
        Also compute its similarity vector.
    precision : {'auto', 'fp32', 'bf16'}, default='auto'
        The arithmetic (``model.inference_precision``), as ``embed_atlas``'s.
    space : dict, optional
        The similarity space to compute the vector in, as an atlas recorded it (its timbre
        block's weight: ``similarity.hidden_weight``); default: the one ``embed_atlas`` computes.

    Returns
    -------
    tuple
        (trajectory, point); with ``with_vector``, (trajectory, point, vector), the vector as
        int8 codes (``soundatlas.similarity``; None for a model without a hidden layer).
    """
    from soundatlas.model import inference_precision

    model = artifact.model.eval()
    device = next(model.parameters()).device.type
    now = similarity.space_for(model, artifact.cqt) if with_vector else None
    traj, point, vector = _embed_batch(
        (model, [F], [content_hash]), noise=prediction_noise(artifact), compression=compression,
        with_vector=now is not None, precision=inference_precision(precision, device),
        bins_per_octave=artifact.cqt.bins_per_octave,
        weight=similarity.hidden_weight(space or now))[0]
    return (traj, point, vector) if with_vector else (traj, point)


def embed_outside_file(atlas, artifact, path, *, content_hash: str | None = None,
                       with_vector: bool = False, precision: str | None = None):
    """Analyse and embed an audio file that is not in the atlas, exactly as ``index`` then
    ``embed`` would have: decoded up to the atlas's last ``--max-duration``, the atlas's CQT
    rounded to its feature precision, the model's noise seeded by the file's content hash,
    the network in the arithmetic the atlas's embeddings were made in. Nothing is written to
    the atlas.

    Parameters
    ----------
    atlas : Atlas
        The atlas whose analysis to follow.
    artifact : ModelArtifact
        The model.
    path : path-like
        The audio file.
    content_hash : str, optional
        Its content hash, when known.
    with_vector : bool, default False
        Also compute its similarity vector.
    precision : {'auto', 'fp32', 'bf16'}, optional
        The network's arithmetic (``model.inference_precision``); default: the one the atlas
        recorded for the model's embeddings (fp32 for embeddings from before it did; ``auto``
        for a model the atlas has not embedded with).

    Returns
    -------
    tuple
        (decoded audio, log-CQT frames, trajectory, point), and with ``with_vector`` its
        similarity vector (int8 codes, or None) after them, in the space the atlas holds the
        model's vectors in (the current one where it holds none).

    Raises
    ------
    AudioReadError
        For a file that cannot be decoded.
    """
    from soundatlas import audio
    from soundatlas.atlas import FEATURE_DTYPE
    from soundatlas.cqt import cqt_batch
    from soundatlas.pipeline import content_hash as hash_of

    params = atlas.cqt_params
    # the limit the library is indexed with (None: none), as index reads its files
    decoded = audio.load(path, sr=params.sr, max_duration=atlas.max_duration())
    F = cqt_batch([decoded.y], params=params)[0].astype(FEATURE_DTYPE).astype(np.float32)
    if precision is None:
        embedded_with = atlas.embed_precision(artifact.name)
        registered = embedded_with is not None or any(
            m.name == artifact.name and m.n_embedded for m in atlas.models())
        precision = embedded_with or ("fp32" if registered else "auto")
    space = None  # the space the atlas holds the model's vectors in, which an upload must match
    if with_vector:
        model = next((m for m in atlas.models() if m.name == artifact.name), None)
        space = None if model is None else atlas.similarity_space(model.id)
    embedded = embed_file(artifact, F, content_hash or hash_of(path),
                          compression=params.compression, with_vector=with_vector,
                          precision=precision, space=space)
    return (decoded, F, *embedded)


def _noise_rng(content_hash: str) -> np.random.Generator:
    seed = int.from_bytes(hashlib.blake2b(content_hash.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed)


def point_of(trajectory: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Energy-weighted mean of a trajectory; the plain mean without energy.

    Parameters
    ----------
    trajectory : ndarray, shape (n_frames, dims)
        Per-frame points.
    energy : ndarray, shape (n_frames,)
        Per-frame weights (negative ones count as 0).

    Returns
    -------
    ndarray of float32, shape (dims,)
    """
    w = np.clip(np.asarray(energy, dtype=np.float64), 0, None)
    if w.sum() <= 0:
        return trajectory.mean(axis=0).astype(np.float32)
    return (w[:, None] * trajectory).sum(axis=0).astype(np.float32) / np.float32(w.sum())



def sample_vector(hidden: np.ndarray, energy: np.ndarray, frames: np.ndarray,
                  bins_per_octave: int, weight: float = similarity.HIDDEN_WEIGHT) -> np.ndarray:
    """A sample's similarity vector (``soundatlas.similarity``), as int8 codes: its hidden
    activations pooled as its point on the map is (``point_of``) times ``weight``, beside the
    pitch profile of its log-CQT frames pooled the same way (``similarity.pitch_block``).

    Parameters
    ----------
    hidden : ndarray, shape (n_frames, units)
        The hidden layer's activations per frame.
    energy : ndarray, shape (n_frames,)
        The frames' energies.
    frames : ndarray, shape (n_frames, n_bins)
        The sample's log-CQT frames (without the network's input noise).
    bins_per_octave : int
        Their CQT's bins per octave.
    weight : float, default similarity.HIDDEN_WEIGHT
        The timbre block's weight (``similarity.hidden_weight`` of the space).

    Returns
    -------
    ndarray of int8, shape (units + pitch numbers,)
    """
    timbre = np.float32(weight) * point_of(np.asarray(hidden, dtype=np.float32), energy)
    pitch = similarity.pitch_block(point_of(np.asarray(frames, dtype=np.float32), energy),
                                   bins_per_octave)
    return similarity.encode(np.concatenate([timbre, pitch]))


@torch.no_grad()
def embed_features(
    model: torch.nn.Module,
    F: np.ndarray,
    *,
    noise: tuple[float, float] | None = (0.1, 0.01),
    rng: np.random.Generator | None = None,
    compression: float = 50.0,
) -> np.ndarray:
    """Per-frame embedding of one file's log-CQT frames.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    F : ndarray, shape (n_frames, n_bins)
        Log-CQT frames.
    noise : (float, float) or None, default (0.1, 0.01)
        Mean and standard deviation of the noise added to linear magnitudes (None: none).
    rng : numpy.random.Generator, optional
        Draws the noise (default: seeded with 0).
    compression : float, default 50.0
        The CQT's log compression.

    Returns
    -------
    ndarray of float32, shape (n_frames, dims)
    """
    return embed_many(model, [F], noise=noise, rngs=[rng or np.random.default_rng(0)],
                      compression=compression)[0]


@torch.no_grad()
def embed_many(
    model: torch.nn.Module,
    files: list[np.ndarray],
    *,
    noise: tuple[float, float] | None = (0.1, 0.01),
    rngs: list[np.random.Generator] | None = None,
    compression: float = 50.0,
    with_hidden: bool = False,
    precision: str = "fp32",
) -> list:
    """Per-frame embeddings of many files in one pass; equal to ``embed_features`` on each.

    The files are laid end to end, each with its own padding (so the 9 frames between two files
    are exactly the padding each would get alone: no window sees another file), and the network
    runs once over the whole sequence.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    files : list of ndarray
        Each file's log-CQT frames (n_frames x n_bins).
    noise : (float, float) or None, default (0.1, 0.01)
        As for ``embed_features``.
    rngs : list of numpy.random.Generator, optional
        One per file (default: each seeded with 0).
    compression : float, default 50.0
        The CQT's log compression.
    with_hidden : bool, default False
        Also return each file's hidden-layer activations.
    precision : {'fp32', 'bf16'}, default='fp32'
        The network's arithmetic (``PaperNet.embed_frames``); the files go to the model's
        device and the results come back as float32 arrays.

    Returns
    -------
    list
        Each file's embedding (n_frames x dims); with ``with_hidden``, its (embedding, hidden
        activations (n_frames x 256)).
    """
    from soundatlas.sampling import add_noise

    if not files:
        return []
    window = getattr(model, "window", 10)
    before, after = window // 2, window - 1 - window // 2
    # a pitch axis reads the pitch of the frames as they are, not under the prediction noise
    pitch_axis = getattr(model, "pitch_axis", False)
    parts, clean, starts, at = [], [], [], 0
    for i, F in enumerate(files):
        padded = np.pad(np.asarray(F, dtype=np.float32), ((before, after), (0, 0)))
        if pitch_axis:
            clean.append(padded)
        if noise is not None:
            rng = rngs[i] if rngs is not None else np.random.default_rng(0)
            padded = add_noise(padded, rng, mean=noise[0], std=noise[1], compression=compression)
        parts.append(padded)
        starts.append(at + before)
        at += len(padded)
    x = torch.from_numpy(np.concatenate(parts).astype(np.float32, copy=False))
    x = x.to(next(model.parameters()).device)
    heights = np.concatenate(clean) if pitch_axis else None
    if not with_hidden:
        z = model.embed_frames(x, precision=precision, height_frames=heights)
        z = z.cpu().numpy().astype(np.float32)
        return [z[s : s + len(F)] for s, F in zip(starts, files)]
    z, h = model.embed_frames(x, precision=precision, with_hidden=True, height_frames=heights)
    z, h = z.cpu().numpy().astype(np.float32), h.cpu().numpy().astype(np.float32)
    return [(z[s : s + len(F)], h[s : s + len(F)]) for s, F in zip(starts, files)]


@dataclass
class EmbedSummary:
    """What an ``embed`` run did."""

    model: str
    n_embedded: int
    n_already: int
    n_frames: int
    seconds: float
    n_vectors: int = 0  # samples given a similarity vector (soundatlas.similarity) by this run
    similarity: str | None = None  # the similarity space's name; None: the model has none
    precision: str = "fp32"  # the network's arithmetic: fp32 or bf16
    device: str = "cpu"
    n_skipped: int = 0  # samples left out: their features cannot be read
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample path, why), by path
    repair: str | None = None  # the command line that makes their features whole again
    # the arithmetic the samples embedded before were made in, where it is not this run's
    # (their points stay as they are): None where it is the same, or nothing was there
    earlier_precision: str | None = None
    # the older similarity space whose vectors this run replaced (``similarity.describe``), and
    # how many of the samples embedded before got a vector of the current one
    replaced_space: str | None = None
    n_replaced: int = 0


def check_features(atlas, artifact) -> None:
    """Refuse a model that was not made for the atlas's features (``artifact.check_cqt``).

    Raises
    ------
    SoundAtlasError
        When the CQT parameters differ; when only the CQT kernel differs, or a feature refresh
        is unfinished, the message says the command to run.
    """
    from soundatlas.artifact import check_cqt
    from soundatlas.cqt_params import PAPER_CQT
    from soundatlas.errors import SoundAtlasError

    params, theirs = atlas.cqt_params, artifact.cqt
    if atlas.feature_refresh_started() is not None:
        raise SoundAtlasError(
            f"the atlas's features are being recomputed with the {params.kernel!r} CQT kernel "
            f"and some are not yet; `{atlas.refresh_command()}` finishes the refresh"
        )
    if theirs.differs_only_in_kernel(params):
        if theirs.kernel == PAPER_CQT.kernel:
            raise SoundAtlasError(
                f"model {artifact.name!r} reads features of the {theirs.kernel!r} CQT kernel, "
                f"and this atlas holds {params.kernel!r} ones, which predate it; "
                f"`{atlas.refresh_command()}` recomputes them"
            )
        raise SoundAtlasError(
            f"model {artifact.name!r} was trained on features of the {theirs.kernel!r} CQT "
            f"kernel, and this atlas holds {params.kernel!r} ones; embed it with a model trained "
            "on them (`soundatlas train --atlas ATLAS ...`), or index the library into another "
            "atlas with the model's CQT parameters"
        )
    check_cqt(artifact, params)


def ensure_registered(atlas, artifact, registration) -> int:
    """The model's id in the atlas, registering a shipped or external model on first use.

    Parameters
    ----------
    atlas : Atlas
        Open for writing.
    artifact : ModelArtifact
        The model.
    registration : ModelRecord or None
        Its registration in the atlas, as ``artifact.resolve_model`` found it.

    Returns
    -------
    int
        The model's id; a new one, with no embeddings, when the atlas's registration of a
        shipped model is of an earlier version of it (``artifact.shipped_changed``).

    Raises
    ------
    SoundAtlasError
        When the model was not made for the atlas's features (``check_features``), or when it
        comes from a directory and the atlas has another model of its name.
    """
    from soundatlas.artifact import model_path, shipped_changed
    from soundatlas.errors import SoundAtlasError

    check_features(atlas, artifact)
    if registration is None:
        registration = next((m for m in atlas.models() if m.name == artifact.name), None)
        registered = registration and model_path(atlas, registration.dir)
        if registered and artifact.source and registered.resolve() != artifact.source.resolve():
            # another model of the same name: its points are not this one's, and replacing it
            # would lose them
            raise SoundAtlasError(
                f"the atlas already has a model named {artifact.name!r}, from {registered}; the "
                f"model at {artifact.source} has the same name: give one of them another name "
                "(the 'name' in its config.json)")
    if registration is None:
        return atlas.register_model(artifact.name, artifact.registry_dir, artifact.config)
    if shipped_changed(registration, artifact):
        # another soundatlas shipped another model under this name: the stored points are the
        # earlier model's, so registering it again drops them and every sample is embedded anew
        return atlas.register_model(artifact.name, registration.dir, artifact.config)
    return registration.id


def embed_atlas(
    atlas,
    artifact,
    model_id: int,
    *,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "auto",
    device: str = "cpu",
    executor=None,
    similarity_weight: float = similarity.HIDDEN_WEIGHT,
) -> EmbedSummary:
    """Embed every sample of the atlas that has no embedding for the model yet, each with its
    similarity vector (``soundatlas.similarity``) in the same pass; then give a vector to every
    embedded sample that lacks one (embedded before they existed, or of another space).

    This process reads the features and commits the results, batch by batch in order; the
    network runs here, or with ``executor`` on other processes or machines (a Dask cluster's
    workers), which need neither the atlas nor the library: a batch's features travel to them
    and its trajectories, points and vectors come back. The atlas is the same either way.

    Parameters
    ----------
    atlas : Atlas
        Open for writing; its samples get the embeddings.
    artifact : ModelArtifact
        The model to embed with (``check_features`` first).
    model_id : int
        Its id in the atlas (``ensure_registered``).
    batch_size : int, default 64
        Samples per network pass and commit.
    progress : callable, optional
        Called with (samples done, samples to do).
    precision : {'auto', 'fp32', 'bf16'}, default='auto'
        The network's arithmetic: ``auto`` is bf16 where ``device`` has it natively
        (``model.inference_precision``), fp32 the exact path. When only vectors are to be
        added, ``auto`` is the arithmetic the atlas recorded for the model's embeddings (fp32
        for embeddings from before it did).
    device : {'cpu', 'cuda'}, default='cpu'
        Where the network runs (here; an executor's workers use their CPU).
    executor : concurrent.futures.Executor, optional
        Where the batches run instead of this process: a Dask client's executor
        (``Client(address).get_executor()``), to which the model is sent once, or any other
        executor, to which it goes with every batch. A batch whose worker dies is run again.
    similarity_weight : float, default similarity.HIDDEN_WEIGHT
        The vectors' timbre block weight (``similarity.space_for``); 1 makes the space of
        atlases embedded before the weight (version 2). Vectors of another space are replaced.

    Returns
    -------
    EmbedSummary

    Raises
    ------
    ParameterError
        For an unknown precision, or a device torch cannot use.
    """
    from soundatlas.atlas.samples import DamagedFeaturesError
    from soundatlas.model import inference_precision

    check_features(atlas, artifact)
    start = time.perf_counter()
    asked, precision = precision, inference_precision(precision, device)
    model = artifact.model.to(_device(device)).eval()
    noise = prediction_noise(artifact)
    space = similarity.space_for(model, atlas.cqt_params, weight=similarity_weight)
    older = atlas.similarity_space(model_id)
    replaced = None
    if space is not None and atlas.set_similarity_space(model_id, space):
        replaced = similarity.describe(older)
    todo = atlas.unembedded(model_id)
    fill = atlas.without_similarity(model_id) if space is not None else np.empty(0, np.int64)
    if not len(todo) and len(fill) and asked == "auto":
        # vectors only (an atlas of another space): in the arithmetic its points were made in,
        # which uploads are embedded in too, so that a library file still finds itself
        precision = atlas.embed_precision(artifact.name) or "fp32"
    n_total = atlas.n_samples() + len(fill)
    n_already = n_total - len(todo) - len(fill)
    n_frames = 0
    if progress:
        progress(n_already, n_total)
    recorded = atlas.embed_precision(artifact.name)  # None: fp32, before it was recorded
    before = recorded or ("fp32" if n_already else None)
    earlier = before if n_already and before != precision else None
    if len(todo) and recorded != precision:
        atlas.set_embed_precision(artifact.name, precision)  # what uploads are embedded with
    done = n_already
    unreadable: list = []  # (record, in todo, DamagedFeaturesError) of each sample left out
    stage = functools.partial(_embed_batch, noise=noise, compression=atlas.cqt_params.compression,
                              with_vector=space is not None, precision=precision,
                              bins_per_octave=atlas.cqt_params.bins_per_octave,
                              weight=similarity.hidden_weight(space))
    ref = model if executor is None else _model_ref(model, executor)
    pool = _thread_pool(model) if executor is None else None
    read: collections.deque = collections.deque()  # what each batch in flight holds, in order

    def batches():
        # features are read here, in this process, for both the local and the executor's
        # batches: a sample whose file is damaged is left out before any batch goes out
        for ids, new in ((todo, True), (fill, False)):
            for i in range(0, len(ids), batch_size):
                records, feats = [], []
                for rec in atlas.samples(ids[i : i + batch_size]):
                    try:
                        feats.append(atlas.features(rec))
                    except DamagedFeaturesError as exc:
                        unreadable.append((rec, new, exc))
                        continue
                    records.append(rec)
                if not records:
                    continue
                read.append((records, new, sum(len(F) for F in feats)))
                yield ref, feats, [r.hash for r in records]

    if executor is None and pool is None:
        results = map(stage, batches())
    else:
        results = run_batches(stage, batches(), executor=executor or pool)
    try:
        for out in results:
            records, new, frames = read.popleft()
            if new:
                items = [(rec.id, traj, point) for rec, (traj, point, _v) in zip(records, out)]
                vectors = None if space is None else [v for _t, _p, v in out]
                n_frames += frames
                atlas.commit_embeddings(model_id, items, similarity=vectors)
            else:
                atlas.commit_similarity(model_id,
                                        [(r.id, v) for r, (_t, _p, v) in zip(records, out)])
            done += len(records)
            if progress:  # the samples left out so far count as dealt with
                progress(done + len(unreadable), n_total)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if progress and unreadable:  # the last batches may all have been left out
        progress(done + len(unreadable), n_total)
    n_new_skipped = sum(new for _, new, _ in unreadable)
    n_done = len(todo) + len(fill) - len(unreadable)
    return EmbedSummary(artifact.name, len(todo) - n_new_skipped, n_already, n_frames,
                        time.perf_counter() - start,
                        n_vectors=n_done if space is not None else 0,
                        similarity=space["name"] if space else None,
                        precision=precision, device=device, n_skipped=len(unreadable),
                        skipped=sorted((rec.path, f"{exc.file}: {exc.reason}")
                                       for rec, _, exc in unreadable),
                        repair=unreadable[0][2].fix if unreadable else None,
                        earlier_precision=earlier, replaced_space=replaced,
                        n_replaced=(len(fill) - (len(unreadable) - n_new_skipped)
                                    if replaced else 0))


def _embed_batch(batch, *, noise, compression, with_vector, precision, bins_per_octave,
                 weight=similarity.HIDDEN_WEIGHT) -> list:
    """One batch of ``embed_atlas``: (model or its payload, features, content hashes) ->
    (trajectory, point, similarity vector or None) per file. Runs where the executor puts it."""
    ref, feats, hashes = batch
    model = ref if isinstance(ref, torch.nn.Module) else _model_of(ref)
    out = embed_many(model, feats, noise=noise, rngs=[_noise_rng(h) for h in hashes],
                     compression=compression, with_hidden=with_vector, precision=precision)
    rows = []
    for F, o in zip(feats, out):
        traj, hidden = o if with_vector else (o, None)
        energy = frame_energy(F)
        rows.append((traj, point_of(traj, energy), None if hidden is None
                     else sample_vector(hidden, energy, F, bins_per_octave, weight)))
    return rows


_MODELS: dict[str, torch.nn.Module] = {}  # a worker's models, by the digest of their weights


def _thread_pool(model) -> ThreadPoolExecutor | None:
    """Threads that run one batch each, each thread's torch operations on one core; None where
    torch has one thread here, or the model is not on the CPU.

    On a 2-core CPU this gives 1.2x the frames/s of one batch at a time on both cores (the
    small convolutions, tanh and pools of a batch split poorly between threads), and the
    reading and committing of this process overlap the network (benchmarks/RESULTS.md,
    "Embedding without AMX"). A batch's result does not depend on the thread that made it.
    """
    n = torch.get_num_threads()
    if n <= 1 or next(model.parameters()).device.type != "cpu":
        return None
    # torch's thread count set in a thread holds for that thread's operations only
    return ThreadPoolExecutor(n, initializer=torch.set_num_threads, initargs=(1,),
                              thread_name_prefix="soundatlas-embed")


def _model_ref(model, executor):
    """What a batch names its model by on ``executor``: the model's payload (architecture and
    weights as arrays), or on a Dask cluster a task that gives it, fetched once per worker."""
    from soundatlas.model import state_to_arrays

    arrays = state_to_arrays(model)
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        digest.update(name.encode() + arrays[name].tobytes())
    payload = {"digest": digest.hexdigest(), "architecture": model.get_params(),
               "arrays": arrays}
    client = getattr(executor, "_client", None)  # a Dask executor: send the weights once
    if client is None:
        return payload
    # A task that returns the payload, not scattered data: a worker fetches it once from the
    # worker that holds it, and when every holder dies the scheduler recomputes it from the
    # task (scattered data would be lost, and with it every batch that needs it).
    with warnings.catch_warnings():  # "Sending large graph": the weights, once per run
        warnings.filterwarnings("ignore", message="Sending large graph")
        return client.submit(_same, payload, pure=False)


def _same(x):
    return x


def _model_of(payload: dict) -> torch.nn.Module:
    """The model a payload describes, built once per process (one torch thread: one batch
    per worker thread)."""
    from soundatlas.model import build_model, load_arrays

    model = _MODELS.get(payload["digest"])
    if model is None:
        torch.set_num_threads(1)
        arch = dict(payload["architecture"])
        model = load_arrays(build_model(arch.pop("arch"), **arch), payload["arrays"]).eval()
        _MODELS.clear()  # one model at a time
        _MODELS[payload["digest"]] = model
    return model


def _device(device: str) -> "torch.device":
    """``device`` as torch names it, refused clearly when torch cannot use it here."""
    from soundatlas.errors import ParameterError

    if device not in ("cpu", "cuda"):
        raise ParameterError(f"device={device!r} must be 'cpu' or 'cuda'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' asked for, but torch sees no CUDA device here")
    return torch.device(device)
