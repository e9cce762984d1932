"""Decode: any audio file a sample library holds -> mono float32 ``y`` at ``sr`` (16 kHz).

The stage after ``scan`` and before ``cqt``. One contract: :func:`load` returns an :class:`Audio`
or raises :class:`~soundatlas.errors.AudioReadError` carrying the path and a short reason; no
other exception escapes for a bad file (bad *parameters* raise ``ParameterError``).

Decoding is libsndfile's (through ``soundfile``): WAV/RF64/W64, AIFF, FLAC, Ogg Vorbis, Opus, MP3,
CAF, AU and friends. Only the first ``max_duration`` seconds are decoded, block by block, so a
two-hour file costs what 30 s cost and a wide or lying header cannot allocate gigabytes.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioReadError, ParameterError

__all__ = ["AUDIO_EXTENSIONS", "Audio", "load", "load_many", "open_sound", "decode_reason",
           "os_reason"]

#: Lower-case extensions (with dot) the scanner treats as audio candidates: what libsndfile reads.
#: ``.sd2`` is included although on Linux it only decodes when its resource fork came along;
#: otherwise it fails with a reason, which is better than being skipped silently.
AUDIO_EXTENSIONS: frozenset[str] = frozenset({
    ".wav", ".wave", ".bwf", ".rf64", ".w64",    # RIFF family
    ".aif", ".aiff", ".aifc",                    # Apple/SGI
    ".flac",
    ".ogg", ".oga", ".opus",                     # Ogg: Vorbis, FLAC, Opus
    ".mp3", ".mp2",                              # MPEG layer III / II
    ".au", ".snd",                               # Sun/NeXT (and Akai MPC .snd)
    ".caf",                                      # Apple Core Audio
    ".sd2",                                      # Sound Designer II
    ".voc", ".iff", ".8svx", ".svx",             # Creative, Amiga
    ".sds", ".xi",                               # MIDI sample dump, FastTracker instrument
    ".sph",                                      # NIST SPHERE (uncompressed)
})

#: The shortest sound analysed (s): drum libraries hold clicks and hats of 5-50 ms, and they are
#: samples like any other (the CQT gives them one frame; the network's window pads them).
MIN_DURATION = 0.002
#: the largest sample value taken, a million times full scale (120 dB over it): a float file
#: beyond it (1e30, say) overflows the CQT's float32 sums into NaN and inf features
MAX_PEAK = 1e6
_BLOCK_SAMPLES = 1 << 20      # frames x channels decoded per read: bounds memory for wide files
_UNKNOWN_FRAMES = 1 << 62     # libsndfile says SF_COUNT_MAX frames when a length is unknown
_MAX_REASON = 160             # characters of a library message kept in a reason

_ERRNO_REASONS = {
    errno.ENOENT: "file does not exist",
    errno.ENOTDIR: "file does not exist (a parent in the path is not a directory)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied (operation not permitted)",
    errno.EISDIR: "is a directory",
    errno.ELOOP: "symlink loop (too many levels of symbolic links)",
    errno.ENAMETOOLONG: "path too long",
    errno.EIO: "I/O error while reading (damaged disk or share?)",
}


@dataclass(frozen=True, eq=False)
class Audio:
    """Decoded audio: mono float32 ``y`` at ``sr``, plus what the file was and how much was read.

    Attributes
    ----------
    y : numpy.ndarray of float32, shape (n_samples,)
        The mono samples, channels averaged.
    sr : int
        Sample rate of ``y`` in Hz.
    orig_sr : int
        The file's own sample rate in Hz.
    n_channels : int
        The file's channel count.
    duration : float
        Seconds in ``y`` (what is analysed).
    file_duration : float or None
        Seconds in the file (None when the file does not say).
    truncated : bool
        True when only the first ``max_duration`` seconds were read.
    """

    y: np.ndarray
    sr: int
    orig_sr: int
    n_channels: int
    duration: float
    file_duration: float | None
    truncated: bool


def load(path: str | os.PathLike, *, sr: int = 16000, max_duration: float | None = 30.0,
         min_duration: float = MIN_DURATION) -> Audio:
    """Decode a file to mono float32 samples at ``sr``.

    Channels are averaged; resampling is soxr 'HQ' (skipped when the file is already at ``sr``).

    Parameters
    ----------
    path : str or os.PathLike
        The audio file.
    sr : int, default=16000
        Sample rate of the result in Hz.
    max_duration : float or None, default=30.0
        Seconds decoded from the start of the file (None: all).
    min_duration : float, default=MIN_DURATION
        Shortest file accepted, in seconds (>= 0, at most ``max_duration``).

    Returns
    -------
    Audio

    Raises
    ------
    AudioReadError
        With the path and a reason, when the file gives no valid audio (missing, unreadable,
        empty, not audio, corrupt, NaN/inf samples, shorter than ``min_duration`` s). No other
        exception escapes for a bad file.
    ParameterError
        For a parameter that cannot work, or a ``path`` that is not a str or os.PathLike.
    """
    _check_params(sr, max_duration, min_duration)
    _check_path(path)
    try:
        return _load(path, sr, max_duration, min_duration)
    except AudioReadError:
        raise
    except Exception as exc:  # the contract: nothing raw escapes for a bad file
        raise AudioReadError(path, _exception_reason(exc), lasting=_lasting(exc)) from exc


def load_many(paths: Iterable[str | os.PathLike], *, sr: int = 16000,
              max_duration: float | None = 30.0,
              min_duration: float = MIN_DURATION) -> list[Audio | AudioReadError]:
    """Decode a batch of files; a bad file never raises.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        The audio files.
    sr, max_duration, min_duration
        As for :func:`load`.

    Returns
    -------
    list of Audio or AudioReadError
        One entry per path, in order: the audio, or the error that :func:`load` raised.

    Raises
    ------
    ParameterError
        For a parameter that cannot work.
    """
    _check_params(sr, max_duration, min_duration)
    out: list[Audio | AudioReadError] = []
    for path in paths:
        try:
            out.append(load(path, sr=sr, max_duration=max_duration, min_duration=min_duration))
        except AudioReadError as exc:
            out.append(exc)
    return out


# --- parameters ---------------------------------------------------------------------------------

def _check_params(sr, max_duration, min_duration) -> None:
    """Raise ParameterError naming the first parameter that cannot work."""
    if isinstance(sr, bool) or not isinstance(sr, numbers.Integral) or sr <= 0:
        raise ParameterError(f"sr={sr!r} must be a positive integer (Hz)")
    if max_duration is not None and (not _is_real(max_duration) or not max_duration > 0):
        raise ParameterError(f"max_duration={max_duration!r} must be positive seconds or None")
    if not _is_real(min_duration) or not 0 <= min_duration < math.inf:
        raise ParameterError(f"min_duration={min_duration!r} must be finite seconds >= 0")
    if max_duration is not None and min_duration > max_duration:
        raise ParameterError(f"min_duration={min_duration!r} must not exceed "
                             f"max_duration={max_duration!r}")


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and not math.isnan(x)


def _check_path(path) -> None:
    try:
        os.fspath(path)
    except TypeError:
        raise ParameterError(f"path={path!r} must be a str or os.PathLike") from None


# --- decoding -----------------------------------------------------------------------------------

def _load(path, sr: int, max_duration: float | None, min_duration: float) -> Audio:
    """The happy path of :func:`load`; each check raises AudioReadError with its reason."""
    _check_file(path)
    with _open(path) as f:
        orig_sr, n_channels, header_frames = f.samplerate, f.channels, f.frames
        if orig_sr <= 0 or n_channels <= 0:
            raise AudioReadError(path, f"corrupt header: sr={orig_sr}, channels={n_channels}",
                                 lasting=True)
        limit = _frame_limit(max_duration, orig_sr)
        y = _read_mono(f, path, None if limit is None else limit + 1)  # +1 tells if more follows
    truncated = limit is not None and len(y) > limit
    if truncated:
        y = y[:limit]
    n_frames = len(y)
    _check_long_enough(path, n_frames, orig_sr, min_duration)
    y = _resample(y, orig_sr, sr)
    if len(y) == 0:  # only with min_duration=0 and a file of a few frames
        _check_long_enough(path, n_frames, orig_sr, math.inf)
    if not np.isfinite(y).all():
        raise AudioReadError(path, "non-finite samples (NaN or inf) after resampling: "
                                   "values too large", lasting=True)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > MAX_PEAK:  # the CQT's sums of such values overflow float32: NaN features
        raise AudioReadError(path, f"samples up to {peak:.3g}, more than {MAX_PEAK:g} times full "
                                   "scale: not audio the analysis can hold", lasting=True)
    return Audio(y=y, sr=int(sr), orig_sr=int(orig_sr), n_channels=int(n_channels),
                 duration=len(y) / sr,
                 file_duration=_file_duration(n_frames, orig_sr, header_frames, truncated),
                 truncated=truncated)


def _frame_limit(max_duration: float | None, orig_sr: int) -> int | None:
    """Frames to decode at ``orig_sr`` for ``max_duration`` seconds (None: no limit)."""
    if max_duration is None or math.isinf(max_duration):
        return None
    return max(1, round(max_duration * orig_sr))


def open_sound(path) -> sf.SoundFile:
    """Open a file with libsndfile for reading as it is (its own rate and channels).

    Makes the same checks as :func:`load` before opening.

    Parameters
    ----------
    path : str or os.PathLike
        The audio file.

    Returns
    -------
    soundfile.SoundFile
        Open for reading; the caller closes it.

    Raises
    ------
    AudioReadError
        With the same reasons as :func:`load`.
    """
    _check_file(path)
    return _open(path)


def decode_reason(exc: Exception) -> str:
    """The reason :func:`load` gives for an exception raised while decoding an opened file.

    Parameters
    ----------
    exc : Exception
        Raised while reading a file from :func:`open_sound`.

    Returns
    -------
    str
        A short reason, for an ``AudioReadError``.
    """
    return _exception_reason(exc)


def _check_file(path) -> None:
    """Raise AudioReadError unless ``path`` is a non-empty regular file we may open for reading."""
    try:
        st = os.stat(path)
    except OSError as exc:
        reason = os_reason(exc)
        if isinstance(exc, FileNotFoundError) and os.path.islink(path):
            reason = "file does not exist (dangling symlink)"
        raise AudioReadError(path, reason) from exc
    if stat.S_ISDIR(st.st_mode):
        raise AudioReadError(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the whole run on open()
        raise AudioReadError(path, "not a regular file (pipe, socket or device)")
    if st.st_size == 0:
        raise AudioReadError(path, "empty file (0 bytes)", lasting=True)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AudioReadError(path, os_reason(exc)) from exc


def _open(path) -> sf.SoundFile:
    """Open ``path`` with libsndfile, turning its refusal into a reason."""
    p = os.fspath(path)
    if sys.platform != "win32":  # bytes: names that are not valid UTF-8 still open
        p = os.fsencode(p)
    try:
        return sf.SoundFile(p)
    except sf.LibsndfileError as exc:
        raise AudioReadError(path, _format_reason(exc.error_string),
                             lasting=_lasting(exc)) from exc


def _read_mono(f: sf.SoundFile, path, n_frames: int | None) -> np.ndarray:
    """Read up to ``n_frames`` (None: all) from ``f`` block by block, as mono float32."""
    block = max(1, _BLOCK_SAMPLES // f.channels)
    parts, n_read = [], 0
    while n_frames is None or n_read < n_frames:
        want = block if n_frames is None else min(block, n_frames - n_read)
        x = f.read(want, dtype="float32", always_2d=True)
        if len(x) == 0:
            break
        mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float64)
        finite = np.isfinite(mono)  # a float64 mean of finite float32 values is finite
        if not finite.all():
            at = (n_read + int(np.argmin(finite))) / f.samplerate
            raise AudioReadError(path, f"non-finite samples (NaN or inf) at {at:.3f} s",
                                 lasting=True)
        parts.append(mono.astype(np.float32, copy=False))
        n_read += len(x)
        if len(x) < want:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _check_long_enough(path, n_frames: int, sr: int, min_duration: float) -> None:
    """Raise 'too short' unless ``n_frames`` > 0 at ``sr`` last ``min_duration`` s or more."""
    seconds = n_frames / sr
    if n_frames == 0 or seconds < min_duration:
        frames = "1 frame" if n_frames == 1 else f"{n_frames} frames"
        floor = (f"min_duration={min_duration:g} s" if min_duration < math.inf
                 else "one output sample")
        raise AudioReadError(path, f"too short: {frames} at {sr} Hz = {seconds:.4g} s, "
                                   f"below {floor}", lasting=True)


def _resample(y: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Resample ``y`` from ``orig_sr`` to ``sr`` (soxr HQ); contiguous float32 out."""
    if orig_sr != sr:
        y = soxr.resample(y, orig_sr, sr, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


def _file_duration(n_frames: int, orig_sr: int, header_frames: int,
                   truncated: bool) -> float | None:
    """Seconds in the file: what was read when read to the end, else what the header says."""
    if not truncated:
        return n_frames / orig_sr
    if n_frames < header_frames < _UNKNOWN_FRAMES:
        return header_frames / orig_sr
    return None


# --- reasons ------------------------------------------------------------------------------------

def os_reason(exc: OSError) -> str:
    """The reason :func:`load` gives for an OSError (permission, a missing file, I/O)."""
    return _ERRNO_REASONS.get(exc.errno, f"cannot read: {exc.strerror or exc}")


def _format_reason(message: str) -> str:
    """A reason for libsndfile refusing to open a file we know to be a readable regular file."""
    message = " ".join(str(message).split())[:_MAX_REASON].rstrip(".")
    if "Format not recognised" in message:
        return "not audio: format not recognised"
    if "does not exist or is not a regular file" in message:
        # libsndfile's SFE_BAD_FILE, what it says when mpg123 finds no MPEG frame (e.g. text.mp3)
        return "not audio or corrupt: libsndfile could not parse it"
    if message.startswith("System error"):
        return "cannot read: libsndfile system error"
    return f"corrupt or unsupported audio: {message}"


def _lasting(exc: Exception) -> bool:
    """libsndfile refusing the bytes is lasting; its system errors, the OS's, memory and
    anything unknown may pass."""
    return (isinstance(exc, sf.LibsndfileError)
            and not " ".join(str(exc.error_string).split()).startswith("System error"))


def _exception_reason(exc: Exception) -> str:
    """A short reason for an exception raised while decoding."""
    if isinstance(exc, sf.LibsndfileError):
        return f"corrupt audio data: {' '.join(exc.error_string.split())[:_MAX_REASON]}"
    if isinstance(exc, OSError):
        return os_reason(exc)
    if isinstance(exc, MemoryError):
        return "too large to decode (out of memory)"
    return f"cannot decode: {type(exc).__name__}: {str(exc)[:_MAX_REASON]}"
