"""Rendering one item: a melodic note or a drum hit with FluidSynth (:class:`NoteSynth`), a
procedural sound with :mod:`soundatlas.procedural`, and writing it as a 16-bit file.

How notes are held, released, faded and trimmed, and why each file depends only on its own
parameters (the voice slots are primed with the note itself), is told in :mod:`soundatlas.demo`
("Melodic notes", "drums").
"""

from __future__ import annotations

import ctypes
import math
import os
from pathlib import Path

import numpy as np

from soundatlas import procedural
from soundatlas.demo.checks import check_sample_rate
from soundatlas.demo.items import SILENT_REASON, DrumHit, Item, Note, SynthSound
from soundatlas.demo.soundfont import find_soundfont, import_fluidsynth
from soundatlas.errors import AudioReadError, MissingDependencyError, ParameterError

#: seconds a drum hit is recorded at most (the key held), before its silent tail is cut.
DRUM_MAX_SECONDS = 4.0
#: a drum file ends this long after its last sample above -DRUM_TRIM_DB dB of its peak.
DRUM_TRIM_DB = 60.0
DRUM_TAIL_MARGIN = 0.01

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

# FluidSynth renders in blocks of 64 frames and applies note-on/off at block boundaries.
_BLOCK = 64
# Frames rendered to prime the voice slots before each note: long enough for FluidSynth's
# filter-cutoff smoothing (at most 5 blocks) to settle.
_PRIME_FRAMES = 6 * _BLOCK
# A drum hit is rendered in chunks of this many frames until its voices end.
_HIT_CHUNK = 16 * _BLOCK
_CHANNEL = 0
_DRUM_CHANNEL = 9  # MIDI channel 10


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

    Parameters
    ----------
    soundfont : path-like, optional
        The SoundFont (:func:`~soundatlas.demo.soundfont.find_soundfont`; default FluidR3_GM).
    sample_rate : int, default 44100
        Hz, 8000..96000.
    gain : float, default SYNTH_GAIN
        FluidSynth's master gain.

    Raises
    ------
    MissingDependencyError
        When FluidSynth or the SoundFont is missing.
    AudioReadError
        When FluidSynth cannot load the SoundFont.
    """

    def __init__(
        self,
        soundfont: str | os.PathLike | None = None,
        *,
        sample_rate: int = 44100,
        gain: float = SYNTH_GAIN,
    ):
        self.sample_rate = check_sample_rate(sample_rate)
        self.soundfont = find_soundfont(soundfont)
        fluidsynth = import_fluidsynth()
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

    def _silence_all(self, channel: int = _CHANNEL) -> None:
        """Kill every voice of a channel at once (no release) and let the mixer free them."""
        self._synth.all_sounds_off(channel)
        self._render(_BLOCK)

    def _start(self, channel: int, bank: int, program: int, key: int, velocity: int) -> None:
        """Select the preset on a clean channel, prime the voice slots with the note, and start
        it again from silence (see the module docstring).

        Raises ParameterError when the SoundFont has no preset at (bank, program).
        """
        synth = self._synth
        self._silence_all(channel)
        synth.system_reset()  # controllers and programs back to their defaults
        if synth.program_select(channel, self._sfid, bank, program) != 0:
            what = f"program {program}" if bank == 0 else f"drum kit {program}"
            raise ParameterError(f"the SoundFont has no preset for {what}, bank {bank}")
        synth.noteon(channel, key, velocity)
        self._render(_PRIME_FRAMES)
        self._silence_all(channel)
        synth.noteon(channel, key, velocity)

    def render(self, note: Note) -> np.ndarray:
        """Render one note.

        Parameters
        ----------
        note : Note
            Its program (bank 0), pitch, velocity and duration are used.

        Returns
        -------
        numpy.ndarray
            float32 mono samples (full scale 1.0, not clipped): the held note, then
            :data:`RELEASE_TAIL` after note-off, the last :data:`END_FADE` faded out.

        Raises
        ------
        ParameterError
            When the note's values are out of MIDI range or the SoundFont has no preset for its
            program in bank 0.
        """
        if not (0 <= note.pitch <= 127 and 1 <= note.velocity <= 127 and note.duration > 0):
            raise ParameterError(
                f"{note}: pitch must be in 0..127, velocity in 1..127 and duration > 0"
            )
        self._start(_CHANNEL, 0, note.program, note.pitch, note.velocity)
        held = self._render(_n_frames(note.duration, self.sample_rate))
        self._synth.noteoff(_CHANNEL, note.pitch)
        tail = self._render(_n_frames(RELEASE_TAIL, self.sample_rate))
        self._silence_all()
        y = _mono(np.concatenate([held, tail]))
        return _fade_end(y, round(END_FADE * self.sample_rate))

    def render_hit(self, hit: DrumHit, *, max_seconds: float = DRUM_MAX_SECONDS) -> np.ndarray:
        """Render one drum hit, holding the key until no voice sounds or ``max_seconds`` pass.

        Parameters
        ----------
        hit : DrumHit
            Its kit program (bank 128), key and velocity are used.
        max_seconds : float, default DRUM_MAX_SECONDS
            The longest recording, before the tail is cut.

        Returns
        -------
        numpy.ndarray
            float32 mono samples, the silent tail cut (:func:`trim_tail`).

        Raises
        ------
        ParameterError
            When the key or velocity is out of MIDI range or the SoundFont has no preset for
            the kit in bank 128.
        """
        if not (0 <= hit.key <= 127 and 1 <= hit.velocity <= 127):
            raise ParameterError(f"{hit}: key must be in 0..127 and velocity in 1..127")
        synth, ch = self._synth, _DRUM_CHANNEL
        self._start(ch, 128, hit.kit_program, hit.key, hit.velocity)
        n_max = _n_frames(max_seconds, self.sample_rate)
        chunks, n = [], 0
        while n < n_max:
            chunk = self._render(min(_HIT_CHUNK, n_max - n))
            chunks.append(chunk)
            n += len(chunk)
            if synth.get_active_voice_count() == 0:
                break
        synth.noteoff(ch, hit.key)
        self._silence_all(ch)
        return trim_tail(_mono(np.concatenate(chunks)), self.sample_rate)

    def render_events(self, events: list[tuple[float, str, int, int, int]], seconds: float,
                      programs: dict[int, tuple[int, int]]) -> np.ndarray:
        """Render timed MIDI events: a loop or any short pattern.

        Parameters
        ----------
        events : list of (time, kind, channel, key, velocity)
            ``kind`` ``"on"`` or ``"off"``; times in seconds, applied at the 64-frame block
            they fall in.
        seconds : float
            The length rendered.
        programs : dict of channel -> (bank, program)
            The preset of each channel used (bank 128: a drum kit).

        Returns
        -------
        numpy.ndarray
            float32 mono samples (full scale 1.0), the last :data:`END_FADE` faded out.
        """
        synth = self._synth
        for ch in range(16):
            self._silence_all(ch)
        synth.system_reset()
        for ch, (bank, program) in programs.items():
            if synth.program_select(ch, self._sfid, bank, program) != 0:
                raise ParameterError(f"the SoundFont has no preset {program} in bank {bank}")
        total = _n_frames(seconds, self.sample_rate)
        chunks, done = [], 0
        for t, kind, ch, key, velocity in sorted(events, key=lambda e: (e[0], e[1] == "on")):
            at = min(total, _n_frames(t, self.sample_rate))
            if at > done:
                chunks.append(self._render(at - done))
                done = at
            if kind == "on":
                synth.noteon(ch, key, velocity)
            else:
                synth.noteoff(ch, key)
        if total > done:
            chunks.append(self._render(total - done))
        for ch in range(16):
            self._silence_all(ch)
        return _fade_end(_mono(np.concatenate(chunks)), round(END_FADE * self.sample_rate))

    def close(self) -> None:
        """Free the FluidSynth instance (the object cannot render after this)."""
        if self._synth is not None:
            self._synth.delete()
            self._synth = None

    def __enter__(self) -> NoteSynth:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def trim_tail(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut a one-shot's silent tail.

    Parameters
    ----------
    y : numpy.ndarray
        float32 mono samples.
    sample_rate : int
        Hz.

    Returns
    -------
    numpy.ndarray
        ``y`` up to :data:`DRUM_TAIL_MARGIN` after its last sample above -:data:`DRUM_TRIM_DB`
        dB of the peak (and above half an int16 step), faded out over that margin; ``y`` itself
        when it is all zero.
    """
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak == 0.0:
        return y
    threshold = max(peak * 10 ** (-DRUM_TRIM_DB / 20), 0.5 / 32768)
    loud = np.flatnonzero(np.abs(y) > threshold)
    if not len(loud):
        return y
    margin = round(DRUM_TAIL_MARGIN * sample_rate)
    out = y[: min(len(y), int(loud[-1]) + 1 + margin)].copy()
    return _fade_end(out, margin)


