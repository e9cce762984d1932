"""Synthesis speed: a 30 s path rendered by ``synth.render`` against a naive per-grain loop.

In the same run, on the same path, atlas and output rate:

(a) naive per-grain loop (the baseline): for every grain, a k-d tree query for its point alone,
    the sample's record fetched, its file decoded again (``audio.load`` at the output rate), the
    grain cut and windowed; then the same loudness rule (median grain RMS) and overlap-add;
(b) ours, ``synth.render``: the frame index loaded from its disk cache inside the timed call, one
    tree query for all grains, each grain read alone from its file (a file at the output rate
    that can seek) or cut from the file decoded once, the grains overlap-added, the limiter;
(c) (for comparison) ours with every file decoded whole once (``AudioCache(spans=False)``), so
    the gain of reading grains alone shows in the same run;
(d) ours with ``hold="repeat"`` (the reference): what reading on through a held frame (the
    default, ``hold="advance"``) costs. ``--walk held`` holds random sounding frames 1 s each.

Medians over repeats, in seconds and in x real time (path seconds / wall seconds), and the ratio.
Goal: ours >= 20x real time. The two outputs are compared (correlation), so the baseline does the
same work. Building the frame index from scratch is timed once, apart (it is cached on disk).

Needs an atlas with an embedded model, e.g. the demo library mapped with the shipped model::

    soundatlas demo-library data/demo && soundatlas map data/demo
    # a small one: soundatlas demo-library SMALL --classes flute tuba --velocities 80
    #              soundatlas map SMALL
    python benchmarks/bench_synth.py --atlas data/demo/.soundatlas [--walk random|knn|held]
        [--duration 30] [--seed 0] [--sr HZ] [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402


def naive_render(atlas, index, path, *, sr: int, grain: float = 0.5, overlap: float = 0.5):
    """The per-grain loop: query, fetch, decode, cut and window one grain at a time."""
    from soundatlas import audio, synth

    n_out = int(round(path.duration * sr))
    n_win = 2 * int(round(grain * sr / 2))
    hop = int(round(n_win * (1 - overlap)))
    half = n_win // 2
    window = synth.hann(n_win)
    centres = np.arange(-((half - 1) // hop), (n_out - 1 + half) // hop + 1) * hop
    grains, rms = [], []
    for c in centres:
        point = path.at(np.array([min(max(c / sr, 0.0), path.duration)]))[0]
        _, row = index.tree.query(point, k=1)
        rec = atlas.samples([int(index.sample_ids[row])])[0]
        y = audio.load(atlas.library / rec.path, sr=sr, max_duration=rec.duration + 1.0,
                       min_duration=0.0).y
        start = int(round(index.frames[row] * index.frame_period * sr)) - half
        if len(y) >= n_win:
            start = min(max(start, 0), len(y) - n_win)
            g = y[start : start + n_win] * window
        else:
            g = np.zeros(n_win, np.float32)
            lo, hi = max(start, 0), min(start + n_win, len(y))
            g[lo - start : hi - start] = y[lo:hi]
            g *= window
        grains.append(g)
        rms.append(math.sqrt(float(np.dot(g, g)) / float(np.dot(window, window))))
    rms = np.array(rms)
    target = np.median(rms[rms > 0])
    out = np.zeros(n_out + 2 * n_win, np.float32)
    for c, g, r in zip(centres, grains, rms):
        gain = min(target / r, synth.MAX_GAIN) if r > 0 else 0.0
        out[c - half + n_win : c + half + n_win] += np.float32(gain) * g
    return out[n_win : n_win + n_out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", required=True, help="atlas directory with an embedded model")
    ap.add_argument("--model", help="model name (default: 'default' or the first embedded)")
    ap.add_argument("--walk", choices=["random", "knn", "held"], default="random",
                    help="the path: a random or a knn walk, or held: sounding frames drawn at "
                    "random, each held 1 s (default: random)")
    ap.add_argument("--duration", type=float, default=30.0, help="path seconds (default: 30)")
    ap.add_argument("--seed", type=int, default=0, help="walk seed (default: 0)")
    ap.add_argument("--sr", type=int, help="output rate (default: the most common original rate; "
                    "another rate makes both resample: ours once per file, naive once per grain)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (default: 5)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    from soundatlas import synth
    from soundatlas.atlas import Atlas

    facts = common.machine_facts()
    common.print_facts(facts)
    with Atlas.open(args.atlas) as atlas:
        registration = synth.embedded_model(atlas, args.model)
        t_build, _ = common.timed(lambda: synth.FrameIndex.load(atlas, registration, cache=False))
        index = synth.FrameIndex.load(atlas, registration)  # writes the cache when absent
        t_cached, _ = common.timed(lambda: synth.FrameIndex.load(atlas, registration))
        if args.walk == "held":
            rows = np.random.default_rng(args.seed).choice(len(index), max(1, int(args.duration)))
            path = synth.MapPath(index.points[rows], np.full(len(rows), args.duration / len(rows)))
        else:
            walk = synth.random_walk if args.walk == "random" else synth.knn_walk
            path = walk(index, duration=args.duration, seed=args.seed)
        sr = args.sr or index.most_common_sr()

        def ours():
            return synth.render(atlas, registration, path, sr=sr,
                                index=synth.FrameIndex.load(atlas, registration))

        def naive():
            return naive_render(atlas, index, path, sr=sr)

        def repeat():
            return synth.render(atlas, registration, path, sr=sr, hold="repeat",
                                index=synth.FrameIndex.load(atlas, registration))

        def whole_files():
            return synth.render(atlas, registration, path, sr=sr,
                                index=synth.FrameIndex.load(atlas, registration),
                                cache=synth.AudioCache(atlas.library, sr, spans=False))

        ours(), naive(), whole_files(), repeat()  # warm-up: imports, the OS file cache
        times = {"naive per-grain loop": [], "ours (synth.render)": [],
                 "ours, whole files decoded": [], "ours, hold=repeat": []}
        for _ in range(args.repeats):
            for name, fn in zip(times, (naive, ours, whole_files, repeat)):
                dt, out = common.timed(fn)
                times[name].append(dt)
        r, base_y = ours(), naive()
    corr = float(np.corrcoef(r.y.astype(np.float64), base_y.astype(np.float64))[0, 1])
    print(f"atlas {args.atlas}: {len(np.unique(index.sample_ids))} samples, {len(index)} sounding "
          f"frames; model {index.model}; {args.walk} walk of {args.duration:g} s (seed "
          f"{args.seed}) -> {len(r.grains)} grains from {r.n_samples_used} files at {r.sr} Hz")
    print(f"frame index: built in {t_build:.3f} s (first use, then cached); loaded from the cache "
          f"in {t_cached:.4f} s (inside each timed render of ours)")
    med = {k: common.median(v) for k, v in times.items()}
    base = med["naive per-grain loop"]
    rows = [{"method": k, "median_s": v, "realtime": args.duration / v, "ratio": base / v}
            for k, v in med.items()]
    common.print_table(rows, [("method", "method", ""), ("median_s", "median s", ".4f"),
                              ("realtime", "x real time", ".1f"), ("ratio", "vs naive", ".2f")])
    print(f"outputs agree: correlation {corr:.4f} (ours adds the 10 ms end fades and the "
          "limiter; where the path holds a frame, ours reads on through the sound and the naive "
          "loop re-reads the frame, as hold=repeat)")
    print(f"hold=advance / hold=repeat, time: "
          f"{med['ours (synth.render)'] / med['ours, hold=repeat']:.2f}")
    print(common.goal_line("ours, x real time", args.duration / med["ours (synth.render)"], 20.0))
    common.write_json(args.json, {
        "machine": facts, "atlas": args.atlas, "walk": args.walk, "duration": args.duration,
        "seed": args.seed, "n_grains": len(r.grains), "n_files": r.n_samples_used, "sr": r.sr,
        "index_build_s": t_build, "index_cached_s": t_cached, "seconds": times, "median_s": med,
        "realtime": {k: args.duration / v for k, v in med.items()},
        "ratio": base / med["ours (synth.render)"], "correlation": corr})


if __name__ == "__main__":
    main()
