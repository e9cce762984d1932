"""Render labelled sound libraries: the demo instrument set (docs/DESIGN.md §2), every General MIDI
program and drum kit of any SoundFont (with FluidSynth), and procedural synth sounds.

Sets (``render_library(sound_set=...)``, ``soundatlas demo-library --set``):

``demo`` (default)
    The 24-class instrument library: every pitch of each class's range (:data:`DEFAULT_CLASSES`)
    at each velocity and articulation::

        OUT/<instrument>/<instrument>_<pitch:03d>_v<velocity:03d>_<articulation>.wav
        OUT/metadata.csv   path, instrument, pitch, velocity, articulation (sorted by path)

``gm``
    The 128 General MIDI programs of bank 0 (:data:`GM_PROGRAMS`), labelled ``instrument`` (the
    GM program name; the demo set's names where they overlap, so a violin is ``violin`` in every
    set and bank), ``family`` (its GM family of eight, :data:`GM_FAMILIES`), ``pitch``,
    ``velocity``, ``articulation`` and ``bank`` (the SoundFont's file name without extension).
    Pitches: every ``pitch_step``-th semitone (default :data:`GM_PITCH_STEP` = 5, a fourth) of
    the program's range (:func:`gm_range`: the demo range for the demo's 24 programs, else a range
    per family or program), those congruent to the program number modulo the step, so
    neighbouring programs start on different pitches; 5 is prime to 12, so one program's pitches
    pass through every pitch class over five octaves. ``pitch_step=1`` renders every semitone
    (36,072 notes). With the defaults (3 velocities, 2 articulations) the gm set is 7,218 notes,
    3 to 18 pitches a program (the demo set is 5,706 notes)::

        OUT/gm/<bank>/<instrument>/<instrument>_<pitch:03d>_v<velocity:03d>_<articulation>.wav

``drums``
    Every GS drum kit the SoundFont has in bank 128 (:data:`GM_KITS`: standard 0, room 8, power
    16, electronic 24, tr808 25, jazz 32, brush 40, orchestra 48, sfx 56), found by asking
    FluidSynth for the preset and checking its name (a program 56 that is not an SFX kit, as
    MuseScore General's "Marching Snare", is not rendered), played on MIDI channel 10 at each GM
    percussion key 35-81 (:data:`GM_PERCUSSION`; the sfx kit: the GS SFX keys 39-84,
    :data:`GS_SFX`) and velocity. Labels: ``drum`` (the GM percussion name; the orchestra kit's
    keys 41-53 are ``timpani``), ``drum_class``, ``kit``, ``velocity``, ``bank``. The drum
    classes (:data:`DRUM_CLASSES`, :func:`drum_class`): kick 35 36; snare 37 38 40; hi-hat 42 44
    46; tom 41 43 45 47 48 50 (and the orchestra kit's timpani); cymbal 49 51 52 53 55 57 59;
    effect 58 71 72 (vibraslap and whistles, played for effect rather than rhythm) and every key
    of the sfx kit; hand_percussion the other keys (hand clap, tambourine, cowbell, bongos,
    congas, timbales, agogos, cabasa, maracas, guiros, claves, wood blocks, cuicas, triangles).
    A hit is recorded with the key held until its voices end or
    :data:`DRUM_MAX_SECONDS` pass, then its silent tail is cut: the file ends
    :data:`DRUM_TAIL_MARGIN` after the last sample above -:data:`DRUM_TRIM_DB` dB of its peak,
    over which it fades out. Drum files are as long as the sound (no padding)::

        OUT/drums/<bank>/<kit>/<kit>_<key:03d>_<drum>_v<velocity:03d>.wav

``synth``
    ``synth_count`` (default 2,000) one-shots of :mod:`soundatlas.procedural` (seeded; no
    SoundFont, no FluidSynth)::

        OUT/synth/procedural_s<seed>/<patch>/<patch>_<index:07d>.wav

``all``
    gm, drums and synth into one OUT.

With the defaults on FluidR3_GM the sets are: demo 5,706 notes (5,634 written, 846 MB), gm 7,218
(7,194, 1.1 GB), drums 1,128 (8 kits; 1,119, 105 MB), synth 2,000 (189 MB); FluidSynth renders
about 300 notes a second on two cores. ``audio_format="flac"`` writes 16-bit FLAC instead of WAV.

**Manifests.** Each (set, bank) folder has its own ``metadata.csv`` (every written file with all
its labels, paths relative to that folder) and ``silent.csv`` (the notes not written because
they rendered silent: the preset has no sample for them). ``OUT/metadata.csv`` and
``OUT/silent.csv`` list everything under OUT: the demo set's files and those of every
``<set>/<bank>`` folder, with the union of their label columns (empty where a label does not
apply); they are rewritten at the end of every render. A demo-set render into an OUT holding
nothing else writes exactly the demo's five columns.

**Melodic notes** (demo, gm) are held for their articulation's duration (``short`` 0.4 s,
``long`` 1.8 s), then released and recorded for ``RELEASE_TAIL`` = 0.6 s more; both parts are
rounded up to FluidSynth's 64-frame block, so at 44.1 kHz a short note is 44160 samples (1.001 s)
and a long one 105920 (2.402 s). Nothing is trimmed: the file starts at note-on; only its last
``END_FADE`` = 10 ms are faded out, since a few notes (low harp and guitar strings) still ring
when the tail ends. A note that renders fully silent (on FluidR3_GM: violin 94, recorder 98 and
contrabass 58-67) is not written: it is listed in ``silent.csv`` and counted per instrument in
the summary (:meth:`RenderSummary.silent_lines`).

Each file depends only on its own parameters (program or kit, pitch or key, velocity,
articulation, sample rate, SoundFont; seed and index for procedural sounds): reverb and chorus
are off, every voice is killed between notes, and the synth is primed with the note itself before
it is recorded, because FluidSynth keeps a little state per voice slot (output-gain and filter
ramps) that would otherwise leak from the previous note into the first block of the next.
Renders are byte-identical whatever ``n_jobs`` and whichever notes are rendered together.

FluidSynth is imported lazily (``import soundatlas.demo`` works without it); rendering a
SoundFont set without the shared library raises :class:`~soundatlas.errors.MissingDependencyError`.
FluidSynth 2 loads both SoundFont 2 (``.sf2``) and the Ogg-Vorbis-compressed SoundFont 3
(``.sf3``).
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

#: name -> (General MIDI program, lowest MIDI pitch, highest MIDI pitch), inclusive (docs/DESIGN.md §2).
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

#: the sets render_library knows; "all" is gm + drums + synth.
SETS: tuple[str, ...] = ("demo", "gm", "drums", "synth", "all")
#: sub-folders of OUT that hold the gm, drums and synth sets (one folder per bank inside).
SET_FOLDERS: tuple[str, ...] = ("gm", "drums", "synth")
AUDIO_FORMATS: tuple[str, ...] = ("wav", "flac")

#: The General MIDI families, eight programs each (program // 8).
GM_FAMILIES: tuple[str, ...] = (
    "piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive",
    "sound_effects",
)  # fmt: skip

#: The 128 General MIDI program names (bank 0), snake_case. Programs 24 and 46 carry the demo
#: set's names (``nylon_guitar``, ``harp``; GM: "Acoustic Guitar (nylon)", "Orchestral Harp"),
#: so that each of the demo's 24 classes has one name in every set and bank.
GM_PROGRAMS: tuple[str, ...] = (
    # piano
    "acoustic_grand_piano", "bright_acoustic_piano", "electric_grand_piano", "honky_tonk_piano",
    "electric_piano_1", "electric_piano_2", "harpsichord", "clavinet",
    # chromatic_percussion
    "celesta", "glockenspiel", "music_box", "vibraphone", "marimba", "xylophone",
    "tubular_bells", "dulcimer",
    # organ
    "drawbar_organ", "percussive_organ", "rock_organ", "church_organ", "reed_organ", "accordion",
    "harmonica", "tango_accordion",
    # guitar
    "nylon_guitar", "acoustic_guitar_steel", "electric_guitar_jazz", "electric_guitar_clean",
    "electric_guitar_muted", "overdriven_guitar", "distortion_guitar", "guitar_harmonics",
    # bass
    "acoustic_bass", "electric_bass_finger", "electric_bass_pick", "fretless_bass",
    "slap_bass_1", "slap_bass_2", "synth_bass_1", "synth_bass_2",
    # strings
    "violin", "viola", "cello", "contrabass", "tremolo_strings", "pizzicato_strings", "harp",
    "timpani",
    # ensemble
    "string_ensemble_1", "string_ensemble_2", "synth_strings_1", "synth_strings_2",
    "choir_aahs", "voice_oohs", "synth_voice", "orchestra_hit",
    # brass
    "trumpet", "trombone", "tuba", "muted_trumpet", "french_horn", "brass_section",
    "synth_brass_1", "synth_brass_2",
    # reed
    "soprano_sax", "alto_sax", "tenor_sax", "baritone_sax", "oboe", "english_horn", "bassoon",
    "clarinet",
    # pipe
    "piccolo", "flute", "recorder", "pan_flute", "blown_bottle", "shakuhachi", "whistle",
    "ocarina",
    # synth_lead
    "lead_1_square", "lead_2_sawtooth", "lead_3_calliope", "lead_4_chiff", "lead_5_charang",
    "lead_6_voice", "lead_7_fifths", "lead_8_bass_lead",
    # synth_pad
    "pad_1_new_age", "pad_2_warm", "pad_3_polysynth", "pad_4_choir", "pad_5_bowed",
    "pad_6_metallic", "pad_7_halo", "pad_8_sweep",
    # synth_effects
    "fx_1_rain", "fx_2_soundtrack", "fx_3_crystal", "fx_4_atmosphere", "fx_5_brightness",
    "fx_6_goblins", "fx_7_echoes", "fx_8_sci_fi",
    # ethnic
    "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai",
    # percussive
    "tinkle_bell", "agogo", "steel_drums", "woodblock", "taiko_drum", "melodic_tom",
    "synth_drum", "reverse_cymbal",
    # sound_effects
    "guitar_fret_noise", "breath_noise", "seashore", "bird_tweet", "telephone_ring",
    "helicopter", "applause", "gunshot",
)  # fmt: skip

#: family -> (lowest, highest) MIDI pitch rendered for its programs (unless GM_RANGES says else).
GM_FAMILY_RANGES: dict[str, tuple[int, int]] = {
    "piano": (21, 108),
    "chromatic_percussion": (48, 96),
    "organ": (36, 96),
    "guitar": (40, 88),
    "bass": (28, 67),
    "strings": (36, 96),
    "ensemble": (36, 96),
    "brass": (40, 84),
    "reed": (40, 88),
    "pipe": (60, 96),
    "synth_lead": (36, 96),
    "synth_pad": (36, 96),
    "synth_effects": (36, 96),
    "ethnic": (48, 88),
    "percussive": (48, 84),
    "sound_effects": (48, 72),
}

#: program -> (lowest, highest) where the instrument's range differs from its family's; the demo
#: set's 24 programs use their DEFAULT_CLASSES range.
GM_RANGES: dict[int, tuple[int, int]] = {
    6: (29, 89), 7: (29, 89),  # harpsichord, clavinet
    8: (60, 108), 9: (72, 108), 10: (60, 96), 11: (53, 89), 12: (45, 96), 13: (65, 108),
    14: (60, 77),  # celesta .. tubular bells
    19: (24, 96), 21: (41, 89), 22: (60, 96), 23: (41, 89),  # church organ, accordions, harmonica
    31: (52, 88),  # guitar harmonics
    47: (38, 57),  # timpani
    52: (48, 81), 53: (48, 81), 54: (48, 84), 55: (48, 84),  # voices, orchestra hit
    61: (40, 84), 62: (36, 96), 63: (36, 96),  # brass section, synth brass
    76: (60, 96), 77: (55, 91), 78: (60, 96), 79: (60, 91),  # bottle, shakuhachi, whistle, ocarina
    104: (48, 84), 105: (48, 84), 106: (50, 86), 107: (55, 91), 108: (60, 96), 109: (55, 79),
    110: (55, 96), 111: (60, 91),  # ethnic
    112: (72, 108), 113: (60, 84), 114: (52, 88), 115: (60, 84), 116: (36, 60), 117: (40, 76),
    118: (36, 72), 119: (48, 72),  # percussive
}  # fmt: skip

#: every pitch_step-th semitone of a program's range is rendered in the gm set.
GM_PITCH_STEP = 5

#: GS drum kits: name -> program in bank 128 (MIDI channel 10).
GM_KITS: dict[str, int] = {
    "standard": 0,
    "room": 8,
    "power": 16,
    "electronic": 24,
    "tr808": 25,
    "jazz": 32,
    "brush": 40,
    "orchestra": 48,
    "sfx": 56,
}
# A preset at a kit's program is taken for that kit when its name matches (program 0 always is).
_KIT_NAMES = {
    "room": r"room", "power": r"power|rock", "electronic": r"elec", "tr808": r"808",
    "jazz": r"jazz", "brush": r"brush", "orchestra": r"orch|concert|classic",
    "sfx": r"sfx|effect|\bfx\b",
}  # fmt: skip

#: General MIDI percussion keys (channel 10) -> name.
GM_PERCUSSION: dict[int, str] = {
    35: "acoustic_bass_drum", 36: "bass_drum_1", 37: "side_stick", 38: "acoustic_snare",
    39: "hand_clap", 40: "electric_snare", 41: "low_floor_tom", 42: "closed_hi_hat",
    43: "high_floor_tom", 44: "pedal_hi_hat", 45: "low_tom", 46: "open_hi_hat",
    47: "low_mid_tom", 48: "hi_mid_tom", 49: "crash_cymbal_1", 50: "high_tom",
    51: "ride_cymbal_1", 52: "chinese_cymbal", 53: "ride_bell", 54: "tambourine",
    55: "splash_cymbal", 56: "cowbell", 57: "crash_cymbal_2", 58: "vibraslap",
    59: "ride_cymbal_2", 60: "hi_bongo", 61: "low_bongo", 62: "mute_hi_conga",
    63: "open_hi_conga", 64: "low_conga", 65: "high_timbale", 66: "low_timbale",
    67: "high_agogo", 68: "low_agogo", 69: "cabasa", 70: "maracas", 71: "short_whistle",
    72: "long_whistle", 73: "short_guiro", 74: "long_guiro", 75: "claves", 76: "hi_wood_block",
    77: "low_wood_block", 78: "mute_cuica", 79: "open_cuica", 80: "mute_triangle",
    81: "open_triangle",
}  # fmt: skip

#: GS SFX kit (bank 128, program 56) keys -> name; every one has drum_class "effect".
GS_SFX: dict[int, str] = {
    39: "high_q", 40: "slap", 41: "scratch_push", 42: "scratch_pull", 43: "sticks",
    44: "square_click", 45: "metronome_click", 46: "metronome_bell", 47: "guitar_fret_noise",
    48: "guitar_cutting_noise_up", 49: "guitar_cutting_noise_down", 50: "string_slap",
    51: "flute_key_click", 52: "laughing", 53: "screaming", 54: "punch", 55: "heartbeat",
    56: "footsteps_1", 57: "footsteps_2", 58: "applause", 59: "door_creaking", 60: "door_slam",
    61: "scratch", 62: "wind_chimes", 63: "car_engine", 64: "car_stop", 65: "car_pass",
    66: "car_crash", 67: "siren", 68: "train", 69: "jet_plane", 70: "helicopter",
    71: "starship", 72: "gunshot", 73: "machine_gun", 74: "laser_gun", 75: "explosion",
    76: "dog", 77: "horse_gallop", 78: "birds", 79: "rain", 80: "thunder", 81: "wind",
    82: "seashore", 83: "stream", 84: "bubbles",
}  # fmt: skip

#: drum_class of the GM percussion keys 35-81. Keys not listed are hand_percussion (hand clap,
#: tambourine, cowbell, bongos, congas, timbales, agogos, cabasa, maracas, guiros, claves, wood
#: blocks, cuicas, triangles); vibraslap and the two whistles, played for effect rather than
#: rhythm, are "effect".
DRUM_CLASSES: dict[str, tuple[int, ...]] = {
    "kick": (35, 36),
    "snare": (37, 38, 40),
    "hi-hat": (42, 44, 46),
    "tom": (41, 43, 45, 47, 48, 50),
    "cymbal": (49, 51, 52, 53, 55, 57, 59),
    "effect": (58, 71, 72),
}
DRUM_CLASS_NAMES: tuple[str, ...] = (
    "kick", "snare", "hi-hat", "tom", "cymbal", "hand_percussion", "effect",
)  # fmt: skip
_KEY_CLASS = {key: name for name, keys in DRUM_CLASSES.items() for key in keys}
#: the orchestra kit's keys 41-53 are tuned timpani (GS orchestra set), labelled drum "timpani",
#: drum_class "tom".
_ORCHESTRA_TIMPANI = range(41, 54)

#: seconds a drum hit is recorded at most (the key held), before its silent tail is cut.
DRUM_MAX_SECONDS = 4.0
#: a drum file ends this long after its last sample above -DRUM_TRIM_DB dB of its peak.
DRUM_TRIM_DB = 60.0
DRUM_TAIL_MARGIN = 0.01

#: synth set defaults: how many procedural one-shots, and their seed.
SYNTH_COUNT = 2000
SYNTH_SEED = 0

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
SILENT_FILE = "silent.csv"
METADATA_COLUMNS = ("path", "instrument", "pitch", "velocity", "articulation")
#: label columns of the manifests, in this order (a manifest has those its rows use).
LABEL_COLUMNS: tuple[str, ...] = (
    "instrument", "pitch", "velocity", "articulation", "family", "drum", "drum_class", "kit",
    "oscillator", "envelope", "filter", "noise", "bank",
)  # fmt: skip

# FluidSynth renders in blocks of 64 frames and applies note-on/off at block boundaries.
_BLOCK = 64
# Frames rendered to prime the voice slots before each note: long enough for FluidSynth's
# filter-cutoff smoothing (at most 5 blocks) to settle.
_PRIME_FRAMES = 6 * _BLOCK
# A drum hit is rendered in chunks of this many frames until its voices end.
_HIT_CHUNK = 16 * _BLOCK
_MIN_SR, _MAX_SR = 8000, 96000  # FluidSynth silently falls back to 44.1 kHz outside this range
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CHANNEL = 0
_DRUM_CHANNEL = 9  # MIDI channel 10
_SILENT_REASON = "silent: the preset has no sound for this note at this velocity"


@dataclass(frozen=True)
class Note:
    """One melodic note to render: a class name, its GM program, and how it is played.

    ``family``/``bank`` are labels of the gm set (None in the demo set); ``folder`` is the
    sub-folder of OUT its file goes to ("" in the demo set).
    """

    instrument: str
    program: int
    pitch: int
    velocity: int
    articulation: str
    duration: float  # seconds the key is held
    family: str | None = None
    bank: str | None = None
    folder: str = ""
    extension: str = "wav"

    @property
    def path(self) -> str:
        """File path relative to the library root, with forward slashes."""
        name = (
            f"{self.instrument}_{self.pitch:03d}_v{self.velocity:03d}_{self.articulation}"
            f".{self.extension}"
        )
        prefix = f"{self.folder}/" if self.folder else ""
        return f"{prefix}{self.instrument}/{name}"

    @property
    def group(self) -> str:
        """What the silent-note summary counts by."""
        return self.instrument

    @property
    def labels(self) -> dict[str, str]:
        labels = {
            "instrument": self.instrument,
            "pitch": str(self.pitch),
            "velocity": str(self.velocity),
            "articulation": self.articulation,
        }
        if self.family is not None:
            labels["family"] = self.family
        if self.bank is not None:
            labels["bank"] = self.bank
        return labels


@dataclass(frozen=True)
class DrumHit:
    """One hit of a drum kit: kit program (bank 128) and key, played on MIDI channel 10."""

    kit: str
    kit_program: int
    key: int
    velocity: int
    drum: str
    drum_class: str
    bank: str
    folder: str
    extension: str = "wav"

    @property
    def path(self) -> str:
        name = f"{self.kit}_{self.key:03d}_{self.drum}_v{self.velocity:03d}.{self.extension}"
        return f"{self.folder}/{self.kit}/{name}"

    @property
    def group(self) -> str:
        return self.kit

    @property
    def labels(self) -> dict[str, str]:
        return {
            "drum": self.drum,
            "drum_class": self.drum_class,
            "kit": self.kit,
            "velocity": str(self.velocity),
            "bank": self.bank,
        }


@dataclass(frozen=True)
class SynthSound:
    """One procedural one-shot: sound ``index`` of ``seed`` (see :mod:`soundatlas.procedural`)."""

    seed: int
    index: int
    patch: str
    label_items: tuple[tuple[str, str], ...]
    folder: str
    extension: str = "wav"

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.patch}/{self.patch}_{self.index:07d}.{self.extension}"

    @property
    def group(self) -> str:
        return self.patch

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.label_items)


Item = Note | DrumHit | SynthSound


@dataclass(frozen=True)
class SkippedNote:
    """A note (or drum hit, or procedural sound) that was not written, and why."""

    note: Item
    reason: str

    @property
    def silent(self) -> bool:
        return self.reason.startswith("silent")


@dataclass
class PartSummary:
    """One (set, bank) of a render: its folder under OUT and what was written there."""

    sound_set: str
    bank: str
    folder: str
    n_notes: int
    n_files_written: int
    n_silent: int
    n_bytes: int


@dataclass
class RenderSummary:
    """What :func:`render_library` did.

    ``peak`` is the largest absolute sample over the written files (1.0 = full scale, before
    clipping); ``clipped`` lists the notes whose float output exceeded full scale. ``parts`` has
    one entry per (set, bank) rendered; ``messages`` says what the SoundFont lacks (programs,
    kits) and was therefore not planned.
    """

    n_notes: int
    n_files_written: int
    seconds: float
    out: Path
    skipped: list[SkippedNote] = field(default_factory=list)
    peak: float = 0.0
    clipped: list[Item] = field(default_factory=list)
    sound_set: str = "demo"
    n_bytes: int = 0
    parts: list[PartSummary] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def silent(self) -> list[SkippedNote]:
        return [s for s in self.skipped if s.silent]

    def silent_lines(self) -> list[str]:
        """One line per part with silent notes: their count and the count per instrument (kit,
        patch), e.g. "37 silent notes not written: violin 5, recorder 2, contrabass 30"."""
        by_folder: dict[str, list[SkippedNote]] = {}
        for s in self.silent:
            by_folder.setdefault(s.note.folder, []).append(s)
        lines = []
        for folder, skipped in by_folder.items():
            line = silent_summary(skipped)
            lines.append(f"{folder}: {line}" if len(self.parts) > 1 and folder else line)
        return lines


def silent_summary(skipped: Iterable[SkippedNote]) -> str:
    """"N silent notes not written: name n, ..." counting by instrument (kit for drums), in the
    order the names first occur."""
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s.note.group] = counts.get(s.note.group, 0) + 1
    n = sum(counts.values())
    what = "note" if n == 1 else "notes"
    return f"{n} silent {what} not written: " + ", ".join(f"{k} {v}" for k, v in counts.items())


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


def gm_family(program: int) -> str:
    """The General MIDI family of a program (0..127)."""
    return GM_FAMILIES[_check_program(program) // 8]


def gm_range(program: int) -> tuple[int, int]:
    """(lowest, highest) MIDI pitch the gm set renders for a program (before ``pitch_step``)."""
    program = _check_program(program)
    name = GM_PROGRAMS[program]
    if name in DEFAULT_CLASSES:
        return DEFAULT_CLASSES[name][1:]
    return GM_RANGES.get(program) or GM_FAMILY_RANGES[gm_family(program)]


def gm_pitches(program: int, *, pitch_step: int = GM_PITCH_STEP) -> list[int]:
    """The pitches of a program in the gm set: those of :func:`gm_range` congruent to the
    program number modulo ``pitch_step``."""
    step = _check_pitch_step(pitch_step)
    low, high = gm_range(program)
    return list(range(low + (program - low) % step, high + 1, step))


def plan_gm(
    *,
    bank: str,
    programs: Iterable[str | int] | None = None,
    pitch_step: int = GM_PITCH_STEP,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    articulations: Mapping[str, float] | None = None,
    extension: str = "wav",
) -> list[Note]:
    """The notes of the gm set for one bank: programs (names of :data:`GM_PROGRAMS` or numbers;
    default all 128) x :func:`gm_pitches` x velocities x articulations, in ``gm/<bank>/``."""
    bank = _check_bank(bank)
    numbers = _check_programs(programs)
    step = _check_pitch_step(pitch_step)
    velocities = _check_velocities(velocities)
    articulations = _check_articulations(articulations)
    extension = _check_format(extension)
    folder = f"gm/{bank}"
    return [
        Note(GM_PROGRAMS[p], p, pitch, velocity, articulation, duration,
             family=gm_family(p), bank=bank, folder=folder, extension=extension)
        for p in numbers
        for pitch in gm_pitches(p, pitch_step=step)
        for velocity in velocities
        for articulation, duration in articulations.items()
    ]  # fmt: skip


def drum_class(key: int, *, kit: str = "standard") -> str:
    """The drum_class of a key in a kit: kick, snare, hi-hat, tom, cymbal, hand_percussion or
    effect (:data:`DRUM_CLASSES`; every key of the sfx kit is "effect", the orchestra kit's
    timpani keys 41-53 are "tom")."""
    return _drum(key, kit)[1]


def drum_name(key: int, *, kit: str = "standard") -> str:
    """The ``drum`` label of a key in a kit (GM percussion name, GS SFX name, or timpani)."""
    return _drum(key, kit)[0]


def _drum(key: int, kit: str) -> tuple[str, str]:
    if kit == "sfx":
        if key not in GS_SFX:
            raise ParameterError(f"key={key!r} is not a key of the GS SFX kit (39..84)")
        return GS_SFX[key], "effect"
    if key not in GM_PERCUSSION:
        raise ParameterError(f"key={key!r} is not a General MIDI percussion key (35..81)")
    if kit == "orchestra" and key in _ORCHESTRA_TIMPANI:
        return "timpani", "tom"
    return GM_PERCUSSION[key], _KEY_CLASS.get(key, "hand_percussion")


def kit_keys(kit: str) -> list[int]:
    """The keys the drums set plays on a kit: GS SFX keys 39-84 on sfx, GM keys 35-81 else."""
    return list(GS_SFX) if kit == "sfx" else list(GM_PERCUSSION)


def plan_drums(
    *,
    bank: str,
    kits: Iterable[str] | None = None,
    keys: Iterable[int] | None = None,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    extension: str = "wav",
) -> list[DrumHit]:
    """The hits of the drums set for one bank: kits (names of :data:`GM_KITS`; default all) x
    :func:`kit_keys` (restricted to ``keys`` when given) x velocities, in ``drums/<bank>/``.

    Which kits a SoundFont has is for :func:`soundfont_kits` to say; this only plans.
    """
    bank = _check_bank(bank)
    names = _check_kits(kits)
    wanted = None if keys is None else set(_check_keys(keys))
    velocities = _check_velocities(velocities)
    extension = _check_format(extension)
    folder = f"drums/{bank}"
    hits = []
    for kit in names:
        for key in kit_keys(kit):
            if wanted is not None and key not in wanted:
                continue
            drum, cls = _drum(key, kit)
            for velocity in velocities:
                hits.append(DrumHit(kit, GM_KITS[kit], key, velocity, drum, cls, bank, folder,
                                    extension))
    return hits


def plan_synth(
    *,
    seed: int = SYNTH_SEED,
    count: int = SYNTH_COUNT,
    start: int = 0,
    extension: str = "wav",
) -> list[SynthSound]:
    """Procedural sounds ``start`` .. ``start + count - 1`` of ``seed``, in
    ``synth/procedural_s<seed>/``."""
    from soundatlas import procedural

    for name, value, low in (("seed", seed, 0), ("count", count, 1), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ParameterError(f"{name}={value!r} must be an integer >= {low}")
    extension = _check_format(extension)
    folder = f"synth/{procedural.BANK}_s{int(seed)}"
    sounds = []
    for index in range(int(start), int(start) + int(count)):
        sound = procedural.describe(int(seed), index)
        sounds.append(SynthSound(int(seed), index, sound.patch, tuple(sound.labels.items()),
                                 folder, extension))
    return sounds


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


def _check_program(program) -> int:
    if isinstance(program, bool) or not isinstance(program, (int, np.integer)) or not (
        0 <= program <= 127
    ):
        raise ParameterError(f"program={program!r} must be an integer in 0..127")
    return int(program)


def _check_programs(programs) -> list[int]:
    """GM program names or numbers -> sorted unique program numbers (default: all 128)."""
    if programs is None:
        return list(range(128))
    if isinstance(programs, (str, int)):
        programs = [programs]
    numbers, unknown = [], []
    for p in programs:
        if isinstance(p, str):
            if p in GM_PROGRAMS:
                numbers.append(GM_PROGRAMS.index(p))
            else:
                unknown.append(p)
        else:
            numbers.append(_check_program(p))
    if unknown:
        raise ParameterError(
            f"unknown General MIDI program {', '.join(map(repr, unknown))}; "
            f"valid names: {', '.join(GM_PROGRAMS)}"
        )
    if not numbers:
        raise ParameterError("programs is empty")
    return sorted(set(numbers))


def _check_pitch_step(pitch_step) -> int:
    if isinstance(pitch_step, bool) or not isinstance(pitch_step, (int, np.integer)) or not (
        1 <= pitch_step <= 24
    ):
        raise ParameterError(f"pitch_step={pitch_step!r} must be an integer in 1..24")
    return int(pitch_step)


def _check_kits(kits) -> list[str]:
    if kits is None:
        return list(GM_KITS)
    if isinstance(kits, str):
        kits = [kits]
    names = list(dict.fromkeys(kits))
    unknown = [k for k in names if k not in GM_KITS]
    if unknown:
        raise ParameterError(
            f"unknown drum kit {', '.join(map(repr, unknown))}; valid kits: {', '.join(GM_KITS)}"
        )
    if not names:
        raise ParameterError("kits is empty")
    return sorted(names, key=GM_KITS.__getitem__)


def _check_keys(keys) -> list[int]:
    if isinstance(keys, int):
        keys = [keys]
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise ParameterError("drum keys is empty")
    for k in keys:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= 127:
            raise ParameterError(f"drum key={k!r} must be an integer in 0..127")
    return [int(k) for k in keys]


def _check_bank(bank) -> str:
    if not isinstance(bank, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", bank):
        raise ParameterError(f"bank={bank!r} must be a file-name-safe name (letters, digits, ._-)")
    return bank


def _check_format(audio_format) -> str:
    if audio_format not in AUDIO_FORMATS:
        raise ParameterError(
            f"audio_format={audio_format!r} must be one of {', '.join(AUDIO_FORMATS)}"
        )
    return audio_format


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
    """The rates FluidSynth renders at (``procedural.check_sample_rate`` with its limits)."""
    from soundatlas.procedural import check_sample_rate

    return check_sample_rate(sample_rate, low=_MIN_SR, high=_MAX_SR)


# --------------------------------------------------------------------------------------------
# FluidSynth


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """Return the SoundFont to render with: ``path``, or :data:`DEFAULT_SOUNDFONT` when None.

    Raises MissingDependencyError when the file does not exist, and AudioReadError when it is
    not a SoundFont (no RIFF ``sfbk`` header; .sf2 and .sf3 both have one).
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


