"""A small seeded synthesiser: labelled one-shots from (seed, index), without any SoundFont.

Every sound is a pure function of ``(seed, index)``: :func:`describe` draws its parameters (a
:class:`Sound`, cheap, no audio), :func:`synthesise` turns them into float32 mono samples, and
:func:`generate` does both. The same ``(seed, index, sample_rate)`` gives byte-identical samples on
a given platform and NumPy/SciPy version; different indices give different sounds (continuous
parameters drawn per index), so a seed yields as many distinct one-shots as a benchmark needs.

**Patches.** ``index % len(PATCHES)`` chooses the patch, so every patch type is equally common in
any run of consecutive indices:

* melodic, ``<oscillator>_<envelope>`` for each of :data:`OSCILLATORS` (sine, saw, square,
  triangle, two-operator FM) x :data:`ENVELOPES` (pluck, stab, lead, pad); each also draws a
  filter (:data:`FILTERS`: none, lowpass, highpass, bandpass; second-order Butterworth), an
  optional noise layer, a small detune and vibrato. Pitch is a MIDI note in 36..96 (the label;
  the oscillator is detuned from it by at most 15 cents, and its vibrato is at most 25 cents);
* drums (:data:`DRUM_PATCHES`): kick (a pitched sine sweep and a click), snare (tone and noise),
  clap (noise bursts), closed and open hi-hat (high-passed noise and a metallic square cluster),
  low, mid and high tom (sines with a pitch drop), crash and ride (metallic clusters and noise with
  long decays), cowbell (two detuned squares), zap (a fast falling sweep).

**Labels** (all strings): melodic sounds have ``instrument`` (the patch), ``family``
(:data:`ENVELOPE_FAMILY`: synth_pluck, synth_stab, synth_lead, synth_pad), ``oscillator``,
``envelope``, ``filter``, ``noise`` (none/some), ``pitch``, ``velocity``, ``bank`` = procedural;
drums have ``drum`` (the General MIDI percussion name of the nearest GM key, or the patch name
where GM has none), ``drum_class`` (kick, snare, hi-hat, tom, cymbal, hand_percussion, effect, as
the SoundFont drum kits of :mod:`soundatlas.demo`), ``kit`` = procedural, ``velocity`` and
``bank``. ``velocity`` (40, 80 or 120) sets the peak level: 0.25 + 0.6 * velocity / 127 of full
scale.

**Lengths.** Files are as long as the sound: melodic notes 0.15-2.6 s, drums from 20 ms (closed
hats) to 3.5 s (crash); nothing is padded. The last 5 ms fade out, the first sample is at onset.

Randomness comes only from ``Generator.random`` (uniform doubles, the plainest of NumPy's
streams) of a PCG64 seeded with ``SeedSequence([seed, index])``, and ``[seed, index, 1]`` for the
noise in the audio. A sound takes about 5 ms of one core at 44.1 kHz (a million one-shots: about
1.5 core-hours, plus writing), so a scale benchmark can make its files when it needs them, as WAV
or FLAC: ``render_library(OUT, sound_set="synth", synth_count=N, audio_format="flac")`` of
:mod:`soundatlas.demo`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from soundatlas.errors import ParameterError

SAMPLE_RATE = 44100
BANK = "procedural"

OSCILLATORS: tuple[str, ...] = ("sine", "saw", "square", "triangle", "fm")
ENVELOPES: tuple[str, ...] = ("pluck", "stab", "lead", "pad")
FILTERS: tuple[str, ...] = ("none", "lowpass", "highpass", "bandpass")
#: the FM modulator's frequency over the carrier's (the labelled note's)
FM_RATIOS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 9.0)
ENVELOPE_FAMILY: dict[str, str] = {
    "pluck": "synth_pluck",
    "stab": "synth_stab",
    "lead": "synth_lead",
    "pad": "synth_pad",
}

#: drum patch -> (``drum`` label: the GM percussion name it stands for, ``drum_class``)
DRUM_PATCHES: dict[str, tuple[str, str]] = {
    "kick": ("bass_drum_1", "kick"), "snare": ("acoustic_snare", "snare"),
    "clap": ("hand_clap", "hand_percussion"),
    "closed_hat": ("closed_hi_hat", "hi-hat"), "open_hat": ("open_hi_hat", "hi-hat"),
    "low_tom": ("low_tom", "tom"), "mid_tom": ("low_mid_tom", "tom"),
    "high_tom": ("high_tom", "tom"),
    "crash": ("crash_cymbal_1", "cymbal"), "ride": ("ride_cymbal_1", "cymbal"),
    "cowbell": ("cowbell", "hand_percussion"), "zap": ("zap", "effect"),
}  # fmt: skip

MELODIC_PATCHES: tuple[str, ...] = tuple(f"{o}_{e}" for o in OSCILLATORS for e in ENVELOPES)
#: every patch, in the order ``index % len(PATCHES)`` picks them
PATCHES: tuple[str, ...] = MELODIC_PATCHES + tuple(DRUM_PATCHES)

VELOCITIES: tuple[int, ...] = (40, 80, 120)
PITCH_RANGE = (36, 96)  # MIDI, inclusive
END_FADE = 0.005  # seconds of fade-out at the end of every sound
_MIN_SR, _MAX_SR = 8000, 192000


@dataclass(frozen=True)
class Sound:
    """The parameters of one procedural one-shot (everything :func:`synthesise` needs).

    Attributes
    ----------
    seed, index : int
        Which sound it is.
    patch : str
        One of :data:`PATCHES`.
    velocity : int
        40, 80 or 120; sets the peak level.
    pitch : int or None
        The MIDI note of a melodic patch; None for drums.
    params : dict
        The patch's drawn parameters (envelope, filter, detune, ...).
    """

    seed: int
    index: int
    patch: str
    velocity: int
    pitch: int | None  # MIDI note of melodic patches; None for drums
    params: dict[str, float | str] = field(default_factory=dict, compare=False)

    @property
    def is_drum(self) -> bool:
        """Whether the patch is one of :data:`DRUM_PATCHES`."""
        return self.patch in DRUM_PATCHES

    @property
    def labels(self) -> dict[str, str]:
        """The sound's labels (see the module docstring), all strings."""
        if self.is_drum:
            drum, drum_class = DRUM_PATCHES[self.patch]
            return {
                "drum": drum,
                "drum_class": drum_class,
                "kit": BANK,
                "velocity": str(self.velocity),
                "bank": BANK,
            }
        oscillator, envelope = self.patch.split("_")
        return {
            "instrument": self.patch,
            "family": ENVELOPE_FAMILY[envelope],
            "oscillator": oscillator,
            "envelope": envelope,
            "filter": str(self.params["filter"]),
            "noise": "some" if float(self.params["noise"]) > 0 else "none",
            "pitch": str(self.pitch),
            "velocity": str(self.velocity),
            "bank": BANK,
        }

    def file_name(self, extension: str = "wav") -> str:
        """``<patch>/<patch>_<index:07d>.<extension>``."""
        return f"{self.patch}/{self.patch}_{self.index:07d}.{extension}"


