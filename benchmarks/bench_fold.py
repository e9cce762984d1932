"""What folding a path costs a search: ``atlas.samples.fold`` (case and Unicode form) against
``str.casefold`` (case alone, the fold before it), and against taking accents away too (the
variant not adopted), in the same run.

An in-memory SQLite table of ``--n`` paths (default 200,000; seeded; three in four hold letters
that are not ASCII: accented Latin, German, Japanese), searched as ``Atlas.find_samples`` does
without its trigram index: ASCII paths by LIKE, the others by a Python function. Medians of
``--repeats`` interleaved runs.

    python benchmarks/bench_fold.py [--n 200000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time
import unicodedata

import common
from soundatlas.atlas.samples import fold

WORDS = ["Kick", "Snare", "Hat", "Éclat", "Straße", "café", "ドラム", "Piano", "Clé", "Bass"]
QUERY = ("SELECT count(*) FROM samples WHERE CASE WHEN length(CAST(path AS BLOB)) = length(path)"
         " THEN path LIKE ? ELSE {f}(path, ?) END")


def _no_accents(text: str, _marks={}) -> str:
    """The variant not adopted: decomposed, combining marks taken away, case-folded."""
    if not _marks:
        _marks.update(dict.fromkeys(c for c in range(0x110000) if unicodedata.combining(chr(c))))
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFD", text).translate(_marks).casefold()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    common.print_facts(common.machine_facts())
    rng = random.Random(0)
    rows = [(i, f"Kits/{rng.choice(WORDS)} {i % 97}/{rng.choice(WORDS)}_{i:06d}.wav")
            for i in range(args.n)]
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE samples(id INTEGER PRIMARY KEY, path TEXT)")
    c.executemany("INSERT INTO samples VALUES (?, ?)", rows)
    folds = {"casefold (baseline)": lambda t: t.casefold(), "fold (ours)": fold,
             "without accents": _no_accents}
    for i, f in enumerate(folds.values()):
        c.create_function(f"f{i}", 2, lambda text, needle, f=f: needle in f(text),
                          deterministic=True)
    times: dict[str, list[float]] = {name: [] for name in folds}
    counts = {}
    for _ in range(args.repeats):
        for i, (name, f) in enumerate(folds.items()):
            needle = f("snare_0")
            start = time.perf_counter()
            counts[name] = c.execute(QUERY.format(f=f"f{i}"), (f"%{needle}%", needle)).fetchone()[0]
            times[name].append(time.perf_counter() - start)
    n_other = sum(not p.isascii() for _, p in rows)
    base = statistics.median(times["casefold (baseline)"])
    print(f"{args.n} paths, {n_other} not ASCII; medians of {args.repeats}")
    for name in folds:
        m = statistics.median(times[name])
        print(f"  {name:20s} {m * 1e3:7.1f} ms  x{m / base:4.2f}  ({counts[name]} found)")


if __name__ == "__main__":
    main()
