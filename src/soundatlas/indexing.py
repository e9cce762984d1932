"""``soundatlas index``: bring an atlas up to date with its library folder.

Orchestration only: scan the folder, compare with the atlas (size and mtime; a content hash
recognises moved and renamed files), run ``pipeline.analyse_files`` over the new and changed files
in batches, and commit each batch (records + features together). A run killed at any moment
leaves committed batches in place; the next run finds them unchanged and completes the rest.
Deleted files are forgotten at the end of a run.

A file whose bytes cannot be decoded (not audio, corrupt, too short; ``AudioReadError.lasting``)
is not read again while its size and date, soundatlas, libsndfile and the analysis's rate and
``max_duration`` stay as they were when it failed (:func:`decoder_key`): a library holding
thousands of broken files does not decode them on every run. ``retry_failed`` (``index
--retry-failed``) reads them all; failures that may pass (permission, I/O) are tried every run.

``refresh_features`` (``index --refresh-features``) brings an atlas whose features were made
with an older CQT kernel (``CQTParams.kernel``) to today's: the atlas records the new kernel and
marks every sample stale at once, and runs analyse stale samples as if changed until none is left.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from soundatlas import audio, labels as labels_mod
from soundatlas.atlas import Atlas, NewSample, default_atlas_dir
from soundatlas.atlas.legacy import features_summary, file_name, is_silent, summaries_match
from soundatlas.atlas.store import chunked
from soundatlas.cqt_params import AS_STORED, PAPER_CQT, AsStored, CQTParams
from soundatlas.errors import AudioReadError, ParameterError, SoundAtlasError
from soundatlas.index_follow import follow_library
from soundatlas.index_labels import (DEFAULT_MANIFEST, check_label_sources,
                                     resolve_label_sources, update_labels)
from soundatlas.pipeline import (LEGACY_WHOLE_LIMIT, Moved, analyse_files, content_hash,
                                 default_n_jobs, isolate, legacy_fingerprint, run_batches)
from soundatlas.scan import NOT_REGULAR, FileEntry, ScanList, TodoEntry

__all__ = ["IndexSummary", "index_library", "cqt_for_model", "DEFAULT_MANIFEST"]


Progress = Callable[[int, int], None]

#: how a failure begins when the worker could not see the library folder at all
UNSEEN_LIBRARY = "the library folder"


@dataclass
class IndexSummary:
    """What an ``index`` run did, and the atlas after it (``soundatlas index --json`` prints it)."""

    library: str
    atlas: str
    n_scanned: int = 0
    n_indexed: int = 0  # new or changed files analysed in this run
    n_unchanged: int = 0
    n_touched: int = 0  # of those analysed for a new size or date, the same content: kept
    n_rehashed: int = 0  # files an older soundatlas hashed by size, head and tail: hashed whole
    n_moved: int = 0
    n_removed: int = 0
    n_kept_unreadable: int = 0  # kept, though their file or folder could not be read this run
    n_failed: int = 0
    n_failed_unchanged: int = 0  # of those, failed before on the same bytes: not read again
    n_failed_new: int = 0  # failed in this run, and had not failed before as they are now
    failed_new: list[tuple[str, str]] = field(default_factory=list)  # the first 100 of those
    n_truncated: int = 0
    n_samples: int = 0  # in the atlas after the run
    n_frames: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)  # key -> samples with it
    label_problems: list[str] = field(default_factory=list)
    label_sources: dict = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)  # e.g. a broken numba cache, cleared
    library_moved_from: str | None = None  # the library the atlas recorded before this run
    max_duration: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The summary as plain JSON-able values."""
        return asdict(self)


