"""Mosaics: an audio file rebuilt from the library's grains, following its own trajectory and
loudness."""

from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np

from soundatlas.synth.cache import AudioCache
from soundatlas.synth.exclusions import resolve_exclusions, self_exclusions
from soundatlas.synth.index import FrameIndex, embedded_model
from soundatlas.synth.paths import MapPath
from soundatlas.synth.render import MAX_GAIN, Rendering, check_grain, check_hold, hann, render

__all__ = ["mosaic"]


def mosaic(atlas, model: str | None, target: str | os.PathLike, *, exclude_self: bool = False,
           exclude: Iterable[str | int] = (), sr: int | None = None, grain: float = 0.5,
           overlap: float = 0.5, hold: str = "advance", max_gain: float = MAX_GAIN,
           index: FrameIndex | None = None,
           cache: AudioCache | None = None) -> tuple[Rendering, dict]:
    """Rebuild an audio file from the library's grains.

    The target's trajectory, computed exactly as the query-by-example endpoint does (the
    atlas's CQT at feature precision, embedded with the file's content hash), is followed with
    grains (glided between frames, 20 per second), each scaled to the target's own windowed RMS
    at its time, measured on the target at its own rate (the whole band, not the analysis's).

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    model : str or None
        The model's name (None: the default embedded model).
    target : str or path-like
        The audio file to rebuild.
    exclude_self : bool, default False
        Leave out the samples with the target's content hash or path.
    exclude : iterable of str or int, default ()
        Sample ids or library folders / files never used.
    sr, grain, overlap, hold, max_gain, index, cache
        As for :func:`~soundatlas.synth.render.render`.

    Returns
    -------
    rendering : Rendering
        The mosaic, as long as the (decoded part of the) target.
    facts : dict
        About the target: ``target``, ``hash``, ``duration``, ``truncated``, ``n_frames``,
        ``n_self_excluded`` and ``excluded_ids``.

    Raises
    ------
    ParameterError
        An argument is out of range.
    AtlasError
        The model is unknown or has no embeddings.
    SoundAtlasError
        The atlas's points are of an earlier version of a shipped model
        (``artifact.check_current``).
    AudioReadError
        The target cannot be read.
    """
    from soundatlas.artifact import check_cqt, check_current, resolve_model
    from soundatlas.audio import load, open_sound
    from soundatlas.embed import embed_outside_file
    from soundatlas.pipeline import content_hash

    check_grain(grain, overlap)
    check_hold(hold)
    # the decoder's checks and its header first: the content hash below would read a missing
    # file or a folder as a bare OSError, and a file that is not audio fails before the model
    open_sound(target).close()
    reg = embedded_model(atlas, model)
    artifact, _ = resolve_model(atlas, reg.name)
    check_current(atlas, reg, artifact)
    check_cqt(artifact, atlas.cqt_params)
    params = atlas.cqt_params
    digest = content_hash(target)
    decoded, _F, traj, _point = embed_outside_file(atlas, artifact, target, content_hash=digest)
    period = params.hop_length / params.sr
    path = MapPath(traj, np.full(len(traj), period), glide=True)
    excluded = set(resolve_exclusions(atlas, exclude))
    n_self = 0
    if exclude_self:
        own = self_exclusions(atlas, target, digest)
        n_self = len(own - excluded)
        excluded |= own
    # the loudness to follow, of the whole band: the analysis rate (16 kHz) keeps nothing
    # above 8 kHz, and a hi-hat or a sweep's top measured there came out near silence; and
    # the length, to the target's own sample (16 kHz rounded it)
    if decoded.orig_sr != params.sr:
        full = load(target, sr=decoded.orig_sr, max_duration=atlas.max_duration())
        y, rate = full.y.astype(np.float64), full.sr
    else:
        y, rate = decoded.y.astype(np.float64), params.sr

    def loudness(times: np.ndarray, seconds: float) -> np.ndarray:
        n = max(2, 2 * int(round(seconds * rate / 2)))
        w = hann(n).astype(np.float64)
        padded = np.pad(y, (n, n))
        out = np.empty(len(times))
        for k, t in enumerate(times):
            s = int(round(t * rate)) - n // 2 + n
            seg = padded[max(0, s) : max(0, s) + n] if 0 <= s <= len(padded) - n else np.zeros(n)
            out[k] = math.sqrt(float(np.dot(seg * w, seg * w)) / float(np.dot(w, w)))
        return out

    result = render(atlas, reg, path, sr=sr, grain=grain, overlap=overlap, hold=hold,
                    exclude=excluded,
                    duration=len(y) / rate, loudness=loudness, max_gain=max_gain,
                    index=index if index is not None else FrameIndex.load(atlas, reg), cache=cache)
    facts = {"target": str(target), "hash": digest, "duration": len(y) / rate,
             "truncated": decoded.truncated, "n_frames": len(traj), "n_self_excluded": n_self,
             "excluded_ids": sorted(excluded)}
    return result, facts

