"""The whole path at scale (issue 14 §3): a generated library of N distinct one-shots through
``index``, ``embed``, a second ``index``, ``serve`` (the page and the API under 20 clients),
``synth`` and ``evaluate``, each run as the real command in a subprocess, for N in ``--sizes``.

The library. N procedural one-shots of :mod:`soundatlas.procedural` (oscillators, FM, filters,
noise layers, envelopes, synthetic drums; 0.02-3.5 s, most 0.15-2.6 s), rendered with
``soundatlas demo-library LIB --set synth`` in two parts so that WAV and FLAC mix: seed 1 as
16-bit WAV (``synth/procedural_s1/``) and seed 2 as FLAC (``synth/procedural_s2/``, a share
``--flac-share`` of the files, default one half). A format with more than ``CHUNK`` (100,000)
files is rendered in chunks of that many, seeds 11, 21, ... (WAV) and 12, 22, ... (FLAC) after
the first, each in its own folder. Every sound is a pure function of (seed, index), so files are
distinct by construction; the script checks it after indexing (the atlas's content hashes: one
per file, none shared). The library is written once under ``--root`` as ``lib-N`` and reused by
later runs (a marker file records how it was made; another spec renders it again); a render cut
short (a 1M library takes hours) goes on from its last finished chunk when the script runs again
with the same spec. The part of size N with index < n is the library of size n (up to 100,000
files of a format), so the evaluation subset of a large library is the small library itself.

For each size, in order (every atlas starts fresh, ``--root/atlas-N``; with ``--resume``, a size
whose index and embed steps finished in an earlier run keeps its atlas and their figures, saved in
``--root/map-N.json``, and the run goes on from step 3; one whose index step alone finished
(``--root/index-N.json``, an atlas without embeddings; ``--stop-after-index`` stops there) goes on
from the embed step: a 1M run that outlasts a sitting):

1. ``index LIB --atlas ATLAS``: wall time, files/s, and the peak resident memory (VmHWM) of the
   main process and of its largest worker process, sampled from /proc every 50 ms over the whole
   process tree (``TreeSampler`` of bench_index.py), with the number of workers and the peak of
   the tree's summed RSS.
2. ``embed --atlas ATLAS`` (the shipped default model, ``--precision auto``): frames/s, wall,
   peak RSS as above. "map" = index + embed is the total wall time of the path to a map.
   Then the atlas's disk size per sample (every file under ATLAS, apparent size).
3. ``index`` again with nothing changed (incremental): wall, and its ratio to the full run.
4. ``serve --atlas ATLAS --port 0``: start-up, measured from the moment the process is started
   (headless Chromium, launched beforehand, as tests/browser.py does) until the port is printed,
   and until the page's ``window.soundatlas.state.ready`` (the first points drawn, with all N of
   them in the geometry); with ``--no-browser``, or without Chromium/Playwright, until
   ``GET /api/models/M/points`` answers instead (said so in the output). A page that does not
   draw within ``--page-timeout`` fails the step, not the run: the output and the JSON then say
   what the page showed and logged, which of its API requests had finished, whether the server
   still answered ``/api/atlas`` and how busy it was (CPU, threads' states), and the rest goes on
   against a fresh server. Then API latency with
   ``--clients`` (20) concurrent clients, one endpoint at a time, each client a thread with its
   own kept-alive httpx connection making ``--requests`` requests:
   ``GET .../points`` (all points, binary; the page has just asked for them once),
   ``GET .../neighbours/{id}?k=10`` (random ids; the similarity space),
   ``GET /api/samples?q=&label=`` (a cycle of path and label searches, 100 items a page) and
   ``POST /api/samples/lookup`` of 100 random ids. p50 and p99 per endpoint, requests/s, and
   the first ("cold") request of each endpoint alone before the clients start; the peak RSS of
   the server over all of it. The clients share the machine's cores with the server (and, in
   one Python process, the GIL), so their latencies include client time; this process's
   garbage collector is off while they run (its pauses would stop every client at once). Then
   the same clients
   against a second server started with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
   MKL_NUM_THREADS set to 1 (the comparison: each request's matrix products on one BLAS
   thread, so concurrent requests do not fight over the BLAS's own threads; ``--no-blas1``
   skips it).
5. ``synth --walk random --duration 30``: the frame index alone first (a subprocess builds
   ``synth.FrameIndex`` without its cache and its k-d tree, once to warm up and once measured:
   seconds (and those of the first, cold build), frames, the bytes of the index's arrays (the
   k-d tree's float64 copy of the points included) and the process's resident memory growth,
   kept and at the peak while building (via /proc/self/clear_refs), per frame; and a linear
   projection to 20M frames, which is a projection, not a measurement), then the command
   twice: first run (builds and caches the frame index) and second (from the cache).
6. ``evaluate -m default --labels instrument --baselines pca,input --analogies 0`` on a subset of
   at most ``--eval-subset`` (10k) samples: the atlas of that size (built first, unmeasured, when
   this run has not made it). Wall, peak RSS, and the k-NN accuracy and P@10 of the model beside
   the two baselines (PCA-3 and the 1,920-D input space), same frames, same run.

There is no baseline implementation to divide by here: the ratios are the incremental index
against the full one and the model against the evaluation's baselines. Every step also reports
the cores other processes kept busy while it ran ("other load"); on a small shared machine the
speeds move with it. Generating the library is timed but counted in no figure.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000 100000 1000000] [--root DIR]
        [--flac-share 0.5] [--sample-rate 44100] [--jobs N] [--clients 20] [--requests 25]
        [--no-browser] [--json FILE]

``--root`` defaults to ``soundatlas-bench-scale`` in the system's temporary folder; keep it out of
the repository. Disk: about 95 KB per WAV and 45 KB per FLAC file at 44.1 kHz, so 1M files at
half FLAC need about 70 GB (check ``df``; a larger ``--flac-share`` or a lower ``--sample-rate``
makes it smaller); the script refuses to render a library the free space cannot hold.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402
from bench_index import TreeSampler  # noqa: E402

SOUNDATLAS = str(Path(sys.executable).with_name("soundatlas"))
SEEDS = {"wav": 1, "flac": 2}
SPEC_FILE = ".bench-scale.json"  # marker of a complete library: how it was made
CHUNK = 100_000  # files per demo-library run (a cut-short render resumes from its last chunk)
BYTES_PER_FILE = {"wav": 100_000, "flac": 48_000}  # at 44.1 kHz, with a margin (measured ~95/45)
MODEL = "default"
EVAL_LABEL = "instrument"  # the melodic half of the synth set has it (the patch)
PROJECT_FRAMES = 20_000_000
LOOKUP_IDS = 100
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SEARCHES = [  # path substrings and label filters (see soundatlas.procedural for the names)
    {"q": "saw_pluck"}, {"q": "kick"}, {"q": "_00001"}, {"label": "family:synth_pad"},
    {"q": "fm_", "label": "filter:lowpass"}, {"label": "drum_class:cymbal"},
]


# --- measured commands --------------------------------------------------------------------------

def run_cmd(argv: list[str], *, sample_ms: float = 50.0, parse_json: bool = True) -> dict:
    """Run one soundatlas command; wall time, its JSON answer and the process tree's memory."""
    busy0 = common.machine_busy()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, interval=sample_ms / 1000)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (rc {proc.returncode}):\n{stderr[-3000:]}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    busy = (common.machine_busy() - busy0) / common.CLK_TCK
    out = {"argv": argv, "wall_s": wall, "cpu_s": cpu,
           "other_cores": max(0.0, (busy - cpu) / wall), **sampler.report()}
    if parse_json:
        out["result"] = json.loads(stdout)
    return out


