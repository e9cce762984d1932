"""Figures drawn from the atlas for people to read: a sample's trajectory over the map.

matplotlib is imported when a figure is drawn, not with this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundatlas.errors import AtlasError, NotEmbeddedError, ParameterError, SoundAtlasError
from soundatlas.text import temporary_sibling

if TYPE_CHECKING:  # pragma: no cover
    from soundatlas.atlas import ModelRecord, SampleRecord

__all__ = ["plot_trajectory"]

#: colours of the x, y and z coordinates over time
AXIS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")


def plot_trajectory(atlas, model: ModelRecord, sample: SampleRecord, output: str | os.PathLike,
                    *, dpi: int = 100) -> tuple[Path, tuple[int, int]]:
    """Draw a sample's trajectory over the map, beside its coordinates and loudness over time.

    The left panel shows the trajectory in 3-D over the faint map of every sample: its sounding
    part (``frames.sounding_span``: from the first to the last frame at least 5 % as loud as
    the loudest) drawn, the near-silence before and after it dotted, its start, middle and end
    marked as in the report (o, ■, X), and the sample's point as a star. The right panel shows
    its coordinates over time over the frames' loudness (CQT energy), the same three frames
    marked.

    Parameters
    ----------
    atlas : Atlas
        The open atlas.
    model : ModelRecord
        The model's record (``soundatlas.synth.embedded_model`` finds it by name).
    sample : SampleRecord
        The sample (``soundatlas.synth.find_sample`` finds it by id or path).
    output : str or path-like
        The PNG file to write.
    dpi : int, default 100
        The figure's resolution.

    Returns
    -------
    path : Path
        ``output``.
    sounding : tuple of int
        The first and the last frame of the sounding part drawn (``frames.sample_sounding_span``).

    Raises
    ------
    AtlasError
        The sample has no embedding for the model, or its embedding file is damaged
        (``DamagedDataError``, naming the file and its repair).
    ParameterError
        The model maps to fewer than 3 dimensions.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from soundatlas.frames import frame_energy, sample_sounding_span

    try:
        t = atlas.trajectory(model.id, sample.id)
    except NotEmbeddedError:  # a damaged embedding file names itself and its repair
        raise AtlasError(f"sample {sample.id} ({sample.path}) has no embedding for model "
                         f"{model.name!r}; run `soundatlas embed --atlas {atlas.path} "
                         f"--model {model.name}`") from None
    ids, pts = atlas.points(model.id)
    if t.shape[1] < 3:
        raise ParameterError(f"model {model.name!r} maps to {t.shape[1]} dimensions; a 3-D "
                             "figure needs 3")
    point = pts[np.searchsorted(ids, sample.id)]
    features = atlas.features(sample)
    energy = frame_energy(features, compression=atlas.cqt_params.compression)
    span = sample_sounding_span(atlas, sample, len(t), features=features)
    period = atlas.cqt_params.hop_length / atlas.cqt_params.sr
    secs = np.arange(len(t)) * period
    labels = atlas.sample_labels(sample.id)
    name = sample.path + (f"  ({', '.join(f'{k} {v}' for k, v in sorted(labels.items()))})"
                          if labels else "")

    fig = plt.figure(figsize=(13, 6))
    _draw_over_map(fig, plt, t, secs, pts, point, model.name, span)
    _draw_over_time(fig, t, secs, energy, span)
    fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    out = Path(output)
    tmp = temporary_sibling(out)  # a failed write leaves out as it was
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SoundAtlasError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out, span


def _draw_over_map(fig, plt, t: np.ndarray, secs: np.ndarray, pts: np.ndarray,
                   point: np.ndarray, model_name: str, span: tuple[int, int]) -> None:
    """The left panel: trajectory ``t`` (its sounding part ``span`` coloured by ``secs``, the
    near-silence around it dotted) in 3-D over the map ``pts``."""
    from soundatlas.report import VIEWS, key_frames

    ax = fig.add_subplot(1, 2, 1, projection="3d")
    ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c="#cccccc", s=2, linewidths=0, alpha=0.35)
    first, last = span
    for quiet in (t[: first + 1], t[last:]):
        if len(quiet) > 1:
            ax.plot(quiet[:, 0], quiet[:, 1], quiet[:, 2], color="#999999", lw=0.6, ls=":")
    part, part_secs = t[first : last + 1], secs[first : last + 1]
    ax.plot(part[:, 0], part[:, 1], part[:, 2], color="#333333", lw=0.8, alpha=0.7)
    sc = ax.scatter(part[:, 0], part[:, 1], part[:, 2], c=part_secs, cmap="viridis", s=10,
                    linewidths=0, vmin=secs[0], vmax=secs[-1])
    start, mid, end = key_frames(span)
    for i, marker, size, what in ((start, "o", 60, "start"), (mid, "s", 60, "median frame"),
                                  (end, "X", 90, "end")):
        colour = plt.get_cmap("viridis")(i / max(1, len(t) - 1))
        ax.scatter(t[i, 0], t[i, 1], t[i, 2], color=colour, marker=marker, s=size,
                   edgecolors="k", label=f"{what} ({secs[i]:.2f} s)")
    ax.scatter(*point[:3], color="#d62728", marker="*", s=160, edgecolors="k",
               label="the sample's point")
    ax.view_init(elev=VIEWS[0][0], azim=VIEWS[0][1])
    ax.legend(fontsize=8, loc="upper left")
    ax.tick_params(labelsize=7)
    fig.colorbar(sc, ax=ax, shrink=0.6, label="seconds")
    ax.set_title(f"trajectory over the map of {model_name!r} (grey: every sample)", fontsize=9)


def _draw_over_time(fig, t: np.ndarray, secs: np.ndarray, energy: np.ndarray,
                    span: tuple[int, int]) -> None:
    """The right panel: the coordinates of ``t`` over ``secs``, over the frames' loudness."""
    from soundatlas.report import key_frames

    ax2 = fig.add_subplot(1, 2, 2)
    for d, colour in zip(range(min(3, t.shape[1])), AXIS_COLOURS):
        ax2.plot(secs, t[:, d], color=colour, lw=1.2, label="xyz"[d])
    for i in key_frames(span):
        ax2.axvline(secs[i], color="k", lw=0.5, ls=":")
    ax2.set_xlabel("seconds")
    ax2.set_ylabel("coordinate")
    ax3 = ax2.twinx()
    n = min(len(energy), len(t))
    ax3.fill_between(secs[:n], 0, energy[:n] / max(float(energy.max()), 1e-12), color="#999999",
                     alpha=0.25, label="loudness (CQT energy)")
    ax3.set_ylim(0, 1.05)
    ax3.set_yticks([])
    ax2.legend(fontsize=8, loc="upper right")
    ax2.set_title("coordinates over time (grey: frame loudness)", fontsize=9)
