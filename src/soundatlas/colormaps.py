"""Small images drawn with a colour map: the log-CQT of a sample as a PNG, as the web page shows
it beside the sample."""

from __future__ import annotations

import functools
import io

import numpy as np

__all__ = ["cqt_png", "colormap_table"]


def cqt_png(F: np.ndarray) -> bytes:
    """A PNG of log-CQT frames, bins bottom to top, in magma colours.

    Parameters
    ----------
    F : numpy.ndarray
        Frames x bins, non-negative (the stored features).

    Returns
    -------
    bytes
        The PNG: one pixel row per bin, one column per frame, short notes widened (up to 8
        columns a frame) so they stay visible. Values are scaled to the largest; all zero is
        black.
    """
    from PIL import Image

    F = np.asarray(F, dtype=np.float32)
    top = float(F.max()) if F.size else 0.0
    v = np.clip(F / top, 0, 1) if top > 0 else np.zeros_like(F)
    img = colormap_table("magma")[(v.T[::-1] * 255).astype(np.uint8)]  # bins x frames x RGB
    image = Image.fromarray(img)
    n_frames = max(1, F.shape[0])
    scale = min(8, max(1, 192 // n_frames))  # short notes widened so they stay visible
    if scale > 1:
        image = image.resize((n_frames * scale, image.height), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@functools.lru_cache(maxsize=4)
def colormap_table(name: str) -> np.ndarray:
    """A matplotlib colour map as a lookup table.

    Parameters
    ----------
    name : str
        The colour map's name in ``matplotlib.colormaps``.

    Returns
    -------
    numpy.ndarray
        256 x 3 uint8 RGB, from the map's low end to its high end.
    """
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