def check_int(name: str, value, low: int = 0, high: int | None = None, *, unit: str = "") -> int:
    """Check that a parameter is an integer in range.

    Parameters
    ----------
    name : str
        The parameter's name, as the error message gives it.
    value : object
        The value to check: an ``int`` or NumPy integer (not a ``bool``).
    low, high : int, optional
        The inclusive bounds; no upper bound when ``high`` is None.
    unit : str, optional
        Appended to the range in the error message (e.g. ``" Hz"``).

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ParameterError
        "``name=value`` must be an integer >= low" (or "in low..high" with ``high``).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f">= {low}" if high is None else f"in {low}..{high}{unit}"
        raise ParameterError(f"{name}={value!r} must be an integer {bounds}")
    return int(value)


def check_sample_rate(sample_rate, *, low: int = _MIN_SR, high: int = _MAX_SR) -> int:
    """Check a sample rate in Hz (:func:`check_int` with ``low..high`` and the unit Hz).

    Returns
    -------
    int
        ``sample_rate`` as a Python int.

    Raises
    ------
    ParameterError
        Unless ``sample_rate`` is an integer in ``low..high``.
    """
    return check_int("sample_rate", sample_rate, low, high, unit=" Hz")


def patch_of(index: int) -> str:
    """The patch sound ``index`` plays, the same for every seed.

    Returns
    -------
    str
        ``PATCHES[index % len(PATCHES)]``.

    Raises
    ------
    ParameterError
        Unless ``index`` is an integer >= 0.
    """
    return PATCHES[check_int("index", index) % len(PATCHES)]


class _Draw:
    """Uniform draws from a PCG64 seeded by (seed, index)."""

    def __init__(self, seed: int, index: int):
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(self.rng.random())

    def log_uniform(self, low: float, high: float) -> float:
        return math.exp(self.uniform(math.log(low), math.log(high)))

    def choice(self, options):
        return options[min(int(self.rng.random() * len(options)), len(options) - 1)]

    def noise(self, n: int) -> np.ndarray:
        return self.rng.random(n) * 2.0 - 1.0


def describe(seed: int, index: int) -> Sound:
    """Draw the parameters of a sound (no audio is made).

    Parameters
    ----------
    seed, index : int
        Which sound, each >= 0.

    Returns
    -------
    Sound

    Raises
    ------
    ParameterError
        Unless ``seed`` and ``index`` are integers >= 0.
    """
    seed = check_int("seed", seed)
    index = check_int("index", index)
    patch = patch_of(index)
    d = _Draw(seed, index)
    velocity = d.choice(VELOCITIES)
    if patch in DRUM_PATCHES:
        return Sound(seed, index, patch, velocity, None, _drum_params(patch, d))
    oscillator, envelope = patch.split("_")
    pitch = PITCH_RANGE[0] + min(
        int(d.rng.random() * (PITCH_RANGE[1] - PITCH_RANGE[0] + 1)),
        PITCH_RANGE[1] - PITCH_RANGE[0],
    )
    params: dict[str, float | str] = {
        "detune_cents": d.uniform(-15.0, 15.0),
        "vibrato_hz": d.uniform(4.0, 7.0),
        "vibrato_cents": d.choice((0.0, d.uniform(3.0, 25.0))),
        "filter": d.choice(FILTERS),
        "cutoff_ratio": d.log_uniform(1.5, 12.0),  # x the fundamental
        "noise": d.choice((0.0, d.log_uniform(0.01, 0.2))),
        # whole ratios only: with a half one (0.5, 1.5, 3.5) the sidebands fall on odd
        # multiples of half the carrier, so the note sounds an octave below its label
        "fm_ratio": d.choice(FM_RATIOS),
        "fm_index": d.uniform(0.5, 6.0),
        "pulse_width": d.uniform(0.3, 0.5),
    }
    params.update(_envelope_params(envelope, d))
    return Sound(seed, index, patch, velocity, pitch, params)


def _envelope_params(envelope: str, d: _Draw) -> dict[str, float]:
    if envelope == "pluck":
        return {"attack": d.uniform(0.001, 0.006), "hold": 0.0, "decay": d.uniform(0.12, 0.5),
                "sustain": 0.0, "release": 0.0, "length": d.uniform(0.6, 1.3)}
    if envelope == "stab":
        return {"attack": d.uniform(0.002, 0.01), "hold": d.uniform(0.08, 0.25),
                "decay": d.uniform(0.05, 0.2), "sustain": d.uniform(0.3, 0.7),
                "release": d.uniform(0.04, 0.15), "length": 0.0}
    if envelope == "lead":
        return {"attack": d.uniform(0.005, 0.04), "hold": d.uniform(0.5, 1.1),
                "decay": d.uniform(0.08, 0.3), "sustain": d.uniform(0.55, 0.9),
                "release": d.uniform(0.08, 0.3), "length": 0.0}
    return {"attack": d.uniform(0.25, 0.8), "hold": d.uniform(0.6, 1.2),
            "decay": d.uniform(0.2, 0.6), "sustain": d.uniform(0.6, 0.95),
            "release": d.uniform(0.3, 0.7), "length": 0.0}


def _drum_params(patch: str, d: _Draw) -> dict[str, float | str]:
    p: dict[str, float | str] = {}
    if patch == "kick":
        p.update(f_end=d.uniform(40.0, 70.0), f_start=d.uniform(110.0, 260.0),
                 sweep=d.uniform(0.015, 0.06), decay=d.uniform(0.08, 0.35),
                 click=d.uniform(0.0, 0.4), drive=d.uniform(1.0, 3.0))
    elif patch == "snare":
        p.update(tone_hz=d.uniform(160.0, 260.0), tone_decay=d.uniform(0.04, 0.12),
                 noise_decay=d.uniform(0.06, 0.25), noise_low=d.uniform(800.0, 2500.0),
                 noise_high=d.uniform(6000.0, 12000.0), mix=d.uniform(0.4, 0.8))
    elif patch == "clap":
        p.update(bursts=float(d.choice((3, 4, 5))), spacing=d.uniform(0.006, 0.014),
                 tail=d.uniform(0.08, 0.3), centre=d.uniform(900.0, 2200.0))
    elif patch in ("closed_hat", "open_hat"):
        p.update(decay=d.uniform(0.004, 0.03) if patch == "closed_hat" else d.uniform(0.15, 0.5),
                 cutoff=d.uniform(6000.0, 10000.0), base_hz=d.uniform(300.0, 560.0),
                 metal=d.uniform(0.2, 0.7))
    elif patch in ("low_tom", "mid_tom", "high_tom"):
        low, high = {"low_tom": (70.0, 110.0), "mid_tom": (110.0, 160.0),
                     "high_tom": (160.0, 240.0)}[patch]
        p.update(f=d.uniform(low, high), drop=d.uniform(1.2, 1.8), sweep=d.uniform(0.02, 0.08),
                 decay=d.uniform(0.15, 0.45), noise=d.uniform(0.02, 0.15))
    elif patch in ("crash", "ride"):
        p.update(decay=d.uniform(0.6, 1.4) if patch == "crash" else d.uniform(0.5, 1.1),
                 base_hz=d.uniform(280.0, 520.0), cutoff=d.uniform(3000.0, 7000.0),
                 noise=d.uniform(0.4, 0.9) if patch == "crash" else d.uniform(0.1, 0.4),
                 bell=0.0 if patch == "crash" else d.uniform(0.1, 0.5))
    elif patch == "cowbell":
        p.update(f=d.uniform(500.0, 620.0), ratio=d.uniform(1.45, 1.55),
                 decay=d.uniform(0.05, 0.25), q_hz=d.uniform(300.0, 900.0))
    elif patch == "zap":
        p.update(f_start=d.log_uniform(1500.0, 6000.0), f_end=d.log_uniform(60.0, 300.0),
                 sweep=d.uniform(0.05, 0.25), decay=d.uniform(0.1, 0.3),
                 shape=d.choice(("sine", "square")))
    return p


# ------------------------------------------------------------------------------------------
# Synthesis


def generate(
    seed: int, index: int, *, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, dict[str, str]]:
    """Make a sound: :func:`describe`, then :func:`synthesise`.

    Parameters
    ----------
    seed, index : int
        Which sound, each >= 0.
    sample_rate : int, default SAMPLE_RATE
        Hz.

    Returns
    -------
    samples : numpy.ndarray
        float32 mono.
    labels : dict
        :attr:`Sound.labels`.
    """
    sound = describe(seed, index)
    return synthesise(sound, sample_rate=sample_rate), sound.labels


def synthesise(sound: Sound, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Synthesise a sound from its parameters.

    Parameters
    ----------
    sound : Sound
        As :func:`describe` draws it.
    sample_rate : int, default SAMPLE_RATE
        Hz, 8000..192000.

    Returns
    -------
    numpy.ndarray
        float32 mono samples, peaking at 0.25 + 0.6 * velocity / 127 of full scale, the last
        :data:`END_FADE` seconds faded out.

    Raises
    ------
    ParameterError
        When ``sample_rate`` is out of range.
    """
    sr = check_sample_rate(sample_rate)
    noise = _Draw(sound.seed, sound.index)
    noise.rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([sound.seed, sound.index, 1]))
    )
    if sound.is_drum:
        y = _drum(sound.patch, sound.params, sr, noise)
    else:
        y = _melodic(sound, sr, noise)
    peak = float(np.max(np.abs(y)))
    if peak > 0:
        y = y * ((0.25 + 0.6 * sound.velocity / 127) / peak)
    n_fade = min(len(y), max(1, round(END_FADE * sr)))
    y[-n_fade:] *= fade_out(n_fade)
    return y.astype(np.float32)


