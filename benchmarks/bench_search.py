"""Per-request SQL at scale: search by path, and the model records every model request reads.

Search: ``Atlas.find_samples`` against the SQL it replaced, in the same run.

The baseline is the query before it (``instr(lower(path), ?)`` for ASCII paths, kept below as
``BEFORE``); ours is ``path LIKE ? ESCAPE '\\'``, which SQLite compares ignoring ASCII case
without building a lowered copy of every path. Both give the same ids (checked). Medians of
``--repeats`` interleaved runs per query.

Model records (``Atlas.models()``, read by every ``/api/models/NAME/...`` request): the count of
each model's embeddings kept by triggers (schema 4) against counting them (``--counted``: a copy
of the same atlas at schema 3, opened read-only, which counts). Same answers (checked).

    python benchmarks/bench_search.py --atlas ATLAS [--counted ATLAS-AT-SCHEMA-3] [--repeats 9] [QUERY ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from soundatlas.atlas import Atlas
from soundatlas.atlas.samples import _casefold_contains
from soundatlas.atlas.store import int_list

BEFORE = ("SELECT group_concat(id) FROM samples WHERE CASE WHEN length(CAST(path AS BLOB)) ="
          " length(path) THEN instr(lower(path), ?) > 0 ELSE casefold_contains(path, ?) END")


def before(atlas, q: str) -> np.ndarray:
    needle = q.casefold()
    atlas.conn.create_function("casefold_contains", 2, _casefold_contains, deterministic=True)
    return np.sort(int_list(atlas.conn.execute(BEFORE, (needle, needle)).fetchone()[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", required=True)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--counted", help="the same atlas at schema 3 (models() counts embeddings)")
    ap.add_argument("queries", nargs="*", default=["kick", "saw_pluck", "_00001", "S1/CLAP"])
    args = ap.parse_args()
    with Atlas.open(args.atlas) as atlas:
        print(f"{atlas.n_samples():,} samples")
        ratios = []
        for q in args.queries:
            times = {"before": [], "ours": []}
            for _ in range(args.repeats):
                for name, fn in (("before", lambda: before(atlas, q)),
                                 ("ours", lambda: atlas.find_samples(path_contains=q))):
                    t = time.perf_counter()
                    ids = fn()
                    times[name].append(time.perf_counter() - t)
                    if name == "before":
                        expected = ids
                    else:
                        assert np.array_equal(ids, expected), q
            b, o = (statistics.median(times[k]) * 1000 for k in ("before", "ours"))
            ratios.append(b / o)
            print(f"q={q!r:12} {len(expected):7,} matches  before {b:7.1f} ms  ours {o:7.1f} ms"
                  f"  {b / o:.2f}x")
        print(f"median ratio {statistics.median(ratios):.2f}x")
        if args.counted:
            with Atlas.open(args.counted) as counted:
                assert counted.schema_version < 4 <= atlas.schema_version
                times = {"counted": [], "kept": []}
                for _ in range(args.repeats):
                    for name, a in (("counted", counted), ("kept", atlas)):
                        t = time.perf_counter()
                        records = a.models()
                        times[name].append(time.perf_counter() - t)
                        got = [(m.name, m.n_embedded) for m in records]
                        if name == "counted":
                            expected = got
                        else:
                            assert got == expected, (got, expected)
            c, k = (statistics.median(times[n]) * 1000 for n in ("counted", "kept"))
            print(f"models() {expected}: counted {c:.2f} ms, kept {k:.3f} ms, {c / k:.0f}x")


if __name__ == "__main__":
    main()