CHILD_FRAME_INDEX = r"""
import gc, json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
def reset_peak():  # VmHWM := VmRSS (Linux >= 4.0); False where refused
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
from soundatlas import synth
from soundatlas.atlas import Atlas
with Atlas.open(sys.argv[1]) as atlas:
    reg = synth.embedded_model(atlas, sys.argv[2])
    t = time.perf_counter()
    warm = synth.FrameIndex.load(atlas, reg, cache=False)  # imports, atlas pages, allocator
    warm.tree
    first_s = time.perf_counter() - t
    del warm
    gc.collect()
    peak_reset = reset_peak()
    rss0 = status("VmRSS")
    t = time.perf_counter()
    index = synth.FrameIndex.load(atlas, reg, cache=False)
    t_arrays = time.perf_counter() - t
    tree = index.tree
    dt = time.perf_counter() - t
    rss1 = status("VmRSS")
    hwm = status("VmHWM")
arrays = (index.sample_ids.nbytes + index.frames.nbytes + index.points.nbytes
          + tree.data.nbytes + tree.indices.nbytes)  # the tree keeps a float64 copy
print(json.dumps({"first_build_s": first_s, "build_s": dt, "arrays_s": t_arrays,
                  "tree_s": dt - t_arrays,
                  "n_frames": len(index), "rss_before_mb": rss0, "rss_after_mb": rss1,
                  "peak_mb": hwm if peak_reset else None, "arrays_bytes": arrays}))
"""


# --- the library --------------------------------------------------------------------------------

def split_counts(n: int, flac_share: float) -> dict[str, int]:
    n_flac = int(round(n * flac_share))
    return {"wav": n - n_flac, "flac": n_flac}


def chunks(counts: dict[str, int]) -> list[tuple[str, int, int]]:
    """(format, seed, count) of each render of a library: at most CHUNK files each, so that a
    render cut short (a 1M library takes hours) goes on from its last finished chunk. A
    format's first chunk has its seed of SEEDS, so that libraries of up to CHUNK files per
    format are the ones rendered before chunks existed."""
    out = []
    for fmt, count in counts.items():
        for i, start in enumerate(range(0, count, CHUNK)):
            out.append((fmt, SEEDS[fmt] + 10 * i, min(CHUNK, count - start)))
    return out