def fade_out(n: int) -> np.ndarray:
    """A half-cosine gain from 1 towards 0 over ``n`` samples.

    Returns
    -------
    numpy.ndarray
        float64, shape (n,); its last value is not yet 0.
    """
    return 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n + 1) / (n + 1)))


def _midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _phase(freq: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    """Phase in cycles (not wrapped) of an oscillator at ``freq`` Hz (scalar or per sample)."""
    inc = np.broadcast_to(np.asarray(freq, dtype=np.float64) / sr, (n,))
    return np.concatenate([[0.0], np.cumsum(inc[:-1])])


def _poly_blep(t: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """PolyBLEP residual for a unit downward step at phase 0 (t in [0, 1), dt = f/sr)."""
    out = np.zeros_like(t)
    a = t < dt
    x = t[a] / dt[a]
    out[a] = x + x - x * x - 1.0
    b = t > 1.0 - dt
    x = (t[b] - 1.0) / dt[b]
    out[b] = x * x + x + x + 1.0
    return out


def _oscillator(kind: str, freq: np.ndarray, sr: int, *, pulse_width: float = 0.5,
                fm_ratio: float = 1.0, fm_index: np.ndarray | float = 0.0) -> np.ndarray:
    n = len(freq)
    cycles = _phase(freq, n, sr)
    t = cycles - np.floor(cycles)
    dt = np.minimum(freq / sr, 0.5)
    if kind == "sine":
        return np.sin(2 * np.pi * t)
    if kind == "saw":
        return 2.0 * t - 1.0 - _poly_blep(t, dt)
    if kind == "square":
        t2 = (t + (1.0 - pulse_width)) % 1.0
        square = np.where(t < pulse_width, 1.0, -1.0)
        y = square + _poly_blep(t, dt) - _poly_blep(t2, dt)
        return y - (2.0 * pulse_width - 1.0)
    if kind == "triangle":
        return 1.0 - 4.0 * np.abs(t - 0.5)
    if kind == "fm":
        mod_cycles = _phase(freq * fm_ratio, n, sr)
        return np.sin(2 * np.pi * cycles + fm_index * np.sin(2 * np.pi * mod_cycles))
    raise ParameterError(f"oscillator={kind!r} must be one of {', '.join(OSCILLATORS)}")


def _adsr(p: dict, sr: int) -> np.ndarray:
    attack, hold, decay = float(p["attack"]), float(p["hold"]), float(p["decay"])
    sustain, release = float(p["sustain"]), float(p["release"])
    if float(p["length"]) > 0:  # pluck: attack, then exponential decay to the end
        n = round(float(p["length"]) * sr)
        t = np.arange(n) / sr
        env = np.exp(-np.maximum(t - attack, 0.0) / decay)
        n_a = max(1, round(attack * sr))
        env[:n_a] *= np.arange(1, n_a + 1) / n_a
        return env
    n_a, n_h, n_r = max(1, round(attack * sr)), round(hold * sr), max(1, round(release * sr))
    t_h = np.arange(n_h) / sr
    held = sustain + (1.0 - sustain) * np.exp(-t_h / decay)
    level = held[-1] if n_h else 1.0
    return np.concatenate([
        np.arange(1, n_a + 1) / n_a,
        held,
        level * np.exp(-5.0 * np.arange(1, n_r + 1) / n_r),
    ])


def _sos(kind: str, cutoff, sr: int):
    from scipy.signal import butter

    nyq = 0.45 * sr
    if kind == "bandpass":
        low, high = (min(max(c, 20.0), nyq) for c in cutoff)
        if high <= low * 1.05:
            high = min(low * 1.5, nyq)
            low = high / 1.5
        return butter(2, [low, high], btype="bandpass", fs=sr, output="sos")
    return butter(2, min(max(float(cutoff), 20.0), nyq), btype=kind, fs=sr, output="sos")


def _filter(y: np.ndarray, kind: str, cutoff, sr: int) -> np.ndarray:
    from scipy.signal import sosfilt

    return sosfilt(_sos(kind, cutoff, sr), y)


def _melodic(sound: Sound, sr: int, noise: _Draw) -> np.ndarray:
    p = sound.params
    oscillator, _ = sound.patch.split("_")
    env = _adsr(p, sr)
    n = len(env)
    f0 = _midi_hz(sound.pitch + float(p["detune_cents"]) / 100.0)
    t = np.arange(n) / sr
    cents = float(p["vibrato_cents"]) * np.sin(2 * np.pi * float(p["vibrato_hz"]) * t)
    freq = f0 * 2.0 ** (cents / 1200.0)
    y = _oscillator(
        oscillator, freq, sr, pulse_width=float(p["pulse_width"]), fm_ratio=float(p["fm_ratio"]),
        fm_index=float(p["fm_index"]) * (0.3 + 0.7 * env),
    )
    if float(p["noise"]) > 0:
        y = y + float(p["noise"]) * noise.noise(n)
    kind, ratio = str(p["filter"]), float(p["cutoff_ratio"])
    if kind == "lowpass":
        y = _filter(y, "lowpass", f0 * ratio, sr)
    elif kind == "highpass":
        y = _filter(y, "highpass", f0 * max(ratio / 3.0, 0.75), sr)
    elif kind == "bandpass":
        y = _filter(y, "bandpass", (f0 * max(ratio / 2.0, 0.75), f0 * ratio * 2.0), sr)
    return y * env


def _exp_decay(n: int, sr: int, seconds: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * sr))


def _length(seconds: float, sr: int) -> int:
    return max(1, round(seconds * sr))


def _metal(base_hz: float, n: int, sr: int) -> np.ndarray:
    """Six square waves at the TR-808's inharmonic ratios."""
    ratios = (1.0, 1.4471, 1.6170, 1.9265, 2.5028, 2.6637)
    return sum(_oscillator("square", np.full(n, base_hz * r), sr) for r in ratios) / 6.0


def _drum(patch: str, p: dict, sr: int, noise: _Draw) -> np.ndarray:
    if patch == "kick":
        decay = float(p["decay"])
        n = _length(decay * 4.0, sr)
        t = np.arange(n) / sr
        f = float(p["f_end"]) + (float(p["f_start"]) - float(p["f_end"])) * np.exp(
            -t / float(p["sweep"])
        )
        body = np.tanh(float(p["drive"]) * np.sin(2 * np.pi * _phase(f, n, sr)))
        click = float(p["click"]) * _filter(noise.noise(n), "lowpass", 4000.0, sr)
        click *= _exp_decay(n, sr, 0.003)
        return body * _exp_decay(n, sr, decay) + click
    if patch == "snare":
        n = _length(float(p["noise_decay"]) * 4.0, sr)
        tone = np.sin(2 * np.pi * _phase(float(p["tone_hz"]), n, sr))
        tone *= _exp_decay(n, sr, float(p["tone_decay"]))
        band = (float(p["noise_low"]), float(p["noise_high"]))
        rattle = _filter(noise.noise(n), "bandpass", band, sr)
        rattle *= _exp_decay(n, sr, float(p["noise_decay"]))
        mix = float(p["mix"])
        return (1.0 - mix) * tone + mix * 3.0 * rattle
    if patch == "clap":
        spacing, tail = float(p["spacing"]), float(p["tail"])
        n = _length(int(p["bursts"]) * spacing + tail * 4.0, sr)
        t = np.arange(n) / sr
        env = np.zeros(n)
        for k in range(int(p["bursts"])):
            start = k * spacing
            env = np.maximum(env, np.where(t >= start, np.exp(-(t - start) / 0.004), 0.0))
        last = (int(p["bursts"]) - 1) * spacing
        env = np.maximum(env, 0.6 * np.where(t >= last, np.exp(-(t - last) / tail), 0.0))
        centre = float(p["centre"])
        return _filter(noise.noise(n), "bandpass", (centre / 1.6, centre * 1.6), sr) * env
    if patch in ("closed_hat", "open_hat"):
        decay = float(p["decay"])
        n = _length(decay * 4.0 + 0.005, sr)
        metal = float(p["metal"])
        y = (1.0 - metal) * noise.noise(n) + metal * _metal(float(p["base_hz"]), n, sr)
        return _filter(y, "highpass", float(p["cutoff"]), sr) * _exp_decay(n, sr, decay)
    if patch in ("low_tom", "mid_tom", "high_tom"):
        decay = float(p["decay"])
        n = _length(decay * 4.0, sr)
        t = np.arange(n) / sr
        f = float(p["f"]) * (1.0 + (float(p["drop"]) - 1.0) * np.exp(-t / float(p["sweep"])))
        body = np.sin(2 * np.pi * _phase(f, n, sr)) * _exp_decay(n, sr, decay)
        hit = float(p["noise"]) * noise.noise(n) * _exp_decay(n, sr, 0.01)
        return body + hit
    if patch in ("crash", "ride"):
        decay = float(p["decay"])
        n = _length(decay * 2.5, sr)
        base = float(p["base_hz"])
        mix = float(p["noise"])
        shimmer = mix * noise.noise(n) + (1.0 - mix) * _metal(base, n, sr)
        y = _filter(shimmer, "highpass", float(p["cutoff"]), sr) * _exp_decay(n, sr, decay)
        bell = float(p["bell"])
        if bell:
            ping = np.sin(2 * np.pi * _phase(base * 5.43, n, sr)) * _exp_decay(n, sr, decay / 2)
            y = y + bell * 0.3 * ping
        return y * (1.0 - np.exp(-np.arange(n) / (0.0005 * sr)))
    if patch == "cowbell":
        decay = float(p["decay"])
        n = _length(decay * 5.0, sr)
        f = float(p["f"])
        y = _oscillator("square", np.full(n, f), sr) + _oscillator(
            "square", np.full(n, f * float(p["ratio"])), sr
        )
        q = float(p["q_hz"])
        y = _filter(y, "bandpass", (f - q / 2 if f > q else f / 2, f * float(p["ratio"]) + q), sr)
        return y * _exp_decay(n, sr, decay)
    if patch == "zap":
        decay = float(p["decay"])
        n = _length(float(p["sweep"]) + decay * 4.0, sr)
        t = np.arange(n) / sr
        ratio = float(p["f_end"]) / float(p["f_start"])
        f = float(p["f_start"]) * ratio ** np.minimum(t / float(p["sweep"]), 1.0)
        y = _oscillator(str(p["shape"]), f, sr)
        return y * np.exp(-np.maximum(t - float(p["sweep"]), 0.0) / decay)
    raise ParameterError(f"patch={patch!r} is not a drum patch ({', '.join(DRUM_PATCHES)})")
