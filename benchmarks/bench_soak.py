"""Soak and load (issue 16 §2): a real `soundatlas serve` on an atlas, many clients for a long
time, mixed reads and writes; then a burst of many more clients.

    python benchmarks/bench_soak.py ATLAS [--clients 50] [--duration 600]
        [--burst-clients 200] [--burst-duration 60] [--renders] [--json OUT.json]

The soak: ``--clients`` kept-alive clients for ``--duration`` seconds, each request drawn at
random from points, neighbours, search, audio (a Range of bytes), trajectories, analogies and
tag writes (a tag unique to the request); with ``--renders`` also paths rendered as sound (2 s
of three samples) and long renders whose client hangs up after 0.3 s. Reported: errors, p50/p99
per endpoint, the server's RSS and open file descriptors at the start, middle and end and every
10 s, whether every tag written is in the atlas afterwards, and with ``--renders`` the server's
render counts (``GET /api/renders``: completed, refused with 503, cancelled by a hang-up). The burst: ``--burst-clients`` clients for ``--burst-duration`` seconds of
neighbours and search: how many answered, were refused (503) or timed out, and whether the
server still answers afterwards. Clients and server share the machine: the latencies include
the queue.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SOUNDATLAS = str(Path(sys.executable).parent / "soundatlas")
MODEL = "default"


def proc_facts(pid: int) -> dict:
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status")
               if line.startswith("VmRSS:"))
    return {"rss_mb": rss / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def run_clients(url: str, n: int, seconds: float, kinds: list[str], ids: np.ndarray,
                seed: int, timeout: float = 30.0) -> dict:
    import httpx

    lat: dict[str, list[float]] = {k: [] for k in kinds}
    errors: dict[str, int] = {k: 0 for k in kinds}
    refused = timeouts = 0
    written: list[str] = []
    hung_up = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def one(c, rng, kind: str, k: int, j: int):
        sid = int(rng.choice(ids))
        if kind == "points":
            return c.get(f"/api/models/{MODEL}/points")
        if kind == "neighbours":
            return c.get(f"/api/models/{MODEL}/neighbours/{sid}", params={"k": 10})
        if kind == "search":
            return c.get("/api/samples", params={"q": rng.choice(["kick", "saw", "S1", "pad"]),
                                                 "limit": 50})
        if kind == "audio":
            return c.get(f"/api/samples/{sid}/audio", headers={"Range": "bytes=0-4095"})
        if kind == "trajectory":
            return c.get(f"/api/models/{MODEL}/trajectory/{sid}")
        if kind == "analogy":
            a, b, cc = (int(x) for x in rng.choice(ids, 3, replace=False))
            return c.post(f"/api/models/{MODEL}/analogy", json={"a": a, "b": b, "c": cc})
        if kind == "render":
            return c.post(f"/api/models/{MODEL}/synth",
                          json={"ids": [int(x) for x in rng.choice(ids, 3)], "duration": 0.7})
        if kind == "hangup":  # a long render, abandoned: the server should stop it
            try:
                return c.post(f"/api/models/{MODEL}/synth", timeout=0.3,
                              json={"ids": [sid], "duration": 60, "grain": 0.05,
                                    "overlap": 0.9})
            except httpx.TimeoutException:
                with lock:
                    hung_up[0] += 1
                return None
        tag = f"soak-{seed}-{k}-{j}"
        r = c.post("/api/curation/tags", json={"ids": [sid], "add": [tag]})
        if r.status_code == 200:
            with lock:
                written.append(tag)
        return r

    def client(k: int) -> None:
        nonlocal refused, timeouts
        rng = np.random.default_rng(seed * 1000 + k)
        with httpx.Client(base_url=url, timeout=timeout) as c:
            j = 0
            while time.monotonic() < stop:
                kind = kinds[int(rng.integers(len(kinds)))]
                t = time.perf_counter()
                try:
                    r = one(c, rng, kind, k, j)
                    if r is None:  # hung up on purpose
                        continue
                    r.read()
                except httpx.TimeoutException:
                    with lock:
                        timeouts += 1
                    continue
                except httpx.HTTPError:
                    with lock:
                        errors[kind] += 1
                    continue
                finally:
                    j += 1
                dt = time.perf_counter() - t
                with lock:
                    if r.status_code == 503:
                        refused += 1
                    elif r.status_code >= 400:
                        errors[kind] += 1
                    else:
                        lat[kind].append(dt)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    return {"threads": threads, "lat": lat, "errors": errors, "written": written,
            "refused": lambda: refused, "timeouts": lambda: timeouts,
            "hung_up": lambda: hung_up[0]}


def summary(run: dict, wall: float) -> dict:
    out = {}
    for kind, xs in run["lat"].items():
        a = np.array(xs) * 1000
        out[kind] = {"n": len(a), "errors": run["errors"][kind],
                     "p50_ms": float(np.percentile(a, 50)) if len(a) else None,
                     "p99_ms": float(np.percentile(a, 99)) if len(a) else None}
    out["requests_per_s"] = sum(len(x) for x in run["lat"].values()) / wall
    out["refused_503"] = run["refused"]()
    out["timeouts"] = run["timeouts"]()
    out["hung_up_on_purpose"] = run["hung_up"]()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("atlas", type=Path)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--burst-clients", type=int, default=200)
    ap.add_argument("--burst-duration", type=float, default=60)
    ap.add_argument("--renders", action="store_true",
                    help="also render paths, and abandon long renders (hang up after 0.3 s)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    common.print_facts(common.machine_facts())
    import httpx

    server = subprocess.Popen([SOUNDATLAS, "serve", "--atlas", str(args.atlas), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "CI": "1"})
    result: dict = {"atlas": str(args.atlas), "clients": args.clients,
                    "duration_s": args.duration}
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)
        with httpx.Client(base_url=url, timeout=600) as c:
            ids = np.frombuffer(c.get("/api/samples/ids").content, "<i4")
            c.get(f"/api/models/{MODEL}/neighbours/{int(ids[0])}")  # builds the index
            c.get(f"/api/models/{MODEL}/points")
        facts = {"start": proc_facts(server.pid)}
        kinds = ["points", "neighbours", "search", "audio", "trajectory", "analogy", "tag"]
        if args.renders:
            kinds += ["render", "hangup"]
        t0 = time.perf_counter()
        soak = run_clients(url, args.clients, args.duration, kinds, ids, seed=1)
        trace = []
        while any(t.is_alive() for t in soak["threads"]):
            elapsed = time.perf_counter() - t0
            trace.append({"s": round(elapsed, 1), **proc_facts(server.pid)})
            if "middle" not in facts and elapsed >= args.duration / 2:
                facts["middle"] = proc_facts(server.pid)
            time.sleep(10)
        for t in soak["threads"]:
            t.join()
        facts["trace"] = trace
        wall = time.perf_counter() - t0
        facts["end"] = proc_facts(server.pid)
        result["soak"] = summary(soak, wall)
        result["server"] = facts
        if args.renders:
            with httpx.Client(base_url=url, timeout=60) as c:
                deadline = time.monotonic() + 120  # abandoned renders stop within a grain
                while (renders := c.get("/api/renders").json())["running"] \
                        + renders["waiting"] and time.monotonic() < deadline:
                    time.sleep(0.5)
            result["renders"] = renders
        from soundatlas.atlas import Atlas

        with Atlas.open(args.atlas) as atlas:
            stored = {r["tag"] for r in atlas.tag_rows() if r["tag"].startswith("soak-1-")}
        result["tags_written"] = len(soak["written"])
        result["tags_missing"] = len(set(soak["written"]) - stored)
        print(json.dumps({k: result[k] for k in ("soak", "server", "tags_written",
                                                 "tags_missing", "renders") if k in result},
                         indent=1), flush=True)
        t0 = time.perf_counter()
        burst = run_clients(url, args.burst_clients, args.burst_duration,
                            ["neighbours", "search"], ids, seed=2)
        for t in burst["threads"]:
            t.join()
        result["burst"] = summary(burst, time.perf_counter() - t0)
        result["burst"]["clients"] = args.burst_clients
        with httpx.Client(base_url=url, timeout=60) as c:
            result["alive_after_burst"] = c.get("/api/atlas").status_code == 200
        result["server"]["after_burst"] = proc_facts(server.pid)
        print(json.dumps({k: result[k] for k in ("burst", "alive_after_burst")}, indent=1))
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
        result["server_stderr_tail"] = err[-2000:]
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
