"""Embedding speed: the fully convolutional path in fp32 and bf16 against the code it replaced and
against a per-window loop, in the same run.

On the same files and model, frames per second (medians over repeats) of:

(a) a per-window loop (the window centred at each frame cut out and passed through the network
    on its own: what "fully convolutional" is measured against);
(b) the fully convolutional path as it was before channels-last and bf16 (``_dense_before``
    below, a copy of the code that ``PaperNet._embed_dense`` replaced; the baseline of the
    3x goal);
(c) ours, ``embed.embed_many`` in fp32 (``--precision fp32``: the exact path);
(d) ours in bf16 (``--precision bf16``; ``auto`` where the CPU computes it natively);
(e) with a model that has a measured pitch axis (the shipped one does): (d) without it, the same
    network with the height not computed, so (d) / (e) is what the axis costs.

Each runs on the files ``soundatlas embed`` would batch (64 files per pass), with the torch
threads of the machine unless ``--threads``. Goals: (c) >= 5x (a); (d) >= 3x (b).

    python benchmarks/bench_embed.py --atlas ATLAS [--n-files 256] [--repeats 5] [--threads N]
                                      [--skip-loop] [--with-hidden] [--json FILE]
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
import torch.nn.functional as F


def _dense_before(model, x: torch.Tensor) -> torch.Tensor:
    """``PaperNet._embed_dense`` before channels-last and bf16 (kept here as the baseline)."""
    n_time = x.shape[1] - model.window + 1
    x = x.unsqueeze(1)
    dilation = 1
    for conv, pool in model._convs():  # noqa: SLF001
        x = torch.tanh(F.conv2d(x, conv.weight, conv.bias, dilation=(dilation, 1)))
        for _ in range(1, pool):
            x = torch.maximum(x[:, :, :-dilation], x[:, :, dilation:])
        dilation *= pool
    n_t3 = model.feature_shape[1]
    x = x.unfold(2, (n_t3 - 1) * dilation + 1, 1)[..., ::dilation]
    x = x[:, :, :n_time].permute(0, 2, 1, 4, 3).flatten(2)
    return model.l4(torch.tanh(model.l3(x)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", required=True)
    ap.add_argument("--n-files", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--skip-loop", action="store_true", help="leave out (a), the slowest")
    ap.add_argument("--with-hidden", action="store_true",
                    help="(c) and (d) also return the hidden layer, as `embed` does for the "
                         "similarity vectors")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from soundatlas.artifact import resolve_model
    from soundatlas.atlas import Atlas
    from soundatlas.embed import embed_many
    from soundatlas.frames import add_noise
    from soundatlas.model import native_bf16

    with Atlas.open(args.atlas) as atlas:
        model = resolve_model(atlas, "default")[0].model.eval()
        recs = atlas.samples()[:: max(1, atlas.n_samples() // args.n_files)][: args.n_files]
        files = [atlas.features(r) for r in recs]
    n_frames = sum(len(f) for f in files)
    print(f"{len(files)} files, {n_frames} frames; torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cores; native bf16: {native_bf16()}")
    batches = [files[i : i + 64] for i in range(0, len(files), 64)]

    def windows_of(F_):
        padded = add_noise(np.pad(F_, ((5, 4), (0, 0))), np.random.default_rng(0))
        return np.stack([padded[f : f + 10] for f in range(len(F_))])

    @torch.no_grad()
    def per_window():
        for F_ in files:
            for w in windows_of(F_):
                model(torch.from_numpy(w[None]))

    @torch.no_grad()
    def before():
        for batch in batches:  # embed_many's layout: files end to end with their own padding
            parts = [add_noise(np.pad(F_, ((5, 4), (0, 0))), np.random.default_rng(0))
                     for F_ in batch]
            x = model._standardized(torch.from_numpy(np.concatenate(parts)))  # noqa: SLF001
            _dense_before(model, x[None])

    def ours(precision):
        def run():
            for batch in batches:
                embed_many(model, batch, rngs=[np.random.default_rng(0)] * len(batch),
                           precision=precision, with_hidden=args.with_hidden)
        return run

    runs = {"per-window loop": per_window, "before (fp32, contiguous)": before,
            "ours fp32": ours("fp32"), "ours bf16": ours("bf16")}
    if getattr(model, "pitch_axis", False):
        import copy

        flat = copy.deepcopy(model)
        flat.pitch_axis = False  # the same network, its height not computed

        def without_axis():
            for batch in batches:
                embed_many(flat, batch, rngs=[np.random.default_rng(0)] * len(batch),
                           precision="bf16", with_hidden=args.with_hidden)
        runs["ours bf16 without the axis"] = without_axis
    if args.skip_loop:
        del runs["per-window loop"]
    rates = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():  # interleaved, so that load changes hit all alike
            t = time.perf_counter()
            fn()
            rates[name].append(n_frames / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["before (fp32, contiguous)"]
    for k, v in med.items():
        print(f"{k:28s} {v:8.0f} frames/s   {v / base:5.2f}x before")
    if "per-window loop" in med:
        loop = med["per-window loop"]
        print(f"ours fp32 / per-window loop: {med['ours fp32'] / loop:.1f}x (goal >= 5x)")
    if "ours bf16 without the axis" in med:
        cost = med["ours bf16 without the axis"] / med["ours bf16"]
        print(f"the pitch axis costs {100 * (cost - 1):.1f} % of bf16 embedding time")
    ratio = med["ours bf16"] / base
    print(f"ours bf16 / before: {ratio:.2f}x (goal >= 3x): {'met' if ratio >= 3 else 'missed'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"frames_per_s": rates, "median": med,
                                               "n_frames": n_frames, "n_files": len(files),
                                               "threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main()