def index_library(
    library: str | os.PathLike,
    *,
    atlas_dir: str | os.PathLike | None = None,
    label_sources: labels_mod.LabelSources | dict | None = None,
    params: CQTParams | None = None,
    refresh_features: bool = False,
    max_duration: float | None | AsStored = AS_STORED,
    retry_failed: bool = False,
    library_moved: bool = False,
    n_jobs: int | None = None,
    batch_size: int = 32,
    executor=None,
    progress: Progress | None = None,
) -> IndexSummary:
    """Index ``library`` into its atlas (see the module doc).

    Parameters
    ----------
    library : path-like
        The library folder.
    atlas_dir : path-like, optional
        The atlas directory (default ``LIBRARY/.soundatlas``).
    label_sources : labels.LabelSources or dict, optional
        Where labels come from; stored in the atlas (default: what it stores, else the
        defaults, with ``metadata.csv`` when the library has one). A ``LabelSources`` replaces
        them all; a dict of some of its fields (``manifest``, ``folder``, ``name_pattern``)
        changes only those, the others staying as stored (or the defaults).
    params : CQTParams, optional
        The CQT of a new atlas (default ``PAPER_CQT``); an existing atlas keeps the one it holds
        (None) and refuses others.
    refresh_features : bool, default False
        Analyse every file again with today's CQT kernel (``PAPER_CQT.kernel``, the atlas's
        other CQT numbers kept). A refresh that is interrupted is finished by the next run, and
        nothing embeds the atlas meanwhile.
    max_duration : float, None or AS_STORED, default AS_STORED
        Seconds of each file analysed (None: all). The atlas remembers it: ``AS_STORED`` is
        the limit of its last run (``Atlas.max_duration``). A limit other
        than the one a sample was analysed under analyses it again where that changes what
        is read: a cut file under a higher limit (or none), a longer one under a lower.
    retry_failed : bool, default False
        Read again the files whose bytes could not be decoded before, though they have not
        changed (by default they are counted in ``n_failed_unchanged`` and left as they are).
    library_moved : bool, default False
        ``library`` is the atlas's library moved, though it holds fewer than half of the
        files the atlas has (by default such a folder is refused: ``index_follow``).
    n_jobs : int, optional
        Worker processes (default: one per core; 1: this process).
    batch_size : int, default 32
        Files per batch (one commit each).
    executor : concurrent.futures.Executor, optional
        Where to analyse instead of a local process pool (``pipeline.run_batches``).
    progress : callable, optional
        Called with (files done, files found).

    Returns
    -------
    IndexSummary

    Raises
    ------
    ParameterError
        For a library that is not a folder, or arguments out of range.
    AtlasError
        When the atlas cannot be opened or holds features of other CQT parameters.
    """
    start = time.perf_counter()
    library = Path(library)
    if not library.is_dir():
        raise ParameterError(f"library {library} is not a folder")
    if batch_size < 1:
        raise ParameterError(f"batch_size={batch_size} must be at least 1")
    if (max_duration is not AS_STORED and max_duration is not None
            and not max_duration >= audio.MIN_DURATION):  # before the atlas keeps it
        raise ParameterError(f"max_duration={max_duration} must be at least the shortest sound "
                             f"analysed, {audio.MIN_DURATION:g} s (or None for no limit)")
    atlas_dir = Path(atlas_dir) if atlas_dir is not None else default_atlas_dir(library)
    check_label_sources(library, label_sources)  # before the atlas is made or changed
    with Atlas.create(atlas_dir, library=library, params=params) as atlas:
        moved_from = follow_library(atlas, library, told=library_moved)
        sources = resolve_label_sources(atlas, library, label_sources)
        if refresh_features and atlas.cqt_params.kernel != PAPER_CQT.kernel:
            atlas.start_feature_refresh(replace(atlas.cqt_params, kernel=PAPER_CQT.kernel))
        params = atlas.cqt_params
        if max_duration is AS_STORED:
            max_duration = atlas.max_duration()
            if max_duration is not None and max_duration < audio.MIN_DURATION:
                # kept by a soundatlas that took any positive limit
                raise ParameterError(
                    f"the atlas keeps a limit of {max_duration:g} s a file, shorter than the "
                    f"shortest sound analysed ({audio.MIN_DURATION:g} s): index with "
                    "--max-duration SECONDS (or none) to set another")
        else:  # the atlas's limit from now on: a run after this one, interrupted, goes on
            atlas.set_max_duration(max_duration)
        stale = atlas.stale_sample_ids()  # analysed with the kernel a refresh replaces
        # analysed under another --max-duration: what the limit reads changed
        stale |= atlas.ids_cut_otherwise(max_duration)
        summary = IndexSummary(
            library=str(library), atlas=str(atlas_dir), label_sources=sources.to_dict(),
            max_duration=max_duration, library_moved_from=moved_from,
        )
        # the labels of every sample were written and nothing changed since: then only the
        # samples this run adds or moves need theirs (None: all are written again)
        changed: set[int] | None = set() if atlas.labels_unchanged_since_written() else None
        _rehash_legacy(atlas, library, n_jobs, progress, summary)
        atlas.sign_legacy_holders()  # while the samples whose curation may move are there
        with ScanList(library) as found:
            summary.n_scanned = found.n_files
            lasting_key = decoder_key(params.sr, max_duration)
            seen_ids = _classify(atlas, found, summary, stale,
                                 None if retry_failed else lasting_key)
            _keep_unreadable(atlas, found, seen_ids, summary)
            legacy = _LegacyFollower.of(atlas, library, seen_ids)
            # a moved file never takes over features that are stale or damaged (marked by check
            # --repair): it is analysed
            orphans, stale_orphans, twins = _orphans(atlas, seen_ids,
                                                     stale | atlas.marked_sample_ids())
            del seen_ids
            run_id = atlas.start_run("index", found.n_files)
            try:
                for chunk in found.problems():
                    # a path that cannot be read keeps its sample (_keep_unreadable); one that
                    # is no regular file any more loses it
                    gone, kept = [], []
                    for p, why in chunk:
                        lost = why == NOT_REGULAR
                        # new, and not a drive away whose samples are kept
                        if atlas.failure(p) is None and (lost or not atlas.ids_under(p)):
                            _new_failure(summary, p, why)
                        (gone if lost else kept).append((p, None, None, why, None))
                    atlas.commit_batch([], failed=gone, kept_failures=kept)
                n_done = summary.n_unchanged + summary.n_failed_unchanged
                if progress:
                    progress(n_done, summary.n_scanned)
                retry: list[FileEntry] = []  # moved files whose twin took the record first
                # hashes a file may have that a worker could not read for want of the library
                # (a moved file, on a cluster that cannot see it): the missing samples stay
                protected: set[str] = set()
                checked: list[bool] = []  # numba_guard.check() ran in this run
                # first the to-do list, where a file may be a moved one (each file carries the
                # hashes of the missing samples of its size); then the retries, as plain files
                for source in (lambda: (_with_twins(b, twins) for b in found.todo(batch_size)),
                               lambda: chunked([_plain(e) for e in retry], batch_size)):
                    # the workers may start elsewhere: the library's absolute path
                    stage = functools.partial(_analyse, root=os.path.abspath(library),
                                              params=params, max_duration=max_duration)
                    sent: collections.deque = collections.deque()  # the batches in flight

                    def batches(source=source, sent=sent):
                        for batch in source():
                            sent.append(batch)
                            yield batch

                    on_crash = functools.partial(_on_crash, stage, summary, checked)
                    for results in run_batches(stage, batches(), n_jobs=n_jobs,
                                               executor=executor, on_crash=on_crash):
                        n_done += _commit(atlas, sent.popleft(), results, orphans, retry,
                                          summary, run_id, n_done, legacy, lasting_key,
                                          protected, changed)
                        if progress:
                            progress(n_done, summary.n_scanned)
                removed = [sid for h, ids in orphans.items() if h not in protected
                           for sid in ids] + stale_orphans
                summary.n_kept_unreadable += sum(len(ids) for h, ids in orphans.items()
                                                 if h in protected)
                atlas.remove_samples(removed)
                atlas.settle_legacy()
                if atlas.feature_refresh_started() is not None and not atlas.stale_sample_ids():
                    atlas.finish_feature_refresh()
                summary.n_removed = len(removed)
                failed_paths = [p for p, _reason in atlas.failures()]
                # a failure is forgotten once its path is gone, or once the scan, which could
                # not read it, reads it again as a file whose sample was kept (kept_failures
                # above; a failed analysis of such a file says why, and stays)
                readable = set(atlas.lookup_paths(found.files_among(atlas.scan_failures())))
                atlas.forget_failures(found.present(failed_paths) - readable)
                update_labels(atlas, library, sources, summary, changed)
                atlas.collect_garbage()
                _finish_summary(atlas, summary)
                summary.seconds = time.perf_counter() - start
                atlas.finish_run(run_id, status="done", summary=_brief(summary),
                                 n_done=found.n_files)
            except BaseException:
                # recorded when it can be; a full disk may refuse this too, and the first
                # error is the one to tell
                with contextlib.suppress(SoundAtlasError, sqlite3.Error):
                    atlas.finish_run(run_id, status="interrupted", summary=_brief(summary))
                raise
    return summary


