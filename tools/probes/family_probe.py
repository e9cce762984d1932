"""Probe (analysis; docs/RESULTS.md, "The plane's scale, family within a maker, a refitted plane,
and `adapt` on synthetic drums"): where a pitch-axis map loses family. k-NN family accuracy on
the model's evaluated frame points (evaluate's protocol: 8 energy-weighted frames per file, k
chosen on validation), overall and per family, with the height as measured, without it (the
plane alone), replaced by a steadier measured height (its median over 5 frames around the frame,
or over the whole clip), replaced by the labelled pitch (in octaves from the CQT's middle bin),
and alone.

    python tools/probes/family_probe.py ATLAS [MODEL]
"""
import sys

import numpy as np

from common import clip_heights, middle_midi
from soundatlas.atlas import Atlas
from soundatlas.evaluate import frame_set, knn_accuracy, model_frame_points
from soundatlas.labels import label_of, normalise_pitch

atlas = Atlas.open(sys.argv[1])
model = sys.argv[2] if len(sys.argv) > 2 else "default"
fs = frame_set(atlas, n_per_file=8, seed=0)
points = model_frame_points(atlas, atlas.model(model).id, fs)
family, pitch = label_of(atlas, "family"), label_of(atlas, "pitch")
y = np.array([family.get(int(s)) for s in fs.sample_ids], dtype=object)
midi = np.array([float(normalise_pitch(pitch[int(s)])) if int(s) in pitch else np.nan
                 for s in fs.sample_ids])
heights = clip_heights(atlas, fs.sample_ids)
median5 = [np.median(heights[s][max(0, f - 2):f + 3])
           for s, f in zip(fs.sample_ids.tolist(), fs.frames.tolist())]
clip_median = [np.median(heights[s]) for s in fs.sample_ids.tolist()]
labelled_height = (midi - middle_midi(atlas.cqt_params)) / 12
variants = {
    "3-D as is": points,
    "plane only": points[:, :2],
    "height: median of 5": np.c_[points[:, :2], median5],
    "height: clip median": np.c_[points[:, :2], clip_median],
    "plane + labelled pitch": np.c_[points[:, :2], labelled_height],
    "height only": points[:, 2:],
}
split = fs.split
per = {}
for name, X in variants.items():
    if name == "plane + labelled pitch" and np.isnan(midi).any():
        continue
    splits = [a for s in ("train", "valid", "test") for a in (X[split == s], y[split == s])]
    r = knn_accuracy(*splits, return_predictions=True)
    per[name] = {c: float(np.mean(r["predictions"][r["y_test"] == c] == c))
                 for c in sorted(set(r["y_test"]))}
    print(f"{name:24s} family {r['test_accuracy']:.3f} (k={r['k']})")
print("family".ljust(22) + "".join(n[:15].rjust(17) for n in per))
for c in next(iter(per.values())):
    print(c.ljust(22) + "".join(f"{per[n][c]:17.3f}" for n in per))
