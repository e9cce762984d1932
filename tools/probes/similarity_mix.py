"""Probe (tuning sets only): per-sample precision at 10, as ``evaluate`` reports it, of the stored
similarity vectors (the hidden layer), the input space (each sample's mean evaluated window), a
timbre-flattened spectrum (the mean log-CQT frame minus its running mean across ``--flatten``
bins: the harmonic peaks without the spectral envelope, a pitch feature) and concatenations of the
hidden layer with each, every block scaled to unit RMS norm, the second weighted by w."""
import argparse

import numpy as np
from scipy.ndimage import uniform_filter1d

from common import sample_retrieval
from soundatlas.atlas import Atlas

ap = argparse.ArgumentParser()
ap.add_argument("atlas"); ap.add_argument("labels")
ap.add_argument("--flatten", type=int, nargs="+", default=[12, 24])
ap.add_argument("--weights", type=float, nargs="+", default=[0.5, 1, 2, 4])
ap.add_argument("--pool", type=int, default=1,
                help="average each run of this many flattened bins (2: one per semitone)")
a = ap.parse_args()

atlas = Atlas.open(a.atlas)
ids, H, X, score = sample_retrieval(atlas, a.labels.split(","))
n_bins = atlas.cqt_params.n_bins
mean_frame = X.reshape(len(X), -1, n_bins).mean(1)


def unit(Z):
    Z = Z - Z.mean(0)
    return Z / np.sqrt((Z ** 2).sum(1).mean())


def rms(Z):
    return float(np.sqrt(((Z - Z.mean(0)) ** 2).sum(1).mean()))


score("hidden", H)
score("input", X)
Hu = unit(H)
for s in a.flatten:
    F = mean_frame - uniform_filter1d(mean_frame, s, axis=1, mode="nearest")
    F = F[:, :F.shape[1] // a.pool * a.pool].reshape(len(F), -1, a.pool).mean(2)
    print(f"RMS norm (centred): hidden {rms(H):.3f}, flat{s} {rms(F):.3f}", flush=True)
    F = unit(F)
    score(f"flat{s}", F)
    for w in a.weights:
        score(f"hidden+{w:g}*flat{s}", np.hstack([Hu, w * F]))
Xu = unit(X)
for w in a.weights:
    score(f"hidden+{w:g}*input", np.hstack([Hu, w * Xu]))
