"""Throughput of the paper CQT: ours (``soundatlas.cqt.cqt_batch``) against librosa, same run.

Workload: N clips (default 2,000) of 2.5 s at 16 kHz, synthetic and seeded (white noise, random
sums of sinusoids, decaying harmonic tones). Contenders, each timed ``--repeats`` times in
interleaved rounds (medians reported):

  (a) librosa.cqt called once per clip, one process (on a subset, ``--n-single`` clips);
  (b) librosa at its best: many clips per call (2-D input), one process per core, best of a scan
      over batch sizes and thread settings (workers warmed up first; start-up, imports and clip
      generation are not timed; results stay in the workers);
  (c) ours: ``cqt_batch(list_of_clips)`` in this process, torch using every core, compression
      included.

Then: the numerical agreement of (c) with librosa, the ratios (c)/(b) and (c)/(a) against the
goals, and a breakdown of where our time goes.

    .venv/bin/python benchmarks/bench_cqt.py [--quick] [--json benchmarks/results-cqt.json]
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

def ours(clips: list[np.ndarray]) -> list[np.ndarray]:
    from soundatlas.cqt import cqt_batch

    return cqt_batch(clips)


def breakdown(clips: list[np.ndarray], repeats: int) -> dict:
    """Time each step of our pipeline on one chunk, as ``cqt_batch`` runs it (manual timers).

    Mirrors ``soundatlas.cqt._cqt_same_size`` plus the per-clip tail of ``cqt_batch`` (trim,
    compress, to numpy). Returns per-step medians in microseconds per clip.
    """
    import torch
    import warnings

    from soundatlas import cqt as cqt_mod

    params = cqt_mod.PAPER_CQT
    M = cqt_mod._frames_for(params, len(clips[0]))
    kernel = cqt_mod._kernel(params, M)
    chunk = max(1, (1 << 22) // kernel.N)
    ys = clips[:chunk]
    B = len(ys)
    n_keep = cqt_mod.n_frames(len(ys[0]), hop_length=params.hop_length)
    steps: dict[str, list[float]] = {}

    def tick(name, fn):
        dt, out = common.timed(fn)
        steps.setdefault(name, []).append(dt)
        return out

    def fill():
        batch = torch.zeros(B, kernel.N, dtype=torch.float32)
        for b, y in enumerate(ys):
            batch[b, : len(y)] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        return batch

    for _ in range(repeats + 1):  # the first round warms up
        batch = tick("copy into padded batch", fill)
        bt = tick("transpose real signal", lambda: batch.T.contiguous())
        Y = tick("rfft", lambda: torch.fft.rfft(bt, dim=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            folded = tick("sparse fold product", lambda: kernel.fold @ Y)
        C = tick("ifft (size M)", lambda: torch.fft.ifft(
            folded.view(params.n_bins, kernel.M, B), dim=1, norm="forward"))
        mag = tick("abs + permute", lambda: C.abs().permute(2, 1, 0).contiguous())
        tick("trim + compress + numpy (per clip)", lambda: [
            cqt_mod.compress(m[:n_keep], compression=params.compression).numpy() for m in mag])
    total_end_to_end = []
    for _ in range(repeats):
        dt, _ = common.timed(lambda: cqt_mod.cqt_batch(ys))
        total_end_to_end.append(dt)
    per_clip_us = {k: common.median(v[1:]) / B * 1e6 for k, v in steps.items()}
    return {
        "chunk_clips": B, "M": M, "N": kernel.N, "nnz": kernel.nnz,
        "fold_shape": list(kernel.fold.shape), "torch_threads": torch.get_num_threads(),
        "steps_us_per_clip": per_clip_us,
        "sum_of_steps_us_per_clip": sum(per_clip_us.values()),
        "cqt_batch_on_chunk_us_per_clip": common.median(total_end_to_end) / B * 1e6,
    }


def layout_what_if(clips: list[np.ndarray], repeats: int) -> dict:
    """Same maths, other memory layout: is the transposed layout of ``_cqt_same_size`` paying off?

    Times, on one chunk, the current order (pad, transpose the real signal, rfft along dim 0,
    ``fold @ Y``) against the row-major order (pad, rfft along dim 1, ``Y @ fold.T`` with the
    transposed fold as CSR), both up to the folded spectrum, plus the max difference. Benchmark
    code only; nothing here is used by soundatlas.
    """
    import warnings

    import torch

    from soundatlas import cqt as cqt_mod

    params = cqt_mod.PAPER_CQT
    M = cqt_mod._frames_for(params, len(clips[0]))
    kernel = cqt_mod._kernel(params, M)
    ys = clips[: max(1, (1 << 22) // kernel.N)]
    B = len(ys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sparse invariant checks / beta warnings
        coo = kernel.fold.to_sparse_coo().coalesce()
        fold_t = torch.sparse_coo_tensor(coo.indices().flip(0), coo.values(),
                                         (coo.shape[1], coo.shape[0]),
                                         check_invariants=True).coalesce().to_sparse_csr()
    batch = torch.zeros(B, kernel.N, dtype=torch.float32)
    for b, y in enumerate(ys):
        batch[b, : len(y)] = torch.from_numpy(y)

    def current():
        return kernel.fold @ torch.fft.rfft(batch.T.contiguous(), dim=0)  # (bins*M, B)

    def row_major():
        return torch.fft.rfft(batch, dim=1) @ fold_t  # (B, bins*M)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        diff = float((current().T - row_major()).abs().max())
        t_cur, t_row = [], []
        for r in range(2 * repeats + 1):
            first, second = (current, row_major) if r % 2 else (row_major, current)
            d1, _ = common.timed(first)
            d2, _ = common.timed(second)
            if r:  # round 0 warms up
                (t_cur if first is current else t_row).append(d1)
                (t_row if first is current else t_cur).append(d2)
    return {"chunk_clips": B, "current_us_per_clip": common.median(t_cur) / B * 1e6,
            "row_major_us_per_clip": common.median(t_row) / B * 1e6,
            "speedup_of_these_steps": common.median(t_cur) / common.median(t_row),
            "max_abs_diff": diff}


def profile_top(clips: list[np.ndarray], n_rows: int = 12) -> str:
    """torch.profiler's table of the top operators for one chunk (self CPU time)."""
    import torch.profiler

    from soundatlas import cqt as cqt_mod

    M = cqt_mod._frames_for(cqt_mod.PAPER_CQT, len(clips[0]))
    chunk = max(1, (1 << 22) // cqt_mod._kernel(cqt_mod.PAPER_CQT, M).N)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        cqt_mod.cqt_batch(clips[:chunk])
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=n_rows)


