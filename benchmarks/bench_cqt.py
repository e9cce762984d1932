"""Throughput of the paper CQT: ours (``soundatlas.cqt.cqt_batch``) against librosa, same run.

Workload: N clips (default 2,000) of 2.5 s at 16 kHz, synthetic and seeded (white noise, random
sums of sinusoids, decaying harmonic tones). Contenders, each timed ``--repeats`` times in
interleaved rounds (medians reported):

  (a) librosa.cqt called once per clip, one process (on a subset, ``--n-single`` clips);
  (b) librosa at its best: many clips per call (2-D input), one process per core, best of a scan
      over batch sizes and thread settings (workers warmed up first; start-up, imports and clip
      generation are not timed; results stay in the workers);
  (c) ours: ``cqt_batch(list_of_clips)`` with ``PAPER_CQT`` (the multirate kernel) in this
      process, with as many threads as torch has (every core), compression included; for
      information, the same with one thread and with the folded kernel (``CQTParams()``);
      with ``--baseline-rev REV``, also ``cqt_batch`` as it was at git revision REV (with
      every core and with one thread), and how many values batching changes in each.

Then: the numerical agreement of (c) and of the folded kernel with librosa, on the workload and
on the signals that show a kernel's leakage (pure sines in every octave, clicks at the ends,
sharp onsets; first and last frames looked at alone), the ratios (c)/(b) and (c)/(a) against the
goals, and a breakdown of where our time goes.

    .venv/bin/python benchmarks/bench_cqt.py [--quick] [--baseline-rev REV] \
        [--json benchmarks/results-cqt.json]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import common

SR, HOP, FMIN, N_BINS, BPO = 16000, 800, 27.5, 192, 24
GOAL_VS_BEST = 2.0
GOAL_VS_SINGLE = 30.0


def librosa_cqt(y: np.ndarray) -> np.ndarray:
    """The reference definition: complex CQT of one clip (1-D) or of many (2-D)."""
    import librosa

    return librosa.cqt(y, sr=SR, hop_length=HOP, fmin=FMIN, n_bins=N_BINS, bins_per_octave=BPO)


def log_magnitude(C: np.ndarray) -> np.ndarray:
    return np.log1p(50.0 * np.abs(C)).astype(np.float32)


# --- (b): worker side ---------------------------------------------------------------------------

_CLIPS: list[np.ndarray] = []


def _worker_load(seed: int, indices: list[int], duration: float) -> tuple[int, dict]:
    """Warm-up: import librosa, generate this worker's clips, run one transform; return facts."""
    global _CLIPS
    import librosa  # noqa: F401  (the import is the point: keep it out of the timing)

    _CLIPS = common.make_clips(seed, indices, sr=SR, duration=duration)
    log_magnitude(librosa_cqt(np.stack(_CLIPS[:8])))
    env = {k: os.environ.get(k) for k in common.THREAD_ENV}
    return os.getpid(), env


def _worker_run(batch_size: int, n_clips: int | None = None) -> tuple[int, int]:
    """Transform the clips this worker holds (the first ``n_clips``, or all), ``batch_size``
    clips per librosa call; return (pid, clips done): the caller checks each worker ran once."""
    n_clips = len(_CLIPS) if n_clips is None else min(n_clips, len(_CLIPS))
    n = 0
    for start in range(0, n_clips, batch_size):
        F = log_magnitude(librosa_cqt(np.stack(_CLIPS[start : min(n_clips, start + batch_size)])))
        n += F.shape[0]
    return os.getpid(), n


