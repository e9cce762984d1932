"""Web map speed: the points API's payload and latency, and the page's load and frame times in
headless Chromium, for maps of 10k, 100k and 1M points (issue 5: "a map of 100k points loads in
under 3 s and stays interactive").

For each size a synthetic atlas is built once through the atlas's own write API (cached under
``--work``): N samples of one tiny feature frame each, 24 ``instrument`` classes, and a model
``bench`` whose points are drawn from a mixture of 24 Gaussians (fake 4-frame trajectories around
them). No audio files exist; while hovering, the page's audio requests are answered with a short
silent WAV by the browser automation so that playback runs as it would.

Measured, in the same run:

1. Payload, in Python. Ours: ``GET /api/models/{m}/points`` as the server builds it (int32 ids
   then float32 x 3 points, little-endian). Named baseline **JSON rows**: the same points as a
   JSON list of ``[id, x, y, z]`` rows (what a naive API would send), rendered as Starlette's
   JSONResponse renders JSON. Bytes, encode time (arrays -> body) and decode time (body -> arrays
   for ours, -> Python lists for ``json.loads``), medians, ratios.
2. API latency: ``/api/atlas``, ``/api/samples/ids``, ``/api/labels/instrument``,
   ``/api/models/bench/points``, search (``/api/samples?q=...``, ``?label=...``) and
   ``POST /api/samples/lookup`` of LOOKUP_N ids, each against a named baseline served by a
   benchmark-only route added to the benchmark's own app instance (not part of soundatlas):
   - points: the same points as JSON rows (``/bench/points.json``);
   - ids, labels, search: **a per-row Python implementation** of the same endpoints (a loop over
     every sample with a dict lookup each: their code at commit 69a469f, copied below as
     ``old_*``, under ``/bench/old/...``), whose answers are checked to equal ours;
   - lookup: **one ``GET /api/samples/{id}`` per id**, LOOKUP_N of them one after another (over
     HTTP on one kept-alive connection), the way a page without the bulk lookup asks.
   In-process (``soundatlas.web.app.call``, one event loop) and over HTTP (request sent to last
   byte read, on a connection opened beforehand) to a real uvicorn server on 127.0.0.1, run in a
   thread of this process as tests/test_web_e2e.py does.
   The first request to a fresh app is reported on its own ("cold": it reads the points from
   SQLite and builds the KD-tree the app keeps); the rest are medians of warm requests.
   The synthetic ids run without gaps, which ``/api/samples/ids`` answers without reading them;
   a copy of the atlas with one sample removed measures the other way (in-process only).
3. The page, in Debian's headless Chromium (WebGL in software: SwiftShader) through Playwright,
   a fresh browser context (no cache) per repeat:
   - load: navigation start until ``window.soundatlas.state.ready`` (points drawn), with
     ``nPoints == N``;
   - frame interval (requestAnimationFrame timestamps) while idle (the baseline: the browser's
     own frame pacing), while orbiting (a mouse drag on the canvas) and while hovering (the mouse
     swept over the points: a pick per frame, tooltips, sounds); median and 95th percentile,
     and how many of those frames drew anything (the page renders only when something changed);
     and how long the camera goes on gliding (damping, a render per frame) after the drag;
   - hover latency: pointer event -> the tooltip naming the point under it (includes waiting for
     the next frame, where the page picks);
   - decoding in the browser: ``JSON.parse`` of the baseline body (and copying the rows into
     typed arrays, which the page needs) against typed-array views over our ArrayBuffer; and the
     whole fetch -> typed arrays for both.
   SwiftShader renders on the CPU (here: the same two busy cores), so its frame times are an upper
   bound for a machine with a GPU.

    python benchmarks/bench_web.py [--sizes ...] [--repeats 3] [--api-only] [--json FILE]
        (defaults: --sizes 10000 100000 1000000 --work TMP/soundatlas-bench-web, TMP being
        the system's temporary folder, tempfile.gettempdir())
    --api-only: part 2 alone (no payload comparison, no browser); --no-browser: parts 1 and 2.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import shutil
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import Request
from fastapi.responses import Response

import common
from soundatlas.web.server import ThreadedServer

sys.path.append(str(common.REPO / "tests"))  # tests/browser.py: the browser the web tests drive
from browser import MISSING, VIEWPORT, find_chromium, launch  # noqa: E402

CHROMIUM = find_chromium()  # Debian's chromium, as `make setup` installs it (None: missing)
GOAL_LOAD_S, GOAL_LOAD_N = 3.0, 100_000

MODEL = "bench"
BUILD_TAG = "bench_web v1"  # change when the synthetic atlas changes: cached atlases are rebuilt
SEED = 5
BATCH = 20_000  # samples per commit_batch / commit_embeddings call
TRAJ_FRAMES = 4
HOVER_WAIT_MS = 20_000  # for one hovered point's tooltip (or for it to hide)
MIN_FRAMES = 6  # frames recorded per phase at least (a slow page is watched for longer)
INSTRUMENTS = ("accordion", "bass", "bassoon", "cello", "clarinet", "contrabass", "flute", "guitar",
               "harp", "horn", "keyboard", "mallet", "oboe", "organ", "piano", "reed", "saxophone",
               "strings", "synth", "trombone", "trumpet", "tuba", "viola", "violin")
BASELINE_PATH = "/bench/points.json"
OLD = "/bench/old"  # the per-row Python baseline of ids, labels and search (this benchmark only)
LOOKUP_N = 1_000  # ids looked up at once (a listing's worth), against one GET per id
SEARCH_Q = "s00012"  # in 100 of 1M paths (synthetic/<instrument>/s<7 digits>.wav)
SEARCH_LABEL = "instrument:violin"


# --- the synthetic atlas ------------------------------------------------------------------------

def synthetic_points(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(instrument codes (n,), points (n x 3) float32, trajectories (n x TRAJ_FRAMES x 3))."""
    rng = np.random.default_rng([SEED, n])
    k = len(INSTRUMENTS)
    centres = rng.normal(0.0, 3.0, (k, 3))
    spread = rng.uniform(0.3, 1.0, (k, 3))  # each class an axis-aligned ellipsoid
    weights = rng.dirichlet(np.full(k, 2.0))  # classes of unequal size
    codes = rng.choice(k, size=n, p=weights)
    points = (centres[codes] + rng.standard_normal((n, 3)) * spread[codes]).astype(np.float32)
    trajs = (points[:, None, :] + rng.normal(0.0, 0.05, (n, TRAJ_FRAMES, 3))).astype(np.float32)
    return codes, points, trajs


