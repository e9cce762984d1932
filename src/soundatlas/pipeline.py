"""Batch stages and the runner that spreads them over processes.

``analyse_files`` is the pure stage of indexing: a list of paths in, per path either an
``Analysis`` (content hash, audio facts, log-CQT frames; ``soundatlas.atlas.records``) or the ``AudioReadError`` that explains
why not. ``run_batches`` runs any such stage over many batches on a local process pool (the
default), in this process (``n_jobs=1``), or on any ``concurrent.futures.Executor`` (a Dask
``distributed.Client(...).get_executor()`` included), yielding results in submission order.
"""

from __future__ import annotations

import collections
import itertools
import hashlib
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from soundatlas import audio
from soundatlas.atlas.records import Analysis, AudioFacts
from soundatlas.cqt import PAPER_CQT, CQTParams, cqt_batch
from soundatlas.errors import AudioReadError, SoundAtlasError
from soundatlas.processes import (  # noqa: F401 (end_with_parent: imported from here too)
    ORPHAN_CHECK_S, end_with_parent, stop_workers, worker_started)

__all__ = [
    "Analysis", "Moved", "analyse_files", "content_hash", "legacy_fingerprint", "read_ahead",
    "run_batches", "isolate",
    "default_n_jobs",
]

T = TypeVar("T")
R = TypeVar("R")

#: soundatlas before atlas schema 9 hashed files over this many bytes by their size, head and
#: tail (:func:`legacy_fingerprint`)
LEGACY_WHOLE_LIMIT = 4 << 20
_LEGACY_EDGE = 2 << 20


#: what decoding tells (``audio.Audio``'s attributes of the same names)
_DECODED = tuple(f.name for f in fields(AudioFacts) if f.name != "hash")


@dataclass(frozen=True)
class Moved:
    """The file's content is already in the atlas: under a path that disappeared, or under
    this path with another size or date.

    Attributes
    ----------
    path : str
        The file, as ``analyse_files`` was given it.
    hash : str
        Its content hash.
    """

    path: str
    hash: str


#: threads that open a batch's files to ask the kernel to read them (``read_ahead``)
READ_AHEAD_THREADS = 8
#: how much of a file ``read_ahead`` asks for: its head, all of a one-shot's bytes and up to
#: 30 s of audio of most formats (the hash reads on through a longer file in order, which the
#: kernel's own read-ahead serves)
_AHEAD_HEAD = 8 << 20
#: bytes per advice: Linux reads at most max(read_ahead_kb, max_sectors_kb) of one
#: ``POSIX_FADV_WILLNEED``, 128 KiB with the usual defaults, so a longer range is asked for in
#: pieces of this size
_AHEAD_PIECE = 128 << 10
_queue: tuple[int, queue.SimpleQueue] | None = None  # (the process whose threads serve it, it)
_queue_lock = threading.Lock()
if hasattr(os, "register_at_fork"):  # a fork while another thread held the lock must not hang
    os.register_at_fork(after_in_child=lambda: globals().update(_queue_lock=threading.Lock()))


def read_ahead(paths: Iterable[str | os.PathLike]) -> list[Future]:
    """Ask the kernel to start reading files now, all at once, and return without waiting.

    A batch's files are hashed and decoded one after the other, and each read waits for the
    disk. On storage where a read takes milliseconds (a network block device, a NAS, a spinning
    disk) that wait, not the CQT, set the pace: a million-file library on this project's test
    machine (6 ms a read) indexed at 222 files/s with two workers, each with one read
    outstanding. ``POSIX_FADV_WILLNEED`` on every file of the batch puts their reads in flight
    together; the reads that follow then find the pages in memory. The files are opened from a
    few daemon threads, because opening one can itself wait for the disk (its directory entry
    and inode), and a thread stuck there (a hung network mount) must not keep the process from
    exiting. Advice is optional: nothing here raises or reports errors, the reads that follow
    do. Where the system has no ``posix_fadvise`` (macOS, Windows) this does nothing.

    Parameters
    ----------
    paths : iterable of path-like
        The files.

    Returns
    -------
    list of Future
        One per file, done when its advice is given (tests wait on them; callers need not);
        empty where no advice can be given.
    """
    if not hasattr(os, "posix_fadvise"):
        return []
    try:
        jobs = _advice_queue()
        futures = []
        for p in paths:
            future: Future = Future()
            jobs.put((os.fspath(p), future))
            futures.append(future)
        return futures
    except Exception:  # noqa: BLE001 - no thread to be had (a limit, shutdown), an odd path
        return []


