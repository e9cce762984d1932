"""Probe (analysis; docs/RESULTS.md, "The plane's scale, family within a maker, a refitted plane,
and `adapt` on synthetic drums"): copy a pitch-axis model with its timbre plane (L4's weight and
bias) multiplied by C, so that the plane's spread against the height (octaves) changes and
nothing else does. The copy is named after OUT_MODEL_DIR and keeps the model's dtype.

    python tools/probes/plane_scale.py MODEL_DIR C OUT_MODEL_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np

model, c, out = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
cfg = json.loads((model / "config.json").read_text())
if not cfg["architecture"].get("pitch_axis"):
    sys.exit(f"{model}: not a pitch-axis model (its L4 is the whole map, not a plane)")
w = dict(np.load(model / "weights.npz"))
for key in ("l4.weight", "l4.bias"):
    w[key] = (w[key].astype(np.float32) * c).astype(w[key].dtype)
out.mkdir(parents=True, exist_ok=True)
np.savez(out / "weights.npz", **w)
cfg["name"] = out.name
cfg.pop("metrics", None)
(out / "config.json").write_text(json.dumps(cfg, indent=2))
print(f"{out}: {model.name}'s plane x {c}")