def library(root: Path, n: int, flac_share: float, sample_rate: int, jobs: int | None) -> dict:
    """``root/lib-n``, rendered unless a complete one with the same spec is there; a render
    of the same spec cut short goes on from its last finished chunk."""
    from soundatlas.demo.manifests import demo_rows, write_root_manifests

    lib = root / f"lib-{n}"
    counts = split_counts(n, flac_share)
    spec = {"count": n, "counts": counts, "seeds": SEEDS, "sample_rate": sample_rate,
            "set": "synth"}
    marker = lib / SPEC_FILE
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return {"path": lib, "generated": False, "spec": spec, **library_size(lib)}
    started = lib / (SPEC_FILE + ".partial")  # the spec of a render under way
    if lib.exists() and not (started.exists() and json.loads(started.read_text()) == spec):
        shutil.rmtree(lib)
    if not lib.exists():
        need = sum(BYTES_PER_FILE[f] * c for f, c in counts.items()) * sample_rate / 44100
        free = shutil.disk_usage(root).free
        if need > 0.9 * free:
            raise SystemExit(f"lib-{n} needs about {need / 1e9:.1f} GB and {root} has "
                             f"{free / 1e9:.1f} GB free: raise --flac-share or lower "
                             "--sample-rate")
        lib.mkdir(parents=True)
        started.write_text(json.dumps(spec))
    t = time.perf_counter()
    plan = chunks(counts)
    for k, (fmt, seed, count) in enumerate(plan):
        # demo-library writes a part's metadata.csv last: its presence marks the chunk finished
        if (lib / "synth" / f"procedural_s{seed}" / "metadata.csv").is_file():
            print(f"  lib-{n}: chunk {k + 1}/{len(plan)} ({fmt}, seed {seed}) already rendered",
                  flush=True)
            continue
        print(f"  lib-{n}: rendering chunk {k + 1}/{len(plan)} ({count:,} {fmt}, seed {seed})",
              flush=True)
        cmd = [SOUNDATLAS, "demo-library", str(lib), "--set", "synth", "--count", str(count),
               "--seed", str(seed), "--format", fmt, "--sample-rate", str(sample_rate),
               "-q", "--json"]
        subprocess.run(cmd + (["--jobs", str(jobs)] if jobs else []), check=True,
                       stdout=subprocess.DEVNULL)
    write_root_manifests(lib, *demo_rows(lib))  # every chunk's files, however many runs it took
    generate_s = time.perf_counter() - t
    marker.write_text(json.dumps(spec))
    started.unlink()
    return {"path": lib, "generated": True, "generate_s": generate_s, "spec": spec,
            **library_size(lib)}


def library_size(lib: Path) -> dict:
    n_files, n_bytes = {"wav": 0, "flac": 0}, 0
    for dirpath, _, files in os.walk(lib):
        for name in files:
            ext = name.rsplit(".", 1)[-1]
            if ext in n_files:
                n_files[ext] += 1
                n_bytes += os.stat(os.path.join(dirpath, name)).st_size
    return {"n_files": n_files, "bytes": n_bytes}


