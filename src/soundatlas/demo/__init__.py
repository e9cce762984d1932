"""Render labelled sound libraries: the demo instrument set (docs/DESIGN.md §2), every General MIDI
program and drum kit of any SoundFont (with FluidSynth), and procedural synth sounds.

Sets (``render_library(sound_set=...)``, ``soundatlas demo-library --set``):

``demo`` (default)
    The 24-class instrument library: every pitch of each class's range (:data:`DEFAULT_CLASSES`)
    at each velocity and articulation::

        OUT/<instrument>/<instrument>_<pitch:03d>_v<velocity:03d>_<articulation>.wav
        OUT/metadata.csv   path, instrument, pitch, velocity, articulation (sorted by path)
        OUT/.demo-bank     the SoundFont it came from (its ``bank``)

    Its paths carry no bank, so a folder holds one SoundFont's demo set: rendering another's
    into it is refused (use another folder, or the gm set, which has a folder per bank).
    Every SoundFont set's folder records which file its notes came from (``.soundfont``: a
    digest of the file's size, first and last MiB), so another file of the same name (the
    same ``bank`` label) is refused too.

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

**Modules.** :mod:`~soundatlas.demo.gm` holds the General MIDI tables (the demo classes,
programs, families, ranges, kits, percussion keys, drum classes) and their lookups;
:mod:`~soundatlas.demo.sets` plans what each set renders; :mod:`~soundatlas.demo.soundfont`
finds a SoundFont and reads its presets; :mod:`~soundatlas.demo.render` renders and writes one
item (:class:`NoteSynth`); :mod:`~soundatlas.demo.library` renders a whole set in worker
processes (:func:`render_library`); :mod:`~soundatlas.demo.manifests` writes ``metadata.csv`` and
``silent.csv``. :mod:`~soundatlas.demo.items` has the planned items and the render summary, and
:mod:`~soundatlas.demo.checks` the option checks the sets share. A new set is a planner in
``sets.py`` (its items, from ``items.py``) and a branch of :func:`~soundatlas.demo.sets.plan_parts`.
"""

from soundatlas.demo.checks import AUDIO_FORMATS
from soundatlas.demo.gm import (
    DEFAULT_CLASSES,
    DRUM_CLASS_NAMES,
    DRUM_CLASSES,
    GM_FAMILIES,
    GM_FAMILY_RANGES,
    GM_KITS,
    GM_PERCUSSION,
    GM_PITCH_STEP,
    GM_PROGRAMS,
    GM_RANGES,
    GS_SFX,
    drum_class,
    drum_name,
    gm_family,
    gm_pitches,
    gm_range,
    kit_keys,
)
from soundatlas.demo.items import (
    DrumHit,
    Item,
    Note,
    PartSummary,
    RenderSummary,
    SkippedNote,
    SynthSound,
    silent_summary,
)
from soundatlas.demo.library import DEMO_BANK_FILE, render_library
from soundatlas.demo.manifests import (
    LABEL_COLUMNS,
    METADATA_COLUMNS,
    METADATA_FILE,
    SET_FOLDERS,
    SILENT_FILE,
)
from soundatlas.demo.render import (
    DRUM_MAX_SECONDS,
    DRUM_TAIL_MARGIN,
    DRUM_TRIM_DB,
    END_FADE,
    RELEASE_TAIL,
    SYNTH_GAIN,
    NoteSynth,
    render_item,
    render_note,
    to_int16,
    trim_tail,
)
from soundatlas.demo.sets import (
    DEFAULT_ARTICULATIONS,
    DEFAULT_VELOCITIES,
    SETS,
    SYNTH_COUNT,
    SYNTH_SEED,
    plan_drums,
    plan_gm,
    plan_notes,
    plan_synth,
)
from soundatlas.demo.soundfont import (
    DEFAULT_SOUNDFONT,
    bank_name,
    find_soundfont,
    soundfont_kits,
    soundfont_presets,
)

__all__ = [
    "AUDIO_FORMATS", "DEFAULT_ARTICULATIONS", "DEFAULT_CLASSES", "DEFAULT_SOUNDFONT",
    "DEFAULT_VELOCITIES", "DEMO_BANK_FILE", "DRUM_CLASSES", "DRUM_CLASS_NAMES", "DRUM_MAX_SECONDS",
    "DRUM_TAIL_MARGIN", "DRUM_TRIM_DB", "END_FADE", "GM_FAMILIES", "GM_FAMILY_RANGES", "GM_KITS",
    "GM_PERCUSSION", "GM_PITCH_STEP", "GM_PROGRAMS", "GM_RANGES", "GS_SFX", "LABEL_COLUMNS",
    "METADATA_COLUMNS", "METADATA_FILE", "RELEASE_TAIL", "SETS", "SET_FOLDERS", "SILENT_FILE",
    "SYNTH_COUNT", "SYNTH_GAIN", "SYNTH_SEED", "DrumHit", "Item", "Note", "NoteSynth",
    "PartSummary", "RenderSummary", "SkippedNote", "SynthSound", "bank_name", "drum_class",
    "drum_name", "find_soundfont", "gm_family", "gm_pitches", "gm_range", "kit_keys",
    "plan_drums", "plan_gm", "plan_notes", "plan_synth", "render_item", "render_library",
    "render_note", "silent_summary", "soundfont_kits", "soundfont_presets", "to_int16",
    "trim_tail",
]  # fmt: skip
