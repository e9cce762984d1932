"""Nearest sounds under load at a million samples (issue 14 §3: "neighbours p99 under 100 ms with
20 clients"), against the server of an earlier commit in the same run.

The atlas is synthetic, built once through the atlas's own write API (cached under ``--work``):
N samples of one silent feature frame each with four labels, and a model ``default`` registered
with the shipped default model's config (the real one, tens of kilobytes of JSON, as every real
atlas holds it), whose 3-D points come from a mixture of 24 classes and whose similarity vectors,
of the size ``embed`` stores (352 bytes: the hidden layer and the pitch profile), come from a
mixture of ``--clusters`` centres (int8 codes, as ``embed`` stores them). No audio files exist: a neighbours request never reads one. Above
``serve``'s ``--approximate-above`` (100,000) the server searches these vectors with its FAISS
inverted file, as it does a real library of that size; the answer's ``recall`` and cells
searched are printed, since they depend on how clustered the vectors are (the generated library
of ``bench_scale.py`` needed 8 of 1,000 cells).

Measured, runs of the two servers alternated (``--repeats`` each), every run a fresh
``soundatlas serve --port 0`` on 127.0.0.1 in a subprocess:

- ours: this checkout's ``src``;
- the named baseline: ``--baseline`` (a commit; default ``82b17e8``, the server before its
  model configs were parsed once per open atlas and before a search of a built index was
  answered on the event loop), exported with ``git archive`` and run from there with the same
  interpreter and packages (``PYTHONPATH``).

Each run: the first request alone (it builds the index: "cold"), 200 warm requests one after
another (latency alone, median), then ``--clients`` threads of this process, each with its own
kept-alive ``httpx`` client, send ``--requests`` requests each for random sample ids (k=10) at
once, as ``bench_scale.py``'s API step does; p50, p99, requests/s, the server's and the
clients' CPU per request (from ``/proc``) and the other load. Medians over the repeats, and the
ratios ours / baseline. The clients share the machine's two cores with the server, and one GIL
among themselves; this process's garbage collector is off while they run, so that its pauses
(which stop every client at once) are not counted as the server's latency.

With ``--atlas A`` the servers serve an existing atlas instead (``bench_scale.py``'s, say: real
paths and labels, a database of gigabytes); with ``--cold`` the page cache is emptied (``sync``;
``echo 3 > /proc/sys/vm/drop_caches``: root only) before each server starts, as after a reboot,
so that what the server reads from disk is measured with it.

    python benchmarks/bench_neighbours.py [--n 1000000] [--clients 20] [--requests 100]
        [--repeats 3] [--baseline REF] [--work DIR] [--atlas A] [--cold] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import common

BUILD_TAG = "bench_neighbours v2"  # change when the synthetic atlas changes: it is rebuilt
SEED = 11
BATCH = 20_000
CLASSES = 24
LABELS = ("instrument", "family", "pitch", "velocity")


# --- the synthetic atlas ------------------------------------------------------------------------

def build_atlas(work: Path, n: int, clusters: int) -> tuple[Path, float | None]:
    """The atlas of ``n`` synthetic samples under ``work``; (path, seconds to build, None when
    it came from the cache). Only the atlas's public write API, no SQL of our own."""
    from soundatlas.artifact import CONFIG, shipped_model_dir
    from soundatlas.atlas import Atlas, NewSample
    from soundatlas.cqt_params import PAPER_CQT
    from soundatlas.similarity import SCALE, space_for

    path = work / f"atlas-{n}-{clusters}"
    tag = f"{BUILD_TAG} n={n} clusters={clusters}"
    if common.built_atlas(path, "bench_neighbours", tag):
        return path, None
    shutil.rmtree(path, ignore_errors=True)
    library = work / "library"  # empty: a neighbours request never reads a sample's file
    library.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng([SEED, n, clusters])
    classes = rng.integers(0, CLASSES, n)
    centres3 = rng.normal(0.0, 3.0, (CLASSES, 3))
    points = (centres3[classes] + rng.normal(0.0, 0.6, (n, 3))).astype(np.float32)
    space = space_for(SimpleNamespace(l3=SimpleNamespace(out_features=256)), PAPER_CQT)
    dims = space["dims"]  # the shipped model's space on the shipped CQT
    centres = rng.normal(0.0, 0.35, (clusters, dims))
    cluster = rng.integers(0, clusters, n)
    config = json.loads((shipped_model_dir() / CONFIG).read_text())
    config["synthetic"] = "benchmarks/bench_neighbours.py"
    with Atlas.create(path, library=library) as atlas:
        params = atlas.cqt_params
        frame = np.zeros((1, params.n_bins), np.float32)
        duration = params.hop_length / params.sr
        ids: list[int] = []
        for start in range(0, n, BATCH):
            new = [NewSample(path=f"synthetic/c{classes[i]:02d}/s{i:07d}.wav", size=44,
                             mtime_ns=0, hash=f"{i:032x}", orig_sr=params.sr, n_channels=1,
                             duration=duration, file_duration=duration, truncated=False,
                             features=frame)
                   for i in range(start, min(n, start + BATCH))]
            ids += atlas.commit_batch(new)
        model_id = atlas.register_model("default", "models/bench-neighbours-synthetic", config)
        atlas.set_similarity_space(model_id, space)
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            x = centres[cluster[start:stop]] + rng.normal(0.0, 0.08, (stop - start, dims))
            codes = np.clip(np.round(x * SCALE), -SCALE, SCALE).astype(np.int8)
            atlas.commit_embeddings(model_id, [(ids[i], points[i][None], points[i])
                                               for i in range(start, stop)],
                                    similarity=list(codes))
        atlas.replace_labels({sid: {"instrument": f"class{c:02d}", "family": f"family{c // 3}",
                                    "pitch": str(36 + (sid % 48)), "velocity": str(sid % 127)}
                              for sid, c in zip(ids, classes)})
        atlas.set_meta("bench_neighbours", tag)  # last: a build cut short is rebuilt next time
    return path, time.perf_counter() - t0