def cqt_for_model(
    library: str | os.PathLike, atlas_dir: str | os.PathLike | None, model: str | None
) -> CQTParams | None:
    """The CQT a run that indexes then embeds with ``model`` (``map``) gives a new atlas.

    Parameters
    ----------
    library : path-like
        The library folder.
    atlas_dir : path-like or None
        The atlas directory (None: ``LIBRARY/.soundatlas``).
    model : str or None
        A shipped model's name or a model directory (None: the default model).

    Returns
    -------
    CQTParams or None
        The model's, so that it can embed the atlas; None (``index_library``'s default) when
        the atlas exists, or when ``model`` is neither a shipped model nor a model directory.
    """
    import json

    from soundatlas.artifact import CONFIG, DEFAULT_MODEL, shipped_model_dir
    from soundatlas.atlas import Atlas

    atlas_dir = Path(atlas_dir) if atlas_dir is not None else default_atlas_dir(library)
    if Atlas.exists(atlas_dir):
        return None
    name = model or DEFAULT_MODEL
    for directory in (Path(name), shipped_model_dir(name)):
        if (directory / CONFIG).is_file():
            return CQTParams(**json.loads((directory / CONFIG).read_text())["cqt"])
    return None


def decoder_key(sr: int, max_duration: float | None) -> str:
    """What decides whether a file's bytes decode: soundatlas and libsndfile, the analysis's
    sample rate and ``max_duration`` (a NaN at 40 s fails no 30 s read). A failure recorded
    as lasting under another key is read again.

    Parameters
    ----------
    sr : int
        The atlas's analysis rate (Hz).
    max_duration : float or None
        Seconds analysed of each file.

    Returns
    -------
    str
        A JSON object, compared as text.
    """
    import soundfile

    from soundatlas import __version__

    seconds = None if max_duration is None else float(max_duration)  # 30 and 30.0 alike
    return json.dumps({"soundatlas": __version__, "libsndfile": soundfile.__libsndfile_version__,
                       "sr": int(sr), "max_duration": seconds}, sort_keys=True)