def build_atlas(work: Path, n: int) -> tuple[Path, float | None]:
    """The atlas of ``n`` synthetic samples under ``work`` (built when absent); (path, seconds to
    build, None when it came from the cache).

    Everything goes through the atlas's public write API (``commit_batch``, ``register_model``,
    ``commit_embeddings``, ``replace_labels``) in batches of BATCH samples; no SQL of our own.
    """
    from soundatlas.atlas import Atlas, NewSample

    path = work / f"atlas-{n}"
    tag = f"{BUILD_TAG} n={n}"
    if common.built_atlas(path, "bench_web", tag):
        return path, None
    shutil.rmtree(path, ignore_errors=True)
    library = work / "library"  # empty: the page never needs a sample's file except its sound
    library.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    codes, points, trajs = synthetic_points(n)
    with Atlas.create(path, library=library) as atlas:
        params = atlas.cqt_params
        frame = np.zeros((1, params.n_bins), np.float32)  # one silent feature frame per sample
        duration = params.hop_length / params.sr
        ids: list[int] = []
        for start in range(0, n, BATCH):
            new = [NewSample(path=f"synthetic/{INSTRUMENTS[codes[i]]}/s{i:07d}.wav", size=44,
                             mtime_ns=0, hash=f"{i:032x}", orig_sr=params.sr, n_channels=1,
                             duration=duration, file_duration=duration, truncated=False,
                             features=frame)
                   for i in range(start, min(n, start + BATCH))]
            ids += atlas.commit_batch(new)
        config = {"architecture": {"dims": 3}, "neighbourhood": {"name": "instrument"},
                  "synthetic": "benchmarks/bench_web.py"}
        model_id = atlas.register_model(MODEL, "models/bench-web-synthetic", config)
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            atlas.commit_embeddings(model_id, [(ids[i], trajs[i], points[i])
                                               for i in range(start, stop)])
        atlas.replace_labels({sid: {"instrument": INSTRUMENTS[c]} for sid, c in zip(ids, codes)})
        atlas.set_meta("bench_web", tag)  # last: a build cut short is rebuilt next time
    return path, time.perf_counter() - t0


# --- the named baseline: the same points as JSON rows -------------------------------------------

def binary_body(ids: np.ndarray, points: np.ndarray) -> bytes:
    """Ours, exactly as ``GET /api/models/{m}/points`` builds it."""
    return ids.astype("<i4").tobytes() + points.astype("<f4").tobytes()


def binary_decode(body: bytes, n: int, dims: int = 3) -> tuple[np.ndarray, np.ndarray]:
    return (np.frombuffer(body, "<i4", n),
            np.frombuffer(body, "<f4", n * dims, offset=4 * n).reshape(n, dims))


def json_rows_body(ids: np.ndarray, points: np.ndarray) -> bytes:
    """The baseline: ``[[id, x, y, z], ...]`` rendered as Starlette's JSONResponse does
    (compact separators). The float32 values are written as Python writes them once widened to
    float64 (up to 17 significant digits), as ``ndarray.tolist()`` then ``json.dumps`` would."""
    rows = [[i, *p] for i, p in zip(ids.tolist(), points.tolist())]
    return json.dumps(rows, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def add_baseline_route(app) -> None:
    """Benchmark only: serve the baseline from the benchmark's app instance, from the same cached
    points ours uses (so both pay the same for reading them)."""
    from soundatlas.web.app import model_or_404, web_state

    @app.get(BASELINE_PATH, include_in_schema=False)
    def naive_points(request: Request) -> Response:
        web = web_state(request)
        with web.atlas() as atlas:
            index = web.point_index(atlas, model_or_404(atlas, MODEL))
        return Response(json_rows_body(index.ids, index.points), media_type="application/json")


# --- the named baseline of ids, labels and search: per-row Python code -------------------------

def add_old_routes(app) -> None:
    """Benchmark only: ``GET /api/samples/ids``, ``/api/labels/{key}`` and ``/api/samples``
    (search) as per-row Python code (their implementation at commit 69a469f, copied verbatim but
    for the route names and the label-filter parsing, which both call), served
    under OLD from the benchmark's app instance: a Python loop over every sample
    (``iter_ids_hashes``) with a dict lookup per sample, and every label of every sample loaded
    for each search."""
    from fastapi import Query

    from soundatlas.web.app import api_error, binary_response, sorted_values, web_state
    from soundatlas.web.routers.samples import label_filters

    def all_labels(atlas) -> dict[str, dict[int, str]]:
        return {key: atlas.labels(key) for key in atlas.label_summary()}

    @app.get(f"{OLD}/samples/ids", include_in_schema=False)
    def old_get_ids(request: Request) -> Response:
        with web_state(request).atlas() as atlas:
            ids = np.array([sid for sid, _, _ in atlas.iter_ids_hashes()], dtype="<i4")
        return binary_response(ids.tobytes(), {"X-Count": len(ids)})

    @app.get(f"{OLD}/labels/{{key}}", include_in_schema=False)
    def old_get_label(key: str, request: Request) -> dict:
        import base64

        with web_state(request).atlas() as atlas:
            known = atlas.label_summary()
            if key not in known:
                raise api_error(404, f"no label {key!r} in this atlas (known: "
                                f"{', '.join(known) or 'none'})")
            by_id = atlas.labels(key)
            ids = [sid for sid, _, _ in atlas.iter_ids_hashes()]
        values = sorted_values(by_id.values())
        code_of = {v: i for i, v in enumerate(values)}
        codes = np.array([code_of.get(by_id.get(sid), -1) for sid in ids], dtype="<i4")
        return {"key": key, "values": values, "codes": base64.b64encode(codes.tobytes()).decode()}

    @app.get(f"{OLD}/samples", include_in_schema=False)
    def old_search(request: Request, q: str = Query(""), label: list[str] = Query([]),
                   limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0)) -> dict:
        filters = label_filters(label)  # the parsing both share
        with web_state(request).atlas() as atlas:
            labels = all_labels(atlas)
            unknown = [k for k, _ in filters if k not in labels]
            if unknown:
                raise api_error(400, f"no label {unknown[0]!r} in this atlas (known: "
                                f"{', '.join(labels) or 'none'})")
            needle = q.casefold()
            matches = [
                (sid, path) for sid, _, path in atlas.iter_ids_hashes()
                if needle in path.casefold()
                and all(labels[k].get(sid) == v for k, v in filters)
            ]
        page = matches[offset : offset + limit]
        items = [{"id": sid, "path": path,
                  "labels": {k: by_id[sid] for k, by_id in labels.items() if sid in by_id}}
                 for sid, path in page]
        return {"total": len(matches), "ids": [sid for sid, _ in matches], "items": items}


