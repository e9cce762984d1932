"""End-to-end indexing speed and memory: ``soundatlas.indexing.index_library`` against a naive
sequential indexer, same run.

Libraries:
  (i)  the demo library (``--demo PATH``, default ``data/demo``; skipped with a note if absent);
  (ii) a generated library of ``--n-files`` (default 20,000) files of 2.5 s, 44.1 kHz, 16-bit mono
       WAV (tones, harmonic notes, noise; seeded), generated once into ``--work DIR`` and reused.

Every indexing runs in a fresh subprocess with a fresh atlas (and ``--repeats`` times, rounds
interleaved; medians reported). Peak memory is measured two ways: inside the subprocess with
``getrusage`` (RUSAGE_SELF for the main process, RUSAGE_CHILDREN for the largest worker), and from
outside by sampling ``/proc`` of the whole process tree every ``--sample-ms`` ms (per-process peak
VmHWM, and the peak of the tree's summed RSS). Then a second, incremental run of the generated
library (nothing changed) is timed.

Baseline (named ``naive``): one process, per file ``soundfile.read`` -> ``soxr`` resample ->
``librosa.cqt`` -> ``log(50|C|+1)`` -> one ``.npy`` per file -> one SQLite insert committed per
file; run on the first ``--baseline-files`` files of the generated library (it is slow).

Memory growth is reported two ways: demo vs generated library (what was asked; the files differ
in length too) and, at equal content, the first ``--growth-files`` files of the generated library
(hard links) vs all of it. Files/s on a shared machine says little on its own, so every run also
reports the CPU time of its process tree per file and the cores other processes kept busy.
Finally each stage of the pipeline is timed alone (CPU time, one process) on ``--stage-files``
files: where the time goes.

    .venv/bin/python benchmarks/bench_index.py --demo LIBRARY [--work WORK] [--quick] [--json PATH]

``LIBRARY`` is a rendered demo library (``soundatlas demo-library LIBRARY``); ``WORK`` defaults
to ``soundatlas-bench`` in the system's temporary folder (``tempfile.gettempdir()``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import common

GOAL_FILES_PER_S = 300.0
LIB_SR, LIB_DURATION, LIB_SEED = 44100, 2.5, 1
RESULT_TAG = "@@BENCH-RESULT@@"

# --- the code each measured subprocess runs -----------------------------------------------------

CHILD_INDEX = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from soundatlas.indexing import index_library
t_import = time.perf_counter() - t0
a = json.loads(sys.argv[1])
r0 = resource.getrusage(resource.RUSAGE_SELF)
t1 = time.perf_counter()
s = index_library(a["library"], atlas_dir=a["atlas"], n_jobs=a["jobs"],
                  **({"batch_size": a["batch_size"]} if a["batch_size"] else {}))
wall = time.perf_counter() - t1
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(%(tag)r + json.dumps({
    "import_s": t_import, "wall_s": wall, "summary_s": s.seconds, "n_scanned": s.n_scanned,
    "n_indexed": s.n_indexed, "n_unchanged": s.n_unchanged, "n_failed": s.n_failed,
    "n_samples": s.n_samples, "n_frames": s.n_frames, "failures": s.failures[:5],
    "ru_main_maxrss_kb": me.ru_maxrss, "ru_children_maxrss_kb": kids.ru_maxrss,
    "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
    "cpu_timed_s": (me.ru_utime - r0.ru_utime) + (me.ru_stime - r0.ru_stime)
                   + kids.ru_utime + kids.ru_stime,
}))
""" % {"tag": RESULT_TAG}