def n_embeddings(atlas: Path) -> int:
    """How many embeddings the atlas holds (read-only): 0 for one only indexed."""
    con = sqlite3.connect(f"file:{atlas / 'atlas.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    finally:
        con.close()


def dir_bytes(path: Path) -> int:
    return sum(os.stat(os.path.join(d, f)).st_size for d, _, fs in os.walk(path) for f in fs)


def atlas_facts(atlas: Path) -> dict:
    """From the atlas (read-only): samples, distinct content hashes, durations, frames."""
    con = sqlite3.connect(f"file:{atlas / 'atlas.sqlite'}?mode=ro", uri=True)
    try:
        n, n_hash, frames = con.execute(
            "SELECT count(*), count(DISTINCT hash), sum(n_frames) FROM samples").fetchone()
        d = np.array([r[0] for r in con.execute("SELECT duration FROM samples")], float)
    finally:
        con.close()
    q = np.percentile(d, [0, 5, 50, 95, 100]) if len(d) else [float("nan")] * 5
    return {"n_samples": n, "n_distinct_hashes": n_hash, "n_frames": frames,
            "duration_s": dict(zip(("min", "p5", "median", "p95", "max"), map(float, q))),
            "audio_hours": float(d.sum()) / 3600}


# --- serve: start-up and API latency ------------------------------------------------------------

class Serve:
    """``soundatlas serve --port 0`` in a subprocess; its port read from what it prints."""

    def __init__(self, atlas: Path, env: dict | None = None):
        self.t0 = time.perf_counter()
        # appended to: a server started after one that failed keeps the failed one's log
        self.stderr_path = atlas.parent / f"serve-{atlas.name}.stderr"
        self.stderr = open(self.stderr_path, "a")  # a file: never blocks the server
        self.stderr_start = self.stderr.seek(0, os.SEEK_END)
        self.proc = subprocess.Popen([SOUNDATLAS, "serve", "--atlas", str(atlas), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env={**os.environ, **(env or {})})
        self.sampler = TreeSampler(self.proc.pid, interval=0.05)
        self.sampler.start()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout],
                         daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=300)
            except queue.Empty:
                raise RuntimeError("serve printed no port in 300 s") from None
            m = re.search(r"http://[^/\s]+:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                self.listen_s = time.perf_counter() - self.t0
                break
        self.url = f"http://127.0.0.1:{self.port}"

    def stderr_tail(self, n_bytes: int = 4096) -> str:
        """The end of what this server wrote to stderr (its traceback, if it failed)."""
        self.stderr.flush()
        with open(self.stderr_path, "rb") as f:
            f.seek(max(self.stderr_start, f.seek(0, os.SEEK_END) - n_bytes))
            return f.read().decode(errors="replace")

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sampler.stop()
        self.stderr.close()
        return self.sampler.report()


def browser_available() -> str | None:
    sys.path.append(str(common.REPO / "tests"))
    try:
        import playwright.sync_api  # noqa: F401
        from browser import find_chromium
    except ImportError:
        return None
    return find_chromium()


READY_JS = """() => { const s = window.soundatlas && window.soundatlas.state;
  return !!(s && (s.ready || s.error)); }"""
LOAD_JS = """() => { const s = window.soundatlas.state; const res = {};
  for (const e of performance.getEntriesByType('resource')) {
    const p = new URL(e.name).pathname;
    if (p.startsWith('/api/')) res[p] = {start: e.startTime, end: e.responseEnd,
                                         bytes: e.encodedBodySize}; }
  return {ready: s.ready, error: s.error, nPoints: s.nPoints, now: performance.now(),
          resources: res}; }"""


class PageNotDrawn(RuntimeError):
    """The page did not draw its points: what it and the server were doing (``diagnostics``)."""

    def __init__(self, message: str, diagnostics: dict):
        super().__init__(message)
        self.diagnostics = diagnostics


PAGE_STATE_JS = """() => { const s = window.soundatlas && window.soundatlas.state; const res = {};
  for (const e of performance.getEntriesByType('resource')) {
    const p = new URL(e.name).pathname;
    if (p.startsWith('/api/')) res[p] = {start: e.startTime, end: e.responseEnd}; }
  const t = document.getElementById('progress-text');
  return {hook: !!s, ready: s ? s.ready : null, error: s ? s.error : null,
          nPoints: s ? s.nPoints : null, progress: t ? t.textContent : null,
          now: performance.now(), finished_requests: res}; }"""


def process_facts(pid: int) -> dict:
    """A process's state, CPU seconds and resident memory from /proc, with each thread's state
    (R running, S sleeping, D waiting on the disk): busy or waiting, and on what."""
    out: dict = {"pid": pid}
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out.update(state=stat[0], cpu_s=(int(stat[11]) + int(stat[12])) / common.CLK_TCK)
        status = Path(f"/proc/{pid}/status").read_text()
        out["rss_mb"] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
        threads = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            threads[f"{name} {state}"] = threads.get(f"{name} {state}", 0) + 1
        out["threads"] = threads
    except (OSError, AttributeError, IndexError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def page_diagnostics(page, server: "Serve", messages: list[str]) -> dict:
    """What a page that did not draw shows, what it fetched, what it logged, and whether the
    server still answers (``/api/atlas``, 30 s at most) and is busy.

    The server's facts come first, and the page is asked last and for 10 s at most: a page
    whose main thread is stuck in a long task would never answer a plain ``evaluate``."""
    import httpx

    diag: dict = {"messages": messages[-50:], "server": process_facts(server.proc.pid),
                  "server_exit_code": server.proc.poll(), "server_stderr": server.stderr_tail()}
    t = time.perf_counter()
    try:
        r = httpx.get(server.url + "/api/atlas", timeout=30)
        diag["server_atlas"] = {"status": r.status_code, "s": time.perf_counter() - t}
    except httpx.HTTPError as exc:
        diag["server_atlas"] = {"error": f"{type(exc).__name__}: {exc}",
                                "s": time.perf_counter() - t}
    time.sleep(1.0)  # the CPU it spends in a second: busy (a loop, a build) or stuck waiting
    later = process_facts(server.proc.pid)
    if "cpu_s" in later and "cpu_s" in diag["server"]:
        diag["server_cpu_per_s"] = later["cpu_s"] - diag["server"]["cpu_s"]
    try:  # wait_for_function keeps to its timeout where evaluate would wait for good
        diag["page"] = page.wait_for_function(f"() => ({PAGE_STATE_JS})()",
                                              timeout=10_000).json_value()
    except Exception as exc:  # noqa: BLE001 - a stuck or crashed page answers nothing: say so
        diag["page"] = f"{type(exc).__name__}: {exc}"
    return diag


def serve_startup(atlas: Path, n: int, chromium: str | None,
                  timeout_s: float) -> tuple[Serve, dict]:
    """Start the server; seconds until it listens and until the page (or the API) has points.

    Raises
    ------
    PageNotDrawn
        When the page did not draw all ``n`` points within ``timeout_s`` (or reported an
        error); the server is stopped and the exception holds what the page and the server
        were doing (:func:`page_diagnostics`).
    """
    import httpx

    out: dict = {}
    if chromium:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        sys.path.append(str(common.REPO / "tests"))
        from browser import VIEWPORT, launch

        messages: list[str] = []
        with sync_playwright() as pw:
            browser = launch(pw, chromium)  # launched before the clock starts
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.on("console", lambda m: messages.append(f"console {m.type}: {m.text[:300]}")
                    if m.type in ("error", "warning") and "GL Driver Message" not in m.text
                    else None)  # SwiftShader's performance notes are not the page's
            page.on("pageerror", lambda e: messages.append(f"page error: {e}"))
            page.on("crash", lambda _: messages.append("the page crashed"))
            page.on("requestfailed", lambda r: messages.append(
                f"request failed: {r.url} ({r.failure})"))
            page.goto("about:blank")
            load0 = common._loadavg()  # noqa: SLF001
            server = Serve(atlas)  # the clock starts here
            t_nav = time.perf_counter()
            try:
                page.goto(server.url + "/", wait_until="commit", timeout=timeout_s * 1000)
                page.wait_for_function(READY_JS, polling=50, timeout=timeout_s * 1000)
                ready_s = time.perf_counter() - server.t0
                info = page.evaluate(LOAD_JS)
                failed = None
                if info["error"] or info["nPoints"] != n:
                    failed = f"the page did not draw {n} points: {info}"
            except PlaywrightError as exc:
                failed = (f"the page did not draw its points within {timeout_s:g} s "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]})")
            if failed:
                diag = page_diagnostics(page, server, messages)
                diag["waited_s"] = time.perf_counter() - server.t0
            context.close()
            browser.close()
        if failed:
            diag["server_memory"] = server.stop()
            raise PageNotDrawn(failed, diag)
        pts = info["resources"].get(f"/api/models/{MODEL}/points", {})
        out.update(method="browser: window.soundatlas.state.ready", ready_s=ready_s,
                   listen_s=server.listen_s, navigate_at_s=t_nav - server.t0,
                   page_points_received_s=pts.get("end", float("nan")) / 1000,
                   page_ready_s=info["now"] / 1000, points_bytes=pts.get("bytes"),
                   loadavg_before=load0, resources=info["resources"],
                   page_messages=messages[-20:])
        return server, out
    server = Serve(atlas)
    with httpx.Client(base_url=server.url, timeout=timeout_s) as client:
        r = client.get(f"/api/models/{MODEL}/points")
        r.raise_for_status()
    out.update(method="no browser: GET points answered", ready_s=time.perf_counter() - server.t0,
               listen_s=server.listen_s, points_bytes=len(r.content))
    return server, out


