"""A server just started: how long the page's first requests take, against the server of an
earlier commit in the same run (issue 14 §3, "serve start-up until the page's first points").

On an existing atlas (``bench_scale.py``'s, say), each run starts a fresh ``soundatlas serve
--port 0`` (this checkout's ``src``, or ``--baseline``'s exported with ``git archive``, the same
interpreter and packages), then asks, one after another on one kept-alive connection, what the
page asks for before it draws: ``/api/atlas``, ``/api/samples/ids``, the model's points and the
first label's codes (``/api/labels/KEY``), and then one nearest-sounds request (k=10), which
builds the similarity index. Each request's wall time, and the time from the server's start to
the points' last byte. With ``--cold`` the page cache is emptied before each server starts
(root only), as after a reboot: what the server reads from disk is then counted. Runs of the
two servers alternate; medians over ``--repeats`` and the ratios ours / baseline.

    python benchmarks/bench_first_load.py --atlas A [--cold] [--repeats 3] [--baseline REF]
        [--label instrument] [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from bench_neighbours import Server

STEPS = ("atlas", "ids", "points", "labels", "neighbours")


def run_once(atlas: Path, src: Path, label: str) -> dict:
    import httpx

    t0 = time.perf_counter()
    server = Server(atlas, src)
    try:
        listen = time.perf_counter() - t0
        out = {"listen_s": listen}
        with httpx.Client(base_url=server.url, timeout=600) as c:
            def timed_get(path: str, **kw) -> tuple[httpx.Response, float]:
                t = time.perf_counter()
                r = c.get(path, **kw)
                r.raise_for_status()
                return r, time.perf_counter() - t

            facts, out["atlas_s"] = timed_get("/api/atlas")
            model = facts.json()["default_model"]
            if model is None or label not in facts.json()["labels"]:
                raise SystemExit(f"{atlas}: needs a default model with embeddings and the label "
                                 f"{label!r} (--label)")
            _, out["ids_s"] = timed_get("/api/samples/ids")
            points, out["points_s"] = timed_get(f"/api/models/{model}/points")
            out["to_points_s"] = time.perf_counter() - t0
            _, out["labels_s"] = timed_get(f"/api/labels/{label}")
            first = int(np.frombuffer(points.content, "<i4", count=1)[0])  # an embedded sample
            _, out["neighbours_s"] = timed_get(f"/api/models/{model}/neighbours/{first}",
                                               params={"k": 10})
    finally:
        server.stop()
    return out


FIGURES = (("listen_s", "listening"), ("atlas_s", "/api/atlas"), ("ids_s", "ids"),
           ("points_s", "points"), ("to_points_s", "start to points"),
           ("labels_s", "label codes"), ("neighbours_s", "first neighbours"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas", type=Path, required=True, help="an atlas with a default model")
    common.add_cold_option(ap)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each server (default 3)")
    ap.add_argument("--baseline", default="d1a5d80", help="the commit whose server is the "
                    "baseline (default d1a5d80: before the database was read ahead and the "
                    "points waited for their KD-tree)")
    ap.add_argument("--label", default="instrument", help="the label whose codes are asked for")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) /
                    "soundatlas-bench-first-load", help="where the baseline is exported")
    ap.add_argument("--json", help="also write every figure here")
    args = ap.parse_args()
    common.check_cold(ap, args)

    facts, servers, sha = common.ours_and_baseline(args.work, args.baseline)
    runs = common.servers_alternated(
        servers, args.repeats, lambda src, r: run_once(args.atlas, src, args.label),
        cold=args.cold, show=lambda name, r, res: print(
            f"  {name:8s} run {r + 1}: " + "  ".join(
                f"{label} {res[key]:.2f} s" for key, label in FIGURES), flush=True))
    print(f"\nfirst requests of a fresh server on {args.atlas.name}, medians of {args.repeats} "
          f"runs; baseline = the server at {sha}"
          + ("; page cache emptied before each server" if args.cold else ""))
    medians = common.ours_against_baseline(runs, FIGURES, " s")
    common.write_json(args.json, {"facts": facts, "atlas": str(args.atlas), "cold": args.cold,
                                  "baseline": sha, "runs": runs, "medians": medians})


if __name__ == "__main__":
    main()
