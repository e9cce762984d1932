"""Small text helpers shared by the parts that name files and anchors after models and labels,
and that show names on a terminal."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["slug", "unicode_forms", "shown"]

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


def shown(text: str) -> str:
    """``text`` for a terminal: each control character (a line break, a tab, an escape
    sequence's ESC), line and paragraph separator and bidirectional override, in a file name
    say, written as Python writes it in a string (``\\n``, ``\\x1b``, ``\\u202e``), so a name can
    neither break a line, drive the terminal nor turn its text around. Everything else stays as
    it is (letters of any script, an ideographic space, an emoji's joiner), so that a name shown
    can be pasted back."""
    if text.isprintable():
        return text
    return "".join(repr(c)[1:-1] if _unsafe(c) else c for c in text)


def _unsafe(c: str) -> bool:
    return (unicodedata.category(c) in ("Cc", "Zl", "Zp")
            or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069")
