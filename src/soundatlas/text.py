"""Small text helpers shared by the parts that name files and anchors after models and labels,
and that show names on a terminal."""

from __future__ import annotations

import os
import re
import secrets
import unicodedata
from pathlib import Path

__all__ = ["slug", "unicode_forms", "shown", "spreadsheet_cell", "from_spreadsheet_cell",
           "temporary_sibling", "counted", "span"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(name: str, *, max_length: int | None = None) -> str:
    """``name`` made safe for a file name or an HTML anchor.

    Every run of characters other than ASCII letters, digits, ``_``, ``.`` and ``-`` becomes
    one ``_``.

    Parameters
    ----------
    name : str
        The text to make safe (a model name, a label).
    max_length : int, optional
        Keep at most this many characters of the result (None: all of them).

    Returns
    -------
    str
        The slug.

    Examples
    --------
    >>> slug("instrument / pitch")
    'instrument_pitch'
    >>> slug("a" * 100, max_length=80) == "a" * 80
    True
    """
    out = _UNSAFE.sub("_", name)
    return out if max_length is None else out[:max_length]


def unicode_forms(text: str) -> list[str]:
    """``text`` as written, then composed (NFC) and decomposed (NFD) where those differ: the
    ways a name typed or listed on one system may be stored by another (macOS writes names
    decomposed), in the order a lookup tries them.

    Parameters
    ----------
    text : str
        A name or a path.

    Returns
    -------
    list of str
        One to three texts, ``text`` first, none twice.
    """
    return list(dict.fromkeys((text, unicodedata.normalize("NFC", text),
                               unicodedata.normalize("NFD", text))))


def shown(text: str, keep: str = "") -> str:
    """``text`` for a terminal: each control character (a line break, a tab, an escape
    sequence's ESC), line and paragraph separator and bidirectional override, in a file name
    say, written as Python writes it in a string (``\\n``, ``\\x1b``, ``\\u202e``), so a name can
    neither break a line, drive the terminal nor turn its text around. Everything else stays as
    it is (letters of any script, an ideographic space, an emoji's joiner), so that a name shown
    can be pasted back; and so do the characters ``keep`` names (``"\\n\\t"`` for a note's
    lines)."""
    if text.isprintable():
        return text
    return "".join(repr(c)[1:-1] if _unsafe(c) and c not in keep else c for c in text)


def _unsafe(c: str) -> bool:
    return (unicodedata.category(c) in ("Cc", "Zl", "Zp")
            or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069")


#: what a spreadsheet reads as the start of a formula in a cell (OWASP's "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(text: str) -> str:
    """``text`` for a CSV cell that a spreadsheet will open: a cell that a spreadsheet would
    run as a formula (it begins with ``=``, ``+``, ``-``, ``@``, a tab or a CR; a file named
    ``=HYPERLINK(...).wav``, say) gets a ``'`` before it, which makes it text. A number (``-3``)
    is left alone, and so is everything else; a cell that begins with ``'`` and then one of
    those, or a second ``'``, gets one too, so that :func:`from_spreadsheet_cell` gives every
    text back as it was.

    Examples
    --------
    >>> spreadsheet_cell("=1+1"), spreadsheet_cell("-3"), spreadsheet_cell("'80s")
    ("'=1+1", '-3', "'80s")
    >>> from_spreadsheet_cell(spreadsheet_cell("''=x")) == "''=x"
    True
    """
    if text.startswith(_FORMULA_START) and not _is_number(text) or _quoted(text):
        return "'" + text
    return text


def from_spreadsheet_cell(text: str) -> str:
    """A cell :func:`spreadsheet_cell` wrote, as it was: the ``'`` before a formula's first
    character (or before a second ``'``) taken away. A ``'`` before anything else (``'80s``)
    is the text's own and stays."""
    return text[1:] if _quoted(text) else text


def _quoted(text: str) -> bool:
    return text[:1] == "'" and text[1:2] in ("'", *_FORMULA_START)


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A hidden, unused name beside ``path`` to write it under, then rename it into place (a
    failed write leaves ``path`` as it was). Short whatever ``path``'s name: a name the file
    system takes must not fail for its temporary one's length."""
    path = Path(path)
    return path.with_name(f".soundatlas-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and its noun, singular for one: ``1 file``, ``3 files``, ``2 classes``.

    Parameters
    ----------
    n : int
        The count.
    noun : str
        The singular.
    plural : str, optional
        The plural (default: ``noun`` + "s").
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def span(seconds: float) -> str:
    """A length of time for people: ``3.2 s``, ``4.5 min``, ``2.25 h``."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    if round(seconds / 60, 1) < 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
