"""SoundFonts: finding the file, naming its bank, loading FluidSynth, and reading which presets
(melodic programs in bank 0, drum kits in bank 128) a SoundFont has.

FluidSynth is imported lazily (:func:`import_fluidsynth`), so that ``import soundatlas.demo``
works without it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path

from soundatlas.demo.gm import GM_KITS
from soundatlas.errors import AudioReadError, MissingDependencyError

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

# A preset at a kit's program is taken for that kit when its name matches (program 0 always is).
_KIT_NAMES = {
    "room": r"room", "power": r"power|rock", "electronic": r"elec", "tr808": r"808",
    "jazz": r"jazz", "brush": r"brush", "orchestra": r"orch|concert|classic",
    "sfx": r"sfx|effect|\bfx\b",
}  # fmt: skip


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """Find the SoundFont to render with.

    Parameters
    ----------
    path : path-like, optional
        The SoundFont (``.sf2`` or ``.sf3``); :data:`DEFAULT_SOUNDFONT` when None.

    Returns
    -------
    Path
        The file, resolved.

    Raises
    ------
    MissingDependencyError
        When the file does not exist (for the default, naming the Debian package to install).
    AudioReadError
        When it is not a SoundFont (no RIFF ``sfbk`` header; .sf2 and .sf3 both have one).
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
    try:
        with open(found, "rb") as f:
            header = f.read(12)
    except OSError as exc:  # a permission, an I/O error: in words, not a traceback
        raise AudioReadError(found, f"cannot read the SoundFont: {exc.strerror or exc}") from None
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise AudioReadError(found, "not a SoundFont (no RIFF sfbk header)")
    return found.resolve()


def bank_name(soundfont: str | os.PathLike) -> str:
    """The ``bank`` label of a SoundFont.

    Parameters
    ----------
    soundfont : path-like
        The SoundFont file.

    Returns
    -------
    str
        Its file name without extension, after following links (so Debian's default-GM.sf2 is
        FluidR3_GM), characters other than letters, digits and ``._-`` replaced by ``_``.
    """
    stem = Path(soundfont).resolve().stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-") or "soundfont"


def import_fluidsynth():
    """Import pyfluidsynth.

    Returns
    -------
    module
        The ``fluidsynth`` module.

    Raises
    ------
    MissingDependencyError
        When pyfluidsynth or the shared library libfluidsynth cannot be loaded, naming the
        Debian package to install.
    """
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


def soundfont_presets(soundfont: str | os.PathLike | None = None) -> dict[tuple[int, int], str]:
    """The presets of a SoundFont's melodic bank 0 and drum bank 128.

    Asks FluidSynth, with dynamic sample loading, so no sample is decoded: quick even for a
    large .sf3.

    Parameters
    ----------
    soundfont : path-like, optional
        The SoundFont (:func:`find_soundfont`).

    Returns
    -------
    dict
        ``{(bank, program): preset name}``.

    Raises
    ------
    AudioReadError
        When FluidSynth cannot load the file.
    """
    path = find_soundfont(soundfont)
    fluidsynth = import_fluidsynth()
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
    """The GS kits (:data:`GM_KITS`) among a SoundFont's presets.

    A kit is present when bank 128 has a preset at its program whose name matches the kit
    (program 0 is taken whatever its name: it is the kit a GM player falls back to).

    Parameters
    ----------
    presets : mapping
        ``{(bank, program): preset name}``, as :func:`soundfont_presets` returns.

    Returns
    -------
    found : dict
        kit name -> program, for the kits present.
    notes : list of str
        One line per preset at a kit's program that is not that kit (and is not rendered).
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

