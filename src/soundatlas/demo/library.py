"""Rendering a library: :func:`render_library` plans the parts of a set, renders every item in
worker processes (each loading the SoundFont once), and writes the manifests.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from soundatlas.demo.checks import check_format, check_sample_rate
from soundatlas.demo.gm import GM_PITCH_STEP
from soundatlas.demo.items import Item, PartSummary, RenderSummary, SkippedNote
from soundatlas.demo.manifests import (
    METADATA_FILE,
    clear_manifests,
    demo_rows,
    drop_kept,
    earlier_demo_rows,
    earlier_rows,
    keep_aside,
    kept_rows,
    rows_of,
    write_part_manifests,
    write_root_manifests,
)
from soundatlas.demo.render import NoteSynth, render_and_write
from soundatlas.demo.sets import (
    DEFAULT_VELOCITIES,
    SETS,
    SYNTH_COUNT,
    SYNTH_SEED,
    Part,
    plan_parts,
)
from soundatlas.errors import AudioReadError, ParameterError, is_disk_full

# (index in the plan, peak of the float output, reason it was skipped or None, bytes written)
_Result = tuple[int, float, str | None, int]

#: In OUT: the bank (SoundFont) the demo set's files were rendered from. The demo set's paths
#: carry no bank, so a second SoundFont's demo set would overwrite the first's files and leave
#: the notes only the first had: one folder would silently hold two makers' sounds.
DEMO_BANK_FILE = ".demo-bank"


def render_library(
    out: str | os.PathLike,
    *,
    sound_set: str = "demo",
    soundfont: str | os.PathLike | None = None,
    classes: Iterable[str] | Mapping[str, tuple[int, int, int]] | None = None,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    pitch_step: int = GM_PITCH_STEP,
    kits: Iterable[str] | None = None,
    drum_keys: Iterable[int] | None = None,
    synth_count: int = SYNTH_COUNT,
    synth_seed: int = SYNTH_SEED,
    audio_format: str = "wav",
    sample_rate: int = 44100,
    n_jobs: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> RenderSummary:
    """Render a set into a folder and write its manifests.

    Programs and kits the SoundFont lacks are not planned (``RenderSummary.messages`` says
    which). Rerunning over an interrupted render overwrites its files; each part's
    ``metadata.csv`` is removed first and written last, so its presence marks a complete
    render. Files not rendered this time are left alone.

    Parameters
    ----------
    out : path-like
        The library root (created if missing).
    sound_set : str, default "demo"
        One of :data:`~soundatlas.demo.sets.SETS` (see :mod:`soundatlas.demo`).
    soundfont : path-like, optional
        The SoundFont of the demo, gm and drums sets (default FluidR3_GM).
    classes : iterable of str, or mapping, optional
        Demo classes (:data:`~soundatlas.demo.gm.DEFAULT_CLASSES`, or a custom table) in the
        demo set, GM program names (:data:`~soundatlas.demo.gm.GM_PROGRAMS`) in the gm set.
    velocities : iterable of int, default (40, 80, 120)
    pitch_step : int, default 5
        Thins the gm set's pitches (:func:`~soundatlas.demo.gm.gm_pitches`).
    kits : iterable of str, optional
        Drum kits (:data:`~soundatlas.demo.gm.GM_KITS` names; default all).
    drum_keys : iterable of int, optional
        Only these keys of the kits.
    synth_count, synth_seed : int
        The procedural sounds of the synth set.
    audio_format : {"wav", "flac"}
        16-bit WAV or FLAC.
    sample_rate : int, default 44100
        Hz, 8000..96000.
    n_jobs : int, optional
        Worker processes (default: one per CPU).
    progress : callable, optional
        Called as ``progress(n_done, n_total)`` as notes finish.

    Returns
    -------
    RenderSummary

    Raises
    ------
    ParameterError
        When an option is invalid, nothing is left to render, or ``out`` is a file or cannot
        be created.
    MissingDependencyError
        When a SoundFont set is asked for and FluidSynth or the SoundFont is missing.
    AudioReadError
        When FluidSynth cannot load the SoundFont.
    """
    start = time.perf_counter()
    if sound_set not in SETS:
        raise ParameterError(f"sound_set={sound_set!r} must be one of {', '.join(SETS)}")
    audio_format = check_format(audio_format)
    sample_rate = check_sample_rate(sample_rate)
    n_jobs = (os.cpu_count() or 1) if n_jobs is None else n_jobs
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ParameterError(f"n_jobs={n_jobs!r} must be a positive integer")
    out = Path(out)
    if out.exists() and not out.is_dir():  # before the plan, which may read a SoundFont
        raise ParameterError(f"{out} is a file; the library goes into a folder (new or "
                             "existing)")
    sets = ("gm", "drums", "synth") if sound_set == "all" else (sound_set,)
    parts, messages, soundfont = plan_parts(
        sets, soundfont=soundfont, classes=classes, velocities=velocities, pitch_step=pitch_step,
        kits=kits, drum_keys=drum_keys, synth_count=synth_count, synth_seed=synth_seed,
        audio_format=audio_format,
    )  # fmt: skip
    items = [item for part in parts for item in part.items]
    if not items:
        raise ParameterError(
            f"nothing to render for --set {sound_set}: " + "; ".join(messages or ["empty plan"])
        )

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise
        raise ParameterError(f"cannot create the folder {out}: {exc.strerror or exc}") from exc
    identity = _soundfont_identity(soundfont) if soundfont is not None else None
    from_soundfont = [p for p in parts if identity is not None and p.sound_set != "synth"]
    for part in parts:
        if part.sound_set == "demo":
            _claim_demo_folder(out, part)
    for part in from_soundfont:
        _check_soundfont_folder(out, part, identity)
    # what earlier renders into these folders listed: the rows of files this one does not plan
    # stay (a rerun with fewer --classes leaves the others' files, and so their labels)
    earlier = {part.folder: earlier_rows(out / part.folder) if part.folder
               else earlier_demo_rows(out) for part in parts}
    root_rows, root_silent = (None, None) if "demo" in sets else demo_rows(out)
    _prepare_folders(out, parts, earlier)
    for part in from_soundfont:
        _record_soundfont(out / part.folder, identity)

    report = progress or (lambda n_done, n_total: None)
    report(0, len(items))
    results = _render_all(items, out, soundfont, sample_rate, n_jobs, report)

    by_index = {i: (peak, reason, size) for i, peak, reason, size in results}
    summary = RenderSummary(n_notes=len(items), n_files_written=0, seconds=0.0, out=out,
                            sound_set=sound_set, messages=messages)
    offset = 0
    for part in parts:
        written, silent = [], []
        n_bytes = 0
        for j, item in enumerate(part.items):
            peak, reason, size = by_index[offset + j]
            if reason is not None:
                skipped = SkippedNote(item, reason)
                summary.skipped.append(skipped)
                if skipped.silent:
                    silent.append(item)
                continue
            written.append(item)
            n_bytes += size
            summary.peak = max(summary.peak, peak)
            if peak > 32767 / 32768:
                summary.clipped.append(item)
        offset += len(part.items)
        summary.n_files_written += len(written)
        summary.n_bytes += n_bytes
        summary.parts.append(PartSummary(part.sound_set, part.bank, part.folder, len(part.items),
                                         len(written), len(silent), n_bytes))
        if part.folder:
            write_part_manifests(out, part.folder, part.items, written, silent,
                                 earlier[part.folder])
            drop_kept(out / part.folder)
        else:
            planned = {item.path for item in part.items}
            root_rows = rows_of(written) + kept_rows(earlier[part.folder][0], planned, out)
            root_silent = rows_of(silent) + kept_rows(earlier[part.folder][1], planned, None)
    write_root_manifests(out, root_rows, root_silent)
    if "demo" in sets:
        drop_kept(out)
    summary.seconds = time.perf_counter() - start
    return summary


def _claim_demo_folder(out: Path, part: Part) -> None:
    """Record that OUT's demo set comes from the part's bank; refuse to overwrite another bank's.

    Raises
    ------
    ParameterError
        When OUT holds a demo set (its manifest's rows, or files this render would write)
        rendered from another SoundFont.
    """
    marker, bank = out / DEMO_BANK_FILE, part.bank
    try:
        previous = marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        previous = ""
    if previous and previous != bank and (
            demo_rows(out)[0] or any((out / item.path).exists() for item in part.items)):
        raise ParameterError(
            f"{out} already holds the demo set rendered from {previous!r}; rendering {bank!r}'s "
            "over it would mix two makers' notes under the same paths. Render it into another "
            f"folder, or use --set gm or --set drums, whose files sit in a folder per bank")
    if previous != bank:
        _write_marker(marker, bank)


def _write_marker(marker: Path, text: str) -> None:
    """Write a one-line marker file; ParameterError naming its folder when it cannot be
    written (a full disk raises as it is)."""
    try:
        marker.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        if is_disk_full(exc):
            raise
        raise ParameterError(f"cannot write into {marker.parent}: {exc.strerror or exc}") \
            from None


SOUNDFONT_FILE = ".soundfont"  # in a SoundFont part's folder: which file its notes came from


def _soundfont_identity(soundfont: Path) -> str:
    """A SoundFont file's identity by content (a digest of its size and of its first and last
    MiB: a render need not read 140 MB to tell two makers' files apart), and the path it was
    read from (for messages)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    with open(soundfont, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return f"{h.hexdigest()} {Path(soundfont).resolve()}"


def _check_soundfont_folder(out: Path, part: Part, identity: str) -> None:
    """Refuse to render a SoundFont into a folder that holds another file's notes of the same
    name: its bank label, the file name, would be the same for two makers' notes.

    Raises
    ------
    ParameterError
        When the folder holds notes (its manifest's rows, or files this render would write)
        rendered from another SoundFont file of the same name.
    """
    folder = out / part.folder
    marker = folder / SOUNDFONT_FILE
    try:
        previous = marker.read_text(encoding="utf-8").strip()
    except OSError:  # none yet (or unreadable, as a render from before it would leave none)
        previous = ""
    digest, _, path = previous.partition(" ")
    if digest and digest != identity.split(" ", 1)[0] and (
            (earlier_rows(folder)[0] if part.folder else demo_rows(out)[0])
            or any((out / item.path).exists() for item in part.items)):
        raise ParameterError(
            f"{folder} holds the notes of bank {part.bank!r} rendered from the SoundFont "
            f"{path or '(another file)'}, and {identity.split(' ', 1)[1]} is another file of the "
            "same name: the two makers' notes would share one bank label. Give this SoundFont a "
            "name of its own (the bank label is its file name), or render into another folder")


def _record_soundfont(folder: Path, identity: str) -> None:
    """Write which SoundFont file the (existing) folder's notes come from
    (``_check_soundfont_folder`` reads it)."""
    marker = folder / SOUNDFONT_FILE
    try:
        if marker.read_text(encoding="utf-8").strip() == identity:
            return
    except OSError:
        pass
    _write_marker(marker, identity)


def _prepare_folders(out: Path, parts: list[Part], earlier: dict) -> None:
    """Make the folders of the parts' files; keep aside the rows of earlier files the render
    does not plan (``earlier``: each part's folder -> its manifests' rows before), then remove
    the manifests they are about to replace.

    Raises
    ------
    ParameterError
        Naming the folder that cannot be written (a permission, a read-only drive).
    """
    try:
        _make_folders(out, parts, earlier)
    except OSError as exc:
        if is_disk_full(exc):
            raise
        where = exc.filename or out
        raise ParameterError(f"cannot write into {where}: {exc.strerror or exc}") from None


def _make_folders(out: Path, parts: list[Part], earlier: dict) -> None:
    for part in parts:
        base = out / part.folder if part.folder else out
        prefix = len(part.folder) + 1 if part.folder else 0
        planned = {item.path[prefix:] for item in part.items}
        rows, silent = earlier[part.folder]
        base.mkdir(parents=True, exist_ok=True)
        keep_aside(base, (kept_rows(rows, planned, base), kept_rows(silent, planned, None)))
        if part.folder:
            clear_manifests(base)
        else:
            (out / METADATA_FILE).unlink(missing_ok=True)
        for name in dict.fromkeys(Path(item.path).parent for item in part.items):
            (out / name).mkdir(parents=True, exist_ok=True)


def _render_chunk(
    synth: NoteSynth | None, chunk: list[tuple[int, Item]], out: Path, sample_rate: int
) -> list[_Result]:
    return [(i, *render_and_write(synth, item, out, sample_rate)) for i, item in chunk]


# Per-worker state, set by _init_worker: the loaded NoteSynth (None when the render needs no
# SoundFont), its sample rate, or the error that prevented loading it.
_worker_synth: NoteSynth | None = None
_worker_rate: int = 44100
_worker_error: str | None = None


class _WorkerInitError(RuntimeError):
    """A worker could not load FluidSynth or the SoundFont (picklable; re-raised by the parent)."""


def _init_worker(soundfont: str | None, sample_rate: int, parent: int) -> None:
    from soundatlas.processes import worker_started  # light: a render worker needs no torch

    global _worker_synth, _worker_error, _worker_rate
    worker_started(parent)  # a killed render leaves no worker behind; Ctrl-C is the parent's
    _worker_rate = sample_rate
    if soundfont is None:
        return
    try:
        _worker_synth = NoteSynth(soundfont, sample_rate=sample_rate)
    except Exception as exc:  # reported by the first task, which the parent turns back into one
        _worker_error = f"{type(exc).__name__}: {exc}"


def _worker_render_chunk(chunk: list[tuple[int, Item]], out: str) -> list[_Result]:
    if _worker_error is not None:
        raise _WorkerInitError(_worker_error)
    return _render_chunk(_worker_synth, chunk, Path(out), _worker_rate)


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _render_all(items, out, soundfont, sample_rate, n_jobs, report) -> list[_Result]:
    """Render every item (in ``n_jobs`` processes when more than one); return their results."""
    indexed = list(enumerate(items))
    n_jobs = min(n_jobs, len(indexed))
    sf_path = None if soundfont is None else os.fspath(soundfont)
    if n_jobs == 1:
        results = []
        synth = None if sf_path is None else NoteSynth(sf_path, sample_rate=sample_rate)
        try:
            for item in indexed:
                results.extend(_render_chunk(synth, [item], out, sample_rate))
                report(len(results), len(items))
        finally:
            if synth is not None:
                synth.close()
        return results

    size = max(1, min(32, math.ceil(len(indexed) / (4 * n_jobs))))
    chunks = [indexed[i : i + size] for i in range(0, len(indexed), size)]
    results = []
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=n_jobs,
        mp_context=_mp_context(),
        initializer=_init_worker,
        initargs=(sf_path, sample_rate, os.getpid()),
    ) as pool:
        futures = [pool.submit(_worker_render_chunk, chunk, os.fspath(out)) for chunk in chunks]
        try:
            for future in concurrent.futures.as_completed(futures):
                results.extend(future.result())
                report(len(results), len(items))
        except _WorkerInitError as exc:
            pool.shutdown(cancel_futures=True)
            raise AudioReadError(soundfont, f"a render worker could not start: {exc}") from None
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                from soundatlas.processes import stop_workers

                stop_workers(pool)  # Ctrl-C: the chunks in the workers need not end first
            pool.shutdown(cancel_futures=True)
            raise
    return results