# --- agreement ----------------------------------------------------------------------------------

def agreement(clips: list[np.ndarray], indices: list[int]) -> dict:
    """Pearson r of log(50|C|+1), ours vs librosa (one batched librosa call), per clip."""
    ref = log_magnitude(librosa_cqt(np.stack([clips[i] for i in indices])))  # (n, bins, frames)
    mine = ours([clips[i] for i in indices])  # (frames, bins) each
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
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's top ops")
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

    # warm up (a) and (c) in this process
    librosa_cqt(clips[0])
    ours(clips[: min(len(clips), 100)])

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
        with common.OtherLoad() as load_a:
            ta, _ = common.timed(lambda: [log_magnitude(librosa_cqt(y)) for y in single])
        rounds.append({"round": r + 1, "a": len(single) / ta, "b": nb / tb, "c": len(clips) / tc,
                       "c1": len(clips) / tc1, "other_a": load_a.cores, "other_b": load_b.cores,
                       "other_c": load_c.cores, "other_c1": load_c1.cores})
        print(f"  round {r + 1}: a {rounds[-1]['a']:.1f} (other {load_a.cores:.2f})  "
              f"b {rounds[-1]['b']:.1f} (other {load_b.cores:.2f})  "
              f"c {rounds[-1]['c']:.1f} (other {load_c.cores:.2f})  "
              f"c@1 thread {rounds[-1]['c1']:.1f} (other {load_c1.cores:.2f})", flush=True)
    best_pool.close()

    a = common.median(r["a"] for r in rounds)
    b = common.median(r["b"] for r in rounds)
    c = common.median(r["c"] for r in rounds)
    c1 = common.median(r["c1"] for r in rounds)
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
    ]
    print(f"\nCQT throughput, medians of {args.repeats} rounds ({args.duration} s clips, "
          f"compression included)")
    common.print_table(rows, [("name", "contender", ""), ("clips", "clips", "d"),
                              ("cps", "clips/s", ".1f"), ("ms", "ms/clip", ".3f"),
                              ("rel", "vs (b)", ".2f")])
    line_cb = common.goal_line("(c)/(b) ours vs librosa at its best", ratio_cb, GOAL_VS_BEST)
    line_ca = common.goal_line("(c)/(a) ours vs librosa per clip", ratio_ca, GOAL_VS_SINGLE)
    print(line_cb + "\n" + line_ca + "   (per-round ratios, median)")

    check = agreement(clips, list(range(min(9, len(clips)))))
    print(f"\nagreement, ours vs librosa on {len(check['clips'])} clips "
          f"({', '.join(sorted(set(check['kinds'])))}): Pearson r of log(50|C|+1) min "
          f"{check['min_r']:.5f} (goal >= 0.995: {'met' if check['ok'] else 'MISSED'}); "
          f"same shape: {check['same_shape']}; max |diff| {check['max_abs_diff']:.3f}")

    missed = ratio_cb < GOAL_VS_BEST or ratio_ca < GOAL_VS_SINGLE
    bd = breakdown(clips, args.repeats)
    print(f"\nwhere our time goes{' (a goal was missed)' if missed else ''}: one chunk of "
          f"{bd['chunk_clips']} clips, FFT size N={bd['N']} (M={bd['M']} frames), fold "
          f"{bd['fold_shape'][0]}x{bd['fold_shape'][1]} with {bd['nnz']} non-zeros, "
          f"{bd['torch_threads']} threads")
    total = bd["sum_of_steps_us_per_clip"]
    steps = [{"step": k, "us": v, "share": 100 * v / total}
             for k, v in bd["steps_us_per_clip"].items()]
    common.print_table(steps, [("step", "step", ""), ("us", "us/clip", ".1f"),
                               ("share", "% of steps", ".1f")])
    print(f"sum of steps {total:.1f} us/clip; cqt_batch on the same chunk "
          f"{bd['cqt_batch_on_chunk_us_per_clip']:.1f} us/clip; whole run (c) "
          f"{1e6 / c:.1f} us/clip")
    wi = layout_what_if(clips, args.repeats)
    print(f"what-if (benchmark code, same maths): pad -> rfft -> fold product for one chunk takes "
          f"{wi['current_us_per_clip']:.1f} us/clip as cqt_batch lays it out (transpose, rfft "
          f"along dim 0, fold @ Y) and {wi['row_major_us_per_clip']:.1f} us/clip row-major "
          f"(rfft along dim 1, Y @ fold.T as CSR): {wi['speedup_of_these_steps']:.2f}x; "
          f"max |diff| {wi['max_abs_diff']:.2g}")
    prof = profile_top(clips) if args.profile else None
    if prof:
        print("\n" + prof)

    common.write_json(args.json, {
        "benchmark": "cqt", "argv": sys.argv, "machine": facts, "args": vars(args),
        "scan_b": scan, "best_b": {k: best[k] for k in ("config", "batch_size", "clips_per_s")},
        "rounds": rounds,
        "median_clips_per_s": {"a": a, "b": b, "c": c, "c_one_thread": c1},
        "ratios": {"c_over_b": ratio_cb, "c_over_a": ratio_ca,
                   "goal_c_over_b": GOAL_VS_BEST, "goal_c_over_a": GOAL_VS_SINGLE},
        "agreement": check, "breakdown": bd, "layout_what_if": wi, "profile": prof,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
