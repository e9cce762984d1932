"""The project's error types: raised deep, handled once at the edge (CLI, API)."""

from __future__ import annotations

import os


class SoundAtlasError(Exception):
    """Base class for every error soundatlas raises on purpose."""


class ParameterError(SoundAtlasError, ValueError):
    """A parameter has a value that cannot work; the message names it.

    A subclass of ``ValueError`` too, so callers that catch ``ValueError`` also catch it.
    """


class NotFoundError(ParameterError):
    """A parameter names something the atlas does not hold (a sample id, a collection); the
    API answers it with 404."""


class AudioReadError(SoundAtlasError):
    """A file could not be turned into audio. Carries the path and the reason.

    Parameters
    ----------
    path : str or os.PathLike
        The file that could not be read.
    reason : str
        Why, in words; the message is ``"{path}: {reason}"``.
    lasting : bool, default False
        True when the file's bytes are the problem (not audio, corrupt, too short, a decoder
        crash), so reading the same bytes again fails the same way; False when it may pass
        another time (permission, a missing file, an I/O error, memory) or is not known.
        ``index`` does not read a lasting failure again until the file changes.

    Attributes
    ----------
    path : str
        The file, as a string (``os.fspath`` of the argument).
    reason : str
        Why it could not be read.
    lasting : bool
        As the parameter.
    """

    def __init__(self, path: str | os.PathLike, reason: str, lasting: bool = False):
        self.path = os.fspath(path)
        self.reason = reason
        self.lasting = bool(lasting)
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # picklable, so errors can travel back from worker processes and Dask workers as values
        return (type(self), (self.path, self.reason, self.lasting))


class AtlasError(SoundAtlasError):
    """The atlas is missing, from an incompatible version, or inconsistent."""


class NotEmbeddedError(AtlasError):
    """A sample has no embedding for a model (yet): ``embed`` makes it. Readers that answer it
    in their own words catch this, not every AtlasError, so that a damaged embedding file
    (:class:`DamagedDataError`) is not taken for it."""


class DamagedDataError(AtlasError):
    """A feature or embedding file that the atlas's rows name is missing, cut short or not an
    array. The message names the file and the commands that make it whole; the rest of the
    atlas reads as before, and the web API answers 409 (the atlas's state, not the request)."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the device is full (or the user's quota spent): an OSError, or
    SQLite's "database or disk is full"."""
    import errno
    import sqlite3

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def disk_full(where) -> AtlasError:
    """The error for a write that found no space left on the device holding ``where``."""
    return AtlasError(f"no space left on the device holding {where}: free some space, then run "
                      "the command again (what was committed so far is kept and it goes on "
                      "from there)")


class MissingDependencyError(SoundAtlasError):
    """A system package or file the command needs is not installed."""


class TrainingError(SoundAtlasError):
    """Training cannot go on: the loss became non-finite, or a checkpoint to resume from
    belongs to a run with other settings."""


class CheckpointMismatch(TrainingError):
    """The checkpoint to resume from belongs to another run: other settings, or other training
    samples (files indexed, changed or removed since)."""
