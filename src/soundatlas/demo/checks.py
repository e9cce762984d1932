"""Checks of the options the sets share: integers and lists of them, names from a table, the
bank name, the audio format, the sample rate.

Each check returns the value in the form the planners use, or raises
:class:`~soundatlas.errors.ParameterError` naming the option.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from soundatlas import procedural
from soundatlas.errors import ParameterError
from soundatlas.procedural import check_int

AUDIO_FORMATS: tuple[str, ...] = ("wav", "flac")

#: names of classes and articulations (they become folder and file names).
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")

# FluidSynth silently falls back to 44.1 kHz outside this range.
_MIN_SR, _MAX_SR = 8000, 96000


def check_ints(values, *, name: str, plural: str, low: int, high: int) -> list[int]:
    """Check one integer or several in ``low..high``.

    Parameters
    ----------
    values : int or iterable of int
        The values; repeats are dropped, the first occurrence's order kept.
    name : str
        One value's name in the error message (``velocity``).
    plural : str
        The option's name when it is empty (``velocities``).
    low, high : int
        The inclusive range.

    Returns
    -------
    list of int

    Raises
    ------
    ParameterError
        When ``values`` is empty or a value is not an integer in range.
    """
    if isinstance(values, int):
        values = [values]
    values = list(dict.fromkeys(values))
    if not values:
        raise ParameterError(f"{plural} is empty")
    return [check_int(name, v, low, high) for v in values]


def check_names(names, table: Mapping[str, object], *, what: str, plural: str) -> list[str]:
    """Check one name or several against the keys of a table.

    Parameters
    ----------
    names : str or iterable of str
        The names; repeats are dropped, the first occurrence's order kept.
    table : mapping
        The valid names are its keys.
    what : str
        What one name is, for the error message (``drum kit``).
    plural : str
        The option's name (``kits``): "valid kits: ...", "kits is empty".

    Returns
    -------
    list of str

    Raises
    ------
    ParameterError
        Naming the unknown names and the valid ones, or saying the option is empty.
    """
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ParameterError(
            f"unknown {what} {', '.join(map(repr, unknown))}; "
            f"valid {plural}: {', '.join(table)}"
        )
    if not names:
        raise ParameterError(f"{plural} is empty")
    return names


def check_velocities(velocities: int | Iterable[int]) -> tuple[int, ...]:
    """MIDI velocities 1..127 (:func:`check_ints`), as a tuple."""
    return tuple(check_ints(velocities, name="velocity", plural="velocities", low=1, high=127))


def check_keys(keys: int | Iterable[int]) -> list[int]:
    """MIDI keys 0..127 of a drum kit (:func:`check_ints`)."""
    return check_ints(keys, name="drum key", plural="drum keys", low=0, high=127)


def check_bank(bank) -> str:
    """Check a bank label, which names a folder.

    Raises
    ------
    ParameterError
        Unless ``bank`` is letters, digits and ``._-``, starting with a letter or digit.
    """
    if not isinstance(bank, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", bank):
        raise ParameterError(f"bank={bank!r} must be a file-name-safe name (letters, digits, ._-)")
    return bank


def check_format(audio_format) -> str:
    """Check an audio format: one of :data:`AUDIO_FORMATS`.

    Raises
    ------
    ParameterError
        For any other value.
    """
    if audio_format not in AUDIO_FORMATS:
        raise ParameterError(
            f"audio_format={audio_format!r} must be one of {', '.join(AUDIO_FORMATS)}"
        )
    return audio_format


def check_sample_rate(sample_rate) -> int:
    """Check a sample rate FluidSynth renders at (8000..96000 Hz).

    Raises
    ------
    ParameterError
        Unless ``sample_rate`` is an integer in that range.
    """
    return procedural.check_sample_rate(sample_rate, low=_MIN_SR, high=_MAX_SR)