class LibrosaPool:
    """``n_workers`` warmed-up processes, each holding an equal share of the clips."""

    def __init__(self, *, n_workers: int, threads: int | None, seed: int, n_clips: int,
                 duration: float):
        self.n_workers, self.threads = n_workers, threads
        value = None if threads is None else str(threads)
        # spawned workers read the thread variables when numpy/BLAS load: set them around the start
        with common.environ(**{k: value for k in common.THREAD_ENV}):
            self.pool = ProcessPoolExecutor(
                max_workers=n_workers, mp_context=multiprocessing.get_context("spawn")
            )
            shares = np.array_split(np.arange(n_clips), n_workers)
            futures = [self.pool.submit(_worker_load, seed, s.tolist(), duration) for s in shares]
            facts = [f.result() for f in futures]
        pids = {pid for pid, _ in facts}
        if len(pids) != n_workers:
            raise RuntimeError(f"expected {n_workers} distinct workers, got pids {sorted(pids)}")
        self.pids = sorted(pids) + [os.getpid()]
        self.worker_env = facts[0][1]
        self.share = [len(s) for s in shares]

    @property
    def name(self) -> str:
        t = "default threads" if self.threads is None else f"{self.threads} thread(s) each"
        return f"{self.n_workers} proc x {t}"

    def run(self, batch_size: int, n_per_worker: int | None = None) -> tuple[float, int]:
        """Seconds for every worker to transform its clips (or ``n_per_worker`` of them).

        The pool hands tasks to whichever worker is free, so a run in which one worker took two
        tasks (its own share twice, in series) is detected by pid and done again.
        """
        for _ in range(5):
            def go():
                futures = [self.pool.submit(_worker_run, batch_size, n_per_worker)
                           for _ in range(self.n_workers)]
                return [f.result() for f in futures]

            dt, done = common.timed(go)
            if len({pid for pid, _ in done}) == self.n_workers:
                return dt, sum(n for _, n in done)
        raise RuntimeError("the pool kept giving two tasks to one worker")

    def close(self) -> None:
        self.pool.shutdown(wait=True)


# --- (c): ours, and where its time goes ---------------------------------------------------------

def ours(clips: list[np.ndarray], params=None) -> list[np.ndarray]:
    from soundatlas.cqt import PAPER_CQT, cqt_batch

    return cqt_batch(clips, params=params or PAPER_CQT)


def cqt_at(rev: str):
    """``soundatlas.cqt`` as it was at git revision ``rev``, loaded beside today's."""
    import importlib.util
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", f"{rev}:src/soundatlas/cqt.py"], cwd=root,
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"soundatlas_cqt_at_{rev}", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    exec(compile(source, f"{rev}:src/soundatlas/cqt.py", "exec"), module.__dict__)
    return module


def batch_changes(cqt_batch, clips: list[np.ndarray]) -> int:
    """Values of ``cqt_batch(clips)`` that differ from each clip's own ``cqt_batch([clip])``."""
    together = cqt_batch(clips)
    return sum(int((C != cqt_batch([y])[0]).sum()) for y, C in zip(clips, together))


def folded_params():
    """The folded kernel (``CQTParams()``), timed and checked beside ``PAPER_CQT``."""
    from soundatlas.cqt import CQTParams

    return CQTParams()


def breakdown(clips: list[np.ndarray], repeats: int) -> dict:
    """Time each step of our pipeline on one chunk, as one of ``cqt_batch``'s threads runs it
    (manual timers, one thread).

    Calls the steps of ``soundatlas.cqt._multirate_same_size`` one by one, then the tail of
    ``cqt_batch`` (compress, split per clip). Returns per-step medians in microseconds per clip.
    """
    import torch

    from soundatlas import cqt as cqt_mod

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with cqt_mod._blas_controller().limit(limits=1, user_api="blas"):
            return _breakdown(clips, repeats)
    finally:
        torch.set_num_threads(threads)


