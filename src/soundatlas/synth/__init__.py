"""Sound out: paths through the map turned back into audio, and mosaics.

The last stage before serving: it reads the atlas (embeddings, sample records) and the
library's original files. Its parts, in the order a render uses them:

- :mod:`~soundatlas.synth.index`: :class:`FrameIndex`, every sounding frame of a model's map in
  a k-d tree (cached in the atlas), and :func:`embedded_model`.
- :mod:`~soundatlas.synth.paths`: :class:`MapPath`, :func:`read_path`, and the walks
  :func:`random_walk` and :func:`knn_walk`.
- :mod:`~soundatlas.synth.exclusions`: samples named by id or library path
  (:func:`resolve_exclusions`, :func:`self_exclusions`, :func:`find_sample`).
- :mod:`~soundatlas.synth.cache`: :class:`AudioCache`, grains of the original files at the
  output rate.
- :mod:`~soundatlas.synth.render`: :func:`render`, concatenative synthesis along a path (the
  rendering and loudness rules are in its doc), :class:`Rendering`, and :func:`cancellable`
  (a render stopped when its caller is gone).
- :mod:`~soundatlas.synth.mosaic`: :func:`mosaic`, an audio file rebuilt from the library.
- :mod:`~soundatlas.synth.wav`: :func:`write_wav` and :func:`wav_bytes`.

The trajectory figure is drawn by :func:`soundatlas.figures.plot_trajectory` (re-exported here).
"""

from soundatlas.figures import plot_trajectory
from soundatlas.synth.cache import AudioCache, decode_original
from soundatlas.synth.exclusions import find_sample, resolve_exclusions, self_exclusions
from soundatlas.synth.index import SILENCE, FrameIndex, embedded_model
from soundatlas.synth.mosaic import mosaic
from soundatlas.synth.paths import MAX_DURATION, MapPath, knn_walk, random_walk, read_path
from soundatlas.synth.render import (
    CEILING,
    HOLDS,
    MAX_GAIN,
    RenderCancelled,
    Rendering,
    cancellable,
    check_grain,
    check_hold,
    hann,
    render,
    window_ripple,
)
from soundatlas.synth.wav import WAV_SUBTYPES, wav_bytes, write_wav

__all__ = [
    "SILENCE", "MAX_GAIN", "CEILING", "MAX_DURATION", "FrameIndex", "MapPath", "Rendering",
    "AudioCache", "embedded_model", "read_path", "random_walk", "knn_walk", "resolve_exclusions",
    "self_exclusions", "render", "mosaic", "find_sample", "plot_trajectory", "write_wav",
    "wav_bytes", "hann", "window_ripple", "decode_original", "WAV_SUBTYPES", "RenderCancelled",
    "cancellable", "check_grain", "check_hold", "HOLDS",
]
