"""Score one saved plane (nca3r.py's linear one, nca3r-linear.npz in the temporary directory) beside the measured pitch
axis on held-out atlases, by the reference protocol. A probe.

    python tools/probes/heldout_plane.py PLANE.npz ATLAS:labels [ATLAS:labels ...]
"""
import sys

import numpy as np

from common import knn_scores
from pitch_plane import cache_of, load
from soundatlas.atlas import Atlas

if __name__ == "__main__":
    d = np.load(sys.argv[1])
    for t in sys.argv[2:]:
        path, labels = t.split(":")
        fs, P, H, z = load(path, cache_of(path))
        Z = np.c_[H @ d["weight"].T + d["bias"], (z - 60) / 12]
        print(path, knn_scores(Atlas.open(path), fs, Z, labels.split(",")), flush=True)