def _breakdown(clips: list[np.ndarray], repeats: int) -> dict:
    import torch

    from soundatlas import cqt as cqt_mod

    params = cqt_mod.PAPER_CQT
    N = cqt_mod._multirate_size(params, len(clips[0]))
    kernel = cqt_mod._multirate_kernel(params, N)
    ys = clips[: max(1, cqt_mod._MULTIRATE_CHUNK // N)]
    B = len(ys)
    lengths = np.array([len(y) for y in ys])
    n_out = cqt_mod.n_frames(int(lengths.max()), hop_length=params.hop_length)
    counts = [cqt_mod.n_frames(len(y), hop_length=params.hop_length) for y in ys]
    workers = 1
    steps: dict[str, list[float]] = {}

    def tick(name, fn):
        dt, out = common.timed(fn)
        steps.setdefault(name, []).append(dt)
        return out

    for _ in range(repeats + 1):  # the first round warms up
        x = tick("copy into padded batch", lambda: cqt_mod._padded(ys, N))
        signals = {1: (x, lengths)}
        for parent, d in kernel.stages:
            signals[d] = tick(f"stage 1/{d}: rfft, roll-off, irfft, cut",
                              lambda: cqt_mod._decimated(kernel, *signals[parent], parent, d,
                                                         workers))
        C = np.zeros((B, n_out, params.n_bins), dtype=np.complex64)
        for i in kernel.frames:
            octave = kernel.octaves[i]
            tick(f"octave {i} (1/{octave.d}): frames, rfft {octave.n_fft}, x basis per clip",
                 lambda: cqt_mod._frames_octave(kernel, i, signals[octave.d][0], counts, C,
                                                workers))
        for d, (lo, hi, size, M, G) in kernel.folds.items():
            tick(f"bins {lo}-{hi - 1} (1/{d}): fft {size}, fold (real product per clip), "
                 f"ifft {M}",
                 lambda: cqt_mod._folded_octaves(kernel, d, *signals[d], C, workers))
        out = tick("magnitude", lambda: cqt_mod._magnitude(C))
        tick("compress + split per clip", lambda: [
            C[:count].copy() for count, C in zip(
                counts, np.log1p(np.multiply(out, params.compression, out=out), out=out))])
    total_end_to_end = []
    for _ in range(repeats):
        dt, _ = common.timed(lambda: cqt_mod.cqt_batch(ys))
        total_end_to_end.append(dt)
    per_clip_us = {k: common.median(v[1:]) / B * 1e6 for k, v in steps.items()}
    return {
        "chunk_clips": B, "N": N, "stages": [list(s) for s in kernel.stages],
        "octaves": [{"bins": [o.lo, o.hi], "d": o.d, "hop": o.hop, "n_fft": o.n_fft,
                     "method": "frames" if i in kernel.frames else "fold"}
                    for i, o in enumerate(kernel.octaves)],
        "torch_threads": torch.get_num_threads(),
        "steps_us_per_clip": per_clip_us,
        "sum_of_steps_us_per_clip": sum(per_clip_us.values()),
        "cqt_batch_on_chunk_us_per_clip": common.median(total_end_to_end) / B * 1e6,
    }


def profile_top(clips: list[np.ndarray], n_rows: int = 12) -> str:
    """cProfile's top functions (own time) for one chunk."""
    import cProfile
    import io
    import pstats

    from soundatlas import cqt as cqt_mod

    N = cqt_mod._multirate_size(cqt_mod.PAPER_CQT, len(clips[0]))
    chunk = clips[: max(1, cqt_mod._MULTIRATE_CHUNK // N)]
    profiler = cProfile.Profile()
    profiler.runcall(cqt_mod.cqt_batch, chunk)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(n_rows)
    return out.getvalue()


# --- agreement ----------------------------------------------------------------------------------

def agreement(clips: list[np.ndarray], indices: list[int], params=None) -> dict:
    """Pearson r of log(50|C|+1), ours vs librosa (one batched librosa call), per clip."""
    ref = log_magnitude(librosa_cqt(np.stack([clips[i] for i in indices])))  # (n, bins, frames)
    mine = ours([clips[i] for i in indices], params)  # (frames, bins) each
    rs, frames_ok, max_abs = [], True, []
    for r_clip, m_clip in zip(ref, mine):
        r_clip = r_clip.T
        frames_ok &= r_clip.shape == m_clip.shape
        n = min(len(r_clip), len(m_clip))
        a, b = r_clip[:n].ravel().astype(np.float64), m_clip[:n].ravel().astype(np.float64)
        rs.append(float(np.corrcoef(a, b)[0, 1]))
        max_abs.append(float(np.abs(a - b).max()))
    return {
        "clips": indices, "kinds": [common.KINDS[i % 3] for i in indices], "pearson_r": rs,
        "min_r": min(rs), "same_shape": bool(frames_ok), "max_abs_diff": max(max_abs),
        "ok": min(rs) >= 0.995 and bool(frames_ok),
    }


def edge_cases() -> list[tuple[str, np.ndarray]]:
    """The signals that show a kernel's leakage (as in tests/test_cqt.py): 2.5 s pure sines at a
    bin centre in each octave, clicks at the first, a middle and the last sample, and harmonic
    notes with a sharp onset at 0.77 s."""
    n = int(2.5 * SR)
    t = np.arange(n) / SR
    cases = []
    for octave in range(8):
        k = 24 * octave + 5
        f = FMIN * 2 ** (k / BPO)
        cases.append((f"sine, bin {k}", (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)))
    for p in (0, 20000, n - 1):
        y = np.zeros(n, np.float32)
        y[p] = 1.0
        cases.append((f"click at sample {p}", y))
    onset = 12345
    for k in (30, 78, 126, 174):
        f0 = FMIN * 2 ** (k / BPO)
        tt = t[: n - onset]
        note = sum(np.sin(2 * np.pi * h * f0 * tt) / h for h in range(1, 6) if h * f0 < 7000)
        y = np.zeros(n, np.float32)
        y[onset:] = 0.4 * note * np.exp(-3 * tt)
        cases.append((f"onset note, bin {k}", y))
    return cases


def edge_agreement() -> list[dict]:
    """Per edge case: r and the largest difference on the first and last frames, for
    ``PAPER_CQT`` (multirate) and the folded kernel."""
    rows = []
    for name, y in edge_cases():
        ref = log_magnitude(librosa_cqt(y)).T
        row = {"case": name}
        for label, params in (("multirate", None), ("folded", folded_params())):
            mine = ours([y], params)[0]
            edges = [0, len(ref) - 1]
            row[f"r_{label}"] = float(np.corrcoef(ref.ravel(), mine.ravel())[0, 1])
            row[f"edge_{label}"] = float(np.abs(ref[edges] - mine[edges]).max())
        rows.append(row)
    return rows


# --- main ---------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-clips", type=int, default=2000, help="clips for (b) and (c) (default 2000)")
    p.add_argument("--n-single", type=int, default=200,
                   help="clips for (a), librosa one call per clip (default 200)")
    p.add_argument("--duration", type=float, default=2.5, help="seconds per clip (default 2.5)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds, at least 3 (default 5)")
    p.add_argument("--batch-sizes", default="50,100,150,250",
                   help="librosa clips per call tried in the scan for (b) (default 50,100,150,250)")
    p.add_argument("--scan-clips", type=int, default=1000,
                   help="clips (all workers together) per scan trial for (b) (default 1000)")
    p.add_argument("--workers", type=int, default=None, help="processes for (b) (default: cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="small run: 300 clips, 30 single-call clips, batch sizes 50,150")
    p.add_argument("--profile", action="store_true", help="also print cProfile's top functions")
    p.add_argument("--baseline-rev", metavar="REV",
                   help="also time src/soundatlas/cqt.py as it was at git revision REV, in the "
                        "same rounds, and count the values a batch changes in each")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    args = p.parse_args(argv)
    if args.quick:  # shrink what was left at its default
        for name, small in (("n_clips", 300), ("n_single", 30), ("scan_clips", 300),
                            ("batch_sizes", "50,150")):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, small)
    if args.repeats < 3:
        p.error("--repeats must be at least 3 (medians of fewer repeats are not reported)")
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    facts = common.machine_facts()
    common.print_facts(facts)
    n_cores = facts["cores_usable"] or 1
    n_workers = args.workers or n_cores
    print(f"# workload: {args.n_clips} clips x {args.duration} s at {SR} Hz (seed {args.seed}); "
          f"(a) on {args.n_single} of them; {args.repeats} interleaved rounds; torch threads "
          f"{torch.get_num_threads()}")
    clips = common.make_clips(args.seed, range(args.n_clips), sr=SR, duration=args.duration)

    # (b) set-up: warm pools for each thread setting, then scan batch sizes
    configs = [(n_workers, 1), (n_workers, None)]
    if n_workers > 1:
        configs.append((1, None))  # one process, BLAS/OpenMP threads on every core
    pools = [LibrosaPool(n_workers=w, threads=t, seed=args.seed, n_clips=args.n_clips,
                         duration=args.duration) for w, t in configs]
    scan: dict[tuple[str, int], dict] = {}
    print(f"\n(b) scan: librosa batched, {args.scan_clips} clips per trial, best of 2 trials "
          "(configurations interleaved)")
    for _trial in range(2):  # best of two: the machine is noisy
        for bs in args.batch_sizes:
            for pool in pools:
                per_worker = min(min(pool.share), max(1, args.scan_clips // pool.n_workers))
                with common.OtherLoad(pool.pids) as load:
                    dt, n = pool.run(bs, per_worker)
                row = scan.setdefault((pool.name, bs), {
                    "config": pool.name, "batch_size": bs, "clips": n, "clips_per_s": 0.0,
                    "trials": [], "threads_env": pool.worker_env})
                row["trials"].append({"clips_per_s": n / dt, "other_cores": load.cores})
                if n / dt > row["clips_per_s"]:
                    row["clips_per_s"], row["other_cores"] = n / dt, load.cores
    scan = sorted(scan.values(), key=lambda r: (r["config"], r["batch_size"]))
    common.print_table(scan, [("config", "configuration", ""), ("batch_size", "batch", "d"),
                              ("clips", "clips", "d"), ("clips_per_s", "clips/s", ".1f"),
                              ("other_cores", "other load", ".2f")])
    best = max(scan, key=lambda r: r["clips_per_s"])
    best_pool = next(p for p in pools if p.name == best["config"])
    for pool in pools:
        if pool is not best_pool:
            pool.close()
    print(f"(b) = {best['config']}, batch {best['batch_size']} (fastest in the scan)")

    # warm up (a), (c), the folded kernel and the baseline revision in this process
    librosa_cqt(clips[0])
    ours(clips[: min(len(clips), 100)])
    ours(clips[: min(len(clips), 100)], folded_params())
    at_rev = cqt_at(args.baseline_rev) if args.baseline_rev else None
    if at_rev is not None:
        at_rev.cqt_batch(clips[: min(len(clips), 100)])

    rounds = []
    single = clips[: args.n_single]
    print("\nrounds (clips/s; 'other' = cores kept busy by other processes meanwhile)")
    for r in range(args.repeats):
        with common.OtherLoad(best_pool.pids) as load_b:
            tb, nb = best_pool.run(best["batch_size"])
        with common.OtherLoad() as load_c:
            tc, out = common.timed(lambda: ours(clips))
        assert len(out) == len(clips)
        del out
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # for information: how much the second thread buys
        try:
            with common.OtherLoad() as load_c1:
                tc1, _ = common.timed(lambda: ours(clips))
        finally:
            torch.set_num_threads(threads)
        with common.OtherLoad() as load_f:
            tf, _ = common.timed(lambda: ours(clips, folded_params()))
        with common.OtherLoad() as load_a:
            ta, _ = common.timed(lambda: [log_magnitude(librosa_cqt(y)) for y in single])
        rounds.append({"round": r + 1, "a": len(single) / ta, "b": nb / tb, "c": len(clips) / tc,
                       "c1": len(clips) / tc1, "folded": len(clips) / tf,
                       "other_a": load_a.cores, "other_b": load_b.cores,
                       "other_c": load_c.cores, "other_c1": load_c1.cores,
                       "other_folded": load_f.cores})
        if at_rev is not None:
            with common.OtherLoad() as load_r:
                tr, _ = common.timed(lambda: at_rev.cqt_batch(clips))
            torch.set_num_threads(1)
            try:
                with common.OtherLoad() as load_r1:
                    tr1, _ = common.timed(lambda: at_rev.cqt_batch(clips))
            finally:
                torch.set_num_threads(threads)
            rounds[-1].update({"rev": len(clips) / tr, "rev1": len(clips) / tr1,
                               "other_rev": load_r.cores, "other_rev1": load_r1.cores})
            print(f"  round {r + 1}: {args.baseline_rev} {rounds[-1]['rev']:.1f} (other "
                  f"{load_r.cores:.2f})  {args.baseline_rev}@1 thread {rounds[-1]['rev1']:.1f} "
                  f"(other {load_r1.cores:.2f})", flush=True)
        print(f"  round {r + 1}: a {rounds[-1]['a']:.1f} (other {load_a.cores:.2f})  "
              f"b {rounds[-1]['b']:.1f} (other {load_b.cores:.2f})  "
              f"c {rounds[-1]['c']:.1f} (other {load_c.cores:.2f})  "
              f"c@1 thread {rounds[-1]['c1']:.1f} (other {load_c1.cores:.2f})  "
              f"folded {rounds[-1]['folded']:.1f} (other {load_f.cores:.2f})", flush=True)
    best_pool.close()

    a = common.median(r["a"] for r in rounds)
    b = common.median(r["b"] for r in rounds)
    c = common.median(r["c"] for r in rounds)
    c1 = common.median(r["c1"] for r in rounds)
    cf = common.median(r["folded"] for r in rounds)
    ratio_cb = common.median(r["c"] / r["b"] for r in rounds)
    ratio_ca = common.median(r["c"] / r["a"] for r in rounds)
    rows = [
        {"name": "(a) librosa, 1 clip per call, 1 process", "clips": len(single), "cps": a,
         "ms": 1000 / a, "rel": a / b},
        {"name": f"(b) librosa, batch {best['batch_size']}, {best['config']}",
         "clips": args.n_clips, "cps": b, "ms": 1000 / b, "rel": 1.0},
        {"name": f"(c) soundatlas cqt_batch, 1 process x {torch.get_num_threads()} threads",
         "clips": args.n_clips, "cps": c, "ms": 1000 / c, "rel": c / b},
        {"name": "(info) soundatlas cqt_batch, 1 process x 1 thread", "clips": args.n_clips,
         "cps": c1, "ms": 1000 / c1, "rel": c1 / b},
        {"name": f"(info) the folded kernel, 1 process x {torch.get_num_threads()} threads",
         "clips": args.n_clips, "cps": cf, "ms": 1000 / cf, "rel": cf / b},
    ]
    vs_rev = None
    if at_rev is not None:
        for key, name in (("rev", f"{torch.get_num_threads()} threads"), ("rev1", "1 thread")):
            cps = common.median(r[key] for r in rounds)
            rows.append({"name": f"(info) cqt_batch at {args.baseline_rev}, 1 process x {name}",
                         "clips": args.n_clips, "cps": cps, "ms": 1000 / cps, "rel": cps / b})
        subset = clips[: min(len(clips), 100)]
        vs_rev = {"c_over_rev": common.median(r["c"] / r["rev"] for r in rounds),
                  "c1_over_rev1": common.median(r["c1"] / r["rev1"] for r in rounds),
                  "batch_changes": batch_changes(ours, subset),
                  "batch_changes_rev": batch_changes(at_rev.cqt_batch, subset),
                  "batch_changes_clips": len(subset), "rev": args.baseline_rev}
    print(f"\nCQT throughput, medians of {args.repeats} rounds ({args.duration} s clips, "
          f"compression included)")
    common.print_table(rows, [("name", "contender", ""), ("clips", "clips", "d"),
                              ("cps", "clips/s", ".1f"), ("ms", "ms/clip", ".3f"),
                              ("rel", "vs (b)", ".2f")])
    line_cb = common.goal_line("(c)/(b) ours vs librosa at its best", ratio_cb, GOAL_VS_BEST)
    line_ca = common.goal_line("(c)/(a) ours vs librosa per clip", ratio_ca, GOAL_VS_SINGLE)
    print(line_cb + "\n" + line_ca + "   (per-round ratios, median)")
    if vs_rev is not None:
        print(f"ours / {vs_rev['rev']}: {vs_rev['c_over_rev']:.2f}x with "
              f"{torch.get_num_threads()} threads, {vs_rev['c1_over_rev1']:.2f}x with 1 "
              f"(per-round ratios, median). Values that batching {vs_rev['batch_changes_clips']} "
              f"clips together changes against each alone: ours {vs_rev['batch_changes']}, "
              f"{vs_rev['rev']} {vs_rev['batch_changes_rev']}")

    check = agreement(clips, list(range(min(9, len(clips)))))
    check_folded = agreement(clips, list(range(min(9, len(clips)))), folded_params())
    print(f"\nagreement, ours vs librosa on {len(check['clips'])} clips "
          f"({', '.join(sorted(set(check['kinds'])))}): Pearson r of log(50|C|+1) min "
          f"{check['min_r']:.5f} (goal >= 0.995: {'met' if check['ok'] else 'MISSED'}); "
          f"same shape: {check['same_shape']}; max |diff| {check['max_abs_diff']:.3f} "
          f"(the folded kernel: min r {check_folded['min_r']:.5f}, max |diff| "
          f"{check_folded['max_abs_diff']:.3f})")
    edges = edge_agreement()
    print("agreement on the signals that show leakage (r over all frames; largest |diff| on the "
          "first and last frames):")
    common.print_table(edges, [("case", "signal", ""), ("r_multirate", "r multirate", ".5f"),
                               ("edge_multirate", "edge diff", ".3f"),
                               ("r_folded", "r folded", ".5f"),
                               ("edge_folded", "edge diff", ".3f")])
    worst = min(min(e["r_multirate"] for e in edges), check["min_r"])
    print(f"lowest r, multirate: {worst:.5f} "
          f"(goal >= 0.995: {'met' if worst >= 0.995 else 'MISSED'})")

    missed = ratio_cb < GOAL_VS_BEST or ratio_ca < GOAL_VS_SINGLE
    bd = breakdown(clips, args.repeats)
    stages = ", ".join(f"1/{a}->1/{b}" for a, b in bd["stages"])
    octaves = ", ".join(f"{o['bins'][0]}-{o['bins'][1] - 1} {o['method']}" for o in bd["octaves"])
    print(f"\nwhere our time goes{' (a goal was missed)' if missed else ''}: one chunk of "
          f"{bd['chunk_clips']} clips, FFT size N={bd['N']}, decimation stages {stages}, "
          f"octaves (bins) {octaves}, {bd['torch_threads']} thread(s)")
    total = bd["sum_of_steps_us_per_clip"]
    steps = [{"step": k, "us": v, "share": 100 * v / total}
             for k, v in bd["steps_us_per_clip"].items()]
    common.print_table(steps, [("step", "step", ""), ("us", "us/clip", ".1f"),
                               ("share", "% of steps", ".1f")])
    print(f"sum of steps {total:.1f} us/clip; cqt_batch on the same chunk "
          f"{bd['cqt_batch_on_chunk_us_per_clip']:.1f} us/clip; whole run (c) "
          f"{1e6 / c:.1f} us/clip")
    prof = profile_top(clips) if args.profile else None
    if prof:
        print("\n" + prof)

    common.write_json(args.json, {
        "benchmark": "cqt", "argv": sys.argv, "machine": facts, "args": vars(args),
        "scan_b": scan, "best_b": {k: best[k] for k in ("config", "batch_size", "clips_per_s")},
        "rounds": rounds,
        "median_clips_per_s": {"a": a, "b": b, "c": c, "c_one_thread": c1, "folded": cf},
        "ratios": {"c_over_b": ratio_cb, "c_over_a": ratio_ca,
                   "goal_c_over_b": GOAL_VS_BEST, "goal_c_over_a": GOAL_VS_SINGLE},
        "agreement": check, "agreement_folded": check_folded, "edge_agreement": edges,
        "breakdown": bd, "profile": prof, "against_baseline_rev": vs_rev,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
