"""The fuzzing properties of tests/test_fuzz.py with many examples each (issue 16 §1).

    python benchmarks/bench_fuzz.py [--examples 1000] [--seed 0]

Runs pytest on tests/test_fuzz.py with SOUNDATLAS_FUZZ_EXAMPLES set and Hypothesis's
statistics on, and prints how many inputs each property tried, how long it took and whether
any failed (a failure prints the smallest input that breaks it, as pytest shows it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    env = {**os.environ, "SOUNDATLAS_FUZZ_EXAMPLES": str(args.examples), "CI": "1"}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--hypothesis-show-statistics", f"--hypothesis-seed={args.seed}",
                          str(ROOT / "tests" / "test_fuzz.py")],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    tried = 0
    for block in re.split(r"\n(?=tests/test_fuzz\.py::)", out.stdout):
        name = re.match(r"tests/test_fuzz\.py::(\S+):", block)
        if not name:
            continue
        passing = failing = invalid = 0
        for p, f, i in re.findall(r"(\d+) passing, (\d+) failing, and (\d+) invalid", block):
            passing, failing, invalid = passing + int(p), failing + int(f), invalid + int(i)
        tried += passing + failing
        print(f"{name[1]:70s} {passing:>6} passing {failing:>3} failing {invalid:>5} invalid")
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]
    print(f"# {tried} inputs tried in {wall:.0f} s; pytest: {summary}")
    if out.returncode:
        print(out.stdout[-6000:])
    return out.returncode


if __name__ == "__main__":
    raise SystemExit(main())
