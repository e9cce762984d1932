"""A sample's trajectory as the page asks for it, against the server of an earlier commit in the
same run: what reading the sample's features to find its sounding part
(``X-Sounding-First``/``-Last``, ``frames.sample_sounding_span``) adds to each request.

On an existing atlas with an embedded default model, each run starts a fresh ``soundatlas serve
--port 0`` (this checkout's ``src``, or ``--baseline``'s exported with ``git archive``, the same
interpreter and packages), asks once for the model's points (which warms the server as the page
does), then for ``--samples`` trajectories spread over the atlas, one after another on one
kept-alive connection. Per run: the median and 95th percentile of a trajectory's wall time.
Runs of the two servers alternate; medians over ``--repeats`` runs and the ratio ours /
baseline.

    python benchmarks/bench_trajectory.py --atlas A [--samples 500] [--repeats 5]
        [--baseline REF] [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from bench_neighbours import Server


def run_once(atlas: Path, src: Path, n_samples: int) -> dict:
    import httpx

    server = Server(atlas, src)
    try:
        with httpx.Client(base_url=server.url, timeout=600) as c:
            model = c.get("/api/atlas").json()["default_model"]
            if model is None:
                raise SystemExit(f"{atlas}: needs a default model with embeddings")
            points = c.get(f"/api/models/{model}/points")
            points.raise_for_status()
            ids = np.frombuffer(points.content, "<i4", count=int(points.headers["x-count"]))
            chosen = ids[np.linspace(0, len(ids) - 1, min(n_samples, len(ids))).astype(int)]
            times = []
            for sid in chosen:
                t = time.perf_counter()
                r = c.get(f"/api/models/{model}/trajectory/{int(sid)}")
                r.raise_for_status()
                times.append(time.perf_counter() - t)
    finally:
        server.stop()
    ms = 1000 * np.asarray(times)
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "n": len(ms)}


FIGURES = (("median_ms", "median"), ("p95_ms", "95th percentile"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas", type=Path, required=True, help="an atlas with a default model")
    ap.add_argument("--samples", type=int, default=500, help="trajectories asked for per run "
                    "(default 500)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each server (default 5)")
    ap.add_argument("--baseline", default="4c5e9d2", help="the commit whose server is the "
                    "baseline (default 4c5e9d2: before trajectories said their sounding part)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) /
                    "soundatlas-bench-trajectory", help="where the baseline is exported")
    ap.add_argument("--json", help="also write every figure here")
    args = ap.parse_args()

    facts, servers, sha = common.ours_and_baseline(args.work, args.baseline)
    runs = common.servers_alternated(
        servers, args.repeats, lambda src, r: run_once(args.atlas, src, args.samples),
        show=lambda name, r, res: print(
            f"  {name:8s} run {r + 1}: median {res['median_ms']:.2f} ms, 95th percentile "
            f"{res['p95_ms']:.2f} ms ({res['n']} trajectories)", flush=True))
    print(f"\na trajectory from a warm server on {args.atlas.name}, medians of {args.repeats} "
          f"runs; baseline = the server at {sha}")
    medians = common.ours_against_baseline(runs, FIGURES, " ms")
    common.write_json(args.json, {"facts": facts, "atlas": str(args.atlas), "baseline": sha,
                                  "runs": runs, "medians": medians})


if __name__ == "__main__":
    main()
