"""Indexing from a cold page cache: today's code against an earlier commit's, same run.

Where a read takes milliseconds (a network block device, a NAS, a spinning disk), indexing
waits for the disk, not for the CQT: each worker hashes and decodes its batch's files one
after the other, so it has one read outstanding at a time. ``pipeline.read_ahead`` asks the
kernel for every file of a batch at once. This script measures what that changes where it
matters: with the page cache emptied before every run.

Each run indexes ``--files`` audio files of ``--library`` that no earlier run read: run ``i``
takes the ``i``-th slice of the library's files shuffled with ``--seed`` (so that every slice
has the library's mix of kinds and lengths; a second run wants another seed), hard-linked into ``--work``; the work folder must
be on the library's file system, since a copy would be fresh in every cache. Fresh files
matter beyond the page cache: a virtual machine's disk has a cache of its own on the host,
which ``drop_caches`` does not reach (a second read of the same files took 0.2 ms a read
against 2.6 ms the first time). The rounds alternate the contenders' order, each run into a
fresh atlas, in a fresh process:

- ``baseline``: ``--baseline`` (a git ref; default ``9e25c56``, the commit before read-ahead),
  its ``src`` exported with ``git archive``;
- ``ours``: this checkout's ``src``.

Before each run: ``sync`` and ``echo 3 > /proc/sys/vm/drop_caches`` where permitted (root),
then the contender's imports once (Python, torch, librosa and soundatlas read from disk again
would otherwise count in the first seconds of the run). Reported per run: wall time, files/s,
the block device's reads and their mean time (a mean per request: read-ahead makes requests of
other sizes, so compare files/s, not these); then the median files/s of each and the ratio. The
library needs ``2 x --repeats x --files`` files.

    sudo .venv/bin/python benchmarks/bench_read_ahead.py --library LIB [--files 10000]
        [--repeats 3] [--seed 0] [--work DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

AUDIO = {".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3"}


def audio_files(library: Path) -> list[Path]:
    """The library's audio files, sorted by path."""
    out = []
    for root, dirs, files in os.walk(library):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root, f) for f in sorted(files) if os.path.splitext(f)[1].lower() in AUDIO]
    return out


def linked(files: list[Path], library: Path, out: Path) -> Path:
    """``files`` hard-linked under ``out``, keeping their paths in ``library``."""
    shutil.rmtree(out, ignore_errors=True)
    for src in files:
        dst = out / src.relative_to(library)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError as exc:
            sys.exit(f"cannot hard-link {src} into {out} ({exc}): put --work on the library's "
                     f"file system (a copy would be fresh in every cache)")
    return out


def device_of(path: Path) -> str | None:
    """The /proc/diskstats name of the block device holding ``path`` (its whole disk)."""
    dev = os.stat(path).st_dev
    sysdir = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not sysdir.exists():
        return None
    real = sysdir.resolve()
    # a partition's parent folder is its disk; a whole disk's is /sys/devices/...
    return real.parent.name if (real / "partition").exists() else real.name


def disk_reads(device: str | None) -> tuple[int, int]:
    """(reads completed, milliseconds spent reading) of ``device`` so far."""
    if device is None:
        return 0, 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == device:
            return int(f[3]), int(f[6])
    return 0, 0


WARM_IMPORTS = "import torch, librosa, soundatlas.indexing, soundatlas.cli"


def index_once(src: Path, library: Path, atlas: Path, device: str | None) -> dict:
    shutil.rmtree(atlas, ignore_errors=True)
    dropped = common.drop_caches()
    subprocess.run([sys.executable, "-c", WARM_IMPORTS], check=True,
                   env={**os.environ, "PYTHONPATH": str(src)})
    r0, ms0 = disk_reads(device)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "soundatlas", "index", str(library), "--atlas",
                    str(atlas), "-q"], check=True, env={**os.environ, "PYTHONPATH": str(src)},
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1, ms1 = disk_reads(device)
    reads = r1 - r0
    return {"wall_s": wall, "reads": reads, "ms_per_read": (ms1 - ms0) / reads if reads else None,
            "cache_dropped": dropped}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", type=Path, required=True, help="a folder of audio files")
    ap.add_argument("--files", type=int, default=10000,
                    help="files each run indexes (default 10000)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--seed", type=int, default=0,
                    help="the shuffle's seed: another seed, other slices (for a second run)")
    ap.add_argument("--baseline", default="9e25c56", help="the git ref to compare against")
    ap.add_argument("--work", type=Path,
                    default=Path(tempfile.gettempdir()) / "soundatlas-bench-read-ahead")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    args = ap.parse_args()
    if not args.library.is_dir():
        sys.exit(f"--library {args.library} is not a folder")
    facts = common.machine_facts()
    common.print_facts(facts)
    args.work.mkdir(parents=True, exist_ok=True)
    files = audio_files(args.library)
    random.Random(args.seed).shuffle(files)
    need = 2 * args.repeats * args.files
    if len(files) < need:
        sys.exit(f"--library has {len(files)} audio files; {args.repeats} rounds of two runs of "
                 f"{args.files} fresh files need {need}")
    base_src, sha = common.baseline_src(args.work, args.baseline)
    contenders = {"baseline": base_src, "ours": common.REPO / "src"}
    device = device_of(args.work)
    if device is None:
        print("the work folder's file system has no block device of its own (btrfs, overlayfs, "
              "NFS, ZFS, tmpfs): disk reads are not reported", flush=True)
    print(f"{len(files)} files in {args.library}; each run indexes {args.files} of them that no "
          f"run read before; device {device}; baseline {sha}", flush=True)
    runs: dict[str, list[dict]] = {k: [] for k in contenders}
    n = args.files
    for r in range(args.repeats):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for j, name in enumerate(order):
            i = 2 * r + j
            lib = linked(files[i * n : (i + 1) * n], args.library, args.work / "lib")
            res = index_once(contenders[name], lib, args.work / "atlas", device)
            res["files_per_s"] = n / res["wall_s"]
            res["slice"] = i
            runs[name].append(res)
            lat = f"{res['ms_per_read']:.1f} ms" if res["ms_per_read"] is not None else "?"
            print(f"round {r + 1} {name:8s} slice {i}  {res['wall_s']:7.1f} s  "
                  f"{res['files_per_s']:7.1f} files/s  {res['reads']} reads, {lat} each"
                  + ("" if res["cache_dropped"] else "  (page cache not emptied: not root)"),
                  flush=True)
    shutil.rmtree(args.work / "lib", ignore_errors=True)
    med = {k: common.median([x["files_per_s"] for x in v]) for k, v in runs.items()}
    ratio = med["ours"] / med["baseline"]
    print(f"\nmedian files/s: baseline {med['baseline']:.1f}, ours {med['ours']:.1f}: "
          f"{ratio:.2f}x", flush=True)
    common.write_json(args.json, {"facts": facts, "files": n, "baseline": sha, "runs": runs,
                                  "median_files_per_s": med, "ratio": ratio})


if __name__ == "__main__":
    main()