# --- the two servers ----------------------------------------------------------------------------

class Server:
    """``python -m soundatlas serve --atlas A --port 0`` with ``src`` first on its path."""

    def __init__(self, atlas: Path, src: Path):
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "soundatlas", "serve", "--atlas",
                                      str(atlas), "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=env)
        for line in self.proc.stdout:
            m = re.search(r"http://[^/\s]+:(\d+)/", line)
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}"
                break
        else:
            self.log.seek(0)
            raise RuntimeError(f"serve stopped before listening: {self.log.read()[-2000:]}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def cpu_jiffies(self) -> int:
        return common.process_jiffies(self.proc.pid, children=False)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --- one run ------------------------------------------------------------------------------------

def run_once(atlas: Path, src: Path, ids: np.ndarray, clients: int, requests: int,
             seed: int) -> dict:
    import httpx

    rng = np.random.default_rng(seed)
    server = Server(atlas, src)
    try:
        url = "/api/models/default/neighbours/{}"
        with httpx.Client(base_url=server.url, timeout=600) as c:
            t = time.perf_counter()
            first = c.get(url.format(int(ids[0])), params={"k": 10})
            cold = time.perf_counter() - t
            first.raise_for_status()
            answer = first.json()
            alone = []
            for sid in rng.choice(ids, 200):
                t = time.perf_counter()
                c.get(url.format(int(sid)), params={"k": 10}).raise_for_status()
                alone.append(time.perf_counter() - t)
        plans = [rng.choice(ids, requests) for _ in range(clients)]
        lat: list[list[float]] = [[] for _ in range(clients)]
        errors = [0] * clients
        barrier = threading.Barrier(clients + 1, timeout=600)  # a client that died: no hang

        def client(k: int) -> None:
            with httpx.Client(base_url=server.url, timeout=600) as c:
                c.get("/api/atlas")  # the connection is open before the clock starts
                barrier.wait()
                for sid in plans[k]:
                    t = time.perf_counter()
                    try:
                        r = c.get(url.format(int(sid)), params={"k": 10})
                        r.read()
                        errors[k] += r.status_code != 200
                    except httpx.TransportError:  # closed or reset: an error, and go on
                        errors[k] += 1
                    lat[k].append(time.perf_counter() - t)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for th in threads:
            th.start()
        with common.no_gc():  # its pauses would stop all clients at once (tens of ms)
            barrier.wait()
            cpu0 = server.cpu_jiffies()
            mine0 = common.process_jiffies(os.getpid(), children=False)
            with common.OtherLoad([os.getpid(), server.proc.pid]) as load:
                t = time.perf_counter()
                for th in threads:
                    th.join()
                wall = time.perf_counter() - t
        cpu = (server.cpu_jiffies() - cpu0) / common.CLK_TCK
        mine = (common.process_jiffies(os.getpid(), children=False) - mine0) / common.CLK_TCK
    finally:
        server.stop()
    all_lat = np.concatenate([np.array(x) for x in lat]) * 1000
    return {"cold_ms": cold * 1000, "alone_ms": float(np.median(alone)) * 1000,
            "p50_ms": float(np.percentile(all_lat, 50)),
            "p99_ms": float(np.percentile(all_lat, 99)), "requests_per_s": len(all_lat) / wall,
            "server_cpu_ms": 1000 * cpu / len(all_lat),
            "client_cpu_ms": 1000 * mine / len(all_lat), "errors": int(sum(errors)),
            "other_cores": load.cores, "exact": answer.get("exact"),
            "recall": answer.get("recall"), "approximate": answer.get("approximate")}


# --- main ---------------------------------------------------------------------------------------

FIGURES = (("alone_ms", "alone ms"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
           ("requests_per_s", "req/s"), ("server_cpu_ms", "server CPU ms/req"),
           ("client_cpu_ms", "clients' CPU ms/req"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="samples (default 1,000,000)")
    ap.add_argument("--clusters", type=int, default=2_000,
                    help="centres the similarity vectors are drawn around (default 2,000)")
    ap.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    ap.add_argument("--requests", type=int, default=100, help="per client per run (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each server (default 3)")
    ap.add_argument("--baseline", default="82b17e8", help="the commit whose server is the "
                    "baseline (default 82b17e8)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) /
                    "soundatlas-bench-neighbours", help="cache of the atlas and the baseline")
    ap.add_argument("--atlas", type=Path, help="serve this atlas (its model 'default') instead "
                    "of the synthetic one")
    common.add_cold_option(ap)
    ap.add_argument("--json", help="also write every figure here")
    args = ap.parse_args()
    common.check_cold(ap, args)

    facts = common.machine_facts()
    common.print_facts(facts)
    args.work.mkdir(parents=True, exist_ok=True)
    from soundatlas.atlas import Atlas

    if args.atlas is not None:
        atlas, built_s = args.atlas, None
        with Atlas.open(atlas) as a:
            ids, _ = a.points(a.model("default").id)
        args.n = len(ids)
        print(f"atlas: {atlas}, {args.n:,} samples embedded with 'default'", flush=True)
    else:
        atlas, built_s = build_atlas(args.work, args.n, args.clusters)
        print(f"atlas: {args.n:,} synthetic samples, "
              + (f"built in {built_s:.0f} s" if built_s is not None else "from the cache"),
              flush=True)
        with Atlas.open(atlas) as a:
            ids, _ = a.points(a.model("default").id)
    servers = {"ours": common.REPO / "src"}
    servers["baseline"], sha = common.baseline_src(args.work, args.baseline)

    def show(name: str, r: int, res: dict) -> None:
        print(f"  {name:8s} run {r + 1}: " + "  ".join(
            f"{label} {res[key]:.1f}" for key, label in FIGURES)
            + f"  errors {res['errors']}  other load {res['other_cores']:.2f} cores  "
            f"(exact {res['exact']}, recall {res['recall']}, {res['approximate']})", flush=True)

    runs = common.servers_alternated(
        servers, args.repeats,
        lambda src, r: run_once(atlas, src, ids, args.clients, args.requests, seed=r),
        cold=args.cold, show=show)
    print(f"\nneighbours at {args.n:,} samples, {args.clients} clients x {args.requests} "
          f"requests, medians of {args.repeats} runs; baseline = the server at {sha}"
          + ("; page cache emptied before each server" if args.cold else ""))
    medians = common.ours_against_baseline(runs, FIGURES)
    p99 = medians["ours"]["p99_ms"]
    print(f"neighbours p99 {p99:.1f} ms (goal under 100 ms: {'met' if p99 < 100 else 'MISSED'})")
    common.write_json(args.json, {"facts": facts, "n": args.n, "clusters": args.clusters,
                                  "atlas": str(args.atlas) if args.atlas else None,
                                  "cold": args.cold,
                                  "clients": args.clients, "requests": args.requests,
                                  "baseline": sha, "built_s": built_s, "runs": runs,
                                  "medians": medians})


if __name__ == "__main__":
    main()
