"""Which per-sample representation finds similar sounds best: the 3-D map point, the network's
hidden layer, the input space (mean log-CQT), their PCAs, combinations, quantised versions.

Each library (a folder with a ``metadata.csv``, e.g. from ``soundatlas demo-library``) is indexed
with the shipped model's CQT parameters and embedded with it once (cached under ``--work``).
Per sample: the map point (energy-weighted mean of the trajectory, as the atlas stores it), the
energy-weighted and plain means of the hidden layer L3 (256 tanh units) over the frames, and the
plain and energy-weighted means of the log-CQT frames (the "input space", 192-d), and the pitch
profile of the energy-weighted mean frame (``soundatlas.similarity.pitch_block``, 96-d).

Every candidate is scored per label by per-sample retrieval (``soundatlas.metrics.retrieval``:
precision at 10 and MAP@R, a query never matching itself) and by k-NN accuracy (k=5, 5-fold,
stratified, seeded). A library given with ``:test`` is one the model was trained on: there only
its test-split samples are queries (retrieval) and k-NN test points (fitted on the others). One
given with ``:eval`` is scored on the map, the chosen space and the input space only: a held-out
library looked at after the choice, never used for it. ``near-note`` as a label: a neighbour is
relevant when it has the query's instrument and a pitch within 2 semitones. Libraries with
instrument and pitch labels also get analogy win rates (``soundatlas.metrics.analogies``).

Then the index: exact nearest neighbours of one query among 1M random 256-d int8 vectors
(``soundatlas.similarity.VectorIndex``), uniform codes and a Gaussian with the real vectors'
covariance; milliseconds per query, medians of repeats.

    python benchmarks/bench_similarity.py --library demo=LIB:instrument,pitch:test \\
        --library drums=LIB:drum_class [--work DIR] [--index-n 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


#: a pseudo-label: relevant = same instrument, pitch within 2 semitones (a "near note")
NEAR_NOTE = "near-note"
#: the representation chosen (soundatlas.similarity): int8 codes of the energy-weighted mean
#: hidden layer at its weight beside the pitch profile, decoded
CHOSEN = "chosen: 0.7 x hidden 256 + pitch profile 96, int8 (soundatlas.similarity)"


# -- data ----------------------------------------------------------------------------------------


def prepare(name: str, library: Path, work: Path, *, jobs: int) -> dict:
    """Index and embed ``library`` with the shipped model (cached); per-sample raw blocks."""
    from soundatlas.atlas import Atlas
    from soundatlas.embed import _noise_rng, embed_many, frame_energy, point_of, prediction_noise
    from soundatlas.indexing import index_library
    from soundatlas.similarity import pitch_block

    cache = work / f"{name}.npz"
    if cache.is_file():
        data = dict(np.load(cache, allow_pickle=False))
        if "pitch" in data:  # else made before the pitch profile: made again
            data["labels"] = json.loads(str(data["labels"]))
            return data
    atlas_dir = work / f"{name}-atlas"
    artifact = _shipped()
    t = time.perf_counter()
    index_library(library, atlas_dir=atlas_dir, params=artifact.cqt, n_jobs=jobs)
    print(f"# {name}: indexed in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    with Atlas.open(atlas_dir) as atlas:
        model = artifact.model.eval()
        noise = prediction_noise(artifact)
        records = atlas.samples()
        splits = atlas.splits()
        keys = sorted(atlas.label_summary())
        labels = {k: atlas.labels(k) for k in keys}
        blocks = {b: [] for b in ("map", "hid_ew", "hid", "cqt", "cqt_ew", "cqt_sd", "pitch")}
        for i in range(0, len(records), 64):
            recs = records[i:i + 64]
            feats = [atlas.features(r) for r in recs]
            out = embed_many(model, feats, noise=noise, rngs=[_noise_rng(r.hash) for r in recs],
                             compression=atlas.cqt_params.compression, with_hidden=True)
            for F, (traj, hidden) in zip(feats, out):
                e = frame_energy(F)
                blocks["map"].append(point_of(traj, e))
                blocks["hid_ew"].append(point_of(hidden, e))
                blocks["hid"].append(hidden.mean(axis=0))
                blocks["cqt"].append(F.mean(axis=0))
                blocks["cqt_ew"].append(point_of(F, e))
                blocks["cqt_sd"].append(F.std(axis=0))
                blocks["pitch"].append(pitch_block(point_of(F, e),
                                                   atlas.cqt_params.bins_per_octave))
    print(f"# {name}: embedded {len(records)} samples in {time.perf_counter() - t:.0f} s",
          flush=True)
    ids = np.array([r.id for r in records], np.int64)
    data = {b: np.stack(v).astype(np.float32) for b, v in blocks.items()}
    data["ids"] = ids
    data["split"] = np.array([splits[int(s)] for s in ids])
    data["labels"] = {k: [v.get(int(s), "") for s in ids] for k, v in labels.items()}
    np.savez(cache, **{k: v for k, v in data.items() if k != "labels"},
             labels=json.dumps(data["labels"]))
    return data


def _shipped():
    from soundatlas.artifact import ModelArtifact, shipped_model_dir

    return ModelArtifact.load(shipped_model_dir("default"))


# -- candidates ----------------------------------------------------------------------------------


def _centre_scale(X, ref):
    """X centred on ref's mean and divided by ref's RMS distance to it (one number per block)."""
    mu = ref.mean(axis=0)
    s = np.sqrt(((ref - mu) ** 2).sum(axis=1).mean())
    return (X - mu) / s


def _pca(X, ref, k):
    mu = ref.mean(axis=0)
    _, _, vt = np.linalg.svd(ref - mu, full_matrices=False)
    return (X - mu) @ vt[:k].T


def _l2(X):
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _stored(d: dict) -> dict[str, tuple[np.ndarray, int]]:
    """What the atlas stores, decoded: the chosen space and the ones before it."""
    from soundatlas.similarity import HIDDEN_WEIGHT, decode, encode

    w = HIDDEN_WEIGHT
    return {CHOSEN: (decode(encode(np.hstack([w * d["hid_ew"], d["pitch"]]))), 352),
            "hidden 256 + pitch profile 96, int8 (the space until 2026-12-06)":
            (decode(encode(np.hstack([d["hid_ew"], d["pitch"]]))), 352),
            "hidden 256 int8 (the space until 2026-12-04)": (decode(encode(d["hid_ew"])), 256)}


def main_candidates(d: dict) -> dict[str, tuple[np.ndarray, int]]:
    """The 3-D map, the stored similarity spaces and the input space: what a library given with
    ``:eval`` (scored after the choice, never used for it) is scored on."""
    return {"map (3-D)": (d["map"], 12), **_stored(d),
            "input: mean log-CQT 192": (d["cqt"], 768)}


def candidates(d: dict, ref: dict | None) -> dict[str, tuple[np.ndarray, int]]:
    """name -> (vectors, bytes per sample). ``ref``: another library's blocks for fitted
    transforms (PCA, per-block scale) fixed in advance, as a model would ship them."""
    from soundatlas.similarity import decode, encode

    out = {}
    out["map (3-D)"] = (d["map"], 12)
    out["hidden 256 (energy-weighted mean)"] = (d["hid_ew"], 1024)
    out["hidden 256 (plain mean)"] = (d["hid"], 1024)
    out["input: mean log-CQT 192"] = (d["cqt"], 768)
    out["input: energy-weighted log-CQT 192"] = (d["cqt_ew"], 768)
    out["input: mean+sd log-CQT 384"] = (np.hstack([d["cqt"], d["cqt_sd"]]), 1536)
    out["hidden, cosine"] = (_l2(d["hid_ew"]), 1024)
    out["input, cosine"] = (_l2(d["cqt"]), 768)
    for k in (16, 32, 64):
        out[f"hidden PCA-{k} (own)"] = (_pca(d["hid_ew"], d["hid_ew"], k), 4 * k)
        out[f"input PCA-{k} (own)"] = (_pca(d["cqt"], d["cqt"], k), 4 * k)
    for w in (0.5, 1.0, 2.0):
        h = _centre_scale(d["hid_ew"], d["hid_ew"])
        c = _centre_scale(d["cqt"], d["cqt"])
        out[f"hidden + {w:g} x input, per-block scaled (own)"] = (np.hstack([h, w * c]), 1792)
    h, c = _centre_scale(d["hid_ew"], d["hid_ew"]), _centre_scale(d["cqt"], d["cqt"])
    out["hidden + input + sd, per-block scaled (own)"] = (
        np.hstack([h, c, _centre_scale(d["cqt_sd"], d["cqt_sd"])]), 2560)
    # what fits a few hundred bytes without fitting anything to the library
    out["pitch profile 96 int8"] = (decode(encode(d["pitch"])), 96)
    out.update(_stored(d))
    out["input uint8 (x20)"] = (np.clip(np.round(d["cqt"] * 20), 0, 255) / 20, 192)
    if ref is not None:  # transforms fitted on another library (the model's own training bank)
        for k in (16, 32, 64):
            out[f"hidden PCA-{k} (ref)"] = (_pca(d["hid_ew"], ref["hid_ew"], k), 4 * k)
            out[f"input PCA-{k} (ref)"] = (_pca(d["cqt"], ref["cqt"], k), 4 * k)
        for kh, kc in ((32, 32), (64, 64), (96, 32), (64, 32), (32, 64)):
            h = _pca(d["hid_ew"], ref["hid_ew"], kh)
            c = _pca(d["cqt"], ref["cqt"], kc)
            sh = np.sqrt((_pca(ref["hid_ew"], ref["hid_ew"], kh) ** 2).sum(axis=1).mean())
            sc = np.sqrt((_pca(ref["cqt"], ref["cqt"], kc) ** 2).sum(axis=1).mean())
            out[f"hidden PCA-{kh} + input PCA-{kc}, scaled (ref)"] = (
                np.hstack([h / sh, c / sc]), kh + kc)
        h = _centre_scale(d["hid_ew"], ref["hid_ew"])
        c = _centre_scale(d["cqt"], ref["cqt"])
        out["hidden + input, per-block scaled (ref)"] = (np.hstack([h, c]), 1792)
    return out


def grid_candidates(d: dict) -> dict[str, tuple[np.ndarray, int]]:
    """Combinations of the hidden layer with an input block at several weights, each block
    scaled to unit RMS spread on this library."""
    out = {}
    h = _centre_scale(d["hid_ew"], d["hid_ew"])
    inputs = {"input": d["cqt"], "ew input": d["cqt_ew"], "cosine input": _l2(d["cqt"]),
              "cosine ew input": _l2(d["cqt_ew"])}
    for iname, block in inputs.items():
        c = _centre_scale(block, block)
        for w in (0.25, 0.5, 0.75, 1.0, 1.5):
            out[f"grid: hidden + {w:g} x {iname}"] = (np.hstack([h, w * c]), 1792)
    return out


# -- scores --------------------------------------------------------------------------------------


def score_analogies(cands: dict, d: dict, queries: np.ndarray | None) -> dict:
    """Analogy win rates (instrument, pitch) of each representation on the same triples."""
    from soundatlas import metrics

    inst = [v or None for v in d["labels"]["instrument"]]
    pitch = [v or None for v in d["labels"]["pitch"]]
    out = {}
    for name, (X, _) in cands.items():
        r = metrics.analogies(X, inst, pitch, n=500, k=10, seed=0, candidates=queries)
        out[name] = {"instrument": r["instrument"]["win_rate"], "pitch": r["pitch"]["win_rate"]}
    return out


def near_note_precision(X: np.ndarray, inst: list[str], pitch: list[str],
                        queries: np.ndarray | None, *, k: int = 10, semitones: int = 2) -> float:
    """Precision at k where a neighbour is relevant when it has the query's instrument and a
    pitch within ``semitones`` (what the shipped model's neighbourhood calls near); exact,
    the query itself never counted."""
    inst = np.array(inst)
    p = np.array([float(v) for v in pitch])
    q = np.arange(len(X)) if queries is None else np.asarray(queries)
    X = X.astype(np.float64)
    sq = (X ** 2).sum(axis=1)
    hits = []
    for i in range(0, len(q), 512):
        b = q[i:i + 512]
        d = sq[b, None] - 2 * X[b] @ X.T + sq[None, :]
        d[np.arange(len(b)), b] = np.inf
        nn = np.argsort(d, axis=1, kind="stable")[:, :k]
        rel = (inst[nn] == inst[b, None]) & (np.abs(p[nn] - p[b, None]) <= semitones)
        hits.append(rel.mean(axis=1))
    return float(np.concatenate(hits).mean())


def score(X: np.ndarray, y: list[str], queries: np.ndarray | None) -> dict:
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier

    from soundatlas import metrics

    y = np.array([v if v != "" else None for v in y], dtype=object)
    r = metrics.retrieval(X, y, queries=queries, k=10)
    lab = np.array([v is not None for v in y])
    Xl, yl = X[lab], y[lab].astype(str)
    if queries is not None:  # fitted on the other samples, scored on the queries
        q = np.zeros(len(X), bool)
        q[queries] = True
        q = q[lab]
        clf = KNeighborsClassifier(5).fit(Xl[~q], yl[~q])
        acc = float(np.mean(clf.predict(Xl[q]) == yl[q]))
    else:
        _, counts = np.unique(yl, return_counts=True)
        folds = StratifiedKFold(n_splits=min(5, int(counts.min())) if counts.min() >= 2 else 5,
                                shuffle=True, random_state=0)
        right = 0
        for tr, te in folds.split(Xl, yl):
            clf = KNeighborsClassifier(5).fit(Xl[tr], yl[tr])
            right += int(np.sum(clf.predict(Xl[te]) == yl[te]))
        acc = right / len(yl)
    return {"p10": r["precision_at_k"], "map_r": r["map_at_r"], "knn": acc}


def _random_codes(n: int, dims: int, kind: str, like: np.ndarray | None, rng) -> np.ndarray:
    """n random int8 vectors: 'uniform' (i.i.d. codes, no structure: the worst case for the
    index's lower bound) or 'gaussian like real' (a Gaussian with the mean and covariance of the
    real vectors ``like``, clipped to [-1, 1] and encoded)."""
    from soundatlas.similarity import encode

    if kind == "uniform":
        return rng.integers(-127, 128, size=(n, dims), dtype=np.int8)
    mu = like.mean(axis=0)
    w, v = np.linalg.eigh(np.cov(like, rowvar=False))
    root = v * np.sqrt(np.clip(w, 0, None))
    out = np.empty((n, dims), np.int8)
    for i in range(0, n, 65536):
        z = rng.standard_normal((min(n, i + 65536) - i, dims)) @ root.T + mu
        out[i:i + len(z)] = encode(np.clip(z, -1, 1))
    return out


def bench_index(n: int, like: np.ndarray | None, repeats: int, project_dims: list[int],
                seed: int = 0) -> list[dict]:
    """Exact k=10 search of one query among n random 256-d int8 vectors
    (``soundatlas.similarity.VectorIndex``): build time, memory, query time (median)."""
    from soundatlas.similarity import VectorIndex

    rng = np.random.default_rng(seed)
    rows = []
    kinds = ["uniform"] + (["gaussian like real"] if like is not None else [])
    for kind in kinds:
        codes = _random_codes(n, 256, kind, like, rng)
        ids = np.arange(n, dtype=np.int64)
        for p in project_dims:
            t = time.perf_counter()
            index = VectorIndex(ids, codes, project_dims=p)
            build = time.perf_counter() - t
            times = []
            for _ in range(repeats):
                q = codes[rng.integers(n)].astype(np.float64) / 127
                t = time.perf_counter()
                index.nearest(q, 10)
                times.append(time.perf_counter() - t)
            brute = float("nan")
            if p == project_dims[0]:  # the plain float32 product over blocks, for comparison
                t = time.perf_counter()
                q32 = q.astype(np.float32)
                for i in range(0, n, 65536):
                    x = codes[i:i + 65536].astype(np.float32) / 127
                    np.einsum("ij,ij->i", x, x) - 2 * (x @ q32)
                brute = time.perf_counter() - t
            rows.append({"data": kind, "n": n, "project_dims": p,
                         "stored_mb": codes.nbytes / 2**20, "memory_mb": index.nbytes / 2**20,
                         "build_s": build, "query_ms": 1e3 * statistics.median(times),
                         "query_ms_max": 1e3 * max(times), "blocked_brute_force_ms": 1e3 * brute})
            print(f"# index {kind} p={p}: {rows[-1]['query_ms']:.1f} ms", flush=True)
    return rows


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", action="append", default=[],
                    help="NAME=FOLDER:LABEL[,LABEL][:test][:eval] (repeatable; near-note is a "
                    "label: same instrument, pitch within 2 semitones)")
    ap.add_argument("--reference", help="the library NAME whose fitted transforms are shipped "
                    "(default: the first with :test)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "soundatlas-bench-sim"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="score only candidates whose name contains one "
                    "of these")
    ap.add_argument("--grid", action="store_true", help="also score the weight grid of "
                    "hidden + input combinations")
    ap.add_argument("--index-n", type=int, default=1_000_000)
    ap.add_argument("--project-dims", type=int, nargs="*", default=[16, 32, 64],
                    help="PCA components of the index's lower bound to compare")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()

    from common import machine_facts, print_facts

    print_facts(machine_facts())
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    libs = []
    for spec in args.library:
        name, _, rest = spec.partition("=")
        parts = rest.split(":")
        flags = set()
        while parts[-1] in ("test", "eval"):
            flags.add(parts.pop())
        folder, keys = ":".join(parts[:-1]), parts[-1].split(",")
        libs.append((name, Path(folder), keys, flags))
    data = {name: prepare(name, folder, work, jobs=args.jobs) for name, folder, _, _ in libs}
    ref_name = args.reference or next((n for n, _, _, f in libs if "test" in f), None)
    ref = data.get(ref_name)
    results, analogies = {}, {}
    for name, _, keys, flags in libs:
        d = data[name]
        queries = np.flatnonzero(d["split"] == "test") if "test" in flags else None
        if "eval" in flags:
            cands = main_candidates(d)
        else:
            cands = candidates(d, ref if name != ref_name else None)
            if args.grid:
                cands.update(grid_candidates(d))
            if name == ref_name:  # its own transforms are the reference ones
                cands.update({k.replace("(own)", "(ref)"): v for k, v in cands.items()
                              if "(own)" in k})
        if {"instrument", "pitch"} <= set(d["labels"]):
            analogies[name] = score_analogies(main_candidates(d), d, queries)
        for cname, (X, nbytes) in cands.items():
            if args.only and not any(o in cname for o in args.only):
                continue
            for key in keys:
                if key == NEAR_NOTE:
                    p10 = near_note_precision(X, d["labels"]["instrument"], d["labels"]["pitch"],
                                              queries)
                    s = {"p10": p10, "map_r": None, "knn": None}
                else:
                    s = score(X, d["labels"][key], queries)
                results.setdefault(cname, {"bytes": nbytes})[f"{name}/{key}"] = s
        print(f"# scored {name} ({len(d['ids'])} samples)", flush=True)
    cols = [f"{n}/{k}" for n, _, keys, _ in libs for k in keys]
    if analogies:
        print()
        print("Analogies a1 - a0 + b0 (metrics.analogies, 500 triples; win rate of the majority "
              "of the 10 nearest: instrument / pitch):")
        print()
        names = list(next(iter(analogies.values())))
        print("| library | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for lib, r in analogies.items():
            print(f"| {lib} | " + " | ".join(
                f"{r[n]['instrument']:.3f} / {r[n]['pitch']:.3f}" for n in names) + " |")
    print()
    print("| representation | bytes | " + " | ".join(f"{c} P@10 | kNN" for c in cols) + " |")
    print("|---|---:|" + "---:|---:|" * len(cols))
    for cname, r in results.items():
        cells = []
        for c in cols:
            s = r.get(c)
            cells += ([f"{s['p10']:.3f}", "" if s["knn"] is None else f"{s['knn']:.3f}"]
                      if s else ["", ""])
        print(f"| {cname} | {r['bytes']} | " + " | ".join(cells) + " |")
    index_rows = []
    if args.index_n:
        chosen_on = [data[n]["hid_ew"] for n, _, _, f in libs if "eval" not in f]
        like = np.concatenate(chosen_on) if chosen_on else None
        index_rows = bench_index(args.index_n, like, args.repeats, args.project_dims)
        print()
        print("| random data | n | PCA dims of the bound | codes MB (int8) | index memory MB | "
              "build s | query ms (k=10, median) | slowest query ms | blocked float32 brute "
              "force ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in index_rows:
            brute = "" if r["blocked_brute_force_ms"] != r["blocked_brute_force_ms"] else \
                f"{r['blocked_brute_force_ms']:.0f}"
            print(f"| {r['data']} | {r['n']:,} | {r['project_dims']} | {r['stored_mb']:.0f} | "
                  f"{r['memory_mb']:.0f} | {r['build_s']:.1f} | {r['query_ms']:.1f} | "
                  f"{r['query_ms_max']:.1f} | {brute} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "analogies": analogies,
                                               "index": index_rows}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
