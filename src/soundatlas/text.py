"""Small text helpers shared by the parts that name files and anchors after models and labels."""

from __future__ import annotations

import re

__all__ = ["slug"]

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