#: the reason of a file whose analysis killed its worker process
CRASHED = "analysing this file crashed its process (in the decoder or a native library)"


def _crashed(entry: FileEntry) -> AudioReadError:
    # not lasting by itself: the OOM killer or a `kill` looks the same; _commit makes a second
    # crash of the same file lasting (finding the file to blame means analysing its batch one
    # file at a time)
    return AudioReadError(entry.path, CRASHED)


def _lasting_key(atlas: Atlas, entry: FileEntry, error: AudioReadError,
                 lasting_key: str) -> str | None:
    """The decoder settings to store with a failure, where the file's bytes are the problem:
    a lasting error, or a crash of a file whose analysis crashed on an earlier run too (same
    size and date); None where it may pass."""
    if error.lasting:
        return lasting_key
    if error.reason == CRASHED and atlas.failure(entry.path) == (entry.size, entry.mtime_ns,
                                                                  CRASHED):
        return lasting_key
    return None


def _on_crash(stage, summary: IndexSummary, checked: list, batch: list) -> list:
    """A worker died on ``batch``: after the run's first crash, check librosa's numba cache
    (a broken one kills every worker that tracks a loop's beat, whatever the file), then find
    the file to blame one at a time."""
    if not checked:
        checked.append(True)
        from soundatlas import numba_guard

        line = numba_guard.check()
        if line:
            summary.repairs.append(line)
    return isolate(stage, batch, crashed=_crashed)


def _analyse(entries: list[FileEntry], *, root: str, params, max_duration):
    """The batch stage as the pool runs it: relative entries in, results out. A worker that
    cannot see the library at ``root`` (a Dask worker on a machine that mounts it elsewhere, or
    not at all) fails each file naming the folder and the machine, a failure that may pass."""
    if not os.path.isdir(root):
        import socket

        reason = (f"{UNSEEN_LIBRARY} {root} cannot be read on {socket.gethostname()}: run "
                  "the workers where the library is at that path")
        return [AudioReadError(os.path.join(root, e.path), reason) for e in entries]
    paths = [os.path.join(root, e.path) for e in entries]
    # a file whose content is a missing sample's (its twins) moved: not analysed again
    shared = {id(t): t for t in (getattr(e, "twins", ()) for e in entries) if t}  # once each
    skip_hashes = frozenset().union(*shared.values())
    return analyse_files(paths, params=params, max_duration=max_duration, skip_hashes=skip_hashes,
                         stored_hashes=[_stored_hash(e) for e in entries])