def api_latency(url: str, server_pid: int, clients: int, requests: int, seed: int = 0) -> dict:
    """Each endpoint alone under ``clients`` concurrent kept-alive clients."""
    import httpx

    with httpx.Client(base_url=url, timeout=300) as c:
        ids = np.frombuffer(c.get("/api/samples/ids").content, "<i4")
    rng = np.random.default_rng(seed)
    m = MODEL

    def make(kind: str, i: int) -> tuple[str, str, dict]:
        if kind == "points":
            return "GET", f"/api/models/{m}/points", {}
        if kind == "neighbours":
            sample = int(rng.choice(ids))
            return "GET", f"/api/models/{m}/neighbours/{sample}", {"params": {"k": 10}}
        if kind == "search":
            return "GET", "/api/samples", {"params": {**SEARCHES[i % len(SEARCHES)], "limit": 100}}
        pick = rng.choice(ids, size=min(LOOKUP_IDS, len(ids)), replace=False)
        return "POST", "/api/samples/lookup", {"json": {"ids": pick.tolist()}}

    out = {}
    for kind in ("points", "neighbours", "search", "lookup"):
        plans = [[make(kind, k * requests + j) for j in range(requests)] for k in range(clients)]
        with httpx.Client(base_url=url, timeout=300) as c:  # the first request alone: cold
            method, path, kw = make(kind, 0)
            t = time.perf_counter()
            c.request(method, path, **kw).raise_for_status()
            cold = time.perf_counter() - t
        lat: list[list[float]] = [[] for _ in range(clients)]
        errors = [0] * clients
        barrier = threading.Barrier(clients + 1, timeout=600)  # a client that died: no hang

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=300) as c:
                c.get("/api/atlas")  # open the connection before the clock starts
                barrier.wait()
                for method, path, kw in plans[k]:
                    t = time.perf_counter()
                    try:
                        r = c.request(method, path, **kw)
                        r.read()
                        errors[k] += r.status_code >= 400
                    except httpx.TransportError:  # closed or reset: an error, and go on
                        errors[k] += 1
                    lat[k].append(time.perf_counter() - t)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for th in threads:
            th.start()
        with common.no_gc():  # its pauses would stop all clients at once
            barrier.wait()
            with common.OtherLoad([os.getpid(), server_pid]) as load:
                t = time.perf_counter()
                for th in threads:
                    th.join()
                wall = time.perf_counter() - t
        all_lat = np.concatenate([np.array(x) for x in lat]) * 1000
        out[kind] = {"cold_ms": cold * 1000, "p50_ms": float(np.percentile(all_lat, 50)),
                     "p99_ms": float(np.percentile(all_lat, 99)),
                     "mean_ms": float(all_lat.mean()), "n": int(len(all_lat)),
                     "errors": int(sum(errors)), "requests_per_s": len(all_lat) / wall,
                     "other_cores": load.cores}
    return out


def print_api(api: dict, title: str) -> None:
    print(f"  {title}:")
    for kind, a in api.items():
        print(f"  {kind:10s} p50 {a['p50_ms']:8.1f} ms  p99 {a['p99_ms']:8.1f} ms  "
              f"{a['requests_per_s']:7.1f} req/s  cold {a['cold_ms']:7.1f} ms  errors "
              f"{a['errors']}  other load {a['other_cores']:.2f} cores", flush=True)


# --- evaluate -----------------------------------------------------------------------------------

def eval_summary(result: dict) -> dict:
    out = {}
    for name, r in result["results"].items():
        acc = r["accuracy"].get(EVAL_LABEL, {})
        ret = r.get("retrieval", {}).get(EVAL_LABEL, {})
        sim = r.get("retrieval_similarity", {}).get(EVAL_LABEL, {})
        out[name] = {"dims": r.get("dims"), "knn_accuracy": acc.get("test_accuracy"),
                     "k": acc.get("k"), "p_at_10": ret.get("precision_at_k"),
                     "p_at_10_similarity": sim.get("precision_at_k")}
    out["n_frames"] = result["protocol"]["n_frames"]
    return out


# --- one size -----------------------------------------------------------------------------------

#: what ``map-N.json`` keeps of a size's results: the index and embed steps (``--resume``)
MAP_KEYS = ("index", "atlas_facts", "atlas_bytes_indexed", "embed", "map_wall_s", "atlas_bytes",
            "atlas_bytes_per_sample")


#: what ``index-N.json`` keeps: the index step alone (``--resume`` after ``--stop-after-index``)
INDEX_KEYS = ("index", "atlas_facts", "atlas_bytes_indexed", "index_measured")