def gapped_copy(work: Path, atlas_dir: Path) -> Path:
    """A copy of the atlas's database with one sample (the middle one) removed, so that its ids
    have a gap (cached next to it)."""
    from soundatlas.atlas import DB_NAME, Atlas

    path = work / f"{atlas_dir.name}-gap"
    with Atlas.open(atlas_dir) as atlas:
        tag = f"{atlas.meta('bench_web')} gap"
    if (path / DB_NAME).is_file():
        with Atlas.open(path) as atlas:
            if atlas.meta("bench_web") == tag:
                return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    with Atlas.open(atlas_dir) as atlas:  # a consistent copy, WAL included
        atlas.conn.execute(f"VACUUM INTO '{path / DB_NAME}'")
    with Atlas.open(path, write=True) as atlas:
        ids = atlas.sample_ids()
        atlas.remove_samples([int(ids[len(ids) // 2])])
        atlas.set_meta("bench_web", tag)
    return path


def bench_payload(ids: np.ndarray, points: np.ndarray, repeats: int) -> dict:
    n = len(ids)
    t = {"binary_encode_s": [], "binary_decode_s": [], "json_encode_s": [], "json_decode_s": []}
    for _ in range(repeats):
        dt, body = common.timed(lambda: binary_body(ids, points))
        t["binary_encode_s"].append(dt)
        t["binary_decode_s"].append(common.timed(lambda: binary_decode(body, n))[0])
        dt, jbody = common.timed(lambda: json_rows_body(ids, points))
        t["json_encode_s"].append(dt)
        t["json_decode_s"].append(common.timed(lambda: json.loads(jbody))[0])
    out = {k: common.median(v) for k, v in t.items()}
    out.update(binary_bytes=len(body), json_bytes=len(jbody), runs=t)
    return out


# --- the API -------------------------------------------------------------------------------------

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Call:
    """What one measurement sends: one request, or several one after another (a baseline that
    takes one request per id). ``requests``: (method, path, JSON body or None)."""

    name: str
    requests: tuple[tuple[str, str, bytes | None], ...]

    @classmethod
    def get(cls, path: str, name: str | None = None) -> Call:
        return cls(name or path, (("GET", path, None),))


def http_call(port: int, call: Call) -> tuple[float, list[bytes]]:
    """(seconds, bodies) of a call's requests sent one after another on one connection to
    127.0.0.1: from sending the first request to the last body's last byte. The connection is
    opened before the clock starts, and fresh for each call (the server closes a kept-alive one
    idle for 5 s, and the in-process requests in between can take longer than that)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    bodies = []
    try:
        conn.connect()
        t0 = time.perf_counter()
        for method, path, body in call.requests:
            conn.request(method, path, body=body, headers=JSON_HEADERS if body else {})
            r = conn.getresponse()
            bodies.append(r.read())
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: {r.status} {bodies[-1][:200]!r}")
        dt = time.perf_counter() - t0
    finally:
        conn.close()
    return dt, bodies


class InProcess:
    """Requests sent to the ASGI app in this process with ``soundatlas.web.app.call``, all on one
    event loop (``asyncio.run`` per request would add its own teardown: ~0.2 s per request at 1M
    points, measured, none of it the app's)."""

    def __init__(self, app):
        self.app = app
        self.loop = asyncio.new_event_loop()

    def call(self, call: Call) -> list[bytes]:
        from soundatlas.web.app import call as asgi_call

        bodies = []
        for method, path, body in call.requests:
            headers = list(JSON_HEADERS.items()) if body else []
            status, _, answer = self.loop.run_until_complete(
                asgi_call(self.app, method, path, headers=headers, body=body or b""))
            if status != 200:
                raise RuntimeError(f"{method} {path}: {status} {answer[:200]!r}")
            bodies.append(answer)
        return bodies

    def close(self) -> None:
        left = asyncio.all_tasks(self.loop)  # a request's disconnect listener may still wait
        for task in left:
            task.cancel()

        async def drain():
            await asyncio.gather(*left, return_exceptions=True)

        self.loop.run_until_complete(drain())
        self.loop.close()


def api_calls(n: int) -> tuple[list[Call], list[tuple[str, str, str]]]:
    """(every call measured, (what, ours, baseline) pairs of call names) for an atlas of ``n``
    samples with ids 1..n."""
    from urllib.parse import urlencode

    ids = np.random.default_rng([SEED, n, 2]).choice(np.arange(1, n + 1), size=min(n, LOOKUP_N),
                                                     replace=False).tolist()
    search_q = "/api/samples?" + urlencode({"q": SEARCH_Q})
    search_label = "/api/samples?" + urlencode({"label": SEARCH_LABEL})
    lookup = Call(f"POST /api/samples/lookup ({len(ids):,} ids)",
                  (("POST", "/api/samples/lookup", json.dumps({"ids": ids}).encode()),))
    per_id = Call(f"{len(ids):,} x GET /api/samples/{{id}}",
                  tuple(("GET", f"/api/samples/{i}", None) for i in ids))
    ours_base = [
        ("sample ids", Call.get("/api/samples/ids"), Call.get(f"{OLD}/samples/ids")),
        ("label codes", Call.get("/api/labels/instrument"), Call.get(f"{OLD}/labels/instrument")),
        (f"search q={SEARCH_Q}", Call.get(search_q), Call.get(OLD + search_q[4:])),
        (f"search label={SEARCH_LABEL}", Call.get(search_label), Call.get(OLD + search_label[4:])),
        ("names of listed samples", lookup, per_id),
        ("points", Call.get(f"/api/models/{MODEL}/points"), Call.get(BASELINE_PATH)),
    ]
    calls = [Call.get("/api/atlas")] + [c for _, ours, base in ours_base for c in (ours, base)]
    return calls, [(what, ours.name, base.name) for what, ours, base in ours_base]


def check_same_answers(name: str, ours: list[bytes], base: list[bytes]) -> None:
    """Ours and the per-row baseline's answers must agree (the lookup: with the per-id answers)."""
    if name.startswith("POST /api/samples/lookup"):
        got = json.loads(ours[0])
        want = [json.loads(b) for b in base]
        same = got["missing"] == [] and [(i["id"], i["path"], i["labels"]) for i in got["items"]] \
            == [(w["id"], w["path"], w["labels"]) for w in want]
    elif name.startswith("/api/samples/ids"):
        same = ours == base
    elif name.startswith("/api/models/"):
        return  # the baseline is another format; bench_payload compares the numbers
    else:
        same = json.loads(ours[0]) == json.loads(base[0])
    if not same:
        raise RuntimeError(f"{name}: our answer differs from the baseline's")


def bench_api(atlas_dir: Path, server: Server, repeats: int) -> dict:
    """Latency of each call in-process (a fresh app: first request cold) and over HTTP."""
    from soundatlas.atlas import Atlas
    from soundatlas.web import create_app

    with Atlas.open(atlas_dir) as atlas:
        n = atlas.n_samples()
    calls, pairs = api_calls(n)
    app = create_app(atlas_dir)
    add_baseline_route(app)
    add_old_routes(app)
    client = InProcess(app)
    out, answers = {}, {}
    # cold: the first request each endpoint gets from a fresh app (the points' one reads them
    # from SQLite and builds the KD-tree; the baseline's comes after it, so finds them cached)
    for call in calls:
        dt, answers[call.name] = common.timed(lambda: client.call(call))
        out[call.name] = {"bytes": sum(map(len, answers[call.name])), "requests":
                          len(call.requests), "cold_s": dt, "inproc_s": [], "http_s": []}
    for _, ours, base in pairs:
        check_same_answers(ours, answers[ours], answers[base])
    del answers
    for call in calls:  # the server's own first requests (its cache), not timed
        http_call(server.port, call)
    with common.OtherLoad() as load:
        for _ in range(repeats):  # rounds interleaved: every call, in-process then HTTP
            for call in calls:
                out[call.name]["inproc_s"].append(common.timed(lambda: client.call(call))[0])
                out[call.name]["http_s"].append(http_call(server.port, call)[0])
    client.close()
    for v in out.values():
        v["inproc_median_s"] = common.median(v["inproc_s"])
        v["http_median_s"] = common.median(v["http_s"])
    return {"endpoints": out, "pairs": pairs, "other_load_cores": load.cores}


def bench_ids_with_a_gap(atlas_dir: Path, repeats: int) -> dict:
    """``/api/samples/ids`` and the per-row baseline on a copy whose ids have a gap, in-process."""
    from soundatlas.web import create_app

    app = create_app(atlas_dir)
    add_old_routes(app)
    client = InProcess(app)
    ours, base = Call.get("/api/samples/ids"), Call.get(f"{OLD}/samples/ids")
    check_same_answers(ours.name, client.call(ours), client.call(base))
    t = {"ours_s": [], "old_s": []}
    for _ in range(repeats):
        t["ours_s"].append(common.timed(lambda: client.call(ours))[0])
        t["old_s"].append(common.timed(lambda: client.call(base))[0])
    client.close()
    return {"ours_median_s": common.median(t["ours_s"]),
            "old_median_s": common.median(t["old_s"]), "runs": t}


# --- the page ------------------------------------------------------------------------------------

# Runs before any script of the page. Records (1) when the page became ready: the page hides
# #loading and sets state.ready = true in the same task, so a MutationObserver callback (a
# microtask at the end of that task) sees ready already true and notes the time to within the
# microtask; (2) requestAnimationFrame timestamps while `recording` (this loop is registered
# before the page's render loop, so it runs first in every frame, with the same timestamp);
# (3) which frames drew anything (WebGL draw calls counted), and how many frames in a row drew
# nothing (the page renders only when something changed); (4) hover latency: the armed
# pointermove's event time, and the time the tooltip next shows.
INIT_JS = r"""
window.__bench = {readyAt: null, frames: [], recording: false, drawn: false, rendered: 0,
                  quiet: 0, armed: false, lastMove: 0, hoverLat: []};
(() => {
  const b = window.__bench;
  for (const C of [window.WebGLRenderingContext, window.WebGL2RenderingContext]) {
    for (const f of ['drawArrays', 'drawElements']) {
      const draw = C.prototype[f];
      C.prototype[f] = function (...a) { b.drawn = true; return draw.apply(this, a); };
    }
  }
  new MutationObserver(() => {
    const s = window.soundatlas && window.soundatlas.state;
    if (b.readyAt === null && s && (s.ready || s.error)) b.readyAt = performance.now();
    const tip = document.getElementById('tooltip');
    if (tip && !tip.hidden && b.lastMove) {
      b.hoverLat.push(performance.now() - b.lastMove);
      b.lastMove = 0;
    }
  }).observe(document, {subtree: true, attributes: true, childList: true,
                        attributeFilter: ['hidden']});
  const tick = (t) => {  // b.drawn: the previous frame drew
    if (b.recording) { b.frames.push(t); if (b.drawn) b.rendered++; }
    b.quiet = b.drawn ? 0 : b.quiet + 1;
    b.drawn = false;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  window.addEventListener('pointermove', (e) => {
    if (b.armed) { b.lastMove = e.timeStamp; b.armed = false; }
  }, {capture: true});
})();
"""

# after ready: what the page and the network timeline say about the load
LOAD_INFO_JS = r"""
() => {
  const s = window.soundatlas.state;
  const res = {};
  for (const e of performance.getEntriesByType('resource')) {
    const path = new URL(e.name).pathname;
    if (path.startsWith('/api/')) res[path] = {start: e.startTime, end: e.responseEnd,
                                               bytes: e.encodedBodySize};
  }
  const gl = document.createElement('canvas').getContext('webgl');
  const dbg = gl && gl.getExtension('WEBGL_debug_renderer_info');
  return {readyAt: window.__bench.readyAt, ready: s.ready, error: s.error, nPoints: s.nPoints,
          resources: res, heapBytes: performance.memory ? performance.memory.usedJSHeapSize : null,
          webgl: dbg ? gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) : null};
}
"""

# decoding in the browser, the baseline's JSON against our binary, on the page after its load
PARSE_JS = r"""
async ([model, baseline]) => {
  const now = () => performance.now();
  const toTyped = (rows) => {  // what the page needs: typed arrays for the geometry
    const n = rows.length, ids = new Int32Array(n), pts = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      const r = rows[i];
      ids[i] = r[0]; pts[3 * i] = r[1]; pts[3 * i + 1] = r[2]; pts[3 * i + 2] = r[3];
    }
    return [ids, pts];
  };
  const views = (buffer, n) => [new Int32Array(buffer, 0, n),
                                new Float32Array(buffer, 4 * n, 3 * n)];
  const url = `/api/models/${model}/points`;
  const text = await (await fetch(baseline)).text();
  let t = now();
  const rows = JSON.parse(text);
  const parse = now() - t;
  t = now();
  toTyped(rows);
  const copy = now() - t;
  const response = await fetch(url);
  const n = Number(response.headers.get('x-count'));
  const buffer = await response.arrayBuffer();
  const reps = 10000;  // views cost next to nothing: time many, report one
  t = now();
  for (let i = 0; i < reps; i++) views(buffer, n);
  const view = (now() - t) / reps;
  // the whole way, request to typed arrays: the baseline (the server encodes JSON each time) and
  // ours, 3 rounds interleaved, the median
  const e2eJson = [], e2eBinary = [];
  for (let round = 0; round < 3; round++) {
    t = now();
    toTyped(await (await fetch(baseline)).json());
    e2eJson.push(now() - t);
    t = now();
    const r2 = await fetch(url);
    views(await r2.arrayBuffer(), Number(r2.headers.get('x-count')));
    e2eBinary.push(now() - t);
  }
  const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
  return {json_parse_ms: parse, json_copy_ms: copy, json_parse_copy_ms: parse + copy,
          binary_view_ms: view, e2e_json_ms: median(e2eJson), e2e_binary_ms: median(e2eBinary),
          json_chars: text.length, binary_bytes: buffer.byteLength, rows: rows.length};
}
"""


def silent_wav(seconds: float = 0.1, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(b"\x00\x00" * int(sr * seconds))
    return buf.getvalue()


def frame_stats(stamps: list[float]) -> dict:
    """Frame intervals (ms) from requestAnimationFrame timestamps."""
    d = np.diff(np.asarray(stamps, dtype=float))
    if len(d) == 0:
        return {"frames": len(stamps), "median_ms": None, "p95_ms": None, "max_ms": None}
    return {"frames": len(stamps), "median_ms": float(np.median(d)),
            "p95_ms": float(np.percentile(d, 95)), "max_ms": float(d.max())}


def record_frames(page, seconds: float, step=None) -> dict:
    """rAF timestamps for ``seconds``, calling ``step(i)`` (one input event) over and over."""
    page.evaluate("() => { __bench.frames = []; __bench.rendered = 0; __bench.recording = true; }")
    start = time.perf_counter()
    i = 0
    while True:
        elapsed = time.perf_counter() - start
        # a slow page: go on (up to 10x as long) until a few frame intervals are in
        if elapsed >= seconds and (elapsed >= 10 * seconds or page.evaluate(
                "__bench.frames.length") >= MIN_FRAMES):
            break
        if step is None:
            time.sleep(0.02)
        else:
            step(i)  # returns once the page has handled the event
            i += 1
    seconds = time.perf_counter() - start
    stamps, rendered = page.evaluate(
        "() => { __bench.recording = false; return [__bench.frames, __bench.rendered]; }")
    return {**frame_stats(stamps), "rendered": rendered, "input_events": i, "seconds": seconds}


def wait_until_still(page, timeout_ms: float) -> None:
    """Until the page has drawn nothing for 10 frames in a row (animations, damping done)."""
    page.wait_for_function("window.__bench.quiet >= 10", polling=50, timeout=timeout_ms)


def process_tree() -> list[int]:
    """This process and its live descendants (the Playwright driver and Chromium's processes)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def page_once(browser, url: str, n: int, rng: np.random.Generator, args, *,
              screenshot: Path | None) -> dict:
    """One fresh page: load, idle/orbit/hover frames, hover latency, browser-side decoding."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url.split('/', 3)[-1]}")
            if r.status >= 400 else None)
    page.add_init_script(INIT_JS)
    timeout_ms = args.page_timeout * 1000
    out: dict = {}
    try:
        with common.OtherLoad(process_tree) as load:
            t0 = time.perf_counter()
            page.goto(url + "/", wait_until="commit", timeout=timeout_ms)
            page.wait_for_function("window.__bench.readyAt !== null", polling=100,
                                   timeout=timeout_ms)
            out["load_wall_s"] = time.perf_counter() - t0  # from Python: includes CDP overhead
        out["load_other_load_cores"] = load.cores
        info = page.evaluate(LOAD_INFO_JS)
        if info["error"] or not info["ready"] or info["nPoints"] != n:
            raise RuntimeError(f"the page did not draw {n} points: {info}")
        out["load_s"] = info["readyAt"] / 1000  # navigation start (timeOrigin) -> ready
        out["points_received_s"] = info["resources"].get(f"/api/models/{MODEL}/points",
                                                         {}).get("end", float("nan")) / 1000
        out["resources"] = info["resources"]
        out["heap_bytes"] = info["heapBytes"]
        out["webgl"] = info["webgl"]

        # sounds: a point under the pointer plays; the synthetic samples have no audio file, so
        # the automation answers those requests with a short silent WAV (fetching, decoding and
        # playing then run as usual); from here on, as the pointer is about to enter the map
        wav = silent_wav()
        audio_glob = "**/api/samples/*/audio"
        page.route(audio_glob, lambda route: route.fulfill(status=200, body=wav,
                                                           content_type="audio/wav"))

        box = page.locator("#map canvas").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        secs = args.interact_seconds
        wait_until_still(page, timeout_ms)
        out["idle"] = record_frames(page, min(1.0, secs))

        # orbit: a drag on the canvas, the pointer going round a circle of 150 px (OrbitControls
        # turns the camera with it; each move returns once the page has handled it)
        radius = 150.0
        page.mouse.move(cx + radius, cy)
        page.mouse.down()
        with common.OtherLoad(process_tree) as load:
            out["orbit"] = record_frames(page, secs, lambda i: page.mouse.move(
                cx + radius * np.cos(0.12 * (i + 1)), cy + radius * np.sin(0.12 * (i + 1))))
        page.mouse.up()
        out["orbit"]["other_load_cores"] = load.cores
        # the orbit controls' damping goes on turning the camera (and rendering) for a while
        # after the drag; hovering is measured once it has come to rest
        t = time.perf_counter()
        wait_until_still(page, timeout_ms)
        out["orbit"]["damping_s"] = time.perf_counter() - t

        # hover: sweep a Lissajous path over the middle of the map, a pick every frame
        w, h = box["width"] * 0.3, box["height"] * 0.3
        with common.OtherLoad(process_tree) as load:
            out["hover"] = record_frames(page, secs, lambda i: page.mouse.move(
                cx + w * np.sin(0.05 * i), cy + h * np.sin(0.07 * i + 0.5)))
        out["hover"]["other_load_cores"] = load.cores

        # hover latency on single points: from an empty corner (tooltip hidden) onto a point
        ids = rng.choice(np.arange(1, n + 1), size=min(n, 200), replace=False).tolist()
        pos = page.evaluate(
            "ids => ids.map(id => [id, window.soundatlas.screenPosition(id)])", ids)
        m = 40
        inside = [p for _, p in pos if p and box["x"] + m < p["x"] < box["x"] + box["width"] - m
                  and box["y"] + m < p["y"] < box["y"] + box["height"] - m]
        lat = []
        for p in inside[: args.hover_points]:
            page.mouse.move(box["x"] + 3, box["y"] + 3)
            try:
                page.wait_for_function("document.getElementById('tooltip').hidden",
                                       timeout=HOVER_WAIT_MS)
            except PlaywrightTimeout:  # a point in the corner: skip this one
                continue
            k = page.evaluate("() => { __bench.armed = true; return __bench.hoverLat.length; }")
            page.mouse.move(p["x"], p["y"])
            try:
                page.wait_for_function(f"window.__bench.hoverLat.length > {k}",
                                       timeout=HOVER_WAIT_MS)
            except PlaywrightTimeout:  # no tooltip: counted as missed, not as a latency
                out["hover_missed"] = out.get("hover_missed", 0) + 1
                continue
            lat.append(page.evaluate(f"window.__bench.hoverLat[{k}]"))
        out["hover_latency_ms"] = lat
        # off the map, then a moment for the last hovered sound's request to be answered
        page.mouse.move(box["x"] + 3, box["y"] + 3)
        page.wait_for_timeout(500)
        page.unroute(audio_glob)

        out["parse"] = page.evaluate(PARSE_JS, [MODEL, BASELINE_PATH])
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
    finally:
        out["console_errors"] = errors
        context.close()
    return out


def bench_page(server: Server, n: int, args, work: Path) -> dict:
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng([SEED, n, 1])
    runs = []
    with sync_playwright() as p:
        browser = launch(p, CHROMIUM)
        version = browser.version
        try:
            for r in range(args.repeats):
                shot = work / "screens" / f"map-{n}.png" if r == 0 else None
                runs.append(page_once(browser, server.url, n, rng, args, screenshot=shot))
        finally:
            browser.close()
    med = common.median

    def phase(name: str, key: str) -> float:
        return med([r[name][key] for r in runs])

    lat = [x for r in runs for x in r["hover_latency_ms"]]
    parse = {k: med([r["parse"][k] for r in runs]) for k in runs[0]["parse"]}
    return {
        "chromium": version, "webgl": runs[0]["webgl"], "runs": runs,
        "load_s": med([r["load_s"] for r in runs]),
        "load_s_all": [r["load_s"] for r in runs],
        "points_received_s": med([r["points_received_s"] for r in runs]),
        # responseEnd of each API request of the load, in the order they completed
        "responses_s": dict(sorted(
            ((path, med([r["resources"].get(path, {}).get("end") for r in runs]) / 1000)
             for path in runs[0]["resources"]), key=lambda kv: kv[1])),
        "heap_mb": med([(r["heap_bytes"] or 0) / 2**20 for r in runs]),
        **{f"{ph}_{k}": phase(ph, k) for ph in ("idle", "orbit", "hover")
           for k in ("median_ms", "p95_ms", "frames", "rendered", "input_events")},
        "damping_s": med([r["orbit"]["damping_s"] for r in runs]),
        "hover_latency_median_ms": med(lat),
        "hover_latency_p95_ms": float(np.percentile(lat, 95)) if lat else None,
        "hover_latency_n": len(lat),
        "hover_missed": sum(r.get("hover_missed", 0) for r in runs),
        "parse": parse,
        "load_other_load_cores": med([r["load_other_load_cores"] for r in runs]),
        "console_errors": sorted({e for r in runs for e in r["console_errors"]}),
    }


# --- output -------------------------------------------------------------------------------------

def _num(x: float | None) -> str:
    """A measurement with about 3 significant digits, without exponents."""
    if x is None or x != x:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) >= 0.001 else f"{x:.1e}"


def _ms(s: float | None) -> float | None:
    return None if s is None else 1000 * s


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def print_size(n: int, built: float | None, pay: dict | None, api: dict, gap: dict,
               page: dict | None) -> None:
    source = f"atlas built in {built:.1f} s" if built else "atlas from the cache"
    print(f"\n## {n:,} points ({source})")
    ep = api["endpoints"]
    pts = ep[f"/api/models/{MODEL}/points"]
    if pay:
        print_payload(pay, pts, ep[BASELINE_PATH], page)
    print_api(api, gap)
    if page:
        print_page(page)


def print_payload(pay: dict, pts: dict, base: dict, page: dict | None) -> None:
    rows = [
        {"what": "points payload, bytes", "ours": pay["binary_bytes"], "base": pay["json_bytes"]},
        {"what": "encode arrays -> body (Python), ms", "ours": _ms(pay["binary_encode_s"]),
         "base": _ms(pay["json_encode_s"])},
        {"what": "decode body (Python; JSON: json.loads to lists), ms",
         "ours": _ms(pay["binary_decode_s"]), "base": _ms(pay["json_decode_s"])},
        {"what": "GET points in-process, warm, ms", "ours": _ms(pts["inproc_median_s"]),
         "base": _ms(base["inproc_median_s"])},
        {"what": "GET points over HTTP, warm, ms", "ours": _ms(pts["http_median_s"]),
         "base": _ms(base["http_median_s"])},
    ]
    if page:
        pp = page["parse"]
        rows += [
            {"what": "browser: ArrayBuffer views vs JSON.parse, ms", "ours": pp["binary_view_ms"],
             "base": pp["json_parse_ms"]},
            {"what": "browser: views vs JSON.parse + copy to typed arrays, ms",
             "ours": pp["binary_view_ms"], "base": pp["json_parse_copy_ms"]},
            {"what": "browser: fetch -> typed arrays, ms", "ours": pp["e2e_binary_ms"],
             "base": pp["e2e_json_ms"]},
        ]
    for r in rows:
        r["ratio"] = _num(_ratio(r["base"], r["ours"]))
        r["ours"], r["base"] = _num(r["ours"]), _num(r["base"])
    print("payload: ours (binary int32 ids + float32 xyz) vs baseline 'JSON rows' [[id,x,y,z],...]")
    common.print_table(rows, [("what", "measure", ""), ("ours", "ours", ""),
                              ("base", "JSON rows", ""), ("ratio", "JSON/ours", "")])
    if page:
        print("  (views over an ArrayBuffer cost the same at any size: that ratio only says "
              "JSON.parse grows with N)")


def print_api(api: dict, gap: dict) -> None:
    ep = api["endpoints"]
    repeats = len(next(iter(ep.values()))["inproc_s"])
    print(f"\nAPI latency (cold: first request to a fresh app; warm: median of {repeats}; "
          f"other load {api['other_load_cores']:.2f} cores)")
    common.print_table(
        [{"path": p, "bytes": v["bytes"], "cold": _ms(v["cold_s"]),
          "inproc": _ms(v["inproc_median_s"]), "http": _ms(v["http_median_s"])}
         for p, v in ep.items()],
        [("path", "call", ""), ("bytes", "bytes", ",d"), ("cold", "cold ms", ".1f"),
         ("inproc", "in-process ms", ".1f"), ("http", "HTTP ms", ".1f")])
    print(f"  ({BASELINE_PATH} and {OLD}/... are baselines, served only by this benchmark)")
    rows = []
    for what, ours, base in api["pairs"]:
        o, b = ep[ours], ep[base]
        rows.append({"what": what, "ours": ours, "base": base,
                     "o_in": _ms(o["inproc_median_s"]), "b_in": _ms(b["inproc_median_s"]),
                     "r_in": _ratio(b["inproc_median_s"], o["inproc_median_s"]),
                     "o_http": _ms(o["http_median_s"]), "b_http": _ms(b["http_median_s"]),
                     "r_http": _ratio(b["http_median_s"], o["http_median_s"])})
    rows.append({"what": "sample ids, ids with a gap", "ours": "/api/samples/ids",
                 "base": f"{OLD}/samples/ids", "o_in": _ms(gap["ours_median_s"]),
                 "b_in": _ms(gap["old_median_s"]),
                 "r_in": _ratio(gap["old_median_s"], gap["ours_median_s"])})
    print("\nours against the named baselines (warm medians; ratio = baseline / ours)")
    common.print_table(rows, [
        ("what", "measure", ""), ("o_in", "ours in-process ms", ".1f"),
        ("b_in", "baseline in-process ms", ".1f"), ("r_in", "ratio", ".1f"),
        ("o_http", "ours HTTP ms", ".1f"), ("b_http", "baseline HTTP ms", ".1f"),
        ("r_http", "ratio", ".1f")])


def print_page(page: dict) -> None:
    print(f"\npage (headless Chromium {page['chromium']}, WebGL: {page['webgl']}; "
          f"{len(page['runs'])} fresh pages)")
    loads = ", ".join(f"{x:.2f}" for x in page["load_s_all"])
    idle = page["idle_median_ms"]
    prow = [
        {"what": "load: navigation start -> ready (points drawn), s", "v": f"{page['load_s']:.2f}",
         "note": f"runs {loads}; other load {page['load_other_load_cores']:.2f} cores"},
        {"what": "  points body fully received at, s", "v": f"{page['points_received_s']:.2f}",
         "note": "resource timing of GET points"},
        {"what": "  each API response complete at, s", "v": "",
         "note": ", ".join(f"{path.rsplit('/', 1)[-1]} {t:.2f}"
                           for path, t in page["responses_s"].items())},
        {"what": "  JS heap after load, MB", "v": f"{page['heap_mb']:.0f}", "note": ""},
        {"what": "frame interval idle (baseline), median / p95 ms",
         "v": f"{idle:.1f} / {page['idle_p95_ms']:.1f}",
         "note": f"the browser's own frame pacing; {page['idle_frames']:.0f} frames "
                 f"({page['idle_rendered']:.0f} drew)"},
    ]
    for ph, what in (("orbit", "orbiting (mouse drag)"), ("hover", "hovering (pick per frame)")):
        med, p95 = page[f"{ph}_median_ms"], page[f"{ph}_p95_ms"]
        prow.append({"what": f"frame interval {what}, median / p95 ms",
                     "v": f"{med:.1f} / {p95:.1f}",
                     "note": f"{_ratio(med, idle):.1f}x idle; ~{1000 / med:.0f} fps; "
                             f"{page[f'{ph}_frames']:.0f} frames ({page[f'{ph}_rendered']:.0f} "
                             f"drew), {page[f'{ph}_input_events']:.0f} mouse moves"})
        if ph == "orbit":
            prow.append({"what": "  camera damping after the drag, until still, s",
                         "v": f"{page['damping_s']:.1f}", "note": "rendering every frame"})
    if page["hover_latency_n"]:
        prow.append({"what": "hover latency: pointer event -> tooltip, median / p95 ms",
                     "v": f"{page['hover_latency_median_ms']:.1f} / "
                          f"{page['hover_latency_p95_ms']:.1f}",
                     "note": f"{page['hover_latency_n']} points ({page['hover_missed']} without "
                             "a tooltip); includes waiting for the next frame"})
    common.print_table(prow, [("what", "measure", ""), ("v", "value", ""), ("note", "", "")])
    if page["console_errors"]:
        print(f"  console errors seen: {page['console_errors'][:5]}")


def print_summary(results: list[dict]) -> None:
    print("\n## summary (medians)")
    rows = []
    for r in results:
        pay, page = r["payload"] or {}, r.get("page") or {}
        ep = r["api"]["endpoints"]
        rows.append({
            "n": r["n"], "bytes": ep[f"/api/models/{MODEL}/points"]["bytes"],
            "ratio": _ratio(pay.get("json_bytes"), pay.get("binary_bytes")),
            "http": _ms(ep[f"/api/models/{MODEL}/points"]["http_median_s"]),
            "http_json": _ms(ep[BASELINE_PATH]["http_median_s"]),
            "load": page.get("load_s"), "orbit": page.get("orbit_median_ms"),
            "orbit95": page.get("orbit_p95_ms"), "hover": page.get("hover_median_ms"),
            "pick": page.get("hover_latency_median_ms"),
            "parse": _ratio(page.get("parse", {}).get("e2e_json_ms"),
                            page.get("parse", {}).get("e2e_binary_ms")),
        })
    common.print_table(rows, [
        ("n", "points", ",d"), ("bytes", "points bytes", ",d"), ("ratio", "JSON/ours bytes", ".2f"),
        ("http", "GET points HTTP ms", ".1f"), ("http_json", "GET JSON rows HTTP ms", ".1f"),
        ("load", "page load s", ".2f"),
        ("orbit", "orbit frame ms", ".1f"), ("orbit95", "p95", ".1f"),
        ("hover", "hover frame ms", ".1f"), ("pick", "hover->tooltip ms", ".1f"),
        ("parse", "browser fetch->arrays JSON/ours", ".1f")])
    rows = []
    for r in results:
        ep = r["api"]["endpoints"]
        row = {"n": r["n"]}
        for what, ours, base in r["api"]["pairs"]:
            if base != BASELINE_PATH:
                o, b = ep[ours]["http_median_s"], ep[base]["http_median_s"]
                row[what] = f"{_num(_ms(o))} / {_num(_ms(b))} ({_num(_ratio(b, o))}x)"
        gap = r["ids_gap"]
        row["gap"] = (f"{_num(_ms(gap['ours_median_s']))} / {_num(_ms(gap['old_median_s']))} "
                      f"({_num(_ratio(gap['old_median_s'], gap['ours_median_s']))}x)")
        rows.append(row)
    whats = [w for w, _, b in results[0]["api"]["pairs"] if b != BASELINE_PATH]
    print("\nours / the named baseline over HTTP, ms (baseline / ours); ids with a gap in-process")
    common.print_table(rows, [("n", "samples", ",d")] + [(w, w, "") for w in whats]
                       + [("gap", "sample ids, a gap", "")])
    for r in results:
        if r["n"] == GOAL_LOAD_N and r.get("page"):
            v = r["page"]["load_s"]
            print(f"goal: a map of {GOAL_LOAD_N:,} points loads in < {GOAL_LOAD_S:g} s: {v:.2f} s "
                  f"({'met' if v < GOAL_LOAD_S else 'MISSED'})")
    print("note: WebGL ran in software (SwiftShader) on the same CPU cores as the server and the "
          "training runs, so frame and load times are an upper bound for a machine with a GPU.")


# --- main ----------------------------------------------------------------------------------------

WEB_PACKAGES = ("fastapi", "starlette", "uvicorn", "playwright")


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    default_work = Path(tempfile.gettempdir()) / "soundatlas-bench-web"
    ap.add_argument("--work", default=str(default_work),
                    help="where the synthetic atlases are built and kept (reused next time; "
                    f"default {default_work})")
    ap.add_argument("--interact-seconds", type=float, default=2.0,
                    help="seconds of orbiting and of hovering per page")
    ap.add_argument("--hover-points", type=int, default=10,
                    help="points hovered one by one for the hover latency, per page")
    ap.add_argument("--page-timeout", type=float, default=600.0, help="seconds, per page wait")
    ap.add_argument("--no-browser", action="store_true", help="payload and API only")
    ap.add_argument("--api-only", action="store_true",
                    help="API latency only (no payload comparison, no browser)")
    ap.add_argument("--json", help="write every number here")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    facts = common.machine_facts_subprocess()  # keeps torch out of this process
    facts["versions"].update({name: _version(name) for name in WEB_PACKAGES})
    common.print_facts(facts)
    three = (common.REPO / "src/soundatlas/web/static/vendor/three/three.core.js")
    rev = next((line.split("'")[1] for line in three.read_text().splitlines()
                if line.startswith("const REVISION")), "?") if three.exists() else "absent"
    browser = not (args.no_browser or args.api_only) and CHROMIUM is not None
    if CHROMIUM is None and not (args.no_browser or args.api_only):
        print(f"# page skipped: {MISSING}")
    print(f"# three.js r{rev}; browser: {CHROMIUM if browser else 'none (skipped)'}; viewport "
          f"{VIEWPORT['width']}x{VIEWPORT['height']}; sizes {args.sizes}; {args.repeats} repeats; "
          f"{args.interact_seconds:g} s orbit + {args.interact_seconds:g} s hover per page")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from soundatlas.web import create_app

    results = []
    for n in args.sizes:
        atlas_dir, built = build_atlas(work, n)
        from soundatlas.atlas import Atlas

        pay = None
        if not args.api_only:
            with Atlas.open(atlas_dir) as atlas:
                ids, points = atlas.points(atlas.model(MODEL).id)
            pay = bench_payload(ids, points, args.repeats)
            del ids, points
        app = create_app(atlas_dir)
        add_baseline_route(app)
        add_old_routes(app)
        with ThreadedServer(app) as server:
            api = bench_api(atlas_dir, server, args.repeats)
            page = bench_page(server, n, args, work) if browser else None
        gap = bench_ids_with_a_gap(gapped_copy(work, atlas_dir), args.repeats)
        print_size(n, built, pay, api, gap, page)
        sys.stdout.flush()
        results.append({"n": n, "atlas": atlas_dir, "build_s": built, "payload": pay, "api": api,
                        "ids_gap": gap, "page": page})
    print_summary(results)
    common.write_json(args.json, {"benchmark": "web", "argv": sys.argv, "machine": facts,
                                  "args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
