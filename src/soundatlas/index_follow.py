"""Which library an atlas indexes: ``index`` of a folder other than the one the atlas
records follows it when it is that library moved or copied (the atlas records it from then
on), and refuses it otherwise, before anything changes, since the run would take the atlas's
samples out (a wrong ``--atlas``, or a folder above or below the library)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from soundatlas.atlas import Atlas
from soundatlas.errors import ParameterError

__all__ = ["follow_library"]


def follow_library(atlas: Atlas, library: Path, *, told: bool = False) -> str | None:
    """The library folder the atlas records, where it is not ``library``: the folder it
    recorded, when ``library`` is that library moved or copied (the atlas records ``library``
    from now on): the atlas lies inside it (and not inside the folder it recorded), or it
    holds at least half of a spread of the atlas's files, or the user says so (``told``).
    Else an error naming both, before anything changes: a run would take the atlas's samples
    out (a wrong ``--atlas``, or a folder above or below the library)."""
    given, recorded = library.resolve(), atlas.meta("library")
    if recorded is None or Path(recorded) == given:
        return None
    if _same_folder(recorded, given):  # recorded through a link: the same folder, not moved
        atlas.set_library(given)
        return None
    inside = atlas.path.resolve()
    if not (told or (inside.is_relative_to(given) and not inside.is_relative_to(recorded))):
        found, looked = _files_found(atlas, given)
        if 2 * found < looked:
            gone = "" if Path(recorded).is_dir() else " (it is gone)"
            raise ParameterError(
                f"the atlas at {atlas.path} indexes the library {recorded}{gone}, and {given} "
                f"holds {found} of {looked} of its files looked for: index {recorded} into it, "
                f"or give {given} an atlas of its own (--atlas DIR); if {given} is that "
                "library moved, with many of its files gone, index it with --library-moved")
    atlas.set_library(given)
    return recorded


def _same_folder(a: str | Path, b: Path) -> bool:
    """Whether two paths name one folder (through links the resolved path did not see)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


#: how many of an atlas's files ``follow_library`` looks for in a library it did not record
_FOLLOW_PROBES = 256


def _files_found(atlas: Atlas, folder: Path) -> tuple[int, int]:
    """How many of a spread of the atlas's files (``_FOLLOW_PROBES``, evenly by id) are in
    ``folder``, and how many were looked for; it stops once the answer is plain."""
    ids = atlas.sample_ids()
    picked = ids[np.linspace(0, len(ids) - 1, min(len(ids), _FOLLOW_PROBES)).astype(int)] \
        if len(ids) else ids
    paths = list(atlas.paths(picked.tolist()).values())
    found = looked = 0
    for p in paths:
        found += os.path.lexists(folder / p)
        looked += 1
        if 2 * found >= len(paths) or 2 * (found + len(paths) - looked) < len(paths):
            break  # at least half found, or too few left to reach half (on a network drive)
    return found, looked
