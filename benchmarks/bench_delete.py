"""What deleting samples costs in an embedded atlas, with schema 11's indexes of the per-model
tables by sample against schema 10 without them (the baseline), in the same run.

A deleted file, a file replaced by new content, `index --refresh-features` and a moved folder
all delete samples (``Atlas.remove_samples``); each deletion cascades to the sample's points
(``embeddings``) and similarity vector (``similarity_vectors``) of every model. Those tables'
keys lead with the model, so without an index on the sample SQLite reads both tables whole for
each deleted sample.

An atlas is made with ``Atlas.create`` and filled by SQL with ``--samples`` samples (one
feature segment), ``--models`` models that have embedded them all, and a similarity vector per
sample and model: the rows are what the timing needs, not real features. A copy has the two
indexes dropped (schema 10's tables). Each round deletes ``--delete`` samples spread over the
ids from a fresh copy of each, with ``Atlas.remove_samples``; the two alternate for
``--repeats`` rounds, and the medians per deleted sample and their ratio are printed.

    python benchmarks/bench_delete.py [--samples 200000] [--models 2] [--delete 200]
        [--repeats 3] [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import common
from soundatlas.atlas import Atlas


def filled_atlas(path: Path, n: int, n_models: int) -> None:
    """An atlas at ``path`` with ``n`` samples, each embedded by ``n_models`` models."""
    lib = path.parent / "library"
    lib.mkdir(exist_ok=True)
    with Atlas.create(path, library=lib) as atlas:
        c = atlas.conn
        c.execute("INSERT INTO segments(id, file, n_frames, created) VALUES (1, 'f', ?, 0)", (n,))
        c.executemany(
            "INSERT INTO samples(id, path, size, mtime_ns, hash, orig_sr, n_channels, duration,"
            " file_duration, truncated, segment, frame_offset, n_frames, indexed_at)"
            " VALUES (?, ?, 1, 1, ?, 16000, 1, 1.0, 1.0, 0, 1, ?, 1, 0)",
            ((i, f"kit/{i:07d}.wav", f"{i:032x}", i - 1) for i in range(1, n + 1)))
        for m in range(1, n_models + 1):
            c.execute("INSERT INTO models(id, name, dir, config, created)"
                      " VALUES (?, ?, 'd', '{}', 0)", (m, f"m{m}"))
            c.execute("INSERT INTO embedding_segments(id, model_id, file, created)"
                      " VALUES (?, ?, ?, 0)", (m, m, f"e{m}"))
            c.execute("INSERT INTO similarity_spaces(model_id, name, dims, dtype, spec)"
                      " VALUES (?, 'hidden', 32, 'int8', '{}')", (m,))
            c.executemany("INSERT INTO embeddings(model_id, sample_id, segment, frame_offset,"
                          " n_frames, point) VALUES (?, ?, ?, 0, 1, zeroblob(12))",
                          ((m, i, m) for i in range(1, n + 1)))
            c.executemany("INSERT INTO similarity_vectors(model_id, sample_id, vector)"
                          " VALUES (?, ?, zeroblob(32))", ((m, i) for i in range(1, n + 1)))
        c.commit()


def without_indexes(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    with Atlas.open(dst, write=True) as atlas:
        atlas.conn.executescript("DROP INDEX embeddings_sample;"
                                 " DROP INDEX similarity_vectors_sample;")


def one_round(template: Path, work: Path, ids: list[int]) -> float:
    """Seconds per deleted sample, deleting ``ids`` from a fresh copy of ``template``."""
    copy = work / "round"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(template, copy)
    with Atlas.open(copy, write=True) as atlas:
        t0 = time.perf_counter()
        atlas.remove_samples(ids)
        seconds = time.perf_counter() - t0
        assert atlas.n_samples() == atlas.conn.execute(
            "SELECT COUNT(*) FROM samples").fetchone()[0]
    shutil.rmtree(copy)
    return seconds / len(ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--models", type=int, default=2)
    ap.add_argument("--delete", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    facts = common.machine_facts()
    common.print_facts(facts)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-delete-"))
    ours, base = work / "ours" / "atlas", work / "baseline" / "atlas"
    for d in (ours.parent, base.parent):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    filled_atlas(ours, args.samples, args.models)
    without_indexes(ours, base)
    step = max(1, args.samples // args.delete)
    ids = list(range(1, args.samples + 1, step))[: args.delete]
    runs: dict[str, list[float]] = {"ours": [], "baseline": []}
    for _ in range(args.repeats):
        for name, template in (("baseline", base), ("ours", ours)):
            runs[name].append(one_round(template, work, ids))
    print(f"{args.samples:,} samples, {args.models} models, {len(ids)} deleted a round, "
          f"{args.repeats} rounds")
    med, ratio = common.medians_and_ratio(runs, scale=1e3, unit="ms per deleted sample")
    common.write_json(args.json, {"facts": facts, "args": {k: str(v) for k, v in
                                                           vars(args).items()},
                                  "runs": runs, "median": med, "ratio": ratio})
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