CHILD_NAIVE = r"""
import json, os, resource, sqlite3, sys, time
import numpy as np, soundfile as sf, soxr, librosa
a = json.loads(sys.argv[1])
paths = [l for l in open(a["list"]).read().splitlines() if l]
out = a["out"]
os.makedirs(out, exist_ok=True)
con = sqlite3.connect(os.path.join(out, "naive.sqlite"))
con.execute("CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY, path TEXT UNIQUE, "
            "sr INTEGER, n_frames INTEGER, file TEXT)")
con.commit()
cqt = lambda y: librosa.cqt(y, sr=16000, hop_length=800, fmin=27.5, n_bins=192, bins_per_octave=24)
cqt(np.zeros(16000, np.float32))  # warm-up (first-call costs are not the baseline's fault)
r0 = resource.getrusage(resource.RUSAGE_SELF)
t1 = time.perf_counter()
for i, path in enumerate(paths):
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    y = soxr.resample(y, sr, 16000, quality="HQ")
    F = np.log1p(50.0 * np.abs(cqt(y))).T.astype(np.float32)
    name = f"{i:06d}.npy"
    np.save(os.path.join(out, name), F)
    con.execute("INSERT OR REPLACE INTO samples(path, sr, n_frames, file) VALUES (?,?,?,?)",
                (path, sr, len(F), name))
    con.commit()
wall = time.perf_counter() - t1
me = resource.getrusage(resource.RUSAGE_SELF)
print(%(tag)r + json.dumps({"wall_s": wall, "summary_s": wall, "n_indexed": len(paths),
      "n_failed": 0, "ru_main_maxrss_kb": me.ru_maxrss, "ru_children_maxrss_kb": 0,
      "cpu_s": me.ru_utime + me.ru_stime,
      "cpu_timed_s": (me.ru_utime - r0.ru_utime) + (me.ru_stime - r0.ru_stime)}))
""" % {"tag": RESULT_TAG}


CHILD_STAGES = r"""
import json, os, pickle, resource, shutil, statistics, sys, tempfile, time
import numpy as np, soundfile as sf, soxr, torch
from soundatlas import audio
from soundatlas.atlas import Atlas, NewSample
from soundatlas.cqt import cqt_batch
from soundatlas.pipeline import analyse_files, content_hash
from soundatlas.scan import scan
a = json.loads(sys.argv[1])
torch.set_num_threads(1)  # as in an indexing worker
root = a["library"]
entries = scan(root).files[: a["n"]]
paths = [os.path.join(root, e.path) for e in entries]
B = a["batch_size"]
batches = [paths[i : i + B] for i in range(0, len(paths), B)]
entry_batches = [entries[i : i + B] for i in range(0, len(entries), B)]
analyse_files(batches[0])  # warm-up: imports, kernels
rounds = []
for _ in range(a["repeats"]):
    T, W = {}, {}  # CPU seconds (robust on a shared machine) and wall seconds, per stage
    def tick(name, fn):
        c, t = time.process_time(), time.perf_counter()
        out = fn()
        T[name] = T.get(name, 0.0) + time.process_time() - c
        W[name] = W.get(name, 0.0) + time.perf_counter() - t
        return out
    for batch in batches:
        for p in batch:
            tick("worker: content hash (blake2b)", lambda: content_hash(p))
            y = tick("worker: decode (soundfile read)", lambda: sf.read(p, dtype="float32")[0])
            tick("worker: resample 44.1k->16k (soxr HQ)",
                 lambda: soxr.resample(y, 44100, 16000, quality="HQ"))
        ys = [audio.load(p, sr=16000).y for p in batch]
        tick("worker: CQT + compression (cqt_batch, 1 thread)", lambda: cqt_batch(ys))
    c, t = time.process_time(), time.perf_counter()
    results = [analyse_files(b) for b in batches]
    whole, whole_wall = time.process_time() - c, time.perf_counter() - t
    T["worker: rest of analyse_files (checks, mono, bookkeeping)"] = whole - sum(T.values())
    W["worker: rest of analyse_files (checks, mono, bookkeeping)"] = whole_wall - sum(W.values())
    blobs = tick("worker+main: pickle results (to main)",
                 lambda: [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results])
    tick("worker+main: unpickle results (in main)", lambda: [pickle.loads(b) for b in blobs])
    tmp = tempfile.mkdtemp(prefix="bench-stages-", dir=a["work"])
    try:
        with Atlas.create(os.path.join(tmp, "atlas"), library=root) as atlas:
            for batch_entries, res in zip(entry_batches, results):
                new = [NewSample(path=e.path, size=e.size, mtime_ns=e.mtime_ns, hash=r.hash,
                                 orig_sr=r.orig_sr, n_channels=r.n_channels, duration=r.duration,
                                 file_duration=r.file_duration, truncated=r.truncated,
                                 features=r.features) for e, r in zip(batch_entries, res)]
                tick("main: commit batch (float16 segment + fsync + SQLite)",
                     lambda: atlas.commit_batch(new))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    T["(analyse_files as a whole)"], W["(analyse_files as a whole)"] = whole, whole_wall
    rounds.append((T, W))
n = len(paths)
med = {k: 1000 * statistics.median(r[0][k] for r in rounds) / n for k in rounds[0][0]}
med_wall = {k: 1000 * statistics.median(r[1][k] for r in rounds) / n for k in rounds[0][1]}
me = resource.getrusage(resource.RUSAGE_SELF)
print(%(tag)r + json.dumps({"n_files": n, "batch_size": B, "repeats": a["repeats"],
      "cpu_s": me.ru_utime + me.ru_stime,
      "bytes_per_result": sum(len(b) for b in blobs) / n, "ms_per_file": med,
      "wall_ms_per_file": med_wall,
      "rounds_cpu_ms_per_file": [{k: 1000 * v / n for k, v in r[0].items()} for r in rounds]}))
""" % {"tag": RESULT_TAG}


