"""WAV output: a rendering as a file, or as the bytes of one (the web API's answers)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from soundatlas.errors import ParameterError, SoundAtlasError
from soundatlas.text import temporary_sibling

__all__ = ["WAV_SUBTYPES", "wav_bytes", "write_wav"]

#: the sample formats: name -> (libsndfile subtype, what to call it)
WAV_SUBTYPES = {"pcm16": ("PCM_16", "16-bit PCM WAV"), "float": ("FLOAT", "32-bit float WAV")}


def wav_bytes(y: np.ndarray, sr: int, *, fmt: str = "pcm16") -> bytes:
    """A mono signal as the bytes of a WAV file, made in memory.

    Parameters
    ----------
    y : array_like
        The samples, mono.
    sr : int
        Their rate.
    fmt : {"pcm16", "float"}, default "pcm16"
        The WAV sample format (see ``WAV_SUBTYPES``).

    Returns
    -------
    bytes

    Raises
    ------
    ParameterError
        ``fmt`` is unknown.
    """
    import io

    buf = io.BytesIO()
    _write(buf, y, sr, fmt)
    return buf.getvalue()


def write_wav(path: str | os.PathLike, y: np.ndarray, sr: int, *, fmt: str = "pcm16") -> Path:
    """Write a mono signal as a WAV file, atomically (a temporary file renamed into place).

    Parameters
    ----------
    path : str or path-like
        The file to write.
    y, sr, fmt
        As for :func:`wav_bytes`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ParameterError
        ``fmt`` is unknown.
    SoundAtlasError
        The file cannot be written; the message gives the reason.
    """
    import soundfile as sf

    _check_format(fmt)
    path = Path(path)
    tmp = temporary_sibling(path)  # a failed write leaves path as it was
    try:
        _write(tmp, y, sr, fmt)
        os.replace(tmp, path)
    except (OSError, sf.LibsndfileError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or exc
        raise SoundAtlasError(f"cannot write {path}: {reason}") from exc
    return path


def _check_format(fmt: str) -> None:
    if fmt not in WAV_SUBTYPES:
        raise ParameterError(f"fmt={fmt!r} must be one of {', '.join(WAV_SUBTYPES)}")


def _write(file, y: np.ndarray, sr: int, fmt: str) -> None:
    """Write ``y`` as a WAV of sample format ``fmt`` to ``file`` (a path or a binary stream)."""
    import soundfile as sf

    _check_format(fmt)
    sf.write(file, np.asarray(y, dtype=np.float32), int(sr), format="WAV",
             subtype=WAV_SUBTYPES[fmt][0])
