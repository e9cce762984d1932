"""Embedding speed: fully convolutional per-file embedding against a per-window loop.

In the same run, on the same files and model: (a) a per-window loop (the window centred at each
frame cut out and passed through the network on its own), (b) all windows of a file in one
batched forward pass, (c) ours, ``embed.embed_many`` (each layer's convolution once over the
whole file, files laid end to end with their padding). Frames per second, medians over repeats, ratios (goal: (c) >= 5x (a)).

    python benchmarks/bench_embed.py --atlas ATLAS [--n-files 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", required=True)
    ap.add_argument("--n-files", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()

    from soundatlas.atlas import Atlas
    from soundatlas.embed import embed_many
    from soundatlas.model import build_model
    from soundatlas.sampling import add_noise

    model = build_model("paper").eval()
    with Atlas.open(args.atlas) as atlas:
        recs = atlas.samples()[:: max(1, atlas.n_samples() // args.n_files)][: args.n_files]
        files = [atlas.features(r) for r in recs]
    n_frames = sum(len(f) for f in files)
    print(f"{len(files)} files, {n_frames} frames; torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cores")

    def windows_of(F):
        padded = add_noise(np.pad(F, ((5, 4), (0, 0))), np.random.default_rng(0))
        return np.stack([padded[f : f + 10] for f in range(len(F))])

    @torch.no_grad()
    def per_window():
        for F in files:
            for w in windows_of(F):
                model(torch.from_numpy(w[None]))

    @torch.no_grad()
    def batched():
        for F in files:
            model(torch.from_numpy(windows_of(F)))

    def ours():
        for i in range(0, len(files), 64):  # as `soundatlas embed` does: 64 files per pass
            embed_many(model, files[i : i + 64], rngs=[np.random.default_rng(0)] * len(files[i : i + 64]))

    rates = {"per-window loop": [], "batched windows": [], "ours (fully convolutional)": []}
    for _ in range(args.repeats):
        for name, fn in zip(rates, (per_window, batched, ours)):
            t = time.perf_counter()
            fn()
            rates[name].append(n_frames / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["per-window loop"]
    for k, v in med.items():
        print(f"{k:28s} {v:8.0f} frames/s   {v / base:5.1f}x")
    print(f"goal: ours >= 5x the per-window loop: {'met' if med['ours (fully convolutional)'] >= 5 * base else 'missed'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"frames_per_s": rates, "median": med}, indent=2))


if __name__ == "__main__":
    main()