def _advice_queue() -> queue.SimpleQueue:
    global _queue
    with _queue_lock:
        if _queue is None or _queue[0] != os.getpid():  # a forked child has no threads of its own
            jobs: queue.SimpleQueue = queue.SimpleQueue()
            for i in range(READ_AHEAD_THREADS):
                threading.Thread(target=_advise, args=(jobs,), daemon=True,
                                 name=f"soundatlas-read-ahead-{i}").start()
            _queue = (os.getpid(), jobs)
        return _queue[1]


def _advise(jobs: queue.SimpleQueue) -> None:
    while True:
        path, future = jobs.get()
        try:
            _will_need(path)
        except Exception:  # noqa: BLE001 - a path open() refuses (a NUL byte): no advice
            pass
        future.set_result(None)


def _will_need(path: str) -> None:
    try:  # O_NONBLOCK: a FIFO named like audio must not hold a thread in open()
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return
    try:
        size = os.fstat(fd).st_size
        head = min(size, _AHEAD_HEAD)
        for offset in range(0, head, _AHEAD_PIECE):
            os.posix_fadvise(fd, offset, min(_AHEAD_PIECE, head - offset),
                             os.POSIX_FADV_WILLNEED)
    except OSError:  # not a regular file (ESPIPE), or a file system that refuses advice
        pass
    finally:
        os.close(fd)


def content_hash(path: str | os.PathLike) -> str:
    """blake2b of all of the file's bytes.

    Two files have the same hash only when they hold the same bytes: the hash recognises moved
    and renamed files and keys the user's tags, stars and collections. (A fingerprint of a
    long file's size, head and tail, as soundatlas took before, is shared by files that
    differ: two stems of one song, silent at both ends and as long.)

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    str
        32 hexadecimal digits.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, _blake2b_16).hexdigest()


def _blake2b_16():
    return hashlib.blake2b(digest_size=16)


def legacy_fingerprint(path: str | os.PathLike) -> str:
    """The hash soundatlas took before atlas schema 9: :func:`content_hash` for a file of up to
    4 MiB, else blake2b of its size, first and last 2 MiB. ``index`` matches it to carry the
    curation of a file hashed so over to its whole hash, nothing else.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= LEGACY_WHOLE_LIMIT:
            return hashlib.file_digest(f, _blake2b_16).hexdigest()
        h = _blake2b_16()
        h.update(size.to_bytes(8, "little"))
        h.update(f.read(_LEGACY_EDGE))
        f.seek(size - _LEGACY_EDGE)
        h.update(f.read(_LEGACY_EDGE))
    return h.hexdigest()


def analyse_files(
    paths: list[str],
    *,
    params: CQTParams = PAPER_CQT,
    max_duration: float | None = 30.0,
    skip_hashes: frozenset[str] = frozenset(),
    stored_hashes: Sequence[str | None] | None = None,
) -> list[Analysis | Moved | AudioReadError]:
    """Hash, decode and transform a batch of files; one result per path, errors as values.

    Parameters
    ----------
    paths : list of str
        The files.
    params : CQTParams, default PAPER_CQT
        The CQT of the features.
    max_duration : float or None, default 30.0
        Seconds of each file analysed (None: all).
    skip_hashes : frozenset of str, default empty
        Content hashes whose files are not decoded (their result is ``Moved``).
    stored_hashes : sequence of str or None, optional
        Aligned with ``paths``: the content hash the atlas holds for that path, for a file
        whose size or date changed. When the content is still that, the file is not decoded
        either: its result is ``Moved`` with that hash.

    Returns
    -------
    list of Analysis, Moved or AudioReadError
        Aligned with ``paths``; an AudioReadError says why a file gives no audio.
    """
    read_ahead(paths)  # every file's read in flight at once, not one after the other
    results: list[Analysis | Moved | AudioReadError | None] = [None] * len(paths)
    decoded: list[tuple[int, str, audio.Audio]] = []
    for i, path in enumerate(paths):
        try:
            digest = _hash_or_explain(path, params, max_duration)
            same = stored_hashes is not None and stored_hashes[i] == digest
            if same or digest in skip_hashes:
                results[i] = Moved(path, digest)
                continue
            decoded.append((i, digest, _decode(path, params, max_duration)))
        except AudioReadError as exc:
            results[i] = exc
    features = cqt_batch([a.y for _, _, a in decoded], params=params) if decoded else []
    for (i, digest, a), C in zip(decoded, features):
        results[i] = Analysis(hash=digest, features=C, labels=_audio_labels(a, params.sr),
                              **{k: getattr(a, k) for k in _DECODED})
    return results  # type: ignore[return-value]


