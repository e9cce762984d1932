"""Render the built-in demo instrument library (DESIGN.md §2) with FluidSynth.

Every pitch of each class's range is played at each velocity and articulation on a General MIDI
SoundFont and written as a 16-bit mono WAV file::

    OUT/<instrument>/<instrument>_<pitch:03d>_v<velocity:03d>_<articulation>.wav
    OUT/metadata.csv        path, instrument, pitch, velocity, articulation (sorted by path)

A note is held for its articulation's duration (``short`` 0.4 s, ``long`` 1.8 s), then released and
recorded for ``RELEASE_TAIL`` = 0.6 s more; both parts are rounded up to FluidSynth's 64-frame
block, so at 44.1 kHz a short note is 44160 samples (1.001 s) and a long one 105920 (2.402 s).
Nothing is trimmed: the file starts at note-on; only its last ``END_FADE`` = 10 ms are faded
out, since a few notes (low harp and guitar strings) still ring when the tail ends. A note that
renders fully silent (the preset has no sample for it: on FluidR3_GM, violin 94, recorder 98 and
contrabass 58-67) is not written; it is listed with its reason in the summary and left out of
``metadata.csv``.

Each file depends only on its own parameters (instrument, pitch, velocity, articulation, sample
rate, SoundFont): reverb and chorus are off, every voice is killed between notes, and the synth is
primed with the note itself before it is recorded, because FluidSynth keeps a little state per
voice slot (output-gain and filter ramps) that would otherwise leak from the previous note into
the first block of the next. Renders are byte-identical whatever ``n_jobs`` and whichever classes
are rendered together.

FluidSynth is imported lazily (``import soundatlas.demo`` works without it); rendering without
the shared library raises :class:`~soundatlas.errors.MissingDependencyError`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import ctypes
import io
import math
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundatlas.errors import AudioReadError, MissingDependencyError, ParameterError

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

#: name -> (General MIDI program, lowest MIDI pitch, highest MIDI pitch), inclusive (DESIGN.md §2).
DEFAULT_CLASSES: dict[str, tuple[int, int, int]] = {
    "french_horn": (60, 34, 77),
    "violin": (40, 55, 100),
    "clarinet": (71, 50, 94),
    "trombone": (57, 40, 77),
    "trumpet": (56, 54, 86),
    "muted_trumpet": (59, 54, 82),
    "nylon_guitar": (24, 40, 83),
    "bassoon": (70, 34, 75),
    "cello": (42, 36, 81),
    "viola": (41, 48, 88),
    "distortion_guitar": (30, 40, 88),
    "flute": (73, 60, 96),
    "tuba": (58, 28, 65),
    "harp": (46, 24, 103),
    "piccolo": (72, 74, 108),
    "oboe": (68, 58, 91),
    "baritone_sax": (67, 36, 69),
    "alto_sax": (65, 49, 81),
    "recorder": (74, 72, 98),
    "english_horn": (69, 52, 84),
    "contrabass": (43, 28, 67),
    "soprano_sax": (64, 56, 88),
    "tenor_sax": (66, 44, 76),
    "pan_flute": (75, 60, 96),
}

DEFAULT_VELOCITIES: tuple[int, ...] = (40, 80, 120)

#: articulation name -> seconds the key is held before note-off.
DEFAULT_ARTICULATIONS: dict[str, float] = {"short": 0.4, "long": 1.8}

#: seconds recorded after note-off, so the release is heard.
RELEASE_TAIL = 0.6

#: seconds of half-cosine fade-out at the very end of each file. Some notes (low harp and guitar
#: strings) still ring when the tail ends; the fade keeps that cut from being a click.
END_FADE = 0.01

#: FluidSynth's master gain (its default, 0.2, is meant for many simultaneous voices). With 1.0
#: the loudest note of the default set on FluidR3_GM (distortion guitar, pitch 41, velocity 120)
#: peaks at 0.66 of full scale (-3.6 dBFS) and the quietest at 0.010 (-40 dBFS). A louder
#: SoundFont is clipped, and its clipped notes reported, rather than rescaled.
SYNTH_GAIN = 1.0

METADATA_FILE = "metadata.csv"
METADATA_COLUMNS = ("path", "instrument", "pitch", "velocity", "articulation")

# FluidSynth renders in blocks of 64 frames and applies note-on/off at block boundaries.
_BLOCK = 64
# Frames rendered to prime the voice slots before each note: long enough for FluidSynth's
# filter-cutoff smoothing (at most 5 blocks) to settle.
_PRIME_FRAMES = 6 * _BLOCK
_MIN_SR, _MAX_SR = 8000, 96000  # FluidSynth silently falls back to 44.1 kHz outside this range
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CHANNEL = 0


@dataclass(frozen=True)
class Note:
    """One note to render: a class name, its GM program, and how it is played."""

    instrument: str
    program: int
    pitch: int
    velocity: int
    articulation: str
    duration: float  # seconds the key is held

    @property
    def path(self) -> str:
        """File path relative to the library root, with forward slashes."""
        name = f"{self.instrument}_{self.pitch:03d}_v{self.velocity:03d}_{self.articulation}.wav"
        return f"{self.instrument}/{name}"


@dataclass(frozen=True)
class SkippedNote:
    """A note that was not written, and why."""

    note: Note
    reason: str


@dataclass
class RenderSummary:
    """What :func:`render_library` did.

    ``peak`` is the largest absolute sample over the written files (1.0 = full scale, before
    clipping); ``clipped`` lists the notes whose float output exceeded full scale.
    """

    n_notes: int
    n_files_written: int
    seconds: float
    out: Path
    skipped: list[SkippedNote] = field(default_factory=list)
    peak: float = 0.0
    clipped: list[Note] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Planning


def plan_notes(
    *,
    classes: Iterable[str] | Mapping[str, tuple[int, int, int]] | None = None,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    articulations: Mapping[str, float] | None = None,
) -> list[Note]:
    """List the notes of a library: every pitch of each class x velocities x articulations.

    ``classes`` is a list of names from :data:`DEFAULT_CLASSES` (default: all of them), or a
    mapping name -> (program, low, high) for another SoundFont. ``articulations`` maps a name to
    the seconds the key is held (default :data:`DEFAULT_ARTICULATIONS`).
    """
    table = _check_classes(classes)
    velocities = _check_velocities(velocities)
    articulations = _check_articulations(articulations)
    return [
        Note(name, program, pitch, velocity, articulation, duration)
        for name, (program, low, high) in table.items()
        for pitch in range(low, high + 1)
        for velocity in velocities
        for articulation, duration in articulations.items()
    ]


def _check_classes(classes) -> dict[str, tuple[int, int, int]]:
    if classes is None:
        return dict(DEFAULT_CLASSES)
    if isinstance(classes, Mapping):
        table = {}
        for name, spec in classes.items():
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise ParameterError(f"class name {name!r} must match {_NAME_RE.pattern}")
            try:
                program, low, high = (int(v) for v in spec)
            except (TypeError, ValueError):
                raise ParameterError(
                    f"class {name!r}: {spec!r} must be (program, low pitch, high pitch)"
                ) from None
            if not (0 <= program <= 127 and 0 <= low <= high <= 127):
                raise ParameterError(
                    f"class {name!r}: program={program}, pitches {low}-{high} must lie in 0..127"
                    " with low <= high"
                )
            table[name] = (program, low, high)
        if not table:
            raise ParameterError("classes is empty")
        return table
    if isinstance(classes, str):
        classes = [classes]
    names = list(dict.fromkeys(classes))
    unknown = [n for n in names if n not in DEFAULT_CLASSES]
    if unknown:
        raise ParameterError(
            f"unknown class {', '.join(map(repr, unknown))}; "
            f"valid classes: {', '.join(DEFAULT_CLASSES)}"
        )
    if not names:
        raise ParameterError("classes is empty")
    return {n: DEFAULT_CLASSES[n] for n in names}


def _check_velocities(velocities) -> tuple[int, ...]:
    if isinstance(velocities, int):
        velocities = [velocities]
    velocities = list(dict.fromkeys(velocities))
    if not velocities:
        raise ParameterError("velocities is empty")
    for v in velocities:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 127:
            raise ParameterError(f"velocity={v!r} must be an integer in 1..127")
    return tuple(int(v) for v in velocities)


def _check_articulations(articulations) -> dict[str, float]:
    if articulations is None:
        return dict(DEFAULT_ARTICULATIONS)
    checked = {}
    for name, duration in dict(articulations).items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ParameterError(f"articulation name {name!r} must match {_NAME_RE.pattern}")
        if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
            raise ParameterError(f"articulation {name!r}: duration={duration!r} must be > 0 s")
        checked[name] = float(duration)
    if not checked:
        raise ParameterError("articulations is empty")
    return checked


def _check_sample_rate(sample_rate) -> int:
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, np.integer))
        or not _MIN_SR <= sample_rate <= _MAX_SR
    ):
        raise ParameterError(
            f"sample_rate={sample_rate!r} must be an integer in {_MIN_SR}..{_MAX_SR} Hz"
        )
    return int(sample_rate)


# --------------------------------------------------------------------------------------------
# FluidSynth


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """Return the SoundFont to render with: ``path``, or :data:`DEFAULT_SOUNDFONT` when None.

    Raises MissingDependencyError when the file does not exist, and AudioReadError when it is
    not a SoundFont (no RIFF ``sfbk`` header).
    """
    if path is None:
        found = Path(DEFAULT_SOUNDFONT)
        if not found.is_file():
            raise MissingDependencyError(
                f"no SoundFont at {DEFAULT_SOUNDFONT}: install the Debian package "
                "fluid-soundfont-gm (apt-get install fluid-soundfont-gm) or pass a SoundFont path"
            )
    else:
        found = Path(path).expanduser()
        if not found.is_file():
            raise MissingDependencyError(f"SoundFont not found: {os.fspath(path)}")
    with open(found, "rb") as f:
        header = f.read(12)
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise AudioReadError(found, "not a SoundFont (no RIFF sfbk header)")
    return found.resolve()


def _import_fluidsynth():
    """Import pyfluidsynth, turning a missing libfluidsynth into MissingDependencyError."""
    try:
        # pyfluidsynth prints "'fluidsynth' was found at ..." to stdout on import when the
        # environment has CI set; stdout belongs to --json output, so the import is silenced.
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except Exception as exc:  # ImportError (library not found), OSError (cannot be loaded), ...
        raise MissingDependencyError(
            f"FluidSynth cannot be loaded ({exc}): install the Debian package fluidsynth "
            "(apt-get install fluidsynth)"
        ) from exc
    return fluidsynth


def _bind_write_float(fluidsynth):
    """ctypes binding of fluid_synth_write_float, which pyfluidsynth does not wrap.

    (pyfluidsynth's ``get_samples`` only returns dithered, clipped int16.)
    """
    lib = getattr(fluidsynth, "_fl", None) or ctypes.CDLL(fluidsynth.lib)
    write_float = lib.fluid_synth_write_float
    write_float.argtypes = [
        ctypes.c_void_p, ctypes.c_int,
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
    ]  # fmt: skip
    write_float.restype = ctypes.c_int
    return write_float


class NoteSynth:
    """A FluidSynth instance with one SoundFont loaded, rendering one note at a time offline.

    No audio driver is started; reverb and chorus are off. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        soundfont: str | os.PathLike | None = None,
        *,
        sample_rate: int = 44100,
        gain: float = SYNTH_GAIN,
    ):
        self.sample_rate = _check_sample_rate(sample_rate)
        self.soundfont = find_soundfont(soundfont)
        fluidsynth = _import_fluidsynth()
        self._write_float = _bind_write_float(fluidsynth)
        settings = {
            "synth.reverb.active": 0,
            "synth.chorus.active": 0,
            "synth.lock-memory": 0,  # do not mlock ~150 MB of samples in every worker
            "synth.cpu-cores": 1,
        }
        self._synth = fluidsynth.Synth(
            gain=float(gain), samplerate=float(self.sample_rate), channels=16, **settings
        )
        self._sfid = self._synth.sfload(os.fspath(self.soundfont))
        if self._sfid < 0:
            self._synth.delete()
            self._synth = None
            raise AudioReadError(self.soundfont, "FluidSynth could not load this SoundFont")

    def _render(self, n_frames: int) -> np.ndarray:
        """Render n_frames (a multiple of the 64-frame block) as float32 (n_frames, 2)."""
        buf = np.zeros((n_frames, 2), dtype=np.float32)
        ptr = buf.ctypes.data
        if self._write_float(self._synth.synth, n_frames, ptr, 0, 2, ptr, 1, 2) != 0:
            raise RuntimeError("fluid_synth_write_float failed")
        return buf

    def _silence_all(self) -> None:
        """Kill every voice at once (no release) and let the mixer free them."""
        self._synth.all_sounds_off(_CHANNEL)
        self._render(_BLOCK)

    def render(self, note: Note) -> np.ndarray:
        """Render one note as float32 mono samples (full scale 1.0, not clipped).

        Raises ParameterError when the note's values are out of MIDI range or the SoundFont has
        no preset for its program (bank 0).
        """
        if not (0 <= note.pitch <= 127 and 1 <= note.velocity <= 127 and note.duration > 0):
            raise ParameterError(
                f"{note}: pitch must be in 0..127, velocity in 1..127 and duration > 0"
            )
        synth = self._synth
        self._silence_all()
        synth.system_reset()  # controllers and programs back to their defaults
        if synth.program_select(_CHANNEL, self._sfid, 0, note.program) != 0:
            raise ParameterError(f"the SoundFont has no preset for program {note.program}, bank 0")
        # Prime: play the note briefly so that the voice slots it uses carry its own state.
        synth.noteon(_CHANNEL, note.pitch, note.velocity)
        self._render(_PRIME_FRAMES)
        self._silence_all()
        synth.noteon(_CHANNEL, note.pitch, note.velocity)
        held = self._render(_n_frames(note.duration, self.sample_rate))
        synth.noteoff(_CHANNEL, note.pitch)
        tail = self._render(_n_frames(RELEASE_TAIL, self.sample_rate))
        self._silence_all()
        stereo = np.concatenate([held, tail])
        y = (0.5 * (stereo[:, 0] + stereo[:, 1])).astype(np.float32)
        n_fade = min(len(y), round(END_FADE * self.sample_rate))
        if n_fade:
            y[-n_fade:] *= _fade_out(n_fade)
        return y

    def close(self) -> None:
        if self._synth is not None:
            self._synth.delete()
            self._synth = None

    def __enter__(self) -> NoteSynth:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fade_out(n: int) -> np.ndarray:
    """Half-cosine gain from 1 towards 0 over n samples (the last one is not yet 0)."""
    return (0.5 * (1.0 + np.cos(np.pi * np.arange(1, n + 1) / (n + 1)))).astype(np.float32)


