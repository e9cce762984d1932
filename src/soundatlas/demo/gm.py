"""The General MIDI tables of the demo library: the demo set's 24 classes, the 128 programs and
their families and ranges, the GS drum kits, the percussion keys and their drum classes; and the
lookups the sets plan with (:func:`gm_range`, :func:`gm_pitches`, :func:`drum_class`, ...).
"""

from __future__ import annotations

from soundatlas.demo.checks import check_names
from soundatlas.errors import ParameterError
from soundatlas.procedural import check_int

#: name -> (General MIDI program, lowest MIDI pitch, highest MIDI pitch), inclusive
#: (docs/DESIGN.md §2).
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


def gm_family(program: int) -> str:
    """The General MIDI family of ``program`` (0..127): ``GM_FAMILIES[program // 8]``.

    Raises
    ------
    ParameterError
        When ``program`` is not an integer in 0..127.
    """
    return GM_FAMILIES[check_program(program) // 8]


def gm_range(program: int) -> tuple[int, int]:
    """The pitches the gm set renders for a program, before ``pitch_step`` thins them.

    Parameters
    ----------
    program : int
        A GM program, 0..127.

    Returns
    -------
    (int, int)
        Lowest and highest MIDI pitch: the demo range (:data:`DEFAULT_CLASSES`) for the demo's
        24 programs, else :data:`GM_RANGES` or the family's :data:`GM_FAMILY_RANGES`.
    """
    program = check_program(program)
    name = GM_PROGRAMS[program]
    if name in DEFAULT_CLASSES:
        return DEFAULT_CLASSES[name][1:]
    return GM_RANGES.get(program) or GM_FAMILY_RANGES[gm_family(program)]


def gm_pitches(program: int, *, pitch_step: int = GM_PITCH_STEP) -> list[int]:
    """The pitches of a program in the gm set.

    Parameters
    ----------
    program : int
        A GM program, 0..127.
    pitch_step : int, default GM_PITCH_STEP
        Every ``pitch_step``-th semitone is rendered (1..24).

    Returns
    -------
    list of int
        The pitches of :func:`gm_range` congruent to ``program`` modulo ``pitch_step``, so
        neighbouring programs start on different pitches.
    """
    step = check_pitch_step(pitch_step)
    low, high = gm_range(program)
    return list(range(low + (program - low) % step, high + 1, step))


def drum_labels(key: int, kit: str = "standard") -> tuple[str, str]:
    """The ``drum`` and ``drum_class`` labels of a key in a kit.

    Parameters
    ----------
    key : int
        The MIDI key: a GM percussion key 35..81, or a GS SFX key 39..84 on the sfx kit.
    kit : str, default "standard"
        A kit of :data:`GM_KITS`.

    Returns
    -------
    (str, str)
        The drum (GM percussion name, GS SFX name, or ``timpani`` for the orchestra kit's keys
        41-53) and its class (:data:`DRUM_CLASSES`; ``hand_percussion`` for the keys it does not
        list, ``effect`` for every key of the sfx kit, ``tom`` for the timpani).

    Raises
    ------
    ParameterError
        When ``key`` is not a key of the kit.
    """
    if kit == "sfx":
        if key not in GS_SFX:
            raise ParameterError(f"key={key!r} is not a key of the GS SFX kit (39..84)")
        return GS_SFX[key], "effect"
    if key not in GM_PERCUSSION:
        raise ParameterError(f"key={key!r} is not a General MIDI percussion key (35..81)")
    if kit == "orchestra" and key in _ORCHESTRA_TIMPANI:
        return "timpani", "tom"
    return GM_PERCUSSION[key], _KEY_CLASS.get(key, "hand_percussion")


def drum_class(key: int, *, kit: str = "standard") -> str:
    """The ``drum_class`` label of a key in a kit (:func:`drum_labels`).

    Returns
    -------
    str
        kick, snare, hi-hat, tom, cymbal, hand_percussion or effect.
    """
    return drum_labels(key, kit)[1]


def drum_name(key: int, *, kit: str = "standard") -> str:
    """The ``drum`` label of a key in a kit (:func:`drum_labels`).

    Returns
    -------
    str
        The GM percussion name, the GS SFX name, or ``timpani``.
    """
    return drum_labels(key, kit)[0]


def kit_keys(kit: str) -> list[int]:
    """The keys the drums set plays on a kit.

    Returns
    -------
    list of int
        The GS SFX keys 39-84 on the sfx kit, the GM percussion keys 35-81 on the others.
    """
    return list(GS_SFX) if kit == "sfx" else list(GM_PERCUSSION)


def check_program(program) -> int:
    """A General MIDI program number as an int; ParameterError unless an integer in 0..127."""
    return check_int("program", program, 0, 127)


def check_programs(programs) -> list[int]:
    """Check GM programs given by name (:data:`GM_PROGRAMS`) or number.

    Parameters
    ----------
    programs : str, int, iterable of them, or None
        None means all 128.

    Returns
    -------
    list of int
        The program numbers, sorted, each once.

    Raises
    ------
    ParameterError
        Naming unknown names and listing the valid ones, for a number out of 0..127, or when
        ``programs`` is empty.
    """
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
            numbers.append(check_program(p))
    if unknown:
        raise ParameterError(
            f"unknown General MIDI program {', '.join(map(repr, unknown))}; "
            f"valid names: {', '.join(GM_PROGRAMS)}"
        )
    if not numbers:
        raise ParameterError("programs is empty")
    return sorted(set(numbers))


def check_pitch_step(pitch_step) -> int:
    """The gm set's pitch step as an int; ParameterError unless an integer in 1..24."""
    return check_int("pitch_step", pitch_step, 1, 24)


def check_kits(kits) -> list[str]:
    """Drum-kit names of :data:`GM_KITS` (default: all of them), in the order of their programs.

    Raises
    ------
    ParameterError
        Naming the unknown kits, or when ``kits`` is empty.
    """
    if kits is None:
        return list(GM_KITS)
    names = check_names(kits, GM_KITS, what="drum kit", plural="kits")
    return sorted(names, key=GM_KITS.__getitem__)