# --- memory of a process tree, sampled from /proc ------------------------------------------------

class TreeSampler(threading.Thread):
    """Sample VmHWM / VmRSS / RssAnon of ``root`` and its descendants until stopped.

    Descendants are found by a scan of /proc every ``rescan`` ticks (workers live for the whole
    run, so that is enough); each process's peak is its own VmHWM, exact up to its last sample.
    """

    def __init__(self, root: int, interval: float = 0.05, rescan: int = 4):
        super().__init__(daemon=True)
        self.root, self.interval, self.rescan = root, interval, rescan
        self.pids: set[int] = {root}
        self.hwm_kb: dict[int, int] = {}
        self.anon_kb: dict[int, int] = {}
        self.cmd: dict[int, str] = {}
        self.tree_rss_peak_kb = 0
        self.tree_anon_peak_kb = 0
        self.n_samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self._halt.is_set():
            if tick % self.rescan == 0:
                self._find_descendants()
            self._sample()
            tick += 1
            self._halt.wait(self.interval)
        self._sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def _find_descendants(self) -> None:
        parent: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as f:
                        parent[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    pass
        changed = True
        while changed:
            changed = False
            for pid, ppid in parent.items():
                if ppid in self.pids and pid not in self.pids:
                    self.pids.add(pid)
                    changed = True

    def _sample(self) -> None:
        rss_sum = anon_sum = 0
        for pid in list(self.pids):
            st = _status(pid)
            if st is None:
                continue
            if pid not in self.cmd:
                self.cmd[pid] = _cmdline(pid)
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), st.get("VmHWM", 0))
            self.anon_kb[pid] = max(self.anon_kb.get(pid, 0), st.get("RssAnon", 0))
            rss_sum += st.get("VmRSS", 0)
            anon_sum += st.get("RssAnon", 0)
        self.tree_rss_peak_kb = max(self.tree_rss_peak_kb, rss_sum)
        self.tree_anon_peak_kb = max(self.tree_anon_peak_kb, anon_sum)
        self.n_samples += 1

    def report(self) -> dict:
        workers = [p for p in self.hwm_kb if p != self.root and "resource_tracker" not in self.cmd[p]]
        helpers = [p for p in self.hwm_kb if p != self.root and p not in workers]
        mb = lambda kb: kb / 1024
        return {
            "main_peak_mb": mb(self.hwm_kb.get(self.root, 0)),
            "main_anon_peak_mb": mb(self.anon_kb.get(self.root, 0)),
            "n_workers": len(workers),
            "worker_peak_mb": mb(max((self.hwm_kb[p] for p in workers), default=0)),
            "worker_anon_peak_mb": mb(max((self.anon_kb[p] for p in workers), default=0)),
            "helper_peak_mb": mb(max((self.hwm_kb[p] for p in helpers), default=0)),
            "tree_rss_peak_mb": mb(self.tree_rss_peak_kb),
            "tree_anon_peak_mb": mb(self.tree_anon_peak_kb),
            "n_samples": self.n_samples,
        }


def _status(pid: int) -> dict | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon"):
            out[key] = int(rest.split()[0])
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return ""