def map_steps(res: dict, lib: dict, atlas: Path, jobs: list[str], *, indexed: Path,
              reuse_index: bool, stop_after_index: bool) -> None:
    """``index`` then ``embed`` into a fresh atlas, measured: the ``MAP_KEYS`` of ``res``. With
    ``reuse_index``, the index step's figures come from ``indexed`` (its atlas, not yet embedded,
    kept); else they are written there once the step finishes."""
    if reuse_index:
        res.update(json.loads(indexed.read_text()))
        idx = res["index"]
        print(f"index: reused from {indexed.name} (measured {res['index_measured']}): "
              f"{idx['files_per_s']:.1f} files/s", flush=True)
    else:
        idx = run_cmd([SOUNDATLAS, "index", str(lib["path"]), "--atlas", str(atlas), "-q",
                       "--json", *jobs])
        idx["files_per_s"] = idx["result"]["n_indexed"] / idx["wall_s"]
        res["index"] = idx
        res["atlas_facts"] = atlas_facts(atlas)
        res["atlas_bytes_indexed"] = dir_bytes(atlas)
        res["index_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        indexed.write_text(json.dumps({k: res[k] for k in INDEX_KEYS}, default=str))
    r, facts = idx["result"], res["atlas_facts"]
    print(f"index: {r['n_indexed']} files ({r['n_failed']} failed), {r['n_frames']} frames in "
          f"{idx['wall_s']:.1f} s = {idx['files_per_s']:.1f} files/s; main "
          f"{idx['main_peak_mb']:.0f} MB, {idx['n_workers']} workers <= "
          f"{idx['worker_peak_mb']:.0f} MB; other load {idx['other_cores']:.2f} cores", flush=True)
    print(f"  distinct content hashes: {facts['n_distinct_hashes']} of {facts['n_samples']}; "
          f"durations (s) {facts['duration_s']}", flush=True)
    if stop_after_index:
        print(f"stopped after the index step, as asked: --resume goes on from {indexed.name}",
              flush=True)
        sys.exit(0)

    emb = run_cmd([SOUNDATLAS, "embed", "--atlas", str(atlas), "-q", "--json"])
    emb["frames_per_s"] = emb["result"]["n_frames"] / emb["wall_s"]
    res["embed"] = emb
    res["map_wall_s"] = idx["wall_s"] + emb["wall_s"]
    res["atlas_bytes"] = dir_bytes(atlas)
    res["atlas_bytes_per_sample"] = res["atlas_bytes"] / max(1, facts["n_samples"])
    print(f"embed: {emb['result']['n_frames']} frames in {emb['wall_s']:.1f} s = "
          f"{emb['frames_per_s']:.0f} frames/s ({emb['result']['precision']}); main "
          f"{emb['main_peak_mb']:.0f} MB; other load {emb['other_cores']:.2f} cores", flush=True)
    print(f"atlas: {res['atlas_bytes'] / 2**20:.1f} MiB = {res['atlas_bytes_per_sample']:.0f} "
          f"bytes/sample", flush=True)


def bench_size(n: int, args, root: Path, chromium: str | None, done: dict) -> dict:
    res: dict = {"n": n}
    print(f"\n## {n:,} samples", flush=True)
    lib = library(root, n, args.flac_share, args.sample_rate, args.gen_jobs)
    res["library"] = {k: v for k, v in lib.items() if k != "path"}
    print(f"library {lib['path']}: {lib['n_files']} files, {lib['bytes'] / 2**20:.0f} MiB"
          + (f", rendered in {lib['generate_s']:.0f} s" if lib["generated"] else " (reused)"),
          flush=True)
    atlas = root / f"atlas-{n}"
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    saved = root / f"map-{n}.json"  # the index and embed steps' figures, once both finished
    if args.resume and atlas.exists() and saved.exists():
        res.update(json.loads(saved.read_text()))
        print(f"index and embed: reused from {saved.name} (measured {res['map_measured']}): "
              f"{res['index']['files_per_s']:.1f} files/s, {res['embed']['frames_per_s']:.0f} "
              f"frames/s, {res['map_wall_s']:.0f} s together", flush=True)
    else:
        saved.unlink(missing_ok=True)
        indexed = root / f"index-{n}.json"
        reuse_index = (args.resume and atlas.exists() and indexed.exists()
                       and n_embeddings(atlas) == 0)
        if not reuse_index:
            indexed.unlink(missing_ok=True)
            if atlas.exists():
                shutil.rmtree(atlas)
        map_steps(res, lib, atlas, jobs, indexed=indexed, reuse_index=reuse_index,
                  stop_after_index=args.stop_after_index)
        res["map_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        saved.write_text(json.dumps({k: res[k] for k in (*MAP_KEYS, "map_measured")},
                                    default=str))
    facts = res["atlas_facts"]

    inc = run_cmd([SOUNDATLAS, "index", str(lib["path"]), "--atlas", str(atlas), "-q", "--json",
                   *jobs])
    inc["ratio_to_full"] = inc["wall_s"] / res["index"]["wall_s"]
    res["index_again"] = inc
    print(f"index again: {inc['result']['n_unchanged']} unchanged, {inc['result']['n_indexed']} "
          f"indexed in {inc['wall_s']:.2f} s ({inc['ratio_to_full']:.3f} of the full run)",
          flush=True)

    try:
        server, start = serve_startup(atlas, facts["n_samples"], chromium, args.page_timeout)
        print(f"serve: listening after {start['listen_s']:.2f} s; points drawn after "
              f"{start['ready_s']:.2f} s ({start['method']})", flush=True)
    except PageNotDrawn as exc:  # say what the page and the server did; measure the rest
        start = {"error": str(exc), "ready_s": float("nan"), "diagnostics": exc.diagnostics}
        print(f"serve: FAILED: {exc}\n  what the page and the server were doing: "
              f"{json.dumps(exc.diagnostics, default=str)}", flush=True)
        server = Serve(atlas)  # the API steps need no page
    try:
        res["serve"] = start
        res["api"] = api_latency(server.url, server.proc.pid, args.clients, args.requests)
    finally:
        res["serve"]["memory"] = server.stop()
    print_api(res["api"], f"API, {args.clients} concurrent clients (the server as shipped)")
    print(f"  server peak RSS {res['serve']['memory']['main_peak_mb']:.0f} MB", flush=True)
    if args.blas1:  # the same clients against a server whose BLAS runs one thread per call
        server = Serve(atlas, env=ONE_THREAD)
        try:
            res["api_blas1"] = api_latency(server.url, server.proc.pid, args.clients,
                                           args.requests)
        finally:
            res["api_blas1_memory"] = server.stop()
        print_api(res["api_blas1"], "the same, server with " + " ".join(
            f"{k}={v}" for k, v in ONE_THREAD.items()))

    fi = run_cmd([sys.executable, "-c", CHILD_FRAME_INDEX, str(atlas), MODEL])
    f = fi["result"]
    per_frame = 2**20 / max(1, f["n_frames"])
    f["bytes_per_frame"] = (f["rss_after_mb"] - f["rss_before_mb"]) * per_frame  # kept
    f["peak_bytes_per_frame"] = ((f["peak_mb"] - f["rss_before_mb"]) * per_frame
                                 if f["peak_mb"] is not None else None)  # while building
    f["arrays_bytes_per_frame"] = f["arrays_bytes"] / max(1, f["n_frames"])
    f["projected_20M"] = {"build_s": f["build_s"] * PROJECT_FRAMES / max(1, f["n_frames"]),
                          "arrays_gb": f["arrays_bytes_per_frame"] * PROJECT_FRAMES / 1e9,
                          "rss_gb": f["bytes_per_frame"] * PROJECT_FRAMES / 1e9,
                          "note": "linear projection from this size, not measured"}
    res["frame_index"] = {**f, "process_peak_mb": fi["main_peak_mb"],
                          "other_cores": fi["other_cores"]}
    walk = [SOUNDATLAS, "synth", "--atlas", str(atlas), "--walk", "random", "--duration",
            str(args.synth_duration), "--seed", "0", "-o", str(root / f"walk-{n}.wav"), "-q",
            "--json"]
    shutil.rmtree(atlas / "cache", ignore_errors=True)
    res["synth_first"] = run_cmd(walk)
    res["synth_cached"] = run_cmd(walk)
    print(f"frame index: {f['n_frames']} frames built in {f['build_s']:.2f} s (k-d tree "
          f"{f['tree_s']:.2f} s; the process's first build {f['first_build_s']:.2f} s); "
          f"index arrays {f['arrays_bytes_per_frame']:.0f} bytes/frame; process RSS grew "
          f"{f['bytes_per_frame']:.0f} bytes/frame (kept), "
          f"{f['peak_bytes_per_frame'] or float('nan'):.0f} at the peak while building",
          flush=True)
    p = f["projected_20M"]
    print(f"  20M frames, projected linearly (not measured): ~{p['build_s']:.0f} s, "
          f"{p['arrays_gb']:.1f} GB of index arrays, {p['rss_gb']:.1f} GB of RSS growth",
          flush=True)
    for key in ("synth_first", "synth_cached"):
        s = res[key]
        print(f"synth {args.synth_duration:g} s walk ({key}): {s['wall_s']:.2f} s wall, render "
              f"{s['result']['seconds']:.2f} s, index from cache {s['result']['index_from_cache']},"
              f" peak {s['main_peak_mb']:.0f} MB", flush=True)

    done[n] = atlas
    ev_atlas = eval_atlas(n, args, root, done)
    out_json = root / f"evaluate-{n}.json"
    ev = run_cmd([SOUNDATLAS, "evaluate", "--atlas", str(ev_atlas), "-m", MODEL, "--labels",
                  EVAL_LABEL, "--baselines", "pca,input", "--analogies", "0", "-q", "--json",
                  "--output", str(out_json)])
    ev["summary"] = eval_summary(ev.pop("result"))
    ev["atlas"] = str(ev_atlas)
    res["evaluate"] = ev
    print(f"evaluate ({ev_atlas.name}, label {EVAL_LABEL}): {ev['wall_s']:.1f} s, peak "
          f"{ev['main_peak_mb']:.0f} MB", flush=True)
    for name, s in ev["summary"].items():
        if name != "n_frames":
            print(f"  {name:16s} k-NN {s['knn_accuracy']:.3f}  P@10 {s['p_at_10']:.3f}"
                  + (f"  P@10 sim {s['p_at_10_similarity']:.3f}"
                     if s["p_at_10_similarity"] is not None else ""), flush=True)
    return res


