"""Probe (analysis; docs/RESULTS.md, "A procedural second maker"): copy a model with its input
statistics (per-bin mean and standard deviation) replaced by an atlas's own, taken over all of the
atlas's frames with the model's input noise added (numpy, seed 0): label-free test-time
standardisation. The copy is named after OUT_MODEL_DIR.

    python tools/probes/own_stats.py MODEL_DIR ATLAS OUT_MODEL_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np

from soundatlas.atlas import Atlas
from soundatlas.frames import TrainingData, add_noise

model, atlas_path, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
cfg = json.loads((model / "config.json").read_text())
noise = (cfg["settings"]["noise_mean"], cfg["settings"]["noise_std"])
atlas = Atlas.open(atlas_path)
ids = sorted(r.id for r in atlas.samples())
data = TrainingData.from_atlas(atlas, ids, label_keys=[], missing_labels="skip")
x = add_noise(np.asarray(data.frames, dtype=np.float32), np.random.default_rng(0),
              mean=noise[0], std=noise[1])
mean, std = x.astype(np.float64).mean(0), x.astype(np.float64).std(0, ddof=1)
out.mkdir(parents=True, exist_ok=True)
cfg["name"] = out.name
(out / "config.json").write_text(json.dumps(cfg, indent=2))
w = dict(np.load(model / "weights.npz"))
print(out, "frames", x.shape, "mean |shift| from the model's",
      float(np.abs(mean - w["in_mean"]).mean()), "median scale ratio",
      float(np.median(std / w["in_scale"])))
w["in_mean"] = mean.astype(w["in_mean"].dtype)
w["in_scale"] = np.maximum(std, 1e-3).astype(w["in_scale"].dtype)
np.savez(out / "weights.npz", **w)
