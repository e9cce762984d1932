"""Would a measured pitch axis beside a learned timbre plane make a better 3-D map?

Reads an atlas's evaluated frames (8 per file, seed 0), estimates each frame's pitch from its
log-CQT column by harmonic summation, and scores k-NN test accuracy (the reference protocol)
for the shipped map, for the map with the pitch axis beside it, and for 2-D projections of the
map beside the axis. A probe: it prints figures and changes nothing.

    python tools/probes/pitch_axis.py ATLAS instrument,pitch,drum_class
"""
import sys

import numpy as np

from common import frame_points, knn_scores
from soundatlas.artifact import resolve_model
from soundatlas.atlas import Atlas
from soundatlas.embed import prediction_noise

HARMONICS = np.arange(1, 7)


def frame_pitch(col, bins_per_octave, fmin_midi):
    """Harmonic-sum pitch (MIDI, continuous) of one log-CQT column, and its salience."""
    from scipy.ndimage import uniform_filter1d
    c = col.astype(np.float64)
    flat = np.maximum(c - uniform_filter1d(c, size=bins_per_octave, mode="nearest"), 0)
    offs = np.round(bins_per_octave * np.log2(HARMONICS)).astype(int)
    n = len(flat)
    s = np.zeros(n)
    for h, o in zip(HARMONICS, offs):
        s[: n - o] += flat[o:] / h ** 0.5
    b = int(np.argmax(s))
    return fmin_midi + 12 * b / bins_per_octave, s[b]


def main(path, labels):
    atlas = Atlas.open(path)
    art, _ = resolve_model(atlas, "default")
    fs, P = frame_points(atlas, art.model.eval(), prediction_noise(art))
    q = atlas.cqt_params
    fmin_midi = 69 + 12 * np.log2(q.fmin / 440)
    recs = {r.id: r for r in atlas.samples()}
    feats = {}
    z, sal = np.zeros(len(fs.frames)), np.zeros(len(fs.frames))
    for i, (s, f) in enumerate(zip(fs.sample_ids, fs.frames)):
        if s not in feats:
            feats = {s: atlas.features(recs[int(s)])}
        z[i], sal[i] = frame_pitch(feats[s][f], q.bins_per_octave, fmin_midi)
    from soundatlas.evaluate import label_of
    lab = label_of(atlas, "pitch", set(atlas.label_summary()))
    y = np.array([lab.get(int(s)) for s in fs.sample_ids], dtype=object)
    m = np.array([v is not None for v in y])
    err = np.round(z[m]) - np.array([float(v) for v in y[m]])
    print("pitch estimate: exact", round(float(np.mean(err == 0)), 3),
          "octave", round(float(np.mean(np.abs(err) == 12)), 3), flush=True)
    print("map", knn_scores(atlas, fs, P, labels), flush=True)
    Pc = P - P.mean(0)
    u, sv, vt = np.linalg.svd(Pc, full_matrices=False)
    P2 = Pc @ vt[:2].T
    r = np.sqrt((Pc ** 2).sum(1).mean())
    zs = (z - z.mean()) / 12  # one octave per unit
    for c in (0.25, 0.5, 1, 2, 4):
        print(f"map + {c} z (4-D)", knn_scores(atlas, fs, np.c_[P, c * r * zs], labels), flush=True)
        print(f"PCA2(map) + {c} z", knn_scores(atlas, fs, np.c_[P2, c * r * zs], labels), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","))