def _stored_hash(entry: FileEntry) -> str | None:
    stored = getattr(entry, "stored", None)  # a retried moved file is a plain entry
    return stored[1] if stored else None


def _classify(atlas: Atlas, found: "ScanList", summary: IndexSummary, stale: set[int],
              lasting_key: str | None):
    """Split scanned files into unchanged ones and those to analyse (changed, new, or with
    ``stale`` features), the latter into ``found``'s to-do list; mark atlas ids seen. A file
    whose bytes failed under ``lasting_key`` (None: none) and has not changed since is left
    out (``n_failed_unchanged``).

    Returns
    -------
    bytearray
        Per atlas id, 1 if seen.
    """
    seen = bytearray(atlas.max_sample_id() + 1)
    for chunk in found.files(2000):
        known = atlas.lookup_paths([e.path for e in chunk])
        failed = (atlas.lasting_failures([e.path for e in chunk if e.path not in known],
                                         lasting_key) if lasting_key is not None else {})
        todo = []
        for e in chunk:
            rec = known.get(e.path)
            if rec is None and failed.get(e.path) == (e.size, e.mtime_ns):
                summary.n_failed_unchanged += 1
            elif (rec is not None and rec[1] == e.size and rec[2] == e.mtime_ns
                    and rec[0] not in stale):
                seen[rec[0]] = 1
                summary.n_unchanged += 1
            else:
                if rec is not None:
                    seen[rec[0]] = 1  # replaced in place when its new analysis commits
                    if rec[0] not in stale and rec[1] >= 0:  # not marked by check --repair:
                        # the record is kept if the content is the same (a touched file)
                        e = TodoEntry(e.path, e.size, e.mtime_ns, stored=(rec[0], rec[3]))
                todo.append(e)
        found.add_todo(todo)
    return seen


def _new_failure(summary: IndexSummary, path: str, reason: str) -> None:
    summary.n_failed_new += 1
    if len(summary.failed_new) < 100:
        summary.failed_new.append((path, reason))


def _keep_unreadable(atlas: Atlas, found: "ScanList", seen: bytearray,
                     summary: IndexSummary) -> None:
    """Mark seen the samples at or under a path the scan could not read (a folder without
    permission, a link to a drive not mounted): what is there may well still exist, and
    dropping it would throw away its features, embeddings and split, analysed again once it
    can be read. A path that is there but is no regular file any more (a FIFO, say) is not
    kept."""
    for chunk in found.problems():
        for path, reason in chunk:
            if reason == NOT_REGULAR:
                continue
            for sid in atlas.ids_under(path):
                if sid < len(seen) and not seen[sid]:
                    seen[sid] = 1
                    summary.n_kept_unreadable += 1


def _orphans(
    atlas: Atlas, seen: bytearray, stale: set[int]
) -> tuple[dict[str, list[int]], list[int], dict[int, list[str]]]:
    """Atlas samples whose path was not found (deleted, or moved elsewhere): hash -> ids of
    those a moved file may take over, the ``stale`` ones (their features are not kept), and
    size -> the hashes of the former (a tuple): a moved file has its size, so each file to analyse
    carries only the hashes of its size (``_with_twins``), not every missing sample's (a moved
    top folder of a million files made that set 35 MB, sent with every batch)."""
    out: dict[str, list[int]] = {}
    by_size: dict[int, list[str]] = {}
    dropped: list[int] = []
    for sid, digest, size in atlas.iter_ids_hashes_sizes():
        if sid >= len(seen) or not seen[sid]:
            if sid in stale:
                dropped.append(sid)
            else:
                if digest not in out:
                    by_size.setdefault(size, []).append(digest)
                out.setdefault(digest, []).append(sid)
    # one tuple a size, shared by every file of that size: a batch of files of one length (a
    # rendered or fixed-length library) pickles it once, not once a file
    return out, dropped, {size: tuple(hashes) for size, hashes in by_size.items()}


@dataclass(frozen=True)
class _NewWithTwins(FileEntry):
    """A new path whose size a missing sample has: ``twins``, those samples' hashes."""

    twins: tuple[str, ...] = ()


