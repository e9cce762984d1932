"""What leaving alone the files that failed before saves an ``index`` run that finds nothing new,
against the indexer of an earlier commit (which decoded every failed file again) in the same run.

One library, generated once into ``--work`` (seeded, so no two files share bytes):

  ``--good`` (default 1,000) mono 16-bit 44.1 kHz one-shots of 1 s, and ``--broken`` (default
  300) files that cannot be indexed, in three kinds of a third each: float WAVs of 30 s whose
  last second is NaN (a render that blew up: read for 29 s before it fails), WAVs whose header
  was overwritten with zeros (not audio), and WAVs of one sample (too short).

Each contender makes its own atlas with a first ``index`` (not timed); each round then times
an ``index`` with nothing changed: ours reads none of the broken files, the baseline decodes each
again. Both run as ``soundatlas index`` of this checkout's ``src`` or ``--baseline``'s
(exported with ``git archive``), in a fresh process, with ``--jobs`` workers; the two
alternate, ``--repeats`` rounds, and the medians and their ratio are printed. A third row runs
ours with ``--retry-failed`` (what the baseline did, in this code). The page cache is warm.

    python benchmarks/bench_failed.py [--work DIR] [--repeats 5] [--jobs 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

import common
from bench_rehash import index, made_once, soundatlas

BASELINE = "ddfbf7e"  # before failures of a file's bytes were kept from one run to the next


def library(work: Path, n_good: int, n_broken: int) -> Path:
    def write(lib: Path) -> None:
        sr = 44100
        t = np.arange(sr) / sr
        (lib / "good").mkdir()
        for i in range(n_good):
            rng = np.random.default_rng(20_000 + i)
            f0 = 55.0 * 2 ** (rng.uniform(0, 60) / 12)
            y = np.exp(-4 * t) * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(lib / "good" / f"hit_{i:05d}.wav", (0.5 * y).astype(np.float32), sr,
                     subtype="PCM_16")
        (lib / "broken").mkdir()
        for i in range(n_broken):
            rng = np.random.default_rng(30_000 + i)
            path = lib / "broken" / f"bad_{i:05d}.wav"
            kind = i % 3
            if kind == 0:  # 30 s of float noise, NaN in its last second
                y = (0.1 * rng.standard_normal(30 * sr)).astype(np.float32)
                y[29 * sr:] = np.nan
                sf.write(path, y, sr, subtype="FLOAT")
            elif kind == 1:  # a good file's header zeroed
                y = (0.1 * rng.standard_normal(sr)).astype(np.float32)
                sf.write(path, y, sr, subtype="PCM_16")
                data = bytearray(path.read_bytes())
                data[:44] = bytes(44)
                path.write_bytes(bytes(data))
            else:  # one sample
                sf.write(path, np.float32([0.1 * rng.standard_normal()]), sr, subtype="PCM_16")

    return made_once(work / f"failed-{n_good}-{n_broken}", write)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) /
                    "soundatlas-bench-failed", help="the library, atlases and the baseline's src")
    ap.add_argument("--good", type=int, default=1000)
    ap.add_argument("--broken", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5, help="rounds of each (default 5)")
    ap.add_argument("--jobs", type=int, default=2, help="index workers (default 2)")
    ap.add_argument("--baseline", default=BASELINE,
                    help=f"the commit whose indexer is the baseline (default {BASELINE})")
    ap.add_argument("--json", help="also write every figure here")
    args = ap.parse_args()

    facts, servers, sha = common.ours_and_baseline(args.work, args.baseline)
    lib = library(args.work, args.good, args.broken)
    print(f"{args.good} one-shots and {args.broken} broken files; {args.jobs} workers; "
          f"baseline {sha}", flush=True)
    retry = {"retry": False}
    atlases = {}
    for name, src in servers.items():  # each its own: the baseline cannot open schema 10
        atlases[src] = args.work / f"atlas-{name}"
        shutil.rmtree(atlases[src], ignore_errors=True)
        first = index(src, lib, atlases[src], args.jobs)["summary"]
        assert (first["n_indexed"], first["n_failed"]) == (args.good, args.broken), first

    def run(src: Path, r: int) -> dict:
        atlas = atlases[src]
        extra = ["--retry-failed"] if retry["retry"] else []
        res = soundatlas(src, "index", lib, "--atlas", atlas, "--jobs", args.jobs, *extra)
        s = res["summary"]
        assert (s["n_indexed"], s["n_failed"]) == (0, args.broken), s
        return {"seconds": res["seconds"], "left_alone": s.get("n_failed_unchanged", 0)}

    show = (lambda name, r, res: print(f"  {name:8s} run {r + 1}: " + ", ".join(
        f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()),
        flush=True))
    print("\nindex again with nothing changed")
    runs = common.servers_alternated(servers, args.repeats, run, show=show)
    retry["retry"] = True
    print("\nthe same, ours with --retry-failed")
    retried = common.servers_alternated({"ours": servers["ours"]}, args.repeats, run, show=show)
    print(f"\nmedians of {args.repeats} runs; baseline = the indexer at {sha}")
    medians = common.ours_against_baseline(runs, (("seconds", "wall"),))
    again = common.median(x["seconds"] for x in retried["ours"])
    print(f"  ours --retry-failed {again:9.2f}  against baseline  "
          f"{again / medians['baseline']['seconds']:5.2f}")
    common.write_json(args.json, {"facts": facts, "baseline": sha, "runs": runs,
                                  "retried": retried, "medians": medians,
                                  "retry_failed_median": again})


if __name__ == "__main__":
    main()