def _audio_labels(a, sr: int) -> dict[str, str]:
    """Labels the audio itself gives: a loop's tempo and key (``soundatlas.rhythm``)."""
    from soundatlas.rhythm import LOOP_MIN_SECONDS, loop_labels

    if a.duration < LOOP_MIN_SECONDS:
        return {}
    return loop_labels(a.y, sr)


def _decode(path: str, params: CQTParams, max_duration) -> audio.Audio:
    """``audio.load``, with a failure blamed on the file's bytes (``AudioReadError.lasting``)
    decoded once more before it is believed: libsndfile names a read error by what it made of
    the bytes it did not get ("not audio", "too short"), and ``index`` does not read a lasting
    failure again until the file changes. A second failure with another reason is not lasting.
    (The hash has just read every byte, so the file itself is readable.)"""
    try:
        return audio.load(path, sr=params.sr, max_duration=max_duration)
    except AudioReadError as exc:
        if not exc.lasting:
            raise
        first = exc.reason
    try:
        return audio.load(path, sr=params.sr, max_duration=max_duration)  # the error passed
    except AudioReadError as exc:
        if exc.lasting and exc.reason != first:
            raise AudioReadError(path, exc.reason) from exc
        raise


def _hash_or_explain(path: str, params: CQTParams, max_duration) -> str:
    try:
        return content_hash(path)
    except OSError as exc:
        # let the decoder name access problems the way it names every other one; where it
        # blames the bytes, it names what it made of the ones it could not read: the OS's
        # reason then, which may pass
        try:
            audio.load(path, sr=params.sr, max_duration=max_duration)
        except AudioReadError as named:
            if not named.lasting:
                raise
        raise AudioReadError(path, audio.os_reason(exc)) from exc