def _mono(stereo: np.ndarray) -> np.ndarray:
    """The mean of the two channels of (n, 2) samples, as float32."""
    return (0.5 * (stereo[:, 0] + stereo[:, 1])).astype(np.float32)


def _fade_end(y: np.ndarray, n: int) -> np.ndarray:
    """Fade out the last ``n`` samples of ``y`` (at most all of them) in place; return ``y``."""
    n = min(len(y), n)
    if n:
        y[-n:] *= procedural.fade_out(n).astype(np.float32)
    return y


def _n_frames(seconds: float, sample_rate: int) -> int:
    return math.ceil(seconds * sample_rate / _BLOCK) * _BLOCK


def render_note(
    note: Note, *, soundfont: str | os.PathLike | None = None, sample_rate: int = 44100
) -> np.ndarray:
    """Render one note, loading the SoundFont for it (use :class:`NoteSynth` for many notes).

    Returns
    -------
    numpy.ndarray
        float32 mono samples (:meth:`NoteSynth.render`).
    """
    with NoteSynth(soundfont, sample_rate=sample_rate) as synth:
        return synth.render(note)


def to_int16(y: np.ndarray) -> np.ndarray:
    """Float samples (full scale 1.0) to int16, rounding and clipping.

    Returns
    -------
    numpy.ndarray
        int16 samples.
    """
    return np.clip(np.rint(y * 32768.0), -32768, 32767).astype(np.int16)