@dataclass(frozen=True)
class _ChangedWithTwins(TodoEntry):
    """A changed file whose size a missing sample has (a file replaced by a copy of one that
    went): ``twins``, those samples' hashes."""

    twins: tuple[str, ...] = ()


def _with_twins(batch: list[FileEntry], by_size: dict[int, tuple[str, ...]]) -> list[FileEntry]:
    """``batch``, each file that may be a missing sample moved carrying the hashes it may
    have (the size's one tuple, shared)."""
    out = []
    for e in batch:
        twins = by_size.get(e.size)
        if twins and isinstance(e, TodoEntry):
            e = _ChangedWithTwins(e.path, e.size, e.mtime_ns, e.stored, twins)
        elif twins:
            e = _NewWithTwins(e.path, e.size, e.mtime_ns, twins)
        out.append(e)
    return out


def _plain(e: FileEntry) -> FileEntry:
    """``e`` without its twins: analysed for real."""
    if isinstance(e, TodoEntry):
        return TodoEntry(e.path, e.size, e.mtime_ns, e.stored)
    return FileEntry(e.path, e.size, e.mtime_ns)


def _commit(atlas, batch, results, orphans, retry, summary, run_id, n_done, legacy,
            lasting_key, protected: set[str], changed: set[int] | None) -> int:
    new, moved, failed, kept, follows = [], [], [], [], []
    for entry, result in zip(batch, results):
        if isinstance(result, Moved) and _stored_hash(entry) == result.hash:
            # only its size or date changed (touched, copied without its dates): kept as it is
            moved.append((entry.stored[0], entry.path, entry.size, entry.mtime_ns))
            summary.n_touched += 1
        elif isinstance(result, Moved):
            ids = orphans.get(result.hash)
            if ids:
                sid = ids.pop()
                if not ids:
                    del orphans[result.hash]
                moved.append((sid, entry.path, entry.size, entry.mtime_ns))
                summary.n_moved += 1
            else:
                retry.append(entry)  # its twin claimed the record first: analyse it for real
        elif isinstance(result, AudioReadError):
            before = atlas.failure(entry.path)
            if before is None or before[:2] != (entry.size, entry.mtime_ns):
                _new_failure(summary, entry.path, result.reason)
            row = (entry.path, entry.size, entry.mtime_ns, result.reason,
                   _lasting_key(atlas, entry, result, lasting_key))
            # a failure that may pass (permission, I/O, workers that cannot see the library)
            # keeps the sample the file had, its points and split with it: the next run tries
            # again. Bytes that cannot be decoded are no longer that sample's: it goes
            if row[4] is None and getattr(entry, "stored", None):
                kept.append(row)
                summary.n_kept_unreadable += 1
            else:
                failed.append(row)
            if result.reason.startswith(UNSEEN_LIBRARY):
                # the worker saw no library: the file may be a missing sample moved, which
                # stays too (a single unreadable file does not keep every sample of its size)
                protected.update(getattr(entry, "twins", ()))
        else:
            new.append(NewSample.of(entry, result))
            summary.n_indexed += 1
            taken = legacy.take(entry, result.hash, result.features) if legacy else None
            if taken is not None:
                follows.append((taken[0], result.hash, entry.path, taken[1], taken[2]))
    n = len(new) + len(moved) + len(failed) + len(kept)
    ids = atlas.commit_batch(new, moved=moved, failed=failed, run_id=run_id,
                             n_done=n_done + n, follows=follows, kept_failures=kept)
    if changed is not None:  # whose labels update_labels writes
        changed.update(ids)
        changed.update(sid for sid, path, *_ in moved)
    return n


def _rehash_legacy(atlas: Atlas, library: Path, n_jobs, progress, summary) -> None:
    """Hash whole the files over 4 MiB that an older soundatlas hashed by their size, head and
    tail (``atlas.legacy``), where the file has not changed since, and carry their curation
    over; once per atlas (a file whose features a refresh analyses again too: its curation goes
    with it here, by its path). Files that changed, moved or cannot be read now are left to
    :class:`_LegacyFollower` or the next run."""
    todo = []
    for sid, path, size, mtime_ns, old in atlas.legacy_samples():
        try:
            st = os.stat(library / path)
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
            todo.append((sid, path, old))
    if not todo:
        return
    from concurrent.futures import ThreadPoolExecutor

    def whole(item):
        try:
            return content_hash(library / item[1])  # hashlib lets go of the GIL: in parallel
        except OSError:
            return None

    done = 0
    with ThreadPoolExecutor(max(1, n_jobs or default_n_jobs())) as pool:
        for chunk in chunked(todo, 64):
            items = [(sid, path, old, new)
                     for (sid, path, old), new in zip(chunk, pool.map(whole, chunk)) if new]
            atlas.rehash(items)
            summary.n_rehashed += len(items)
            done += len(chunk)
            if progress:
                progress(done, len(todo))


