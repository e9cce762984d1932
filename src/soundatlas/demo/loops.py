"""Loops at a known tempo and key: a drum groove, a bass line and chords (I-IV-V-I, or
i-iv-V-i in minor) as timed MIDI events, rendered by FluidSynth (``NoteSynth.render_events``).
``benchmarks/bench_loops.py`` measures ``soundatlas.rhythm`` on them."""

from __future__ import annotations

from soundatlas.rhythm import NOTE_NAMES

__all__ = ["loop_events", "PROGRAMS"]

#: channel -> (bank, program): the standard kit, a finger bass, a piano
PROGRAMS = {9: (128, 0), 0: (0, 33), 1: (0, 0)}
_KICK, _SNARE, _HAT = 36, 38, 42


def loop_events(tempo: float, key: str, *, bars: int = 4):
    """(events, seconds) of a ``bars``-bar loop in 4/4 at ``tempo`` in ``key`` ("A minor").

    Events are (time, "on"/"off", channel, key, velocity) for ``NoteSynth.render_events``.
    """
    name, mode = key.split()
    tonic = NOTE_NAMES.index(name)
    # chord roots (semitones above the tonic) and their thirds
    if mode == "major":
        chords = [(0, 4), (5, 4), (7, 4), (0, 4)]
    else:
        chords = [(0, 3), (5, 3), (7, 4), (0, 3)]  # the harmonic minor's major V
    beat = 60.0 / tempo
    events = []

    def note(t, length, ch, key, vel):
        events.append((t, "on", ch, key, vel))
        events.append((t + length, "off", ch, key, 0))

    for bar in range(bars):
        start = bar * 4 * beat
        root, third = chords[bar % len(chords)]
        for b in range(4):
            t = start + b * beat
            note(t, 0.1, 9, _KICK if b % 2 == 0 else _SNARE, 110 if b % 2 == 0 else 100)
            note(t, 0.05, 9, _HAT, 70)
            note(t + beat / 2, 0.05, 9, _HAT, 55)
            note(t, beat * 0.9, 0, 36 + (tonic + root) % 12, 100)  # bass: the root, octave 2
        base = 60 + (tonic + root) % 12
        for interval in (0, third, 7):
            note(start, 4 * beat * 0.95, 1, base + interval, 70)
    return events, bars * 4 * beat + 0.5
