"""Tempo and key of loops: the labels ``tempo`` (beats per minute) and ``key`` (``A minor``)
that ``index`` gives samples of at least ``LOOP_MIN_SECONDS`` with a steady beat.

Tempo: librosa's beat tracker (dynamic programming over an onset envelope, 8 ms frames); the
beat is steady when at least ``MIN_BEATS`` beats are found (7: the tracker does not return the
beat at 0 s, and a two-bar loop has 8) and their intervals vary by less than ``STEADY_CV`` of
their median, and the level holds (the last quarter's RMS within ``MAX_DECAY_DB`` of the first
quarter's: a single ride cymbal or bell of 4 s, which decays by about 35 dB, gave the tracker
eight even "beats" in its shimmer), and the tempo is then 60 / the slope of a straight line
through the beat times (the tracker's own tempo, and any single interval, are quantised to its
frames: 2 % off at 128 BPM). Key: the loop's harmonic part (librosa's median-filter HPSS: drums
out), its constant-Q chroma from C3 up (the bass's overtones put a major third under every minor
root), correlated with Albrecht and Shanahan's key profiles; the best of the 24 keys when its
correlation reaches ``KEY_MIN_R``, for loops of at least ``KEY_MIN_BEATS`` beats (two bars of
I-IV are also V-I a fifth lower: such a loop gets a tempo and no key). These choices were made
on FluidR3 loops (``benchmarks/bench_loops.py --tune``) and are measured on other loops
(MuseScore General, other tempos and instruments).

Why librosa and not essentia: librosa is already pinned for the project (its CQT is the
reference the features are tested against), installs everywhere pip does, and gives the beat
tracker; essentia's extractors are stronger on key but its wheels cover fewer platforms and
Python versions, and the figures below meet the issue's goals without it
(``benchmarks/bench_loops.py``; ``docs/RESULTS.md``, "Tempo and key of loops").
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOOP_MIN_SECONDS", "MIN_BEATS", "KEY_MIN_BEATS", "STEADY_CV", "MAX_DECAY_DB",
           "KEY_MIN_R", "NOTE_NAMES",
           "estimate_tempo", "estimate_key", "loop_labels", "relative_key", "normalise_key"]

LOOP_MIN_SECONDS = 4.0
#: beats the tracker must find: a two-bar loop has 8, of which it misses the one at 0 s
MIN_BEATS = 7
#: beats a loop needs for a key too (more than two bars' worth, as the tracker counts)
KEY_MIN_BEATS = 8
STEADY_CV = 0.08
MAX_DECAY_DB = 24.0
KEY_MIN_R = 0.5
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Albrecht and Shanahan (2013), pitch-class distributions of major and minor pieces from the
# tonic (on FluidR3 loops: 21 of 24 keys, against 12 for Krumhansl and Kessler's)
_MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080,
                   0.008, 0.081])
_MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022,
                   0.061, 0.052])
_HOP = 128  # beat tracking frames: 8 ms at 16 kHz


def estimate_tempo(y: np.ndarray, sr: int) -> float | None:
    """Beats per minute of a steady beat in ``y`` (mono float), or None without one."""
    beats = _steady_beats(y, sr)
    return None if beats is None else _tempo(beats)


def _steady_beats(y: np.ndarray, sr: int) -> np.ndarray | None:
    """The beat times of a steady beat in ``y`` (see the module doc), or None."""
    from soundatlas.numba_guard import import_librosa

    if len(y) < LOOP_MIN_SECONDS * sr or _decay_db(y) > MAX_DECAY_DB:
        return None
    librosa = import_librosa()  # its compiled modules: seconds on a process's first loop
    _, beats = librosa.beat.beat_track(y=y.astype(np.float32), sr=sr, hop_length=_HOP,
                                       units="time")
    beats = np.asarray(beats)
    if len(beats) < MIN_BEATS:
        return None
    ibi = np.diff(beats)
    med = float(np.median(ibi))
    if med <= 0 or float(np.std(ibi)) / med > STEADY_CV:
        return None
    return beats


def _tempo(beats: np.ndarray) -> float:
    return 60.0 / float(np.polyfit(np.arange(len(beats)), beats, 1)[0])


def _decay_db(y: np.ndarray) -> float:
    """How far the last quarter of ``y`` is below its first quarter, in dB of RMS."""
    n = max(1, len(y) // 4)
    head = float(np.sqrt(np.mean(np.square(y[:n], dtype=np.float64))))
    tail = float(np.sqrt(np.mean(np.square(y[-n:], dtype=np.float64))))
    return 20 * np.log10(max(head, 1e-12) / max(tail, 1e-12))


def estimate_key(y: np.ndarray, sr: int) -> tuple[str, float] | None:
    """(``"A minor"``, correlation) of the key that fits ``y``'s mean chroma best, or None when
    no key reaches ``KEY_MIN_R`` (noise, drums alone)."""
    from soundatlas.numba_guard import import_librosa

    librosa = import_librosa()

    harmonic = librosa.effects.harmonic(y.astype(np.float32))
    chroma = librosa.feature.chroma_cqt(y=harmonic, sr=sr, hop_length=512,
                                        fmin=librosa.note_to_hz("C3"), n_octaves=5)
    profile = chroma.mean(axis=1)
    if not np.isfinite(profile).all() or profile.std() == 0:
        return None
    best, best_r = None, -2.0
    for tonic in range(12):
        for mode, template in (("major", _MAJOR), ("minor", _MINOR)):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if r > best_r:
                best, best_r = f"{NOTE_NAMES[tonic]} {mode}", r
    return (best, best_r) if best_r >= KEY_MIN_R else None


def loop_labels(y: np.ndarray, sr: int) -> dict[str, str]:
    """The ``tempo`` and ``key`` labels of a loop (either may be missing); {} for a sample
    shorter than ``LOOP_MIN_SECONDS`` or without a steady beat. A key only from
    ``KEY_MIN_BEATS`` beats: a two-bar loop's chords (I-IV, say) are also V-I of another key,
    and the key finder, measured on four-bar loops, named that other key on every one."""
    beats = _steady_beats(y, sr)
    if beats is None:
        return {}
    out = {"tempo": f"{_tempo(beats):.1f}"}
    key = estimate_key(y, sr) if len(beats) >= KEY_MIN_BEATS else None
    if key is not None:
        out["key"] = key[0]
    return out


_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E",
          "E#": "F", "B#": "C"}
_MODES = {"major": "major", "maj": "major", "": "major", "m": "minor", "min": "minor",
          "minor": "minor"}


def normalise_key(text: str) -> str | None:
    """A key as written by hand or by another tool (``Bb minor``, ``a major``, ``F#m``,
    ``Am``, ``C``, ``E♭ maj``), as ``index`` writes keys (``A# minor``: sharps, one space); None
    when ``text`` is not a key.

    Examples
    --------
    >>> normalise_key("Bb minor"), normalise_key("f#m"), normalise_key(" C "), normalise_key("H")
    ('A# minor', 'F# minor', 'C major', None)
    """
    text = " ".join(str(text).replace("♭", "b").replace("♯", "#").split())
    note_len = 2 if len(text) > 1 and text[1] in "#b" else 1
    note = text[:1].upper() + text[1:note_len]
    mode = text[note_len:].strip()
    mode = "major" if mode == "M" else _MODES.get(mode.lower())  # AM: major, Am: minor
    note = _FLATS.get(note, note)
    if note not in NOTE_NAMES or mode is None:
        return None
    return f"{note} {mode}"


def relative_key(key: str) -> str:
    """The relative major or minor of ``"A minor"`` (``"C major"``) and the other way."""
    name, mode = key.split()
    i = NOTE_NAMES.index(name)
    if mode == "minor":
        return f"{NOTE_NAMES[(i + 3) % 12]} major"
    return f"{NOTE_NAMES[(i - 3) % 12]} minor"


def _probe() -> int:
    """``python -m soundatlas.rhythm``: ``numba_guard.check``'s probe. Prints the numba cache
    folders of librosa's compiled modules (first, so that a crash leaves them said), then
    analyses a synthetic loop: 120 BPM clicks over a tone."""
    import json

    from soundatlas.numba_guard import cache_dirs

    print(json.dumps(cache_dirs()), flush=True)
    sr = 16000
    y = 0.3 * np.sin(2 * np.pi * 220.0 * np.arange(5 * sr) / sr)
    for beat in np.arange(0, 5.0, 0.5):
        i = int(beat * sr)
        y[i:i + 160] += np.hanning(320)[160:] * 0.9
    loop_labels(y.astype(np.float32), sr)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_probe())
