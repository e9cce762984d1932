"""Probe (analysis; docs/RESULTS.md, "A height for unpitched frames"): does a pitch-axis map
lose family and drum class because an unpitched frame's measured height is the argmax of a
salience that holds no pitch (noise, a hit, a sound effect), so that such sounds scatter up and
down the map? The model's evaluated frame points (evaluate's protocol) keep their plane; the
height is replaced where the frame's pitch salience is weak, by 0 (the height of silence) or by
the clip's median height, for thresholds at quantiles of the atlas's own salience. k-NN test
accuracy of each variant on the labels given.

    python tools/probes/height_confidence.py ATLAS MODEL LABEL [LABEL ...]
"""
import sys

import numpy as np
import torch

from common import knn_scores
from soundatlas.atlas import Atlas
from soundatlas.evaluate import frame_set, model_frame_points
from soundatlas.pitch_axis import frame_height, harmonic_salience


def salience(frames, bins_per_octave):
    """Per frame: (peak salience, peak over mean salience), as ``frame_height`` measures it."""
    sal = harmonic_salience(torch.as_tensor(np.asarray(frames, np.float32)), bins_per_octave)
    best = sal.max(dim=1).values
    return best.numpy(), (best / sal.mean(dim=1).clamp_min(1e-6)).numpy()


atlas = Atlas.open(sys.argv[1])
model, labels = sys.argv[2], sys.argv[3:]
fs = frame_set(atlas, n_per_file=8, seed=0)
points = model_frame_points(atlas, atlas.model(model).id, fs)
recs = {r.id: r for r in atlas.samples()}
bpo = atlas.cqt_params.bins_per_octave
peak, ratio, clip_median, measured = (np.zeros(len(fs.sample_ids)) for _ in range(4))
for sid in sorted(set(fs.sample_ids.tolist())):
    feats = np.asarray(atlas.features(recs[sid]), np.float32)
    heights = frame_height(torch.from_numpy(feats), bpo).numpy()
    rows = np.flatnonzero(fs.sample_ids == sid)
    p, r = salience(feats[fs.frames[rows]], bpo)
    peak[rows], ratio[rows] = p, r
    measured[rows] = heights[fs.frames[rows]]
    clip_median[rows] = np.median(heights)
print(f"{atlas.path}: {len(points)} frames; height = measured pitch of the frame: "
      f"r = {np.corrcoef(points[:, 2], measured)[0, 1]:.4f}")
variants = {"3-D as is": points}
for name, conf in (("peak", peak), ("ratio", ratio)):
    for q in (0.1, 0.2, 0.3):
        t = np.quantile(conf, q)
        weak = conf < t
        variants[f"{name} < q{q:.1f}: 0"] = np.c_[points[:, :2], np.where(weak, 0, points[:, 2])]
        variants[f"{name} < q{q:.1f}: clip median"] = np.c_[
            points[:, :2], np.where(weak, clip_median, points[:, 2])]
base = None
for name, Z in variants.items():
    row = knn_scores(atlas, fs, Z, labels)
    base = base or row
    print(f"{name:28s} " + "  ".join(f"{k} {v:.3f} ({v - base[k]:+.3f})" for k, v in row.items()),
          flush=True)