def eval_atlas(n: int, args, root: Path, done: dict) -> Path:
    """The atlas evaluate runs on: this one, or the ``--eval-subset`` one (made when missing)."""
    if n <= args.eval_subset:
        return done[n]
    m = args.eval_subset
    if m in done:
        return done[m]
    lib = library(root, m, args.flac_share, args.sample_rate, args.gen_jobs)
    atlas = root / f"atlas-{m}"
    if atlas.exists():
        shutil.rmtree(atlas)
    run_cmd([SOUNDATLAS, "map", str(lib["path"]), "--atlas", str(atlas), "-q", "--json"])
    done[m] = atlas
    return atlas


# --- output -------------------------------------------------------------------------------------

def summary_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        api = r["api"]
        ev = r["evaluate"]["summary"]
        rows.append({
            "n": f"{r['n']:,}",
            "index_fps": r["index"]["files_per_s"],
            "embed_fps": r["embed"]["frames_per_s"],
            "map_s": r["map_wall_s"],
            "idx_main_mb": r["index"]["main_peak_mb"],
            "idx_worker_mb": r["index"]["worker_peak_mb"],
            "emb_main_mb": r["embed"]["main_peak_mb"],
            "atlas_b": r["atlas_bytes_per_sample"],
            "again_s": r["index_again"]["wall_s"],
            "ready_s": r["serve"]["ready_s"],
            **{f"{k}_p50": api[k]["p50_ms"] for k in api},
            **{f"{k}_p99": api[k]["p99_ms"] for k in api},
            "fi_s": r["frame_index"]["build_s"],
            "fi_first_s": r["frame_index"]["first_build_s"],
            "synth_s": r["synth_first"]["wall_s"],
            "eval_s": r["evaluate"]["wall_s"],
            "acc": ev[MODEL]["knn_accuracy"],
        })
    return rows