class _LegacyFollower:
    """Which holder of an old hash (``atlas.legacy``) a file analysed in this run takes: the one
    at its own path whose sample is still there, on the old hash alone; else a vacant one (its
    sample gone, or a missing item) on the old hash and features close to the ones that sample
    had, or, with no telling features (none known, or silence), the old hash and the same file
    name; where several match, the one with the file's name. Each holder is taken once."""

    def __init__(self, library: Path, holders, seen: bytearray):
        self.library = library
        self.at: dict[str, dict[str, str | None]] = {}  # path -> {old hash: split}
        # old hash -> [holder's path, features summary or None (none that tells), split]
        self.vacant: dict[str, list[tuple[str, str | None, str | None]]] = {}
        self.names: dict[str, int] = {}  # file name -> vacant holders matched by name
        self.n_summaries = 0  # vacant holders matched by features
        for path, old, summary, sid, split in holders:
            if sid is not None and sid < len(seen) and seen[sid]:
                self.at.setdefault(path, {})[old] = split
                continue
            if summary is not None and is_silent(summary):
                summary = None
            self.vacant.setdefault(old, []).append((path, summary, split))
            self._count(path, summary, +1)

    def _count(self, path: str, summary: str | None, step: int) -> None:
        if summary is None:
            self.names[file_name(path)] = self.names.get(file_name(path), 0) + step
        else:
            self.n_summaries += step

    @classmethod
    def of(cls, atlas: Atlas, library: Path, seen: bytearray) -> "_LegacyFollower | None":
        """The follower of this run (``seen``: the atlas ids whose file is there, or kept), or
        None when the atlas lists no holder."""
        holders = atlas.legacy_holders()
        return cls(library, holders, seen) if holders else None

    def take(self, entry: FileEntry, digest: str, features
             ) -> tuple[str, str, str | None] | None:
        """(old hash, holder's path, the split to keep) that the analysed ``entry`` (whole hash
        ``digest``, ``features`` as analysed) takes, that holder used up; None."""
        here = self.at.get(entry.path, {})
        name = file_name(entry.path)
        if not here and not self.n_summaries and not self.names.get(name):
            return None  # nothing it could take: its old hash is not read
        if entry.size <= LEGACY_WHOLE_LIMIT:
            old = digest  # hashed whole then too
        else:
            try:
                old = legacy_fingerprint(self.library / entry.path)
            except OSError:
                return None
        if old in here:
            return old, entry.path, here.pop(old)
        holders = self.vacant.get(old, [])
        if not holders:
            return None
        mine = features_summary(features)
        matches = [i for i, (path, summary, _split) in enumerate(holders)
                   if (file_name(path) == name if summary is None
                       else summaries_match(mine, summary))]
        if len(matches) > 1:  # alike (two takes of one part): the name decides, or nothing
            matches = [i for i in matches if file_name(holders[i][0]) == name][:1]
        if not matches:
            return None
        path, summary, split = holders.pop(matches[0])
        if not holders:
            del self.vacant[old]
        self._count(path, summary, -1)
        return old, path, split


def _finish_summary(atlas: Atlas, summary: IndexSummary) -> None:
    summary.failures = atlas.failures()
    summary.n_failed = len(summary.failures)
    summary.n_samples = atlas.n_samples()
    summary.n_frames = atlas.n_frames_total()
    summary.truncated = atlas.truncated_paths()
    summary.n_truncated = len(summary.truncated)
    summary.label_counts = {k: sum(v.values())
                            for k, v in atlas.label_summary(user=False).items()}


def _brief(summary: IndexSummary) -> dict:
    d = summary.to_dict()
    d["failures"] = d["failures"][:100]
    d["truncated"] = d["truncated"][:100]
    return d
