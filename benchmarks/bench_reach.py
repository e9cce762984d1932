"""The reach of the labelled samples (``suggest.reach``: how far they lie from their nearest
others), which the page computes while a musician waits for a suggestion's far mark:
measured on a sample of the voters (``suggest.reach_sample_size``) against the baseline of every
voter, in the same run. Printed: the median seconds of each, their ratio, and the sampled reach
over the exact one (a percentile of a sample: near 1 either side).

    python benchmarks/bench_reach.py [--sizes 20000 50000] [--dims 268] [--repeats 3]
        [--exact-up-to 50000]

The vectors are random normal, of the similarity space's size (256 hidden units and a 12-value
pitch profile). Above ``--exact-up-to`` voters the baseline is not run (it grows with the square
of the voters).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import soundatlas.suggest as suggest  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median seconds, the value) of ``fn()`` run ``repeats`` times."""
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), value


def exact_reach(voters: np.ndarray) -> float:
    """The baseline: every voter searched against all (the sample as large as the voters)."""
    before = (suggest.REACH_SAMPLE, suggest.REACH_PAIRS)
    suggest.REACH_SAMPLE, suggest.REACH_PAIRS = len(voters), len(voters) ** 2
    try:
        return suggest.reach(voters)
    finally:
        suggest.REACH_SAMPLE, suggest.REACH_PAIRS = before


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 50_000, 200_000])
    ap.add_argument("--dims", type=int, default=268)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--exact-up-to", type=int, default=50_000)
    args = ap.parse_args(argv)
    common.print_facts(common.machine_facts())
    print(f"{'voters':>9s} {'measured':>9s} {'sampled s':>10s} {'every voter s':>14s} "
          f"{'ratio':>7s} {'sampled / exact reach':>22s}")
    for n in args.sizes:
        voters = np.random.default_rng(n).normal(size=(n, args.dims)).astype(np.float32)
        fast, r = timed(lambda v=voters: suggest.reach(v), args.repeats)
        line = f"{n:9d} {suggest.reach_sample_size(n):9d} {fast:10.2f} "
        if n <= args.exact_up_to:
            slow, exact = timed(lambda v=voters: exact_reach(v), args.repeats)
            line += f"{slow:14.2f} {slow / fast:6.1f}x {r / exact:22.4f}"
        else:
            line += f"{'-':>14s} {'-':>7s} {'-':>22s}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