def run_measured(code: str, payload: dict, *, sample_ms: float) -> dict:
    """Run ``python -c code json(payload)`` in a subprocess; its result line plus memory facts."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(common.REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    start = time.perf_counter()
    proc = subprocess.Popen([*common.python_cmd(), "-c", code, json.dumps(payload)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=common.REPO)
    busy0 = common.machine_busy()
    sampler = TreeSampler(proc.pid, interval=sample_ms / 1000)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.stop()
    process_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"measured subprocess failed (rc {proc.returncode}):\n{stderr[-3000:]}")
    line = next((l for l in stdout.splitlines() if l.startswith(RESULT_TAG)), None)
    if line is None:
        raise RuntimeError(f"no result from the subprocess:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    result = json.loads(line[len(RESULT_TAG):])
    # other load: the machine's busy CPU time minus the tree's own (the subprocess reports its CPU
    # and its reaped workers'; the short start-up and exit outside that count as "other")
    busy = (common.machine_busy() - busy0) / common.CLK_TCK
    result["other_cores"] = max(0.0, (busy - result.get("cpu_s", 0.0)) / process_s)
    result["process_s"] = process_s
    result.update(sampler.report())
    result["ru_main_peak_mb"] = result.get("ru_main_maxrss_kb", 0) / 1024
    result["ru_worker_peak_mb"] = result.get("ru_children_maxrss_kb", 0) / 1024
    return result


# --- the generated library ----------------------------------------------------------------------

def _write_files(args: tuple[str, list[int]]) -> int:
    import soundfile as sf

    root, indices = args
    for i in indices:
        y = common.make_clip(LIB_SEED, i, sr=LIB_SR, duration=LIB_DURATION)
        folder = Path(root) / f"g{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"clip{i:05d}_{common.KINDS[i % 3]}.wav", y, LIB_SR, subtype="PCM_16")
    return len(indices)


def generated_library(work: Path, n_files: int, n_jobs: int) -> Path:
    """``work/lib-N``: N WAV files, generated once (a marker records a complete generation)."""
    lib = work / f"lib-{n_files}"
    marker = lib / ".bench-complete.json"
    spec = {"n_files": n_files, "sr": LIB_SR, "duration": LIB_DURATION, "seed": LIB_SEED,
            "subtype": "PCM_16", "generator": "common.make_clip"}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        print(f"# reusing the generated library {lib} ({n_files} files)")
        return lib
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    print(f"# generating {n_files} files of {LIB_DURATION} s at {LIB_SR} Hz into {lib} ...",
          flush=True)
    start = time.perf_counter()
    shares = [(str(lib), s.tolist()) for s in np.array_split(np.arange(n_files), 8 * n_jobs)]
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        assert sum(pool.map(_write_files, shares)) == n_files
    marker.write_text(json.dumps(spec))
    print(f"# generated in {time.perf_counter() - start:.0f} s", flush=True)
    return lib


def prefix_library(lib: Path, n_files: int) -> Path:
    """``lib-N-firstK``: hard links to the first K files of ``lib`` (same content, smaller)."""
    from soundatlas.scan import scan

    out = lib.parent / f"{lib.name}-first{n_files}"
    marker = out / ".bench-complete.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"of": str(lib), "n": n_files}:
        return out
    if out.exists():
        shutil.rmtree(out)
    for e in scan(lib).files[:n_files]:
        dst = out / e.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(lib / e.path, dst)
        except OSError:
            shutil.copy2(lib / e.path, dst)
    marker.write_text(json.dumps({"of": str(lib), "n": n_files}))
    return out


def count_audio(lib: Path) -> int:
    from soundatlas.scan import scan

    return len(scan(lib).files)


def stage_breakdown(args, lib: Path, work: Path, n_cores: int, *,
                    measured_fps: float | None = None) -> dict | None:
    """Each stage of indexing timed alone in one subprocess (1 torch thread); printed."""
    if not args.stage_files:
        return None
    stages = run_measured(CHILD_STAGES, {"library": str(lib), "n": args.stage_files,
                                         "batch_size": args.batch_size or 32,
                                         "repeats": args.repeats, "work": str(work)},
                          sample_ms=args.sample_ms)
    ms, wall = dict(stages["ms_per_file"]), dict(stages["wall_ms_per_file"])
    whole = ms.pop("(analyse_files as a whole)")
    wall.pop("(analyse_files as a whole)")
    total = sum(ms.values())
    print(f"\nwhere the time goes: each stage alone, one process, 1 torch thread, "
          f"{stages['n_files']} files of the generated library, batches of "
          f"{stages['batch_size']}, median of {stages['repeats']} (other load "
          f"{stages['other_cores']:.2f} cores); CPU time (process_time), wall time beside it; "
          f"analyse_files as a whole {whole:.3f} CPU ms/file")
    common.print_table(
        [{"stage": k, "ms": v, "wall": wall[k], "share": 100 * v / total} for k, v in ms.items()],
        [("stage", "stage", ""), ("ms", "CPU ms/file", ".3f"), ("wall", "wall ms/file", ".3f"),
         ("share", "% of CPU", ".1f")])
    measured = f" (measured: {measured_fps:.0f})" if measured_fps else ""
    print(f"sum {total:.2f} ms of CPU per file -> at most {1000 * n_cores / total:.0f} files/s "
          f"on {n_cores} cores if nothing else ran{measured}; a result is "
          f"{stages['bytes_per_result'] / 1024:.1f} KiB pickled")
    return stages


# --- main ---------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", default="data/demo", metavar="PATH",
                   help="the demo library (default data/demo; skipped with a note if absent)")
    default_work = Path(tempfile.gettempdir()) / "soundatlas-bench"
    p.add_argument("--work", default=str(default_work), metavar="DIR",
                   help="cache for the generated library, atlases and baseline output "
                   f"(default {default_work})")
    p.add_argument("--n-files", type=int, default=20000,
                   help="files in the generated library (default 20000)")
    p.add_argument("--baseline-files", type=int, default=300,
                   help="files the naive baseline indexes (default 300)")
    p.add_argument("--growth-files", type=int, default=5000,
                   help="also index the first N files of the generated library (hard links), "
                   "to compare memory at equal content (default 5000; 0: skip)")
    p.add_argument("--stage-files", type=int, default=640,
                   help="files for the per-stage breakdown, one process (default 640; 0: skip)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each, at least 3 (default 3)")
    p.add_argument("--jobs", type=int, default=None, help="index_library n_jobs (default: cores)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="index_library batch_size (default: its own default)")
    p.add_argument("--sample-ms", type=float, default=50.0,
                   help="memory sampling interval in ms (default 50)")
    p.add_argument("--skip-demo", action="store_true", help="do not index the demo library")
    p.add_argument("--stages-only", action="store_true",
                   help="only the per-stage breakdown (no indexing runs, no baseline)")
    p.add_argument("--quick", action="store_true",
                   help="small run: 1000 generated files, 30 baseline files, 250 for the "
                   "equal-content memory check, 128 for the stage breakdown")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    args = p.parse_args(argv)
    if args.quick:  # shrink what was left at its default
        for name, small in (("n_files", 1000), ("baseline_files", 30), ("growth_files", 250),
                            ("stage_files", 128)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, small)
    if args.repeats < 3:
        p.error("--repeats must be at least 3 (medians of fewer repeats are not reported)")
    return args


def _row(key: str, name: str, n_files: int, runs: list[dict], *,
         files_key: str = "n_indexed") -> dict:
    med = lambda k: common.median(r.get(k) for r in runs)
    seconds = med("summary_s")
    return {
        "key": key, "name": name, "files": n_files, "s": seconds,
        "fps": common.median(r[files_key] / r["summary_s"] for r in runs),
        "main_mb": med("main_peak_mb"), "worker_mb": med("worker_peak_mb"),
        "tree_mb": med("tree_rss_peak_mb"), "tree_anon_mb": med("tree_anon_peak_mb"),
        "main_anon_mb": med("main_anon_peak_mb"), "worker_anon_mb": med("worker_anon_peak_mb"),
        "ru_main_mb": med("ru_main_peak_mb"),
        "ru_worker_mb": med("ru_worker_peak_mb"), "other": med("other_cores"),
        "cpu_ms_per_file": common.median(1000 * r["cpu_timed_s"] / max(1, r[files_key])
                                         for r in runs),
        "cores_used": common.median(r["cpu_timed_s"] / r["summary_s"] for r in runs),
        "failed": max(r.get("n_failed", 0) for r in runs), "runs": runs,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    facts = common.machine_facts_subprocess()  # keeps torch out of this (launching) process
    common.print_facts(facts)
    n_cores = facts["cores_usable"] or 1
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    demo = Path(args.demo)
    if not demo.is_absolute():
        demo = common.REPO / demo
    if args.skip_demo or not demo.is_dir():
        if not args.skip_demo:
            print(f"# note: no demo library at {demo}; skipping it "
                  "(render one with `soundatlas demo-library` or pass --demo PATH)")
        demo = None
    lib = generated_library(work, args.n_files, n_cores)
    n_lib = count_audio(lib)
    small = None
    if 0 < args.growth_files < n_lib:
        small = prefix_library(lib, args.growth_files)
    n_demo = count_audio(demo) if demo else 0
    print(f"# libraries: demo {demo} ({n_demo} files); generated {lib} ({n_lib} files); "
          f"index_library n_jobs={args.jobs or 'default'} batch_size="
          f"{args.batch_size or 'default'}; {args.repeats} interleaved rounds; sampling every "
          f"{args.sample_ms:g} ms")

    if args.stages_only:
        stages = stage_breakdown(args, lib, work, n_cores)
        common.write_json(args.json, {"benchmark": "index-stages", "argv": sys.argv,
                                      "machine": facts, "args": vars(args), "stages": stages})
        return 0

    baseline_list = work / "baseline-files.txt"
    from soundatlas.scan import scan

    files = [str(lib / e.path) for e in scan(lib).files][: args.baseline_files]
    baseline_list.write_text("\n".join(files) + "\n")

    def index(library: Path, atlas: Path, *, fresh: bool) -> dict:
        if fresh and atlas.exists():
            shutil.rmtree(atlas)
        return run_measured(CHILD_INDEX, {"library": str(library), "atlas": str(atlas),
                                          "jobs": args.jobs, "batch_size": args.batch_size},
                            sample_ms=args.sample_ms)

    def naive() -> dict:
        out = work / "naive-out"
        if out.exists():
            shutil.rmtree(out)
        return run_measured(CHILD_NAIVE, {"list": str(baseline_list), "out": str(out)},
                            sample_ms=args.sample_ms)

    runs: dict[str, list[dict]] = {"demo": [], "small": [], "lib": [], "incremental": [],
                                   "naive": []}
    atlas_demo, atlas_lib = work / "atlas-demo", work / "atlas-lib"
    for r in range(args.repeats):
        todo = [("naive", naive), ("lib", lambda: index(lib, atlas_lib, fresh=True))]
        if small:
            todo.insert(1, ("small", lambda: index(small, work / "atlas-small", fresh=True)))
        if demo:
            todo.insert(1, ("demo", lambda: index(demo, atlas_demo, fresh=True)))
        for key, fn in todo:
            res = fn()
            runs[key].append(res)
            rate = res["n_indexed"] / res["summary_s"]
            print(f"  round {r + 1} {key:>7}: {res['n_indexed']} files in {res['summary_s']:.1f} s "
                  f"= {rate:.1f} files/s; peak RSS main {res['main_peak_mb']:.0f} MB, largest "
                  f"worker {res['worker_peak_mb']:.0f} MB ({res['n_workers']} workers), tree "
                  f"{res['tree_rss_peak_mb']:.0f} MB; failed {res['n_failed']}; other load "
                  f"{res['other_cores']:.2f} cores", flush=True)
    for r in range(args.repeats):  # the atlas of the last fresh run is complete: nothing to do
        res = index(lib, atlas_lib, fresh=False)
        runs["incremental"].append(res)
        print(f"  incremental {r + 1}: {res['n_scanned']} scanned, {res['n_indexed']} indexed, "
              f"{res['summary_s']:.2f} s; peak RSS main {res['main_peak_mb']:.0f} MB", flush=True)

    rows = [_row("naive", f"naive sequential (first {len(files)} files of lib)", len(files),
                 runs["naive"])]
    if demo:
        rows.append(_row("demo", f"soundatlas index, demo ({demo.name})", n_demo, runs["demo"]))
    if small:
        rows.append(_row("small", f"soundatlas index, first {args.growth_files} of lib",
                         args.growth_files, runs["small"]))
    rows.append(_row("lib", "soundatlas index, generated lib", n_lib, runs["lib"]))
    rows.append(_row("incremental", "soundatlas index, lib again (incremental)", n_lib,
                     runs["incremental"], files_key="n_scanned"))
    print(f"\nindexing, medians of {args.repeats} runs. files/s of the incremental run: files "
          "checked per second. Peak memory in MB from /proc (VmHWM per process; anon = RssAnon, "
          "the private heap; tree = summed RSS of main + workers at the same instant); CPU ms/file: "
          "CPU time of the process tree in the timed section per file (less sensitive to a "
          "shared machine than files/s); 'other load': cores other processes used meanwhile")
    common.print_table(rows, [
        ("name", "run", ""), ("files", "files", "d"), ("s", "seconds", ".2f"),
        ("fps", "files/s", ".1f"), ("cpu_ms_per_file", "CPU ms/file", ".2f"),
        ("cores_used", "cores used", ".2f"),
        ("main_mb", "main", ".0f"), ("main_anon_mb", "anon", ".0f"),
        ("worker_mb", "worker", ".0f"), ("worker_anon_mb", "anon", ".0f"),
        ("tree_mb", "tree", ".0f"), ("tree_anon_mb", "anon", ".0f"),
        ("other", "other load", ".2f"), ("failed", "failed", "d"),
    ])
    print("(getrusage in the subprocess, main / largest child, MB: " + "; ".join(
        f"{r['key']} {r['ru_main_mb']:.0f} / {r['ru_worker_mb']:.0f}"
        for r in rows) + " - an upper bound: Linux carries a parent's peak across fork+exec)")

    by_key = {r["key"]: r for r in rows}
    naive_row, lib_row = by_key["naive"], by_key["lib"]
    speedup = lib_row["fps"] / naive_row["fps"]
    print(common.goal_line(f"generated lib ({n_lib} files): files/s", lib_row["fps"],
                           GOAL_FILES_PER_S, unit=" files/s"))
    cpu_ratio = naive_row["cpu_ms_per_file"] / lib_row["cpu_ms_per_file"]
    print(f"speed-up over the naive sequential indexer: {speedup:.1f}x "
          f"({lib_row['fps']:.1f} vs {naive_row['fps']:.1f} files/s); CPU per file "
          f"{cpu_ratio:.1f}x less ({lib_row['cpu_ms_per_file']:.2f} vs "
          f"{naive_row['cpu_ms_per_file']:.2f} ms)")
    print(f"CPU-bound estimate for an idle machine: {n_cores} cores / "
          f"{lib_row['cpu_ms_per_file']:.2f} ms per file = "
          f"{1000 * n_cores / lib_row['cpu_ms_per_file']:.0f} files/s (an upper bound)")
    growth = {}
    if demo and n_lib > n_demo:
        demo_row = by_key["demo"]
        per_k = 1000 / (n_lib - n_demo)
        growth = {k: (lib_row[k] - demo_row[k]) * per_k
                  for k in ("main_mb", "main_anon_mb", "worker_mb", "worker_anon_mb", "tree_mb",
                            "tree_anon_mb", "ru_main_mb", "ru_worker_mb")}
        print(f"memory growth from demo ({n_demo}) to generated ({n_lib}) files, MB per 1k files: "
              f"main {growth['main_mb']:+.2f} (anon {growth['main_anon_mb']:+.2f}), largest "
              f"worker {growth['worker_mb']:+.2f} (anon {growth['worker_anon_mb']:+.2f}), tree "
              f"{growth['tree_mb']:+.2f} (anon {growth['tree_anon_mb']:+.2f})")
    if small:
        per_k = 1000 / (n_lib - args.growth_files)
        small_row = by_key["small"]
        growth_same = {k: (lib_row[k] - small_row[k]) * per_k
                       for k in ("main_mb", "main_anon_mb", "worker_mb", "worker_anon_mb",
                                 "tree_mb", "tree_anon_mb")}
        growth["same_content"] = growth_same
        print(f"memory growth at equal content, first {args.growth_files} vs all {n_lib} "
              f"generated files, MB per 1k files: main {growth_same['main_mb']:+.2f} (anon "
              f"{growth_same['main_anon_mb']:+.2f}), largest worker "
              f"{growth_same['worker_mb']:+.2f} (anon {growth_same['worker_anon_mb']:+.2f}), "
              f"tree {growth_same['tree_mb']:+.2f} (anon {growth_same['tree_anon_mb']:+.2f})")
    inc = by_key["incremental"]
    print(f"incremental re-run of {n_lib} unchanged files: {inc['s']:.2f} s "
          f"({inc['fps']:.0f} files checked/s)")

    stages = stage_breakdown(args, lib, work, n_cores, measured_fps=lib_row["fps"])

    common.write_json(args.json, {
        "benchmark": "index", "argv": sys.argv, "machine": facts, "args": vars(args),
        "libraries": {"demo": str(demo) if demo else None, "n_demo": n_demo,
                      "generated": str(lib), "n_generated": n_lib},
        "rows": rows, "speedup_over_naive": speedup, "cpu_ratio_over_naive": cpu_ratio, "goal_files_per_s": GOAL_FILES_PER_S,
        "mb_per_1k_files": growth, "stages": stages,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
