"""Probe (analysis; docs/RESULTS.md, "The plane's scale, family within a maker, a refitted plane,
and `adapt` on synthetic drums"): how often the measured pitch (``pitch_axis.frame_height``, the
height of a pitch-axis map) agrees with the labelled pitch, on evaluate's frames (8 energy-
weighted per file), overall and per family: within a semitone, an octave up or down, two
octaves, a twelfth, a fifth, or other.

    python tools/probes/pitch_agreement.py ATLAS
"""
import sys
from collections import Counter

import numpy as np

from common import clip_heights, middle_midi
from soundatlas.atlas import Atlas
from soundatlas.evaluate import frame_set
from soundatlas.labels import label_of, normalise_pitch

CLASSES = (("within a semitone", 0), ("octave up", 12), ("octave down", -12), ("twelfth up", 19),
           ("two octaves up", 24), ("two octaves down", -24), ("fifth up", 7), ("fifth down", -7))


def error_class(semitones: float) -> str:
    for name, at in CLASSES:
        if abs(semitones - at) <= 1:
            return name
    return "other"


atlas = Atlas.open(sys.argv[1])
fs = frame_set(atlas, n_per_file=8, seed=0)
pitch = label_of(atlas, "pitch")
family = label_of(atlas, "family") if "family" in atlas.label_summary() else {}
middle = middle_midi(atlas.cqt_params)
frames = [(s, f) for s, f in zip(fs.sample_ids.tolist(), fs.frames.tolist()) if s in pitch]
heights = clip_heights(atlas, [s for s, _ in frames])
errors = [middle + 12 * heights[s][f] - float(normalise_pitch(pitch[s])) for s, f in frames]
families = np.array([family.get(s, "-") for s, _ in frames])
classes = np.array([error_class(e) for e in errors])
names = [n for n, _ in CLASSES] + ["other"]
print(f"{len(classes)} frames: " + ", ".join(f"{n} {np.mean(classes == n):.3f}" for n in names))
if family:
    print("family".ljust(22) + "".join(n.rjust(18) for n in names))
    for fam in sorted(set(families)):
        c = Counter(classes[families == fam])
        n = sum(c.values())
        print(fam.ljust(22) + "".join(f"{c[k] / n:18.3f}" for k in names))
