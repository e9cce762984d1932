"""What writing labels costs after an `index` run that added a few files to a large atlas:
the samples that run added alone (ours) against every sample's labels written again (the
baseline, what `index` did before), in the same run.

An atlas is made with ``Atlas.create`` and filled by SQL with ``--samples`` samples in 100
folders, a manifest (``metadata.csv``) gives each of them ``--keys`` labels beside its folder
(``--keys 0``: no manifest, the folder alone, as a musician's library is labelled), and every
sample is labelled once as `index` labels them (``update_labels``). Each round adds
``--add`` samples by SQL to a fresh copy, as a run's commits do (the label counts dropped),
and times ``update_labels`` told which samples were added (ours) and not told (the baseline);
the two alternate for ``--repeats`` rounds, and the medians and their ratio are printed. Both
must leave the same labels: the script checks it.

    python benchmarks/bench_labels.py [--samples 200000] [--keys 8] [--add 100] [--repeats 3]
        [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import common
from soundatlas.atlas import Atlas
from soundatlas.atlas.labels import LABEL_SUMMARY_META
from soundatlas.index_labels import update_labels
from soundatlas.labels import LabelSources


def _sources(n_keys: int) -> LabelSources:
    return LabelSources(manifest="metadata.csv" if n_keys else None, folder=True)


def _add(c, ids) -> None:
    c.executemany(
        "INSERT INTO samples(id, path, size, mtime_ns, hash, orig_sr, n_channels, duration,"
        " file_duration, truncated, segment, frame_offset, n_frames, indexed_at)"
        " VALUES (?, ?, 1, 1, ?, 16000, 1, 1.0, 1.0, 0, 1, ?, 1, 0)",
        ((i, _path(i), f"{i:032x}", i - 1) for i in ids))


def _path(i: int) -> str:
    return f"f{i % 100:02d}/{i:07d}.wav"


def labelled_atlas(path: Path, n: int, n_keys: int, n_add: int) -> None:
    """An atlas at ``path`` with ``n`` samples labelled; its manifest also lists the ``n_add``
    samples the rounds add."""
    lib = path.parent
    with open(lib / "metadata.csv", "w") as f:  # read only with --keys 1 or more
        f.write("path," + ",".join(f"k{k}" for k in range(n_keys)) + "\n")
        for i in range(1, n + n_add + 1):
            f.write(_path(i) + "," + ",".join(f"v{(i * (k + 3)) % 50}" for k in range(n_keys))
                    + "\n")
    with Atlas.create(path, library=lib) as atlas:
        c = atlas.conn
        c.execute("INSERT INTO segments(id, file, n_frames, created) VALUES (1, 'f', ?, 0)",
                  (n + n_add,))
        _add(c, range(1, n + 1))
        c.commit()
        update_labels(atlas, lib, _sources(n_keys), SimpleNamespace(label_problems=[]))


def one_round(template: Path, work: Path, n: int, n_add: int, n_keys: int, told: bool):
    """Seconds ``update_labels`` takes after ``n_add`` samples were added to a copy of
    ``template``, and the labels it leaves."""
    copy = work / "round"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(template.parent, copy)
    added = set(range(n + 1, n + n_add + 1))
    with Atlas.open(copy / template.name, write=True) as atlas:
        with atlas.transaction() as c:
            _add(c, sorted(added))
            c.execute("DELETE FROM meta WHERE key = ?", (LABEL_SUMMARY_META,))
        t0 = time.perf_counter()
        update_labels(atlas, copy, _sources(n_keys), SimpleNamespace(label_problems=[]),
                      added if told else None)
        seconds = time.perf_counter() - t0
        labels = atlas.conn.execute(
            "SELECT COUNT(*), SUM(length(value) * sample_id) FROM labels").fetchone()
        counts = atlas.label_summary(user=False)
    shutil.rmtree(copy)
    return seconds, (labels, counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--add", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    facts = common.machine_facts()
    common.print_facts(facts)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-labels-"))
    template = work / "library" / "atlas"
    shutil.rmtree(template.parent, ignore_errors=True)
    template.parent.mkdir(parents=True)
    labelled_atlas(template, args.samples, args.keys, args.add)
    runs: dict[str, list[float]] = {"ours": [], "baseline": []}
    left = {}
    for _ in range(args.repeats):
        for name in ("baseline", "ours"):
            seconds, left[name] = one_round(template, work, args.samples, args.add, args.keys,
                                            told=name == "ours")
            runs[name].append(seconds)
    assert left["ours"] == left["baseline"], "the two ways left different labels"
    print(f"{args.samples:,} samples, {args.keys} manifest labels and a folder each, "
          f"{args.add} added a round, {args.repeats} rounds")
    med, ratio = common.medians_and_ratio(runs)
    common.write_json(args.json, {"facts": facts, "args": {k: str(v) for k, v in
                                                           vars(args).items()},
                                  "runs": runs, "median": med, "ratio": ratio})
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