def _n_frames(seconds: float, sample_rate: int) -> int:
    return math.ceil(seconds * sample_rate / _BLOCK) * _BLOCK


def render_note(
    note: Note, *, soundfont: str | os.PathLike | None = None, sample_rate: int = 44100
) -> np.ndarray:
    """Render one note as float32 mono (loads the SoundFont; use NoteSynth for many notes)."""
    with NoteSynth(soundfont, sample_rate=sample_rate) as synth:
        return synth.render(note)


def to_int16(y: np.ndarray) -> np.ndarray:
    """Float samples (full scale 1.0) to int16, rounding and clipping."""
    return np.clip(np.rint(y * 32768.0), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------------------------
# Rendering a library


# (index in the plan, peak of the float output, reason it was skipped or None)
_Result = tuple[int, float, str | None]


def _render_and_write(synth: NoteSynth, note: Note, out: Path) -> tuple[float, str | None]:
    """Render one note and write its file atomically; return (peak, skip reason or None)."""
    target = out / note.path
    try:
        y = synth.render(note)
    except ParameterError as exc:
        target.unlink(missing_ok=True)
        return 0.0, str(exc)
    y16 = to_int16(y)
    if not y16.any():
        target.unlink(missing_ok=True)
        return 0.0, "silent: the preset has no sound for this pitch and velocity"
    _write_wav(target, y16, synth.sample_rate)
    return float(np.max(np.abs(y))), None


def _write_wav(path: Path, y16: np.ndarray, sample_rate: int) -> None:
    import soundfile

    part = path.with_name(f".{path.name}.part")
    soundfile.write(part, y16, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(part, path)


def _render_chunk(synth: NoteSynth, chunk: list[tuple[int, Note]], out: Path) -> list[_Result]:
    return [(i, *_render_and_write(synth, note, out)) for i, note in chunk]


# Per-worker state, set by _init_worker: the loaded NoteSynth, or the error that prevented it.
_worker_synth: NoteSynth | None = None
_worker_error: str | None = None


class _WorkerInitError(RuntimeError):
    """A worker could not load FluidSynth or the SoundFont (picklable; re-raised by the parent)."""


def _init_worker(soundfont: str, sample_rate: int) -> None:
    global _worker_synth, _worker_error
    try:
        _worker_synth = NoteSynth(soundfont, sample_rate=sample_rate)
    except Exception as exc:  # reported by the first task, which the parent turns back into one
        _worker_error = f"{type(exc).__name__}: {exc}"


def _worker_render_chunk(chunk: list[tuple[int, Note]], out: str) -> list[_Result]:
    if _worker_synth is None:
        raise _WorkerInitError(_worker_error or "worker not initialised")
    return _render_chunk(_worker_synth, chunk, Path(out))


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def render_library(
    out: str | os.PathLike,
    *,
    soundfont: str | os.PathLike | None = None,
    classes: Iterable[str] | Mapping[str, tuple[int, int, int]] | None = None,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    sample_rate: int = 44100,
    n_jobs: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> RenderSummary:
    """Render the demo library into ``out`` and write ``out/metadata.csv``; return a summary.

    ``classes``/``velocities`` select a subset (see :func:`plan_notes`). Notes are rendered by
    ``n_jobs`` processes (default: one per CPU), each loading the SoundFont once. ``progress``,
    if given, is called as ``progress(n_done, n_total)`` as notes finish. Rerunning over an
    interrupted render overwrites its files; ``metadata.csv`` is removed first and written last,
    so its presence marks a complete render. Files of classes not rendered this time are left
    alone.
    """
    start = time.perf_counter()
    notes = plan_notes(classes=classes, velocities=velocities)
    sample_rate = _check_sample_rate(sample_rate)
    n_jobs = (os.cpu_count() or 1) if n_jobs is None else n_jobs
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ParameterError(f"n_jobs={n_jobs!r} must be a positive integer")
    soundfont = find_soundfont(soundfont)
    _import_fluidsynth()  # fail here, with one clear message, rather than in every worker

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / METADATA_FILE).unlink(missing_ok=True)
    for name in dict.fromkeys(note.instrument for note in notes):
        (out / name).mkdir(exist_ok=True)

    report = progress or (lambda n_done, n_total: None)
    report(0, len(notes))
    results = _render_all(notes, out, soundfont, sample_rate, n_jobs, report)

    written, skipped, clipped, peak = [], [], [], 0.0
    for i, note_peak, reason in sorted(results):
        note = notes[i]
        if reason is not None:
            skipped.append(SkippedNote(note, reason))
            continue
        written.append(note)
        peak = max(peak, note_peak)
        if note_peak > 32767 / 32768:
            clipped.append(note)
    _write_metadata(out, written)
    return RenderSummary(
        n_notes=len(notes),
        n_files_written=len(written),
        seconds=time.perf_counter() - start,
        out=out,
        skipped=skipped,
        peak=peak,
        clipped=clipped,
    )


def _render_all(notes, out, soundfont, sample_rate, n_jobs, report) -> list[_Result]:
    indexed = list(enumerate(notes))
    n_jobs = min(n_jobs, len(indexed))
    if n_jobs == 1:
        results = []
        with NoteSynth(soundfont, sample_rate=sample_rate) as synth:
            for item in indexed:
                results.extend(_render_chunk(synth, [item], out))
                report(len(results), len(notes))
        return results

    size = max(1, min(32, math.ceil(len(indexed) / (4 * n_jobs))))
    chunks = [indexed[i : i + size] for i in range(0, len(indexed), size)]
    results = []
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=n_jobs,
        mp_context=_mp_context(),
        initializer=_init_worker,
        initargs=(os.fspath(soundfont), sample_rate),
    ) as pool:
        futures = [pool.submit(_worker_render_chunk, chunk, os.fspath(out)) for chunk in chunks]
        try:
            for future in concurrent.futures.as_completed(futures):
                results.extend(future.result())
                report(len(results), len(notes))
        except _WorkerInitError as exc:
            pool.shutdown(cancel_futures=True)
            raise AudioReadError(soundfont, f"a render worker could not start: {exc}") from None
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return results


def _write_metadata(out: Path, notes: list[Note]) -> None:
    """Write out/metadata.csv (one row per written file, sorted by path) atomically."""
    part = out / f".{METADATA_FILE}.part"
    with open(part, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        for note in sorted(notes, key=lambda n: n.path):
            row = (note.path, note.instrument, note.pitch, note.velocity, note.articulation)
            writer.writerow(row)
    os.replace(part, out / METADATA_FILE)