def default_n_jobs() -> int:
    """The number of cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _init_worker(parent: int) -> None:
    worker_started(parent)
    import torch

    torch.set_num_threads(1)  # one process per core; threads would fight over the same cores


def run_batches(
    fn: Callable[[T], R],
    batches: Iterable[T],
    *,
    n_jobs: int | None = None,
    executor: Executor | None = None,
    on_crash: Callable[[T], R] | None = None,
) -> Iterator[R]:
    """Apply ``fn`` to every batch, yielding results in order with a bounded number in flight.

    When a worker process dies (a native crash in a decoder, the OOM killer), the pool is
    restarted, the other batches in flight are resubmitted, and the oldest one is handed to
    ``on_crash`` (which should isolate the culprit); without ``on_crash`` the error propagates.

    Parameters
    ----------
    fn : callable
        The stage; picklable (a module-level function or partial).
    batches : iterable
        Its inputs.
    n_jobs : int, optional
        Processes (default: one per core); 1 runs in this process. Ignored with ``executor``.
    executor : concurrent.futures.Executor, optional
        Where to run instead of a local process pool (a Dask client's executor included).
    on_crash : callable, optional
        The result of a batch whose worker died (``isolate`` finds the culprit).

    Yields
    ------
    object
        ``fn(batch)`` for each batch, in order.
    """
    return _run_batches(fn, iter(batches), n_jobs, executor, on_crash, workers_checked=False)


def _run_batches(fn, batches, n_jobs, executor, on_crash, *, workers_checked: bool):
    if executor is None and (n_jobs or default_n_jobs()) <= 1:
        for batch in batches:
            yield fn(batch)
        return
    own = executor is None
    n_jobs = n_jobs or default_n_jobs()
    if own:
        executor = _process_pool(n_jobs)
    # a Dask cluster's workers may join after the start (an adaptive or batch-queue cluster):
    # the batches in flight follow the threads it has
    client = None if own else getattr(executor, "_client", None)
    watch = _ClusterWatch(client) if client is not None else None
    window = 2 * (n_jobs if own else max(n_jobs, _executor_slots(executor)))
    pending: collections.deque = collections.deque()
    try:
        for batch in batches:
            pending.append((batch, executor.submit(fn, batch)))
            while len(pending) >= window:
                if watch is not None:
                    if not watch.ready(pending[0][1]):
                        window = max(window, 2 * watch.threads)
                        continue
                    window = max(window, 2 * watch.threads_now())  # fast batches too
                yield _next_result(pending, on_crash, client)
        while pending:
            if watch is None or watch.ready(pending[0][1]):
                yield _next_result(pending, on_crash, client)
    except KeyboardInterrupt:
        if own:
            stop_workers(executor)  # Ctrl-C: no batch in a worker runs on to its end
        raise
    except _Restart as restart:
        # the pool broke: start a new one and go on from where we are
        executor.shutdown(wait=False, cancel_futures=True)
        if not own or on_crash is None:
            raise restart.cause
        rest = [b for b, _ in pending]
        pending.clear()
        if not workers_checked:  # once per run: after that, workers are known to start
            _check_workers_start()
        yield on_crash(restart.batch)
        yield from _run_batches(fn, itertools.chain(rest, batches), n_jobs, None, on_crash,
                                workers_checked=True)
        return
    finally:
        for _, fut in pending:
            fut.cancel()
        if own:
            executor.shutdown(wait=True, cancel_futures=True)


class _Restart(Exception):
    def __init__(self, batch, cause):
        self.batch, self.cause = batch, cause


def _next_result(pending: collections.deque, on_crash, client=None):
    batch, fut = pending[0]
    try:
        result = fut.result()
    except BrokenProcessPool as exc:
        pending.popleft()
        raise _Restart(batch, exc) from exc
    except Exception as exc:
        # the scheduler's own distributed.scheduler.no-workers-timeout
        if type(exc).__name__ == "NoWorkerError":
            raise _no_workers(client, "as long as its scheduler waits") from exc
        # Dask gives up on a task whose workers keep dying with KilledWorker; the cluster itself
        # carries on, so only this batch needs isolating.
        if type(exc).__name__ != "KilledWorker":
            raise
        if on_crash is None:  # nothing to isolate the batch with: the run stops, in words
            from soundatlas.errors import SoundAtlasError

            raise SoundAtlasError(
                f"the Dask workers running a batch died ({exc}); the batches finished before "
                "are kept: see the workers' logs (a memory limit?), then run the command "
                "again to go on") from exc
        pending.popleft()
        return on_crash(batch)
    pending.popleft()
    return result


#: how long a batch waits on a Dask cluster that has no worker when Dask's own
#: ``distributed.scheduler.no-workers-timeout`` is not set
NO_WORKERS_TIMEOUT_S = 300.0
_NO_WORKERS_POLL_S = 1.0


class _ClusterWatch:
    """Waits on a Dask cluster (``client``) a second at a time, and stops with a clear error
    once it has had no worker for as long as ``distributed.scheduler.no-workers-timeout``
    says (``NO_WORKERS_TIMEOUT_S`` when unset) instead of waiting for ever: the scheduler keeps
    a batch whose workers all died and waits for one to join. ``threads``: the worker threads
    it had at the last look. The batches finished before are kept by the caller."""

    def __init__(self, client):
        import dask.config
        import dask.utils

        self.client = client
        setting = dask.config.get("distributed.scheduler.no-workers-timeout", None)
        if not setting:  # the scheduler's own, where it has one: it fails the batches then
            setting = _scheduler_setting(client, "distributed.scheduler.no-workers-timeout")
            if setting:
                setting = dask.utils.parse_timedelta(setting) + _NO_WORKERS_GRACE_S
        self.limit = dask.utils.parse_timedelta(setting) if setting else NO_WORKERS_TIMEOUT_S
        self.alone_since: float | None = None
        self.threads, self.answered = 0, True
        self.looked = time.monotonic()

    def threads_now(self) -> int:
        """The worker threads, looked up at most every few seconds (``threads`` between)."""
        if time.monotonic() - self.looked > _THREADS_EVERY_S:
            self._look()
        return self.threads

    def _look(self) -> None:
        self.looked = time.monotonic()
        threads = _worker_threads(self.client)
        self.threads, self.answered = threads or 0, threads is not None

    def ready(self, fut) -> bool:
        """Whether ``fut`` is done, after waiting for it up to a second."""
        try:
            fut.result(timeout=_NO_WORKERS_POLL_S)
            return True
        except TimeoutError:
            if fut.done():  # the batch itself raised TimeoutError
                return True
        except Exception:  # done, with an error: the caller's fut.result() raises it
            return True
        self._look()
        if self.threads:
            self.alone_since = None
        elif self.alone_since is None:
            self.alone_since = time.monotonic()
        elif time.monotonic() - self.alone_since > self.limit:
            fut.cancel()
            if not self.answered:
                address = getattr(self.client.scheduler, "address", "the scheduler")
                raise SoundAtlasError(
                    f"the Dask scheduler at {address} has not answered for {self.limit:g} s; "
                    "the batches finished before are kept: start it again (and its workers), "
                    "then run the command again to go on")
            raise _no_workers(self.client, f"{self.limit:g} s")
        return False


#: a scheduler with its own no-workers timeout fails the batches itself: the watch waits
#: this much longer, so that the scheduler's answer comes first
_NO_WORKERS_GRACE_S = 30.0
#: seconds between looks at a cluster's worker threads while batches come back fast
_THREADS_EVERY_S = 5.0


def _scheduler_setting(client, key: str, wait: float = 10.0):
    """The scheduler's dask setting ``key`` (None when unset, or when it does not answer
    within ``wait`` seconds). Asked with ``dask.config.get``, which every scheduler can run
    (a function of soundatlas would need soundatlas installed where the scheduler runs)."""
    import dask.config

    answer: list = []

    def ask() -> None:
        try:
            answer.append(client.run_on_scheduler(dask.config.get, key, None))
        except Exception:  # an older scheduler, or none: no setting known (and no traceback)
            pass

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(wait)
    return answer[0] if answer else None


def _no_workers(client, waited: str) -> SoundAtlasError:
    address = getattr(getattr(client, "scheduler", None), "address", "the scheduler")
    return SoundAtlasError(
        f"the Dask cluster at {address} has had no worker for {waited} (they died or left); the "
        f"batches finished before are kept: start `dask worker {address}` where the library's "
        "files can be read, then run the command again to go on (Dask's "
        "distributed.scheduler.no-workers-timeout sets how long to wait)")


def _executor_slots(executor) -> int:
    """Worker threads behind a Dask client's executor (0 when unknown: not a Dask executor,
    or no scheduler answer; the local cores count then)."""
    return _worker_threads(getattr(executor, "_client", None)) or 0


def _worker_threads(client) -> int | None:
    """The threads of the workers a Dask client's scheduler has now; None when it does not
    answer (or ``client`` is none)."""
    try:  # {worker: threads}: small, unlike scheduler_info()
        return sum(client.nthreads().values())
    except Exception:
        return None


def _check_workers_start() -> None:
    """Fail clearly when worker processes die before doing anything (then no file is to blame)."""
    with _process_pool(1) as pool:
        try:
            pool.submit(os.getpid).result()
        except BrokenProcessPool:
            raise SoundAtlasError(
                "worker processes die as they start, so no file can be analysed in parallel; a "
                "script that calls soundatlas must guard its entry point with "
                "`if __name__ == '__main__':` (or pass n_jobs=1)"
            ) from None


def _process_pool(n_jobs: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=n_jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def isolate(fn: Callable[[list], list], batch: list, *, crashed: Callable[[object], object]) -> list:
    """Run ``fn`` on the items of ``batch`` one at a time in a process of their own, a new one
    after each item that kills it: the slow path after a worker crash, which finds the culprit.

    Parameters
    ----------
    fn : callable
        The stage, given a list of one item.
    batch : list
        The items.
    crashed : callable
        The result for an item whose process dies.

    Returns
    -------
    list
        The results of the items, in order.
    """
    out, pool = [], None
    try:
        for item in batch:
            pool = pool or _process_pool(1)  # one process until an item kills it
            try:
                out.extend(pool.submit(fn, [item]).result())
            except BrokenProcessPool:
                out.append(crashed(item))
                pool.shutdown(wait=True)
                pool = None
    except KeyboardInterrupt:
        if pool is not None:
            stop_workers(pool)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return out
