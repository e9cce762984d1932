"""What each set renders: the planners of the demo, gm, drums and synth sets (lists of items, no
audio), and :func:`plan_parts`, which checks a render's options, asks the SoundFont which
programs and kits it has, and plans one part per (set, bank).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from soundatlas import procedural
from soundatlas.demo.checks import (
    NAME_RE,
    check_bank,
    check_format,
    check_keys,
    check_names,
    check_velocities,
)
from soundatlas.demo.gm import (
    DEFAULT_CLASSES,
    GM_KITS,
    GM_PITCH_STEP,
    GM_PROGRAMS,
    check_kits,
    check_pitch_step,
    check_programs,
    drum_labels,
    gm_family,
    gm_pitches,
    kit_keys,
)
from soundatlas.demo.items import DrumHit, Item, Note, SynthSound
from soundatlas.demo.soundfont import (
    bank_name,
    find_soundfont,
    import_fluidsynth,
    soundfont_kits,
    soundfont_presets,
)
from soundatlas.errors import ParameterError
from soundatlas.procedural import check_int

DEFAULT_VELOCITIES: tuple[int, ...] = (40, 80, 120)

#: articulation name -> seconds the key is held before note-off.
DEFAULT_ARTICULATIONS: dict[str, float] = {"short": 0.4, "long": 1.8}

#: the sets render_library knows; "all" is gm + drums + synth.
SETS: tuple[str, ...] = ("demo", "gm", "drums", "synth", "all")

#: synth set defaults: how many procedural one-shots, and their seed.
SYNTH_COUNT = 2000
SYNTH_SEED = 0


def plan_notes(
    *,
    classes: Iterable[str] | Mapping[str, tuple[int, int, int]] | None = None,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    articulations: Mapping[str, float] | None = None,
) -> list[Note]:
    """List the notes of the demo set: every pitch of each class x velocities x articulations.

    Parameters
    ----------
    classes : iterable of str, or mapping, optional
        Names from :data:`DEFAULT_CLASSES` (default: all of them), or a mapping
        name -> (program, low pitch, high pitch) for another SoundFont.
    velocities : iterable of int, default DEFAULT_VELOCITIES
        MIDI velocities, 1..127.
    articulations : mapping, optional
        Name -> seconds the key is held (default :data:`DEFAULT_ARTICULATIONS`).

    Returns
    -------
    list of Note
        In the order class, pitch, velocity, articulation.

    Raises
    ------
    ParameterError
        When an option is empty or out of range, or names an unknown class.
    """
    table = _check_classes(classes)
    velocities = check_velocities(velocities)
    articulations = _check_articulations(articulations)
    return [
        Note(name, program, pitch, velocity, articulation, duration)
        for name, (program, low, high) in table.items()
        for pitch in range(low, high + 1)
        for velocity in velocities
        for articulation, duration in articulations.items()
    ]


def plan_gm(
    *,
    bank: str,
    programs: Iterable[str | int] | None = None,
    pitch_step: int = GM_PITCH_STEP,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    articulations: Mapping[str, float] | None = None,
    extension: str = "wav",
) -> list[Note]:
    """List the notes of the gm set for one bank, in ``gm/<bank>/``.

    Parameters
    ----------
    bank : str
        The bank label (:func:`~soundatlas.demo.soundfont.bank_name`).
    programs : iterable of str or int, optional
        Names of :data:`GM_PROGRAMS` or program numbers (default: all 128).
    pitch_step : int, default GM_PITCH_STEP
        The pitches of each program are :func:`gm_pitches` with this step.
    velocities : iterable of int, default DEFAULT_VELOCITIES
    articulations : mapping, optional
        Name -> seconds held (default :data:`DEFAULT_ARTICULATIONS`).
    extension : {"wav", "flac"}

    Returns
    -------
    list of Note
        programs x pitches x velocities x articulations, labelled with family and bank.
    """
    bank = check_bank(bank)
    numbers = check_programs(programs)
    step = check_pitch_step(pitch_step)
    velocities = check_velocities(velocities)
    articulations = _check_articulations(articulations)
    extension = check_format(extension)
    folder = f"gm/{bank}"
    return [
        Note(GM_PROGRAMS[p], p, pitch, velocity, articulation, duration,
             family=gm_family(p), bank=bank, folder=folder, extension=extension)
        for p in numbers
        for pitch in gm_pitches(p, pitch_step=step)
        for velocity in velocities
        for articulation, duration in articulations.items()
    ]  # fmt: skip


def plan_drums(
    *,
    bank: str,
    kits: Iterable[str] | None = None,
    keys: Iterable[int] | None = None,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    extension: str = "wav",
) -> list[DrumHit]:
    """List the hits of the drums set for one bank, in ``drums/<bank>/``.

    Which kits a SoundFont has is for :func:`~soundatlas.demo.soundfont.soundfont_kits` to say;
    this only plans.

    Parameters
    ----------
    bank : str
        The bank label.
    kits : iterable of str, optional
        Names of :data:`GM_KITS` (default: all).
    keys : iterable of int, optional
        Only these of each kit's :func:`kit_keys`.
    velocities : iterable of int, default DEFAULT_VELOCITIES
    extension : {"wav", "flac"}

    Returns
    -------
    list of DrumHit
        kits x keys x velocities.
    """
    bank = check_bank(bank)
    names = check_kits(kits)
    wanted = None if keys is None else set(check_keys(keys))
    velocities = check_velocities(velocities)
    extension = check_format(extension)
    folder = f"drums/{bank}"
    hits = []
    for kit in names:
        for key in kit_keys(kit):
            if wanted is not None and key not in wanted:
                continue
            drum, cls = drum_labels(key, kit)
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
    """List procedural sounds ``start`` .. ``start + count - 1`` of ``seed``.

    Parameters
    ----------
    seed, count, start : int
        Which sounds of :mod:`soundatlas.procedural` (seed and start >= 0, count >= 1).
    extension : {"wav", "flac"}

    Returns
    -------
    list of SynthSound
        In ``synth/procedural_s<seed>/``.
    """
    seed = check_int("seed", seed, 0)
    count = check_int("count", count, 1)
    start = check_int("start", start, 0)
    extension = check_format(extension)
    folder = f"synth/{procedural.BANK}_s{seed}"
    sounds = []
    for index in range(start, start + count):
        sound = procedural.describe(seed, index)
        sounds.append(SynthSound(seed, index, sound.patch, tuple(sound.labels.items()),
                                 folder, extension))
    return sounds


def _check_classes(classes) -> dict[str, tuple[int, int, int]]:
    if classes is None:
        return dict(DEFAULT_CLASSES)
    if isinstance(classes, Mapping):
        table = {}
        for name, spec in classes.items():
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                raise ParameterError(f"class name {name!r} must match {NAME_RE.pattern}")
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
    names = check_names(classes, DEFAULT_CLASSES, what="class", plural="classes")
    return {n: DEFAULT_CLASSES[n] for n in names}


def _check_articulations(articulations) -> dict[str, float]:
    if articulations is None:
        return dict(DEFAULT_ARTICULATIONS)
    checked = {}
    for name, duration in dict(articulations).items():
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ParameterError(f"articulation name {name!r} must match {NAME_RE.pattern}")
        if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
            raise ParameterError(f"articulation {name!r}: duration={duration!r} must be > 0 s")
        checked[name] = float(duration)
    if not checked:
        raise ParameterError("articulations is empty")
    return checked


@dataclass
class Part:
    """The items of one (set, bank) of a render, written under ``OUT/<folder>``."""

    sound_set: str
    bank: str
    folder: str  # "" for the demo set
    items: list[Item]


def plan_parts(
    sets: tuple[str, ...], *, soundfont, classes, velocities, pitch_step, kits, drum_keys,
    synth_count, synth_seed, audio_format,
) -> tuple[list[Part], list[str], Path | None]:  # fmt: skip
    """Check the options of the sets, find the SoundFont and its presets, plan each part.

    Parameters
    ----------
    sets : tuple of str
        ``("demo",)``, one other set, or ``("gm", "drums", "synth")``.
    soundfont, classes, velocities, pitch_step, kits, drum_keys, synth_count, synth_seed
        As :func:`~soundatlas.demo.library.render_library` takes them.
    audio_format : {"wav", "flac"}
        Already checked.

    Returns
    -------
    parts : list of Part
        One per (set, bank) with something to render.
    messages : list of str
        What the SoundFont lacks (programs, kits) and is therefore not planned.
    soundfont : Path or None
        The SoundFont, or None when only the synth set is rendered.

    Raises
    ------
    ParameterError
        When an option is invalid.
    MissingDependencyError
        When a SoundFont set is asked for and FluidSynth or the SoundFont is missing.
    """
    parts, messages = [], []
    if "demo" in sets:
        notes = plan_notes(classes=classes, velocities=velocities)
        if audio_format != "wav":
            notes = [replace(n, extension=audio_format) for n in notes]
        parts.append(Part("demo", "", "", notes))  # bank: the SoundFont's, set below
    if "gm" in sets:
        check_programs(classes)
        check_pitch_step(pitch_step)
    if "drums" in sets:
        check_kits(kits)
        if drum_keys is not None:
            check_keys(drum_keys)
    if sets != ("demo",):
        check_velocities(velocities)
    if "synth" in sets:
        synth_items = plan_synth(seed=synth_seed, count=synth_count, extension=audio_format)
    if {"demo", "gm", "drums"} & set(sets):
        soundfont = find_soundfont(soundfont)
        import_fluidsynth()  # fail here, with one clear message, rather than in every worker
        bank = bank_name(soundfont)
        for part in parts:
            part.bank = bank
    else:
        soundfont = None
    if {"demo", "gm", "drums"} & set(sets):
        presets = soundfont_presets(soundfont)
    if "demo" in sets:
        _keep_demo_presets(parts, bank, presets, messages)
    if "gm" in sets:
        parts += _plan_gm_part(bank, presets, messages, classes=classes, pitch_step=pitch_step,
                               velocities=velocities, audio_format=audio_format)
    if "drums" in sets:
        parts += _plan_drums_part(bank, presets, messages, kits=kits, drum_keys=drum_keys,
                                  velocities=velocities, audio_format=audio_format)
    if "synth" in sets:
        parts.append(Part("synth", procedural.BANK, synth_items[0].folder, synth_items))
    return parts, messages, soundfont


def _keep_demo_presets(parts: list, bank: str, presets, messages: list[str]) -> None:
    """Leave out of the demo part the notes of classes whose program the SoundFont has no
    bank-0 preset for (a drum-kit or add-on SoundFont), naming them once; the part goes when
    none is left. (FluidSynth rendered each such note silent, with an error line a note.)"""
    demo = next(p for p in parts if p.sound_set == "demo")
    missing = sorted({n.instrument for n in demo.items if (0, n.program) not in presets})
    if not missing:
        return
    demo.items = [n for n in demo.items if (0, n.program) in presets]
    messages.append(f"{bank}: no bank-0 preset for the demo classes {', '.join(missing)}: "
                    + ("not rendered" if demo.items else "demo not rendered"))
    if not demo.items:
        parts.remove(demo)


def _plan_gm_part(bank, presets, messages, *, classes, pitch_step, velocities, audio_format):
    """The gm part of the programs the SoundFont has (none or one); ``messages`` names the rest."""
    wanted = check_programs(classes)
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
    if not have:
        return []
    notes = plan_gm(bank=bank, programs=have, pitch_step=pitch_step, velocities=velocities,
                    extension=audio_format)
    return [Part("gm", bank, f"gm/{bank}", notes)]


def _plan_drums_part(bank, presets, messages, *, kits, drum_keys, velocities, audio_format):
    """The drums part of the kits the SoundFont has (none or one); ``messages`` names the rest."""
    found, notes = soundfont_kits(presets)
    messages.extend(f"{bank}: {n}" for n in notes)
    wanted_kits = check_kits(kits)
    absent = [k for k in wanted_kits if (128, GM_KITS[k]) not in presets]
    if absent:
        messages.append(f"{bank}: no {', '.join(absent)} kit in bank 128: not rendered")
    have_kits = [k for k in wanted_kits if k in found]
    hits = plan_drums(bank=bank, kits=have_kits, keys=drum_keys, velocities=velocities,
                      extension=audio_format) if have_kits else []
    if hits:
        return [Part("drums", bank, f"drums/{bank}", hits)]
    if have_kits:
        messages.append(f"{bank}: none of the drum keys asked for is a key of the kits found")
    return []
