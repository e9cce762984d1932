"""SIGKILL at many random moments of `index`, `embed`, `train` and `adapt` (issue 16 §3).

    python benchmarks/bench_kill.py WORK [--moments 20] [--seed 0] [--commands index,embed,...]

A small library is rendered into WORK once (FluidSynth, three classes). Each command is first
run whole on a copy of the atlas it starts from, and timed; then, for each of ``--moments``
moments drawn uniformly over that time (seeded), the same command is started on a fresh copy,
killed with SIGKILL at that moment, and run again (``--resume`` for train and adapt) to the end.
The final atlas is compared with the uninterrupted one: the samples and their features
(identical), the map (within 1e-5), the trained or adapted model's weights (identical), and
``PRAGMA integrity_check`` and ``soundatlas check`` must both be clean. The suite tests a few
chosen moments (tests/test_check.py, tests/test_index.py, tests/test_train.py,
tests/test_adapt.py); this script tries many.

Prints one row per command and a summary line; ``--json FILE`` keeps every moment.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "soundatlas"
ENV = {**os.environ, "CI": "1"}

#: each command: (the atlas state it starts from, its arguments after the atlas)
COMMANDS = {
    "index": (None, ["index", "{lib}", "--atlas", "{atlas}", "--jobs", "1", "--batch-size", "8"]),
    "embed": ("indexed", ["embed", "--atlas", "{atlas}", "--precision", "fp32"]),
    "train": ("indexed", ["train", "--atlas", "{atlas}", "-n", "pitch", "--iterations", "60",
                          "--checkpoint-every", "10", "--batch-size", "16", "--threads", "1",
                          "--name", "m", "--resume"]),
    "adapt": ("embedded", ["adapt", "--atlas", "{atlas}", "--iterations", "40", "--threads", "1",
                           "--resume"]),
}


def run(args, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(BIN), *map(str, args), "-q"], capture_output=True, text=True,
                         env=ENV, **kw)
    if out.returncode:
        raise SystemExit(f"{' '.join(map(str, args))} failed: {out.stderr[-2000:]}")
    return out


def argv(name: str, lib: Path, atlas: Path) -> list[str]:
    return [a.format(lib=lib, atlas=atlas) for a in COMMANDS[name][1]]


def prepare(work: Path) -> tuple[Path, dict[str, Path]]:
    """The library and the atlas states the commands start from (made once)."""
    from soundatlas.demo import render_library

    lib = work / "lib"
    if not (lib / "metadata.csv").is_file():
        render_library(lib, classes=["flute", "trombone", "violin", "tuba"], velocities=(80,),
                       n_jobs=2)
    states = {"indexed": work / "state-indexed", "embedded": work / "state-embedded"}
    if not states["embedded"].is_dir():
        shutil.rmtree(states["indexed"], ignore_errors=True)
        run(argv("index", lib, states["indexed"]))
        shutil.copytree(states["indexed"], states["embedded"])
        run(argv("embed", lib, states["embedded"]))
    return lib, states


def fresh(states: dict, start: str | None, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    if start is None:
        return dst
    shutil.copytree(states[start], dst)
    return dst


def fingerprint(atlas_dir: Path, name: str) -> dict:
    """What must come out the same: features per path, points, the model's weights."""
    from soundatlas.atlas import Atlas

    out: dict = {}
    with Atlas.open(atlas_dir) as a:
        records = sorted(a.samples(), key=lambda r: r.path)
        out["paths"] = [r.path for r in records]
        out["features"] = {r.path: a.features(r).copy() for r in records}
        for m in a.models():
            if m.n_embedded:
                ids, pts = a.points(m.id)
                by_id = {r.id: r.path for r in records}
                order = np.argsort([by_id[int(i)] for i in ids])
                out[f"points:{m.name}"] = pts[order]
        model = {"train": "m", "adapt": "default-adapted"}.get(name)
        if model is not None and model in {m.name for m in a.models()}:
            with np.load(atlas_dir / "models" / model / "weights.npz") as npz:
                out["weights"] = {k: npz[k] for k in npz.files}
        out["integrity"] = a.conn.execute("PRAGMA integrity_check").fetchone()[0]
    return out


def same(a: dict, b: dict) -> list[str]:
    """What differs between two fingerprints (empty: the same)."""
    bad = []
    if a["paths"] != b["paths"]:
        bad.append("samples")
    elif any(not np.array_equal(a["features"][p], b["features"][p]) for p in a["paths"]):
        bad.append("features")
    for key in sorted(k for k in a.keys() | b.keys() if k.startswith("points:")):
        if key not in a or key not in b or a[key].shape != b[key].shape \
                or not np.allclose(a[key], b[key], atol=1e-5):
            bad.append(key)
    if ("weights" in a) != ("weights" in b):
        bad.append("model missing")
    elif "weights" in a and any(not np.array_equal(a["weights"][k], b["weights"][k])
                                for k in a["weights"]):
        bad.append("weights")
    if b["integrity"] != "ok":
        bad.append(f"integrity: {b['integrity']}")
    return bad


def main(argv_=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--moments", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commands", default="index,embed,train,adapt")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv_)
    from soundatlas.check import check_atlas

    args.work.mkdir(parents=True, exist_ok=True)
    lib, states = prepare(args.work)
    rng = random.Random(args.seed)
    report = {"moments": args.moments, "seed": args.seed, "commands": {}}
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {args.moments} moments per command, "
          f"seed {args.seed}, library {sum(1 for _ in lib.rglob('*.wav'))} files")
    print(f"{'command':8s} {'whole s':>8s} {'killed':>7s} {'ended first':>11s} "
          f"{'identical':>9s} {'check ok':>8s}")
    failures = 0
    for name in args.commands.split(","):
        start = COMMANDS[name][0]
        ref = fresh(states, start, args.work / f"ref-{name}")
        t = time.perf_counter()
        run(argv(name, lib, ref))
        whole = time.perf_counter() - t
        expected = fingerprint(ref, name)
        rows = []
        for _ in range(args.moments):
            at = rng.uniform(0, whole)
            target = fresh(states, start, args.work / f"kill-{name}")
            proc = subprocess.Popen([str(BIN), *argv(name, lib, target), "-q"], env=ENV,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=at)
                ended_first = True
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                ended_first = False
            run(argv(name, lib, target))
            got = fingerprint(target, name)
            diff = same(expected, got)
            problems = [p.line() for p in check_atlas(target).problems]
            rows.append({"at_s": round(at, 3), "ended_first": ended_first, "differs": diff,
                         "check": problems})
            failures += bool(diff or problems)
        killed = sum(not r["ended_first"] for r in rows)
        identical = sum(not r["differs"] for r in rows)
        checked = sum(not r["check"] for r in rows)
        print(f"{name:8s} {whole:8.1f} {killed:7d} {len(rows) - killed:11d} {identical:9d} "
              f"{checked:8d}")
        for r in rows:
            if r["differs"] or r["check"]:
                print(f"   at {r['at_s']} s: differs {r['differs']}, check {r['check'][:3]}")
        report["commands"][name] = {"whole_s": round(whole, 2), "rows": rows}
    total = args.moments * len(report["commands"])
    print(f"# {total} kills tried, {failures} ended in an atlas unlike the uninterrupted one")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
