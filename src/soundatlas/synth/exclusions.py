"""Samples named by the user: sample ids or paths in the library, resolved to sample ids (the
samples a render leaves out, those that share a target's content, one sample by id or path)."""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Iterable

from soundatlas.atlas.samples import is_id_text
from soundatlas.errors import ParameterError

__all__ = ["resolve_exclusions", "self_exclusions", "find_sample"]


def resolve_exclusions(atlas, items: Iterable[str | int]) -> set[int]:
    """The sample ids named by a list of sample ids and library folders or files.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    items : iterable of str or int
        Sample ids (numbers) or folders / files of the library (paths relative to it, or
        absolute inside it; a folder names every sample below it). A text of digits is a
        sample id unless no sample has that id and a folder of the library has that name;
        ``5/`` or ``./5`` is always the folder.

    Returns
    -------
    set of int
        The sample ids.

    Raises
    ------
    ParameterError
        An item is empty, matches no sample, lies outside the library, or is digits naming both
        a sample id and a folder of other samples (the message says how to give each).
    """
    items = list(items)
    if not items:
        return set()
    rows = [(sid, p) for sid, _h, p in atlas.iter_ids_hashes()]
    paths = dict(rows)
    library = atlas.library.resolve()
    out: set[int] = set()
    for item in items:
        text = str(item).strip()
        if not text:  # an unset shell variable, say: not "the whole library" (that is ".")
            raise ParameterError(f"exclude {str(item)!r}: empty; give '.' to exclude the whole "
                                 "library")
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            if int(item) not in paths:
                raise ParameterError(f"exclude {text}: no sample with that id")
            out.add(int(item))
            continue
        rel = _relative(atlas, text)
        if rel is None:
            raise ParameterError(f"exclude {text!r} is outside the library {library}")
        matched = {sid for sid, p in rows
                   if rel in ("", ".") or p == rel or p.startswith(rel + "/")}
        if is_id_text(text):  # a sample id, or a folder named with digits (files have a suffix)
            sid = int(text)
            if sid in paths and matched and matched != {sid}:
                raise ParameterError(
                    f"exclude {text} is ambiguous: sample id {text} ({paths[sid]}) or the "
                    f"folder {text} of the library ({_plural(len(matched))}); give {text}/ for "
                    f"the folder, or {paths[sid]} for sample {text}")
            if sid in paths:
                out.add(sid)
                continue
            if not matched:
                raise ParameterError(f"exclude {text}: no sample with that id, nor a folder of "
                                     "that name in the library")
        if not matched:
            raise ParameterError(f"exclude {text!r} matches no sample (give a sample id or a "
                                 "folder or file relative to the library)")
        out |= matched
    return out


def _plural(n: int) -> str:
    return f"{n} sample" if n == 1 else f"{n} samples"


def _relative(atlas, text: str) -> str | None:
    """``text`` as a path relative to the library, forward slashes (None: outside it)."""
    if Path(text).is_absolute():
        try:
            return Path(text).resolve().relative_to(atlas.library.resolve()).as_posix()
        except ValueError:
            return None
    rel = text.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    return rel.strip("/")


def self_exclusions(atlas, target: str | os.PathLike, content_hash: str | None = None) -> set[int]:
    """The samples that are a target file: the same content, or the same path in the library.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    target : str or path-like
        An audio file, inside the library or not.
    content_hash : str, optional
        The target's content hash, when already known (computed otherwise).

    Returns
    -------
    set of int
        The sample ids.
    """
    from soundatlas.pipeline import content_hash as hash_of

    digest = content_hash or hash_of(target)
    out = {sid for sid, h, _p in atlas.iter_ids_hashes() if h == digest}
    try:
        rel = Path(target).resolve().relative_to(atlas.library.resolve()).as_posix()
    except ValueError:
        return out
    out |= {v[0] for v in atlas.lookup_paths([rel]).values()}
    return out


def find_sample(atlas, text: str | int):
    """The sample record named by a sample id or a path.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    text : str or int
        A sample id, or the sample's path relative to the library (or absolute inside it).

    Returns
    -------
    SampleRecord

    Raises
    ------
    ParameterError
        No sample has that id or path.
    """
    s = str(text).strip()
    if (isinstance(text, numbers.Integral) and not isinstance(text, bool)) or is_id_text(s):
        recs = atlas.samples([int(s)])
        if recs:
            return recs[0]
    found = atlas.lookup_paths([_relative(atlas, s) or s])
    if found:
        return atlas.samples([next(iter(found.values()))[0]])[0]
    raise ParameterError(f"no sample {s!r} in {atlas.path} (give a sample id or a path relative "
                         "to the library, as `soundatlas serve` or the atlas lists them)")

