"""What the web app keeps between requests: where the atlas is, its settings, and the caches of
what is costly to rebuild.

The atlas is only ever opened read-only, and once per request inside the endpoint's own thread
(an sqlite3 connection belongs to the thread that opened it, and opening is cheap). Each
model's points with their KD-tree, its similarity vectors with their index
(``soundatlas.similarity``), its frame index for rendering and its loaded weights are cached
here, each rebuilt when the model's embeddings change.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundatlas.atlas import Atlas, ModelRecord
from soundatlas.errors import SoundAtlasError
from soundatlas.web.responses import api_error

__all__ = ["APPROXIMATE_ABOVE", "WARM_SHARE", "PointIndex", "SimilarityIndex", "WebState",
           "points_key", "model_dims", "pitch_axis", "end_streams"]


def model_dims(model: ModelRecord) -> int:
    """The number of coordinates of a model's points.

    Parameters
    ----------
    model : ModelRecord
        The model's record, as ``Atlas.model`` returns it.

    Returns
    -------
    int
        The architecture's ``dims`` (3 when the config does not say).
    """
    return int(model.config.get("architecture", {}).get("dims", 3))


def pitch_axis(model: ModelRecord) -> int | None:
    """The coordinate of ``model``'s points that is a measured pitch (``PaperNet(pitch_axis=
    True)``: the last), or None when the map has none."""
    arch = model.config.get("architecture", {})
    return model_dims(model) - 1 if arch.get("pitch_axis") else None


#: models with more similarity vectors than this search them approximately by default
#: (benchmarks/RESULTS.md, "Nearest sounds at a million samples")
APPROXIMATE_ABOVE = 100_000

#: ``serve`` reads the atlas's database into memory at start when it takes at most this share
#: of the memory available (``WebState.warm``)
WARM_SHARE = 0.25


def memory_available() -> int | None:
    """Bytes the system can give without swapping (``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_through(paths: Iterable[Path], chunk: int = 1 << 20) -> int:
    """Read each file from start to end into one reused buffer (``WebState.warm``); a file
    that cannot be read, or is not a regular file, is passed over. Returns the bytes read."""
    import stat

    buf = bytearray(chunk)
    total = 0
    for path in paths:
        try:  # O_NONBLOCK: a FIFO in the file's place must not hold the thread in open()
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except (OSError, ValueError):  # ValueError: a NUL in the path
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                while n := os.readv(fd, [buf]):
                    total += n
        except OSError:
            pass
        finally:
            os.close(fd)
    return total


@dataclass
class PointIndex:
    """One model's points (ids ascending) and a KD-tree over them, built when first asked for.

    The page's first request is for the points alone; at a million samples the tree took a
    fifth of that answer's time (0.6 s), so it waits for the first search that needs it.

    Attributes
    ----------
    ids : numpy.ndarray
        int64 sample ids, ascending.
    points : numpy.ndarray
        float32, one row of coordinates per id.
    """

    ids: np.ndarray  # int64, ascending
    points: np.ndarray  # float32, n x dims
    _tree: object = field(default=None, repr=False, compare=False)
    _tree_lock: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                       compare=False)
    _payload: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def payload(self) -> bytes:
        """The points endpoint's body: int32 ids then float32 points, little-endian; made on
        first use and kept (16 MB at a million samples, which took 14 ms to make on every
        request)."""
        if self._payload is None:
            self._payload = (self.ids.astype("<i4").tobytes()
                             + self.points.astype("<f4").tobytes())
        return self._payload

    @property
    def has_tree(self) -> bool:
        """Whether the tree is built (a search then takes microseconds)."""
        return self._tree is not None

    @property
    def tree(self):
        """The ``scipy.spatial.cKDTree`` over ``points``, built on first use (once, whichever
        thread asks first)."""
        if self._tree is None:
            with self._tree_lock:
                if self._tree is None:
                    from scipy.spatial import cKDTree

                    self._tree = cKDTree(self.points.astype(np.float64))
        return self._tree

    @property
    def dims(self) -> int:
        """The number of coordinates of each point."""
        return int(self.points.shape[1])

    def point(self, sample_id: int) -> np.ndarray | None:
        """The point of ``sample_id``, or None when it has none."""
        row = int(np.searchsorted(self.ids, sample_id))
        if row < len(self.ids) and self.ids[row] == sample_id:
            return self.points[row]
        return None

    def nearest(self, point, k: int, *, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
        """The samples nearest a point.

        Parameters
        ----------
        point : array_like
            Coordinates in the model's space.
        k : int
            How many samples at most.
        exclude : iterable of int, optional
            Sample ids never answered.

        Returns
        -------
        list of (int, float)
            (sample id, Euclidean distance) pairs, nearest first.
        """
        exclude = set(int(i) for i in exclude)
        n = len(self.ids)
        want = min(n, k + len(exclude))
        if want == 0:
            return []
        dist, rows = self.tree.query(np.asarray(point, dtype=np.float64), k=want)
        out = []
        for d, r in zip(np.atleast_1d(dist), np.atleast_1d(rows)):
            if r >= n:  # scipy pads missing neighbours with n
                break
            sid = int(self.ids[r])
            if sid not in exclude:
                out.append((sid, float(d)))
        return out[:k]


@dataclass
class SimilarityIndex:
    """One model's similarity vectors (``soundatlas.similarity``) and their index.

    Attributes
    ----------
    index : similarity.VectorIndex or similarity.ApproximateIndex or None
        The index (exact up to ``WebState.approximate_above`` vectors, approximate above), or
        None without a complete set of vectors.
    space : dict or None
        The atlas's record of the similarity space.
    message : str or None
        When ``index`` is None: why, and the command that adds the vectors.
    """

    index: object | None  # similarity.VectorIndex or similarity.ApproximateIndex
    space: dict | None  # the atlas's record of the space
    message: str | None = None


def points_key(atlas: Atlas, model: ModelRecord) -> tuple:
    """What changes whenever the points of ``model`` (a record of the open ``atlas``) do.

    Returns
    -------
    tuple
        The model's id and registration time, its embedded count and its newest embedding
        segment: it changes when the model is registered again, or samples are embedded
        (again) or removed.
    """
    return (model.id, model.created, model.n_embedded,
            atlas.newest_embedding_segment(model.id))


class RenderSlots:
    """Renders (``synth``, ``mosaic``) one at a time, at most ``max_waiting`` more queued.

    A render is CPU-bound and they share the decoded originals (``WebState.audio_cache``), so
    one runs at a time; a request beyond the queue is refused at once (``Busy``: the app
    answers 503 with Retry-After) instead of holding a server thread for minutes. A queued or
    running render whose client has gone stops (``synth.cancellable``).

    Parameters
    ----------
    max_waiting : int
        Renders that may wait for the one running.

    Attributes
    ----------
    lock : threading.Lock
        Held by the running render.
    counts : dict of str to int
        'running', 'waiting' (now), 'completed', 'cancelled', 'refused', 'failed' (so far).
    """

    class Busy(Exception):
        """The queue is full."""

    def __init__(self, max_waiting: int = 4):
        self.max_waiting = int(max_waiting)
        self.lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self.counts = dict.fromkeys(("running", "waiting", "completed", "cancelled", "refused",
                                     "failed"), 0)

    def _add(self, **delta) -> None:
        with self._counts_lock:
            for k, v in delta.items():
                self.counts[k] += v

    @contextmanager
    def slot(self, cancelled: Callable[[], bool]):
        """Wait for the render slot (refused with ``Busy`` when the queue is full), then hold
        it for the ``with`` block with renders in it cancelled once ``cancelled()`` is true."""
        from soundatlas.synth import RenderCancelled, cancellable

        with self._counts_lock:
            if self.counts["running"] + self.counts["waiting"] > self.max_waiting:
                self.counts["refused"] += 1
                raise self.Busy()
            self.counts["waiting"] += 1
        try:
            while not self.lock.acquire(timeout=0.05):
                if cancelled():
                    raise RenderCancelled("the render was cancelled while it waited")
        except RenderCancelled:
            self._add(waiting=-1, cancelled=1)
            raise
        self._add(waiting=-1, running=1)
        outcome = "failed"
        try:
            with cancellable(cancelled):
                yield
            outcome = "completed"
        except RenderCancelled:
            outcome = "cancelled"
            raise
        finally:
            self.lock.release()
            self._add(running=-1, **{outcome: 1})

    def status(self) -> dict:
        """The counts, with ``max_running`` (1) and ``max_waiting``."""
        with self._counts_lock:
            return {**self.counts, "max_running": 1, "max_waiting": self.max_waiting}


class WebState:
    """What the app keeps between requests: where the atlas is, settings and caches.

    Parameters
    ----------
    atlas_dir : Path
        The atlas directory (opened read-only, once per request).
    model : str or None
        The model the page shows first (None: the first fully embedded one).
    max_upload_bytes : int
        The largest query or mosaic upload.
    max_export_bytes : int
        The largest zip export.
    osc_out : osc.OscOut, optional
        Where the page's events go out over OSC.
    osc_in : osc.OscIn, optional
        The OSC listener whose messages reach the page.
    events : osc.EventHub, optional
        The hub that passes what arrives over OSC to the page's event streams.
    approximate_above : int or None, optional
        Models with more similarity vectors than this search them approximately
        (``similarity.ApproximateIndex``) unless a request asks for an exact answer; None:
        always exactly.
    read_only : str or None, optional
        Why the user's layer (tags, stars, notes, collections) may not be written, or None
        when it may.
    render_queue : int, default 4
        Renders that may wait for the running one (:class:`RenderSlots`).

    Notes
    -----
    The methods that build or load something for a model take the atlas open for the request
    and the model's record (as ``Atlas.model`` returns it); what they return is kept until the
    model's points change (``points_key``).
    """

    def __init__(self, atlas_dir: Path, *, model: str | None, max_upload_bytes: int,
                 max_export_bytes: int, osc_out=None, osc_in=None, events=None,
                 approximate_above: int | None = APPROXIMATE_ABOVE,
                 read_only: str | None = None, render_queue: int = 4):
        self.atlas_dir = atlas_dir
        self.read_only = read_only
        self.approximate_above = approximate_above
        self.osc_out = osc_out  # osc.OscOut, or None
        self.osc_in = osc_in  # osc.OscIn, or None
        self.events = events  # osc.EventHub, or None
        self.model = model
        self.max_upload_bytes = max_upload_bytes
        self.max_export_bytes = max_export_bytes
        self._lock = threading.Lock()
        self._indexes: dict[str, tuple[tuple, PointIndex]] = {}  # name -> (points_key, index)
        # (model name, timbre) -> (key, index)
        self._vectors: dict[tuple[str, bool], tuple[tuple, SimilarityIndex]] = {}
        self._artifacts: dict[tuple, object] = {}
        self._frames: dict[str, tuple[tuple, object]] = {}  # name -> (points_key, FrameIndex)
        # (model name, space, label) -> (key, the labelled samples' reach: suggest.reach)
        self._reaches: dict[tuple, tuple[tuple, float]] = {}
        # one build of each kind at a time (they are large); a kind does not wait for another
        # (a map's points are not held up by a similarity index being built in the background)
        self._build_locks = {id(store): threading.Lock() for store in
                             (self._indexes, self._vectors, self._frames, self._reaches)}
        self._prebuilding: set[str] = set()  # models whose similarity index a thread builds
        # name -> the points_key on which a background build failed (not tried again on it)
        self._prebuild_failed: dict[str, tuple] = {}
        self._audio: object = None  # synth.AudioCache shared by renders, at one output rate
        self.renders = RenderSlots(max_waiting=render_queue)
        self.render_lock = self.renders.lock  # held by the render running
        self._local = threading.local()  # each thread's (database file id, open Atlas)
        # ``serve`` sets it: what is alive once an index is built (the app, the indexes) is
        # moved out of the garbage collector's sight (gc.freeze; still freed when no longer
        # referenced). A full collection walked all of it: 54 ms at 1M samples, about once in
        # 2,000 nearest-sounds requests, a pause every request queued behind it waited through.
        self.freeze_gc = False
        self.warming: threading.Thread | None = None  # ``warm``'s reader, once started

    def warm(self) -> threading.Thread | None:
        """Read the atlas's database through once, in the background, so that the page cache
        holds it.

        A nearest-sounds answer reads its neighbours' paths and labels: a score of pages
        scattered over the database, each a disk read while the page cache lacks it, and these
        reads hold the event loop. At a million samples (a 1.4 GB database, a disk answering in
        milliseconds) 20 clients of a server started on an empty page cache waited p99 133 ms
        without this and 62 ms with it (benchmarks/RESULTS.md). A daemon thread reads the file
        from start to end, 1 MiB at a time: one read in flight, so the requests' own reads are
        not queued behind a gigabyte of advice (``POSIX_FADV_WILLNEED`` on the whole file made
        the first ``/api/atlas`` wait 2.7 s for it). Not done where the database would take
        more than ``WARM_SHARE`` of the memory available, nor where the system cannot say how
        much that is (``memory_available``: Linux only; it does not see a container's memory
        limit, which is harmless: the page cache gives way). It never raises: the server runs
        the same without it, only its first answers wait for the disk.

        Returns
        -------
        threading.Thread or None
            The reading thread (also ``self.warming``), started; None when nothing is read.
        """
        from soundatlas.atlas import DB_NAME

        files, size = [], 0
        for p in (self.atlas_dir / DB_NAME, self.atlas_dir / f"{DB_NAME}-wal"):
            try:
                size += p.stat().st_size
                files.append(p)
            except (OSError, ValueError):  # no log (none written yet, or checkpointed away)
                continue
        available = memory_available()
        if not files or available is None or size > WARM_SHARE * available:
            return None
        reader = threading.Thread(target=_read_through, args=(files,), daemon=True,
                                  name="soundatlas-warm")
        try:
            reader.start()
        except RuntimeError:  # no thread to be had (a limit): serve without it
            return None
        self.warming = reader
        return reader

    @contextmanager
    def atlas(self):
        """The atlas, read-only, for the calling thread (a context manager).

        Each thread keeps its connection between requests (opening one per request cost a
        fifth of a nearest-sounds request at 1M samples, and its page cache with it); it is
        opened again when the database file was replaced or its schema migrated, and a
        request never leaves a transaction open on it, nor array files mapped."""
        from soundatlas.atlas import DB_NAME

        mine = getattr(self._local, "atlas", None)
        try:
            st = os.stat(self.atlas_dir / DB_NAME)
            here = (st.st_dev, st.st_ino)
        except OSError:
            here = None
        if mine is not None and (mine[0] != here or mine[1].conn.execute(
                "PRAGMA user_version").fetchone()[0] != mine[1].schema_version):
            mine[1].close()
            mine = None
        if mine is None:
            mine = (here, Atlas.open(self.atlas_dir))
            self._local.atlas = mine
        atlas = mine[1]
        try:
            yield atlas
        finally:
            if atlas.conn.in_transaction:
                atlas.conn.execute("ROLLBACK")
            # the array files it mapped go with the request: each map holds a file descriptor,
            # and 40 threads each keeping 512 of them ran out (benchmarks/bench_soak.py)
            atlas._segment_cache.clear()  # noqa: SLF001
            atlas._embedding_cache.clear()  # noqa: SLF001

    @contextmanager
    def curation(self):
        """The atlas open to write the user's layer (``atlas.curation``) and nothing else, for
        the calling thread (a context manager); a 403 when this server may not write. It never
        tidies array files (``Atlas.open(tidy=False)``): an ``index`` may be running."""
        if self.read_only is not None:
            raise api_error(403, f"this server does not write: {self.read_only}")
        with Atlas.open(self.atlas_dir, write=True, tidy=False) as atlas:
            yield atlas

    def point_index(self, atlas: Atlas, model: ModelRecord, *,
                    build: bool = True) -> PointIndex | None:
        """The model's points and KD-tree (a :class:`PointIndex`, the tree built on first
        use), read again when its embeddings changed; with ``build=False``, None instead of
        reading them."""

        def make() -> PointIndex:
            ids, points = atlas.points(model.id)
            if len(ids) == 0:
                points = np.zeros((0, model_dims(model)), np.float32)
            return PointIndex(ids, points)

        return self._cached(self._indexes, model.name, points_key(atlas, model), make,
                            build_now=build)

    def similarity_index(self, atlas: Atlas, model: ModelRecord, *, build: bool = True,
                         timbre: bool = False) -> SimilarityIndex | None:
        """The model's similarity vectors and index (a :class:`SimilarityIndex`), rebuilt
        when its embeddings or vectors changed; without a vector for every embedded sample,
        no index and the message why. With ``build=False``, None where it would be built. With
        ``timbre``, the index of the vectors' timbre block alone (``similarity.timbre``)."""
        from soundatlas import similarity
        from soundatlas.similarity import missing_message, vector_index

        space = atlas.similarity_space(model.id)
        # a space without a pitch profile is all timbre: its one index serves both
        timbre = timbre and similarity.has_pitch(space)
        key = (*points_key(atlas, model), None if space is None else
               (space["name"], space["updated"]), timbre)

        def make() -> SimilarityIndex:
            if space is None:
                return SimilarityIndex(None, None, missing_message(atlas, model, 0))
            ids, codes = atlas.similarity_vectors(model.id)
            if len(ids) < model.n_embedded:
                return SimilarityIndex(None, space, missing_message(atlas, model, len(ids)))
            searched = space
            if timbre:
                codes, searched = similarity.timbre(codes, space), similarity.timbre_space(space)
            return SimilarityIndex(vector_index(ids, codes, scale=space["spec"]["scale"],
                                                approximate_above=self.approximate_above),
                                   searched)

        return self._cached(self._vectors, (model.name, timbre), key, make, build_now=build)

    def prebuild_similarity(self, name: str) -> threading.Thread | None:
        """Build a model's similarity index on a background thread, unless it is built or
        being built: the points endpoint calls it, so that the index is ready by the time the
        page asks for its first nearest sounds (at a million samples the build took 12-16 s,
        which the first click waited through).

        Never raises: a build that fails says so on stderr and is not tried again in the
        background until the model's embeddings change; the request that needs the index builds
        it again and reports the error.

        Parameters
        ----------
        name : str
            The model's name.

        Returns
        -------
        threading.Thread or None
            The building thread, started; None when nothing was started.
        """
        with self._lock:
            if name in self._prebuilding:
                return None
            self._prebuilding.add(name)

        def build() -> None:
            try:
                with Atlas.open(self.atlas_dir) as atlas:
                    model = atlas.model(name)
                    key = points_key(atlas, model)
                    if self._prebuild_failed.get(name) == key:
                        return  # failed on these embeddings: each page load would fail again
                    try:
                        self.similarity_index(atlas, model)
                    except Exception as exc:  # noqa: BLE001 - a thread of its own: say it here
                        self._prebuild_failed[name] = key
                        print(f"soundatlas serve: the similarity index of model {name!r} could "
                              f"not be built in the background ({type(exc).__name__}: {exc}); "
                              "a nearest-sounds request builds it again and says why",
                              file=sys.stderr)
            except Exception:  # noqa: BLE001 - the model is gone: its points request said so
                pass
            finally:
                with self._lock:
                    self._prebuilding.discard(name)

        thread = threading.Thread(target=build, daemon=True, name="soundatlas-prebuild")
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the first request builds it
            with self._lock:
                self._prebuilding.discard(name)
            return None
        return thread

    def frame_index(self, atlas: Atlas, model: ModelRecord):
        """The model's :class:`synth.FrameIndex` (every sounding frame), read from the CLI's
        cache when that is current, never written (the server only reads the atlas)."""
        from soundatlas.synth import FrameIndex

        return self._cached(self._frames, model.name, points_key(atlas, model),
                            lambda: FrameIndex.load(atlas, model, cache="read"))

    def label_reach(self, atlas: Atlas, model: ModelRecord, space: str, label: str,
                    labelled_ids: Iterable[int], labelled: Callable[[], np.ndarray], *,
                    version=None) -> float:
        """How far the samples labelled ``label`` lie from their nearest others in ``space``
        (``suggest.reach``, of ``labelled()``'s vectors): a suggestion beyond it is marked far.
        Measured again when the model's points change, when ``version`` does (the similarity
        vectors' time), or when the labelled samples do: one more label can move the reach a
        lot, and one taken off again must move it back (the key is a digest of their ids)."""
        import hashlib

        from soundatlas.suggest import reach

        ids = np.sort(np.fromiter(labelled_ids, np.int64))
        digest = hashlib.blake2b(ids.tobytes(), digest_size=16).hexdigest()
        key = (*points_key(atlas, model), version, digest)
        return self._cached(self._reaches, (model.name, space, label), key,
                            lambda: reach(labelled()))

    def _cached(self, store: dict, name, key: tuple, build: Callable[[], object], *,
                build_now: bool = True):
        """``store[name]``'s value while its key is ``key``, else ``build()``'s, stored (or
        None with ``build_now=False``). Builds of one store run one at a time, so requests
        arriving together build a large index once."""
        with self._lock:
            cached = store.get(name)
        if cached and cached[0] == key:
            return cached[1]
        if not build_now:
            return None
        with self._build_locks[id(store)]:
            with self._lock:  # built by another request meanwhile?
                cached = store.get(name)
            if cached and cached[0] == key:
                return cached[1]
            value = build()
            with self._lock:
                store[name] = (key, value)
            if self.freeze_gc:  # garbage first: frozen cycles would never be reclaimed
                gc.collect()
                gc.freeze()
        return value

    def audio_cache(self, library: Path, sr: int):
        """Decoded originals shared between renders (call with ``render_lock`` held).

        Parameters
        ----------
        library : Path
            The library root.
        sr : int
            The output sample rate; another rate (or library) starts a new cache.

        Returns
        -------
        synth.AudioCache
        """
        from soundatlas.synth import AudioCache

        if self._audio is None or (self._audio.library, self._audio.sr) != (library, sr):
            self._audio = AudioCache(library, sr)
        return self._audio

    def artifact(self, atlas: Atlas, model: ModelRecord):
        """The model's loaded weights (an :class:`artifact.ModelArtifact`, cached).

        Raises
        ------
        fastapi.HTTPException
            409 when the model's CQT differs from the atlas's, or when the shipped model of
            that name changed since the atlas was embedded (``artifact.check_current``).
        """
        from soundatlas.artifact import check_cqt, check_current, resolve_model

        key = (model.name, model.id, model.dir, model.created)
        with self._lock:
            artifact = self._artifacts.get(key)
        if artifact is None:
            artifact, _ = resolve_model(atlas, model.name)
            with self._lock:
                self._artifacts = {k: v for k, v in self._artifacts.items() if k[0] != key[0]}
                self._artifacts[key] = artifact
        try:
            check_current(atlas, model, artifact)
            check_cqt(artifact, atlas.cqt_params)
        except SoundAtlasError as exc:
            raise api_error(409, str(exc)) from None
        return artifact


def end_streams(app) -> None:
    """End every open event stream of an app.

    Call when the server starts to stop: a stream never ends by itself, and the server waits
    for open responses before it stops.

    Parameters
    ----------
    app : fastapi.FastAPI
        An app made by ``create_app`` (any other is left alone).
    """
    web = getattr(app.state, "web", None)
    if web is not None and web.events is not None:
        web.events.publish(None)