def print_summary(results: list[dict], args) -> None:
    print("\n## summary (one run of each step per size)")
    common.print_table(summary_rows(results), [
        ("n", "samples", ""), ("index_fps", "index files/s", ".1f"),
        ("embed_fps", "embed frames/s", ".0f"), ("map_s", "index+embed s", ".1f"),
        ("idx_main_mb", "index main MB", ".0f"), ("idx_worker_mb", "index worker MB", ".0f"),
        ("emb_main_mb", "embed MB", ".0f"), ("atlas_b", "atlas B/sample", ".0f"),
        ("again_s", "index again s", ".2f"), ("ready_s", "serve->points s", ".2f"),
        ("fi_s", "frame index s", ".2f"), ("fi_first_s", "(first build)", ".2f"),
        ("synth_s", "synth 30 s walk s", ".2f"),
        ("eval_s", "evaluate s", ".1f"), ("acc", "eval k-NN", ".3f"),
    ])
    print(f"\nAPI latency, {args.clients} concurrent clients x {args.requests} requests per "
          "endpoint (ms, p50 / p99)")
    common.print_table(summary_rows(results), [("n", "samples", "")] + [
        (f"{k}_{p}", f"{k} {p}", ".1f") for k in ("points", "neighbours", "search", "lookup")
        for p in ("p50", "p99")])
    if all("api_blas1" in r for r in results):
        print("\nthe same against a server with one BLAS thread per call (ms, p50 / p99)")
        common.print_table([{"n": f"{r['n']:,}", **{f"{k}_{p}": r["api_blas1"][k][f"{p}_ms"]
                                                   for k in r["api_blas1"] for p in ("p50", "p99")}}
                            for r in results], [("n", "samples", "")] + [
            (f"{k}_{p}", f"{k} {p}", ".1f") for k in ("points", "neighbours", "search", "lookup")
            for p in ("p50", "p99")])


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000],
                    help="library sizes (default: 10000; the issue's: 10000 100000 1000000)")
    ap.add_argument("--root", type=Path,
                    default=Path(tempfile.gettempdir()) / "soundatlas-bench-scale",
                    help="where libraries (kept, reused) and atlases (rebuilt) go")
    ap.add_argument("--flac-share", type=float, default=0.5,
                    help="share of the files written as FLAC (default: 0.5)")
    ap.add_argument("--sample-rate", type=int, default=44100, help="of the written files")
    ap.add_argument("--jobs", type=int, help="index processes (default: index's, one per core)")
    ap.add_argument("--gen-jobs", type=int, help="processes rendering the library")
    ap.add_argument("--clients", type=int, default=20, help="concurrent API clients (default 20)")
    ap.add_argument("--requests", type=int, default=25,
                    help="requests per client per endpoint (default: 25)")
    ap.add_argument("--synth-duration", type=float, default=30.0, help="random walk seconds")
    ap.add_argument("--eval-subset", type=int, default=10_000,
                    help="evaluate on the library of this size at most (default: 10000)")
    ap.add_argument("--no-browser", action="store_true",
                    help="serve start-up until GET points answers, not until the page draws")
    ap.add_argument("--no-blas1", dest="blas1", action="store_false",
                    help="leave out the API run against a server with one BLAS thread per call")
    ap.add_argument("--page-timeout", type=float, default=600.0, help="seconds")
    ap.add_argument("--json", help="also write every figure here (after each size, too)")
    ap.add_argument("--resume", action="store_true",
                    help="reuse a size's atlas and its index and embed figures (ROOT/map-N.json) "
                    "when an earlier run finished those steps, or its index figures "
                    "(ROOT/index-N.json) when only the index step finished, and measure the rest")
    ap.add_argument("--stop-after-index", action="store_true",
                    help="stop once the (first) size's index step is measured (--resume goes on)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    facts = common.machine_facts_subprocess()
    common.print_facts(facts)
    print("# a small shared machine: other jobs may run at the same time; each step reports the "
          "cores other processes kept busy ('other load')")
    chromium = None if args.no_browser else browser_available()
    if not args.no_browser and chromium is None:
        print("# no Chromium/Playwright: serve start-up is measured until GET points answers")
    t0 = time.perf_counter()
    results, done = [], {}
    for n in sorted(args.sizes):
        t = time.perf_counter()
        results.append(bench_size(n, args, root, chromium, done))
        results[-1]["bench_wall_s"] = time.perf_counter() - t
        common.write_json(args.json, {"machine": facts, "args": vars(args), "results": results})
    print_summary(results, args)
    print(f"\n# whole benchmark: {time.perf_counter() - t0:.0f} s; machine load average now "
          f"{common._loadavg()}")  # noqa: SLF001
    common.write_json(args.json, {"machine": facts, "args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
