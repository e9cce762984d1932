"""A kit: up to 16 lanes, each a sample with a one-bar pattern of 16 steps, played at a tempo
with swing. The page builds and plays kits (Web Audio); this module checks one and writes it
out: the pattern as a standard MIDI file (General MIDI drum notes on channel 10 where the lanes
carry a drum, consecutive notes from middle C on channel 1 where they do not) and the kit as
JSON, which the page imports again.

Swing is the share of an eighth note at which the off-beat sixteenth falls: 0.5 is straight,
2/3 a triplet feel, 0.75 the most (as drum machines count it): an odd step starts
``(swing - 0.5) * 2`` steps late.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from soundatlas.errors import ParameterError

__all__ = ["STEPS", "MAX_LANES", "Lane", "Kit", "lane_notes", "pattern_midi", "CLASS_NOTES"]

STEPS = 16
MAX_LANES = 16
TICKS_PER_BEAT = 480  # a sixteenth: 120 ticks
#: the General MIDI drum note a lane of each drum class plays when it has no ``drum`` label
CLASS_NOTES = {"kick": 36, "snare": 38, "hi-hat": 42, "tom": 45, "cymbal": 49,
               "hand_percussion": 39, "effect": 58}
DRUM_CHANNEL = 9  # channel 10, counted from 0
FIRST_NOTE = 60  # lanes without a drum: middle C upwards, channel 1


@dataclass(frozen=True)
class Lane:
    """A sample and its 16 steps; ``volume`` in 0..1."""

    id: int
    steps: tuple[bool, ...]
    volume: float = 0.8


@dataclass(frozen=True)
class Kit:
    """Lanes, a tempo (beats per minute) and swing (0.5..0.75)."""

    lanes: tuple[Lane, ...]
    tempo: float = 120.0
    swing: float = 0.5
    name: str = "kit"

    @classmethod
    def from_dict(cls, d: dict) -> "Kit":
        """A kit from its JSON form (:meth:`to_dict`); ParameterError naming what is wrong."""
        if not isinstance(d, dict):
            raise ParameterError("a kit is a JSON object with lanes, tempo and swing")
        lanes = d.get("lanes")
        if not isinstance(lanes, list) or not 1 <= len(lanes) <= MAX_LANES:
            raise ParameterError(f"lanes: a list of 1 to {MAX_LANES} lanes")
        out = []
        for i, lane in enumerate(lanes):
            if not isinstance(lane, dict):
                raise ParameterError(f"lanes[{i}]: an object with id, steps and volume")
            sid, steps, volume = lane.get("id"), lane.get("steps"), lane.get("volume", 0.8)
            if isinstance(sid, bool) or not isinstance(sid, int):
                raise ParameterError(f"lanes[{i}].id: a sample id, not {sid!r}")
            if (not isinstance(steps, list) or len(steps) != STEPS
                    or not all(isinstance(s, bool) for s in steps)):
                raise ParameterError(f"lanes[{i}].steps: {STEPS} true or false")
            if isinstance(volume, bool) or not isinstance(volume, (int, float)) \
                    or not 0 <= volume <= 1:
                raise ParameterError(f"lanes[{i}].volume: a number in 0..1, not {volume!r}")
            out.append(Lane(sid, tuple(steps), float(volume)))
        tempo, swing = d.get("tempo", 120), d.get("swing", 0.5)
        if isinstance(tempo, bool) or not isinstance(tempo, (int, float)) \
                or not 20 <= tempo <= 400:
            raise ParameterError(f"tempo: beats per minute in 20..400, not {tempo!r}")
        if isinstance(swing, bool) or not isinstance(swing, (int, float)) \
                or not 0.5 <= swing <= 0.75:
            raise ParameterError(f"swing: 0.5 (straight) to 0.75, not {swing!r}")
        name = d.get("name", "kit")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ParameterError("name: 1 to 100 characters")
        return cls(tuple(out), float(tempo), float(swing), name.strip())

    def to_dict(self) -> dict:
        """The JSON form: {name, tempo, swing, steps, lanes: [{id, steps, volume}]}."""
        return {"name": self.name, "tempo": self.tempo, "swing": self.swing, "steps": STEPS,
                "lanes": [{"id": lane.id, "steps": list(lane.steps), "volume": lane.volume}
                          for lane in self.lanes]}


def lane_notes(lane_labels: list[dict[str, str]]) -> list[tuple[int, int]]:
    """(MIDI channel from 0, note) of each lane, from its sample's labels: the General MIDI
    key of its ``drum`` when that is a GM percussion name, else its ``drum_class``'s note
    (``CLASS_NOTES``), both on channel 10; else consecutive notes from middle C on channel 1."""
    from soundatlas.demo.gm import GM_PERCUSSION

    by_name = {name: key for key, name in GM_PERCUSSION.items()}
    out, melodic = [], FIRST_NOTE
    for labels in lane_labels:
        drum, cls = labels.get("drum"), labels.get("drum_class")
        if drum in by_name:
            out.append((DRUM_CHANNEL, by_name[drum]))
        elif cls in CLASS_NOTES:
            out.append((DRUM_CHANNEL, CLASS_NOTES[cls]))
        else:
            out.append((0, min(127, melodic)))
            melodic += 1
    return out


def pattern_midi(kit: Kit, notes: list[tuple[int, int]]) -> bytes:
    """The kit's bar as a type-0 standard MIDI file (480 ticks a beat, the kit's tempo; each hit
    lasts until the next step begins, its velocity the lane's volume, a lane at volume 0
    leaving none; odd steps late by the swing). The track is named after the kit, with "?" for
    any character outside Latin-1."""
    import mido

    step = TICKS_PER_BEAT // 4
    late = round((kit.swing - 0.5) * 2 * step)
    events = []  # (tick, order, message): note-offs before note-ons at the same tick
    for lane, (channel, note) in zip(kit.lanes, notes):
        if lane.volume <= 0:  # silent in the page: no notes (a velocity of 1 still sounds)
            continue
        velocity = max(1, round(127 * lane.volume))
        for i, on in enumerate(lane.steps):
            if not on:
                continue
            start = i * step + (late if i % 2 else 0)
            events.append((start, 1, mido.Message("note_on", channel=channel, note=note,
                                                  velocity=velocity)))
            # ends where the next step begins (a swung hit is shorter), so the bar stays 4/4
            events.append(((i + 1) * step - 1, 0, mido.Message("note_off", channel=channel,
                                                               note=note, velocity=0)))
    track = mido.MidiTrack()
    # a MIDI meta text is Latin-1 to mido (it raises on anything else): a name such as
    # "Kick ☃" keeps what Latin-1 can hold, with "?" for the rest; kit.json keeps the full name
    track_name = kit.name.encode("latin-1", "replace").decode("latin-1")
    track.append(mido.MetaMessage("track_name", name=track_name, time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(kit.tempo), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=STEPS * step - now))
    out = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT, tracks=[track]).save(file=out)
    return out.getvalue()
