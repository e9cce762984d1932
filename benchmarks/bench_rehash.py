"""What hashing every file whole costs and what keeping touched files saves, against the
indexer of an earlier commit in the same run.

Two libraries, generated once into ``--work`` (seeded noise and tones, so no two files share
bytes):

  long:   ``--long-files`` (default 24) stereo 24-bit 48 kHz WAVs of ``--long-seconds`` (default
          90 s, 25.9 MB each). A first ``index`` of a new atlas: ours hashes each file whole, the
          baseline hashed size, first and last 2 MiB. Both decode the first 30 s.
  touched: ``--short-files`` (default 1,500) mono 16-bit 44.1 kHz one-shots of 1 s, indexed
          and embedded with the shipped model once (not timed), then every file's date moved on
          (``os.utime``, as ``touch`` or a copy that drops dates does). Timed: the ``index``
          that follows, and the ``embed`` that brings the map back: ours hashes each file and
          keeps its record and points (nothing to embed), the baseline analysed every file
          again under new sample ids, whose points ``embed`` computes again.

Each run is ``soundatlas index`` of this checkout's ``src`` or ``--baseline``'s (exported with
``git archive``), in a fresh process, with ``--jobs`` workers; the two alternate, ``--repeats``
rounds, and the medians and their ratio are printed. The page cache is warm (the files were
just written or read; this machine's cache cannot be emptied), so the long-file figures are
the hash's CPU cost, not a disk's: on a cold disk, reading the whole file is what ours adds.

    python benchmarks/bench_rehash.py [--work DIR] [--repeats 3] [--jobs 2] [--skip-long]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import common

BASELINE = "efeac6c"  # before content hashes read the whole file and touched files were kept


def made_once(lib: Path, write) -> Path:
    """``lib``, written by ``write(lib)`` unless a run before finished writing it."""
    if not (lib / ".done").is_file():
        shutil.rmtree(lib, ignore_errors=True)
        lib.mkdir(parents=True)
        write(lib)
        (lib / ".done").touch()
    return lib


def long_library(work: Path, n: int, seconds: float) -> Path:
    def write(lib: Path) -> None:
        sr = 48000
        t = np.arange(int(sr * seconds)) / sr
        for i in range(n):
            rng = np.random.default_rng(i)
            y = 0.3 * np.sin(2 * np.pi * (55 + 20 * i) * t) + 0.05 * rng.standard_normal(t.size)
            stereo = np.stack([y, np.roll(y, 7)], axis=1).astype(np.float32)
            sf.write(lib / f"stem_{i:03d}.wav", stereo, sr, subtype="PCM_24")

    return made_once(work / f"long-{n}x{seconds:g}", write)


def short_library(work: Path, n: int) -> Path:
    def write(lib: Path) -> None:
        sr = 44100
        t = np.arange(sr) / sr
        for i in range(n):
            rng = np.random.default_rng(10_000 + i)
            f0 = 55.0 * 2 ** (rng.uniform(0, 60) / 12)
            y = np.exp(-4 * t) * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(t.size)
            folder = lib / f"kit{i % 20:02d}"
            folder.mkdir(exist_ok=True)
            sf.write(folder / f"hit_{i:05d}.wav", (0.5 * y).astype(np.float32), sr,
                     subtype="PCM_16")

    return made_once(work / f"short-{n}", write)


def soundatlas(src: Path, *args) -> dict:
    """``soundatlas ARGS --json -q`` of ``src`` in a fresh process: seconds and its JSON."""
    env = dict(os.environ, PYTHONPATH=str(src))
    start = time.perf_counter()
    out = subprocess.run([*common.python_cmd(), "-m", "soundatlas", *map(str, args), "--json",
                          "-q"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"soundatlas {args[0]} with {src} failed:\n{out.stderr[-3000:]}")
    return {"seconds": seconds, "summary": json.loads(out.stdout)}


def index(src: Path, lib: Path, atlas: Path, jobs: int) -> dict:
    return soundatlas(src, "index", lib, "--atlas", atlas, "--jobs", jobs)


def touch_all(lib: Path, step: int) -> int:
    n = 0
    now = time.time_ns() + step * 10**9
    for root, _dirs, files in os.walk(lib):
        for name in files:
            if name.endswith(".wav"):
                os.utime(os.path.join(root, name), ns=(now, now))
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) /
                    "soundatlas-bench-rehash", help="libraries, atlases and the baseline's src")
    ap.add_argument("--long-files", type=int, default=24)
    ap.add_argument("--long-seconds", type=float, default=90.0)
    ap.add_argument("--short-files", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of each (default 3)")
    ap.add_argument("--jobs", type=int, default=2, help="index workers (default 2)")
    ap.add_argument("--baseline", default=BASELINE,
                    help=f"the commit whose indexer is the baseline (default {BASELINE})")
    ap.add_argument("--skip-long", action="store_true", help="only the touched library")
    ap.add_argument("--json", help="also write every figure here")
    args = ap.parse_args()

    facts, servers, sha = common.ours_and_baseline(args.work, args.baseline)
    long_lib = long_library(args.work, args.long_files, args.long_seconds)
    short_lib = short_library(args.work, args.short_files)
    size_mb = sum(f.stat().st_size for f in long_lib.glob("*.wav")) / 1e6
    print(f"long: {args.long_files} files, {size_mb:.0f} MB; touched: {args.short_files} "
          f"one-shots; {args.jobs} workers; baseline {sha}", flush=True)

    def run_long(src: Path, r: int) -> dict:
        atlas = args.work / "atlas-long"
        shutil.rmtree(atlas, ignore_errors=True)
        res = index(src, long_lib, atlas, args.jobs)
        assert res["summary"]["n_indexed"] == args.long_files, res["summary"]
        return {"seconds": res["seconds"], "mb_per_s": size_mb / res["seconds"]}

    step = [0]

    def run_touched(src: Path, r: int) -> dict:
        atlas = args.work / "atlas-short"
        shutil.rmtree(atlas, ignore_errors=True)
        first = index(src, short_lib, atlas, args.jobs)["summary"]
        assert first["n_indexed"] == args.short_files, first
        soundatlas(src, "embed", "--atlas", atlas)
        step[0] += 1
        touch_all(short_lib, step[0])
        res = index(src, short_lib, atlas, args.jobs)
        emb = soundatlas(src, "embed", "--atlas", atlas)
        s = res["summary"]
        return {"seconds": res["seconds"] + emb["seconds"], "index_s": res["seconds"],
                "embed_s": emb["seconds"], "analysed": s["n_indexed"],
                "kept": s.get("n_touched", 0)}

    show = (lambda name, r, res: print(f"  {name:8s} run {r + 1}: " + ", ".join(
        f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()),
        flush=True))
    long_runs = {}
    if not args.skip_long:
        print("\nfirst index of the long files")
        long_runs = common.servers_alternated(servers, args.repeats, run_long, show=show)
    print("\nindex and embed after every one-shot's date moved on")
    touched_runs = common.servers_alternated(servers, args.repeats, run_touched, show=show)
    print(f"\nmedians of {args.repeats} runs; baseline = the indexer at {sha}")
    long_medians = {}
    if long_runs:
        print("first index of long files:")
        long_medians = common.ours_against_baseline(long_runs, (("seconds", "wall"),
                                                                ("mb_per_s", "MB/s")))
    print("index and embed after touching every one-shot:")
    touched_medians = common.ours_against_baseline(touched_runs, (("seconds", "wall, both"),
                                                                  ("index_s", "index"),
                                                                  ("embed_s", "embed")))
    common.write_json(args.json, {"facts": facts, "baseline": sha, "long": long_runs,
                                  "touched": touched_runs, "long_medians": long_medians,
                                  "touched_medians": touched_medians})


if __name__ == "__main__":
    main()
