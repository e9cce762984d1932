"""Copy a trained model from an atlas into the package as the shipped default (float16).

    python tools/ship_model.py --atlas ATLAS --model NAME --metrics EVALUATE.json \
        --made-by "the exact commands" [--name default]

The weights are stored as float16 (the paper network has 3.37 M parameters: 6.7 MB), the config
keeps everything the training recorded plus the evaluation metrics, and MADE_BY.md says how to
make it again.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from soundatlas.artifact import SHIPPED_MODELS, ModelArtifact, resolve_model
from soundatlas.atlas import Atlas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--metrics", required=True, help="JSON written by `soundatlas evaluate --output` (or --json)")
    ap.add_argument("--made-by", required=True, help="text for MADE_BY.md (commands, times)")
    ap.add_argument("--name", default="default")
    args = ap.parse_args()
    with Atlas.open(args.atlas) as atlas:
        artifact, _ = resolve_model(atlas, args.model)
    metrics = json.loads(Path(args.metrics).read_text())
    if "results" in metrics:  # `soundatlas evaluate --output`: keep this model's scores
        if args.model not in metrics["results"]:
            raise SystemExit(f"{args.metrics} has no scores for {args.model}")
        metrics = {**metrics["results"][args.model], "protocol": metrics["protocol"]}
    config = dict(artifact.config, metrics=metrics, trained_as=artifact.name)
    out = SHIPPED_MODELS / args.name
    if out.exists():
        shutil.rmtree(out)
    ModelArtifact(args.name, config, artifact.model).save(out, dtype=np.float16)
    (out / "MADE_BY.md").write_text(args.made_by.rstrip() + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    reloaded = ModelArtifact.load(out)
    print(f"shipped {artifact.name} as {out} ({size / 2**20:.2f} MiB); "
          f"dims {reloaded.dims}, neighbourhood {config['neighbourhood']['name']}")


if __name__ == "__main__":
    main()