def bank_name(soundfont: str | os.PathLike) -> str:
    """The ``bank`` label of a SoundFont: its file name without extension (after following
    links, so Debian's default-GM.sf2 is FluidR3_GM), characters other than letters, digits and
    ``._-`` replaced by ``_``."""
    stem = Path(soundfont).resolve().stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-") or "soundfont"


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


def soundfont_presets(soundfont: str | os.PathLike | None = None) -> dict[tuple[int, int], str]:
    """{(bank, program): preset name} of the melodic bank 0 and the drum bank 128.

    Asks FluidSynth (with dynamic sample loading, so no sample is decoded: quick even for a
    large .sf3). Raises AudioReadError when FluidSynth cannot load the file.
    """
    path = find_soundfont(soundfont)
    fluidsynth = _import_fluidsynth()
    synth = fluidsynth.Synth(
        samplerate=44100.0,
        **{"synth.dynamic-sample-loading": 1, "synth.lock-memory": 0,
           "synth.reverb.active": 0, "synth.chorus.active": 0},
    )  # fmt: skip
    try:
        sfid = synth.sfload(os.fspath(path))
        if sfid < 0:
            raise AudioReadError(path, "FluidSynth could not load this SoundFont")
        presets = {}
        for bank in (0, 128):
            for program in range(128):
                name = synth.sfpreset_name(sfid, bank, program)
                if name is not None:
                    presets[(bank, program)] = name.strip()
        return presets
    finally:
        synth.delete()


