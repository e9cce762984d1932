"""Audio files decoded to 16-bit PCM WAV, block by block: for formats a browser cannot play
(AIFF, W64, CAF, AU...), served by the web app as ``/api/samples/{id}/audio?format=wav``."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from soundatlas.errors import AudioReadError

__all__ = ["transcode_wav", "WAV_LIMIT"]

WAV_LIMIT = 2**32 - 1  # bytes a RIFF WAV can hold


def transcode_wav(path: str | os.PathLike, out: str | os.PathLike, *, name: str,
                  block_frames: int = 1 << 16) -> None:
    """Decode an audio file into a 16-bit PCM WAV at its own sample rate and channel count.

    Memory stays bounded however long the file: it is read and written ``block_frames`` at a
    time. Values beyond full scale are clipped (libsndfile would wrap them around) and NaN
    becomes silence.

    Parameters
    ----------
    path : path-like
        The audio file (anything libsndfile reads).
    out : path-like
        The WAV to write.
    name : str
        The file's name in error messages (its path in the library, say).
    block_frames : int, optional
        Frames per block.

    Raises
    ------
    AudioReadError
        ``AudioReadError(name, reason)`` for what cannot be read or does not fit a WAV. An
        error writing ``out`` (a full disk) is the caller's and raised as it is.
    """
    from soundatlas.audio import decode_reason, open_sound  # its checks and reasons

    try:
        f = open_sound(path)
    except AudioReadError as exc:
        raise AudioReadError(name, exc.reason) from exc
    with f:
        if f.frames < 1 << 62 and f.frames * f.channels * 2 + 44 > WAV_LIMIT:
            raise AudioReadError(name, f"too long for a WAV: {f.frames} frames of "
                                       f"{f.channels} channels exceed 4 GiB")
        blocks = f.blocks(block_frames, dtype="float32", always_2d=True)
        with sf.SoundFile(out, "w", samplerate=f.samplerate, channels=f.channels,
                          format="WAV", subtype="PCM_16") as w:
            while True:
                try:
                    block = next(blocks, None)
                except Exception as exc:  # a file that opens but fails while decoding
                    raise AudioReadError(name, decode_reason(exc)) from exc
                if block is None:
                    break
                w.write(np.clip(np.nan_to_num(block, posinf=1.0, neginf=-1.0), -1.0, 1.0))
