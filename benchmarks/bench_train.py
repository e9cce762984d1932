"""Training speed: our trainer against a plain eager PyTorch loop of the same network.

All train the paper architecture on the same atlas, in the same run, interleaved, with the same
number of torch threads. The baseline is the loop one writes first, at 32 triples per step:
triples drawn one at a time in Python from in-memory arrays, three forward passes (anchor,
positive, negative), the loss, backward, an SGD step. Ours is ``soundatlas.train.train``
(vectorised sampler, one forward pass over all windows, channels-last convolutions) in five
forms: the paper preset (batch 32, fp32), the same with the fused tanh + max-pool step
(``fused_pool``), both again in bf16 autocast, and the fast preset as it trains. Reports
triples/s (medians over repeats), the ratios, and where our step's time goes.

    python benchmarks/bench_train.py --atlas ATLAS [--iterations 150] [--repeats 3]
        [--device cpu|cuda]

With ``--device cuda`` both run on the GPU (the plain loop's tensors moved there per step, as
one writes it first; the time is taken after ``torch.cuda.synchronize()``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def plain_model() -> nn.Module:
    """The paper network as one would write it first (default memory format)."""
    return nn.Sequential(
        nn.Conv2d(1, 20, (3, 13)), nn.Tanh(), nn.MaxPool2d((2, 1)),
        nn.Conv2d(20, 40, (3, 11)), nn.Tanh(), nn.MaxPool2d((2, 1)),
        nn.Conv2d(40, 80, (1, 9)), nn.Tanh(), nn.Flatten(),
        nn.Linear(12960, 256), nn.Tanh(), nn.Linear(256, 3),
    )


def plain_loop(frames_by_sample, labels, iterations, batch=32, seed=0, device="cpu") -> float:
    """Triples per second of the plain loop (instrument neighbourhood, energy-weighted centres)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = plain_model()
    for p in model.parameters():
        nn.init.normal_(p, std=0.01) if p.ndim > 1 else nn.init.zeros_(p)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    by_label = {}
    for i, y in enumerate(labels):
        by_label.setdefault(y, []).append(i)
    keys = sorted(by_label)

    def window(i):
        F_ = frames_by_sample[i]
        energy = np.expm1(F_).sum(axis=1)
        c = rng.choice(len(F_), p=energy / energy.sum()) if energy.sum() > 0 else rng.integers(len(F_))
        w = np.zeros((10, F_.shape[1]), np.float32)
        for j in range(10):
            f = c - 5 + j
            if 0 <= f < len(F_):
                w[j] = F_[f]
        lin = np.expm1(w) / 50 + rng.normal(0.1, 0.01, w.shape)
        return np.log1p(50 * np.maximum(lin, 0)).astype(np.float32)

    def step():
        A, P, N = [], [], []
        for _ in range(batch):
            k = keys[rng.integers(len(keys))]
            a, p = rng.choice(by_label[k], 2, replace=False)
            other = keys[(keys.index(k) + 1 + rng.integers(len(keys) - 1)) % len(keys)]
            n = by_label[other][rng.integers(len(by_label[other]))]
            A.append(window(a)), P.append(window(p)), N.append(window(n))
        za = model(torch.from_numpy(np.stack(A))[:, None].to(device))
        zp = model(torch.from_numpy(np.stack(P))[:, None].to(device))
        zn = model(torch.from_numpy(np.stack(N))[:, None].to(device))
        dp, dn = (za - zp).norm(dim=1), (za - zn).norm(dim=1)
        loss = (dp.pow(2) + F.relu(1 - dn).pow(2)).mean() + 0.001 * za.norm(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(iterations):
        step()
    _sync(device)
    return iterations * batch / (time.perf_counter() - t)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def ours(atlas_dir: Path, iterations: int, seed=0, preset="paper", device="cpu",
         **overrides) -> float:
    from soundatlas.atlas import Atlas
    from soundatlas.train import settings_for, train

    work = Path(tempfile.mkdtemp()) / "atlas"
    shutil.copytree(atlas_dir, work, ignore=shutil.ignore_patterns("models", "embeddings"))
    rates = []
    with Atlas.open(work, write=True) as atlas:
        # one iteration past the last mark: the run ends with a validation pass (16 batches
        # forward), which must fall outside the timed window
        s = settings_for(preset, iterations=iterations + 11, valid_every=10**6,
                         checkpoint_every=10**6, warmup=0, **overrides)
        marks = {}

        def progress(done, total, stats):
            if done in (10, iterations + 10):
                _sync(device)
                marks[done] = time.perf_counter()

        train(atlas, neighbourhood="instrument", settings=s, seed=seed, name="bench",
              progress=progress, device=device)
        rates.append(iterations * s.batch_size / (marks[iterations + 10] - marks[10]))  # after warm-up
    shutil.rmtree(work.parent, ignore_errors=True)
    return rates[0]


def profile_step(atlas_dir: Path, n=30, bf16=False, fused_pool=False) -> dict:
    """Where one step of ours spends its time (sampling, forward, backward, optimiser)."""
    from soundatlas.atlas import Atlas
    from soundatlas.loss import ContrastiveLoss
    from soundatlas.model import build_model
    from soundatlas.neighbourhoods import make_neighbourhood
    from soundatlas.sampling import TrainingData, TripleSampler

    with Atlas.open(atlas_dir) as atlas:
        ids = sorted(i for i, s in atlas.splits().items() if s == "train")
        data = TrainingData.from_atlas(atlas, ids, label_keys=("instrument",))
    sampler = TripleSampler(data, make_neighbourhood("instrument"), batch_size=32, seed=0)
    model = build_model("paper").to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    loss_fn = ContrastiveLoss()
    t = {"sample": [], "forward": [], "backward": [], "step": []}
    for i in range(n + 3):
        t0 = time.perf_counter()
        a, p, n_ = sampler.next_batch()
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = model(torch.cat([a, p, n_]), fused_pool=fused_pool)
        loss = loss_fn(*z.float().split(32))
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if i >= 3:
            for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                t[k].append(v * 1000)
    return {k: statistics.median(v) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", required=True, help="an indexed atlas with instrument labels")
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where both train (default: cpu)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from soundatlas.atlas import Atlas

    with Atlas.open(args.atlas) as atlas:
        inst = atlas.labels("instrument")
        splits = atlas.splits()
        recs = [r for r in atlas.samples() if splits[r.id] == "train" and r.id in inst]
        frames = [atlas.features(r) for r in recs]
        labels = [inst[r.id] for r in recs]
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}")
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    # ours at the reference's batch of 32 triples, in the reference's arithmetic and in bf16,
    # and the fast preset as it trains (its own batch size and precision)
    contenders = {
        "ours, batch 32, fp32 (paper preset)": dict(preset="paper"),
        "ours, batch 32, fp32, fused pool": dict(preset="paper", fused_pool="on"),
        "ours, batch 32, bf16": dict(preset="paper", precision="bf16"),
        "ours, batch 32, bf16, fused pool": dict(preset="paper", precision="bf16",
                                                 fused_pool="on"),
        "ours, fast preset": dict(preset="fast"),
    }
    base, mine = [], {k: [] for k in contenders}
    for r in range(args.repeats):
        base.append(plain_loop(frames, labels, args.iterations, seed=r, device=args.device))
        line = [f"plain eager {base[-1]:.0f}"]
        for k, kw in contenders.items():
            mine[k].append(ours(Path(args.atlas), args.iterations, seed=r, device=args.device,
                                **kw))
            line.append(f"{k} {mine[k][-1]:.0f}")
        print(f"repeat {r + 1} (triples/s): " + "; ".join(line), flush=True)
    b = statistics.median(base)
    print(f"\nmedian triples/s: plain eager loop {b:.0f}")
    ratios = {}
    for k, v in mine.items():
        m = statistics.median(v)
        ratios[k] = m / b
        print(f"  {k}: {m:.0f}  ->  {m / b:.2f}x the plain loop (goal >= 3x)")
    profs = {}
    variants = (("fp32", False, False), ("fp32, fused pool", False, True), ("bf16", True, False),
                ("bf16, fused pool", True, True))
    for label, bf16, fused in (() if args.device == "cuda" else variants):
        prof = profs[label] = profile_step(Path(args.atlas), bf16=bf16, fused_pool=fused)
        total = sum(prof.values())
        print(f"our step at batch 32, {label}, median ms: " + ", ".join(
            f"{k} {v:.1f} ({100 * v / total:.0f}%)" for k, v in prof.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"plain": base, "ours": mine, "ratios": ratios,
                                               "threads": torch.get_num_threads(),
                                               "device": args.device,
                                               "profile_ms": profs}, indent=2))


if __name__ == "__main__":
    main()