def render_item(item: Item, synth: NoteSynth | None, *, sample_rate: int = 44100) -> np.ndarray:
    """The samples of one planned item.

    Parameters
    ----------
    item : Note, DrumHit or SynthSound
        What to render.
    synth : NoteSynth or None
        The FluidSynth a Note or DrumHit is rendered with; a SynthSound needs none.
    sample_rate : int, default 44100
        Hz, for a SynthSound (a NoteSynth has its own).

    Returns
    -------
    numpy.ndarray
        float32 mono samples.

    Raises
    ------
    MissingDependencyError
        When a Note or DrumHit is given no ``synth``.
    ParameterError
        As :meth:`NoteSynth.render` and :meth:`NoteSynth.render_hit`.
    """
    if isinstance(item, SynthSound):
        return procedural.synthesise(procedural.describe(item.seed, item.index),
                                     sample_rate=sample_rate)
    if synth is None:
        raise MissingDependencyError(f"{item.path}: rendering it needs a SoundFont and FluidSynth")
    if isinstance(item, DrumHit):
        return synth.render_hit(item)
    return synth.render(item)


def render_and_write(
    synth: NoteSynth | None, item: Item, out: Path, sample_rate: int
) -> tuple[float, str | None, int]:
    """Render one item and write its file under ``out`` atomically.

    An item that cannot be rendered (a ParameterError) or renders silent (all zero as int16)
    is not written, and a file left at its path by an earlier render is removed.

    Returns
    -------
    peak : float
        The largest absolute float sample (0.0 when not written).
    reason : str or None
        Why the item was not written (:data:`~soundatlas.demo.items.SILENT_REASON` when
        silent), None when it was.
    n_bytes : int
        The size of the file written.
    """
    target = out / item.path
    try:
        y = render_item(item, synth, sample_rate=sample_rate)
    except ParameterError as exc:
        target.unlink(missing_ok=True)
        return 0.0, str(exc), 0
    y16 = to_int16(y)
    if not y16.any():
        target.unlink(missing_ok=True)
        return 0.0, SILENT_REASON, 0
    _write_audio(target, y16, sample_rate)
    return float(np.max(np.abs(y))), None, target.stat().st_size


def _write_audio(path: Path, y16: np.ndarray, sample_rate: int) -> None:
    import soundfile

    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    part = path.with_name(f".{path.name}.part")
    soundfile.write(part, y16, sample_rate, subtype="PCM_16", format=fmt)
    os.replace(part, path)