def soundfont_kits(
    presets: Mapping[tuple[int, int], str],
) -> tuple[dict[str, int], list[str]]:
    """The GS kits (:data:`GM_KITS`) among a SoundFont's presets, and notes on the ones left out.

    A kit is present when bank 128 has a preset at its program whose name matches the kit
    (program 0 is taken whatever its name: it is the kit a GM player falls back to).
    """
    found, notes = {}, []
    for kit, program in GM_KITS.items():
        name = presets.get((128, program))
        if name is None:
            continue
        pattern = _KIT_NAMES.get(kit)
        if pattern is None or re.search(pattern, name, re.IGNORECASE):
            found[kit] = program
        else:
            notes.append(f"bank 128 program {program} is {name!r}, not the {kit} kit: not rendered")
    return found, notes


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

    def _silence_all(self, channel: int = _CHANNEL) -> None:
        """Kill every voice of a channel at once (no release) and let the mixer free them."""
        self._synth.all_sounds_off(channel)
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

    def render_hit(self, hit: DrumHit, *, max_seconds: float = DRUM_MAX_SECONDS) -> np.ndarray:
        """Render one drum hit as float32 mono, its silent tail cut (see the module docstring).

        The key is held until no voice sounds or ``max_seconds`` pass. Raises ParameterError
        when the SoundFont has no preset for the kit (bank 128).
        """
        if not (0 <= hit.key <= 127 and 1 <= hit.velocity <= 127):
            raise ParameterError(f"{hit}: key must be in 0..127 and velocity in 1..127")
        synth, ch = self._synth, _DRUM_CHANNEL
        self._silence_all(ch)
        synth.system_reset()
        if synth.program_select(ch, self._sfid, 128, hit.kit_program) != 0:
            raise ParameterError(
                f"the SoundFont has no preset for drum kit {hit.kit_program}, bank 128"
            )
        synth.noteon(ch, hit.key, hit.velocity)
        self._render(_PRIME_FRAMES)
        self._silence_all(ch)
        synth.noteon(ch, hit.key, hit.velocity)
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
        stereo = np.concatenate(chunks)
        y = (0.5 * (stereo[:, 0] + stereo[:, 1])).astype(np.float32)
        return trim_tail(y, self.sample_rate)

    def close(self) -> None:
        if self._synth is not None:
            self._synth.delete()
            self._synth = None

    def __enter__(self) -> NoteSynth:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def trim_tail(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut a one-shot's silent tail: keep up to :data:`DRUM_TAIL_MARGIN` after the last sample
    above -:data:`DRUM_TRIM_DB` dB of the peak (and above half an int16 step), fading out over
    the last :data:`DRUM_TAIL_MARGIN`. All-zero input is returned as it is."""
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak == 0.0:
        return y
    threshold = max(peak * 10 ** (-DRUM_TRIM_DB / 20), 0.5 / 32768)
    loud = np.flatnonzero(np.abs(y) > threshold)
    if not len(loud):
        return y
    margin = round(DRUM_TAIL_MARGIN * sample_rate)
    out = y[: min(len(y), int(loud[-1]) + 1 + margin)].copy()
    n_fade = min(len(out), margin)
    if n_fade:
        out[-n_fade:] *= _fade_out(n_fade)
    return out


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


# (index in the plan, peak of the float output, reason it was skipped or None, bytes written)
_Result = tuple[int, float, str | None, int]


def render_item(item: Item, synth: NoteSynth | None, *, sample_rate: int = 44100) -> np.ndarray:
    """The float32 mono samples of one planned item (a Note or DrumHit needs ``synth``)."""
    if isinstance(item, SynthSound):
        from soundatlas import procedural

        return procedural.synthesise(procedural.describe(item.seed, item.index),
                                     sample_rate=sample_rate)
    if synth is None:
        raise MissingDependencyError(f"{item.path}: rendering it needs a SoundFont and FluidSynth")
    if isinstance(item, DrumHit):
        return synth.render_hit(item)
    return synth.render(item)


def _render_and_write(
    synth: NoteSynth | None, item: Item, out: Path, sample_rate: int
) -> tuple[float, str | None, int]:
    """Render one item and write its file atomically; return (peak, skip reason or None, bytes)."""
    target = out / item.path
    try:
        y = render_item(item, synth, sample_rate=sample_rate)
    except ParameterError as exc:
        target.unlink(missing_ok=True)
        return 0.0, str(exc), 0
    y16 = to_int16(y)
    if not y16.any():
        target.unlink(missing_ok=True)
        return 0.0, _SILENT_REASON, 0
    _write_audio(target, y16, sample_rate)
    return float(np.max(np.abs(y))), None, target.stat().st_size


def _write_audio(path: Path, y16: np.ndarray, sample_rate: int) -> None:
    import soundfile

    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    part = path.with_name(f".{path.name}.part")
    soundfile.write(part, y16, sample_rate, subtype="PCM_16", format=fmt)
    os.replace(part, path)


def _render_chunk(
    synth: NoteSynth | None, chunk: list[tuple[int, Item]], out: Path, sample_rate: int
) -> list[_Result]:
    return [(i, *_render_and_write(synth, item, out, sample_rate)) for i, item in chunk]


# Per-worker state, set by _init_worker: the loaded NoteSynth (None when the render needs no
# SoundFont), its sample rate, or the error that prevented loading it.
_worker_synth: NoteSynth | None = None
_worker_rate: int = 44100
_worker_error: str | None = None


class _WorkerInitError(RuntimeError):
    """A worker could not load FluidSynth or the SoundFont (picklable; re-raised by the parent)."""


def _init_worker(soundfont: str | None, sample_rate: int) -> None:
    global _worker_synth, _worker_error, _worker_rate
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


@dataclass
class _Part:
    sound_set: str
    bank: str
    folder: str  # "" for the demo set
    items: list[Item]


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
    """Render a set (:data:`SETS`, module docstring) into ``out``; write the manifests; return a
    summary.

    ``classes`` selects demo classes (:data:`DEFAULT_CLASSES`, or a custom table) in the demo
    set and GM program names (:data:`GM_PROGRAMS`) in the gm set; ``pitch_step`` thins the gm
    set's pitches; ``kits`` (:data:`GM_KITS` names) and ``drum_keys`` select drum kits and keys;
    ``synth_count`` and ``synth_seed`` the procedural sounds. Programs and kits the SoundFont
    lacks are not planned (``RenderSummary.messages`` says which). Notes are rendered by
    ``n_jobs`` processes (default: one per CPU), each loading the SoundFont once. ``progress``,
    if given, is called as ``progress(n_done, n_total)`` as notes finish. Rerunning over an
    interrupted render overwrites its files; each part's ``metadata.csv`` is removed first and
    written last, so its presence marks a complete render. Files not rendered this time are left
    alone.
    """
    start = time.perf_counter()
    if sound_set not in SETS:
        raise ParameterError(f"sound_set={sound_set!r} must be one of {', '.join(SETS)}")
    audio_format = _check_format(audio_format)
    sample_rate = _check_sample_rate(sample_rate)
    n_jobs = (os.cpu_count() or 1) if n_jobs is None else n_jobs
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ParameterError(f"n_jobs={n_jobs!r} must be a positive integer")
    sets = ("gm", "drums", "synth") if sound_set == "all" else (sound_set,)
    parts, messages, soundfont = _plan_parts(
        sets, soundfont=soundfont, classes=classes, velocities=velocities, pitch_step=pitch_step,
        kits=kits, drum_keys=drum_keys, synth_count=synth_count, synth_seed=synth_seed,
        audio_format=audio_format,
    )  # fmt: skip
    items = [item for part in parts for item in part.items]
    if not items:
        raise ParameterError(
            f"nothing to render for --set {sound_set}: " + "; ".join(messages or ["empty plan"])
        )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept_rows, kept_silent = (None, None) if "demo" in sets else _demo_rows(out)
    for part in parts:
        if part.folder:
            (out / part.folder).mkdir(parents=True, exist_ok=True)
            (out / part.folder / METADATA_FILE).unlink(missing_ok=True)
            (out / part.folder / SILENT_FILE).unlink(missing_ok=True)
        else:
            (out / METADATA_FILE).unlink(missing_ok=True)
        for name in dict.fromkeys(Path(item.path).parent for item in part.items):
            (out / name).mkdir(parents=True, exist_ok=True)

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
            unit = out / part.folder
            prefix = len(part.folder) + 1
            _write_rows(unit / SILENT_FILE, [_row(i, prefix) for i in silent],
                        _columns_of(part.items))
            _write_rows(unit / METADATA_FILE, [_row(i, prefix) for i in written],
                        _columns_of(part.items))
        else:
            kept_rows = [_row(i) for i in written]
            kept_silent = [_row(i) for i in silent]
    _write_root_manifests(out, kept_rows, kept_silent)
    summary.seconds = time.perf_counter() - start
    return summary


def _plan_parts(
    sets, *, soundfont, classes, velocities, pitch_step, kits, drum_keys, synth_count,
    synth_seed, audio_format,
) -> tuple[list[_Part], list[str], Path | None]:
    """Validate the options of the sets, find the SoundFont and its presets, plan each part.

    Returns (parts, messages on what the SoundFont lacks, the SoundFont or None for synth only).
    """
    parts, messages = [], []
    if "demo" in sets:
        notes = plan_notes(classes=classes, velocities=velocities)
        if audio_format != "wav":
            notes = [_with_extension(n, audio_format) for n in notes]
        parts.append(_Part("demo", "", "", notes))  # bank: the SoundFont's, set below
    if "gm" in sets:
        _check_programs(classes)
        _check_pitch_step(pitch_step)
    if "drums" in sets:
        _check_kits(kits)
        if drum_keys is not None:
            _check_keys(drum_keys)
    if sets != ("demo",):
        _check_velocities(velocities)
    if "synth" in sets:
        synth_items = plan_synth(seed=synth_seed, count=synth_count, extension=audio_format)
    needs_soundfont = bool({"demo", "gm", "drums"} & set(sets))
    if needs_soundfont:
        soundfont = find_soundfont(soundfont)
        _import_fluidsynth()  # fail here, with one clear message, rather than in every worker
    else:
        soundfont = None
    if soundfont is not None:
        bank = bank_name(soundfont)
        for part in parts:
            part.bank = bank
    if "gm" in sets or "drums" in sets:
        presets = soundfont_presets(soundfont)
    if "gm" in sets:
        wanted = _check_programs(classes)
        have = [p for p in wanted if (0, p) in presets]
        missing = [p for p in wanted if (0, p) not in presets]
        if missing and not have:
            messages.append(f"{bank}: no preset in bank 0 for the {len(missing)} General MIDI "
                            "programs asked for (a drum-kit or add-on SoundFont?): gm not rendered")
        elif missing:
            listed = ", ".join(f"{p} {GM_PROGRAMS[p]}" for p in missing[:8])
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            messages.append(f"{bank}: no bank-0 preset for {len(missing)} General MIDI programs"
                            f" ({listed}{more}): not rendered")
        if have:
            parts.append(_Part("gm", bank, f"gm/{bank}", plan_gm(
                bank=bank, programs=have, pitch_step=pitch_step, velocities=velocities,
                extension=audio_format)))
    if "drums" in sets:
        found, notes = soundfont_kits(presets)
        messages.extend(f"{bank}: {n}" for n in notes)
        wanted_kits = _check_kits(kits)
        absent = [k for k in wanted_kits if (128, GM_KITS[k]) not in presets]
        if absent:
            messages.append(f"{bank}: no {', '.join(absent)} kit in bank 128: not rendered")
        have_kits = [k for k in wanted_kits if k in found]
        hits = plan_drums(bank=bank, kits=have_kits, keys=drum_keys, velocities=velocities,
                          extension=audio_format) if have_kits else []
        if hits:
            parts.append(_Part("drums", bank, f"drums/{bank}", hits))
        elif have_kits:
            messages.append(f"{bank}: none of the drum keys asked for is a key of the kits found")
    if "synth" in sets:
        from soundatlas import procedural

        parts.append(_Part("synth", procedural.BANK, synth_items[0].folder, synth_items))
    return parts, messages, soundfont


def _with_extension(note: Note, extension: str) -> Note:
    from dataclasses import replace

    return replace(note, extension=extension)


def _render_all(items, out, soundfont, sample_rate, n_jobs, report) -> list[_Result]:
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
        initargs=(sf_path, sample_rate),
    ) as pool:
        futures = [pool.submit(_worker_render_chunk, chunk, os.fspath(out)) for chunk in chunks]
        try:
            for future in concurrent.futures.as_completed(futures):
                results.extend(future.result())
                report(len(results), len(items))
        except _WorkerInitError as exc:
            pool.shutdown(cancel_futures=True)
            raise AudioReadError(soundfont, f"a render worker could not start: {exc}") from None
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return results


# --------------------------------------------------------------------------------------------
# Manifests


def _row(item: Item, strip: int = 0) -> dict[str, str]:
    """A manifest row: the item's path (less its first ``strip`` characters) and labels."""
    return {"path": item.path[strip:], **item.labels}


def _columns_of(items: Iterable[Item]) -> list[str]:
    return _columns(item.labels for item in items)


def _columns(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """'path' and the label columns the rows use: LABEL_COLUMNS' order, then any others sorted."""
    keys = set()
    for row in rows:
        keys.update(k for k, v in row.items() if v != "")
    keys.discard("path")
    known = [c for c in LABEL_COLUMNS if c in keys]
    return ["path", *known, *sorted(keys - set(known))]


def _write_rows(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> None:
    """Write a manifest (sorted by path) atomically; ``columns`` when there are no rows."""
    if rows or not columns:
        columns = _columns(rows)
    part = path.with_name(f".{path.name}.part")
    with open(part, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in sorted(rows, key=lambda r: r["path"]):
            writer.writerow([row.get(c, "") for c in columns])
    os.replace(part, path)


def _read_rows(path: Path, prefix: str = "") -> list[dict[str, str]]:
    """The rows of a manifest (empty cells left out), paths prefixed; [] when it is missing."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [
                {k: (prefix + v if k == "path" else v) for k, v in row.items() if k and v}
                for row in csv.DictReader(f)
                if row.get("path")
            ]
    except FileNotFoundError:
        return []


def _in_set_folder(path: str) -> bool:
    return path.split("/", 1)[0] in SET_FOLDERS


def _demo_rows(out: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The rows of OUT's manifests that belong to the demo set (not under a set folder)."""
    return (
        [r for r in _read_rows(out / METADATA_FILE) if not _in_set_folder(r["path"])],
        [r for r in _read_rows(out / SILENT_FILE) if not _in_set_folder(r["path"])],
    )


def _write_root_manifests(out: Path, demo_rows, demo_silent) -> None:
    """OUT/metadata.csv and OUT/silent.csv: the demo set's rows and every part's manifest."""
    rows, silent = list(demo_rows), list(demo_silent)
    for set_folder in SET_FOLDERS:
        base = out / set_folder
        if not base.is_dir():
            continue
        for unit in sorted(p for p in base.iterdir() if p.is_dir()):
            prefix = f"{set_folder}/{unit.name}/"
            rows += _read_rows(unit / METADATA_FILE, prefix)
            silent += _read_rows(unit / SILENT_FILE, prefix)
    columns = _columns(rows) if rows else list(METADATA_COLUMNS)
    _write_rows(out / METADATA_FILE, rows, columns)
    _write_rows(out / SILENT_FILE, silent, columns)
