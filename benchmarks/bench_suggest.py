"""Labels suggested from the map, measured: hide a share of a label, suggest it back, score.

For each atlas and label, and each space (every model's similarity space, its timbre block
where the space has a pitch profile, its map, and the input space: the mean log-CQT, the
baseline), a seeded 10 %, 25 % and 50 % of the labelled samples have their label hidden; ``soundatlas.suggest.vote`` (what ``soundatlas suggest`` runs) suggests
it from the k nearest samples that kept theirs. Printed: precision (the share right) against
coverage (the share of the hidden that get a suggestion at or above the threshold) as the
confidence threshold rises, and the whole table as JSON with --json.

    python benchmarks/bench_suggest.py ATLAS:LABEL [ATLAS:LABEL ...] [--models default,...]
        [-k 10] [--seeds 0 1 2] [--json OUT.json] [--reference REF_ATLAS]

Several seeds give the median (and the spread) of each figure.

With ``--reference``, nothing is hidden: every labelled sample of ATLAS gets a suggestion from
REF_ATLAS's labelled samples alone (``suggest --from``: another library labels this one), and
ATLAS's labels only score it. Printed: the accuracy of every suggestion, and precision against
coverage as the threshold rises (no seeds: nothing is drawn).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from soundatlas.atlas import Atlas  # noqa: E402
from soundatlas.similarity import has_pitch  # noqa: E402
from soundatlas.suggest import (hidden_label_curve, reference_label_curve,  # noqa: E402
                                reference_model, representation)

HIDE = (0.1, 0.25, 0.5)
THRESHOLDS = (0.0, 0.5, 0.7, 0.9)


def spaces(atlas, models: list[str] | None) -> list[tuple[str, object, str]]:
    """(name shown, model record or None, space) of what is measured."""
    out = []
    for m in atlas.models():
        if not m.n_embedded or (models and m.name not in models):
            continue
        out.append((f"{m.name}: similarity", m, "similarity"))
        if has_pitch(atlas.similarity_space(m.id)):
            out.append((f"{m.name}: timbre", m, "timbre"))  # the hidden layer alone
        out.append((f"{m.name}: map", m, "map"))
    out.append(("input space", None, "input"))
    return out


def measure(target: str, args) -> dict:
    path, _, label = target.rpartition(":")
    with Atlas.open(path) as atlas:
        labels = atlas.labels(label)
        result = {"atlas": path, "label": label, "n_labelled": len(labels),
                  "n_values": len(set(labels.values())), "spaces": {}}
        for name, model, space in spaces(atlas, args.models):
            t = time.perf_counter()
            ids, vectors = representation(atlas, model, space)
            rows = {}
            for hide in HIDE:
                runs = [hidden_label_curve(ids, vectors, labels, hide=hide, k=args.k, seed=s,
                                           thresholds=THRESHOLDS) for s in args.seeds]
                rows[str(hide)] = [{
                    "threshold": th,
                    "coverage": float(np.median([r["curve"][i]["coverage"] for r in runs])),
                    "precision": _median([r["curve"][i]["precision"] for r in runs]),
                    "precision_range": _range([r["curve"][i]["precision"] for r in runs]),
                } for i, th in enumerate(THRESHOLDS)]
            result["spaces"][name] = {"seconds": time.perf_counter() - t, "hide": rows}
    return result


def measure_from(target: str, reference: str, args) -> dict:
    """Every labelled sample of the target suggested from the reference's labelled samples."""
    path, _, label = target.rpartition(":")
    with Atlas.open(path) as atlas, Atlas.open(reference) as ref:
        truth = atlas.labels(label, suggested=False)
        voters = ref.labels(label, suggested=False)
        result = {"atlas": path, "label": label, "reference": reference,
                  "n_labelled": len(truth), "n_values": len(set(truth.values())), "spaces": {}}
        for name, model, space in spaces(atlas, args.models):
            t = time.perf_counter()
            ids, vectors = representation(atlas, model, space)
            ref_ids, ref_vectors = representation(ref, reference_model(atlas, model, ref, space),
                                                  space)
            rows = [r for r, i in enumerate(ids) if int(i) in truth]
            ref_rows = [r for r, i in enumerate(ref_ids) if int(i) in voters]
            curve = reference_label_curve(vectors[rows], [truth[int(ids[r])] for r in rows],
                                          ref_vectors[ref_rows],
                                          [voters[int(ref_ids[r])] for r in ref_rows],
                                          k=args.k, thresholds=THRESHOLDS)
            result["spaces"][name] = {"seconds": time.perf_counter() - t, **curve}
    return result


def show_from(result: dict) -> None:
    print(f"\n## {result['atlas']}: {result['label']} from {result['reference']} "
          f"({result['n_labelled']} scored, {result['n_values']} values; chance about "
          f"{1 / result['n_values']:.3f})")
    print("space".ljust(28) + "accuracy" + "".join(f"{f'p / cov t{t:.1f}':>18s}"
                                                   for t in THRESHOLDS))
    for name, s in result["spaces"].items():
        cells = ["  -  " if c["precision"] is None else f"{c['precision']:.3f} / "
                 f"{c['coverage']:.3f}" for c in s["curve"]]
        print(f"{name.ljust(28)}{s['accuracy']:8.3f}" + "".join(f"{c:>18s}" for c in cells))


def _median(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def _range(xs):
    xs = [x for x in xs if x is not None]
    return [float(min(xs)), float(max(xs))] if xs else None


def show(result: dict) -> None:
    print(f"\n## {result['atlas']}: {result['label']} ({result['n_labelled']} labelled, "
          f"{result['n_values']} values; chance about {1 / result['n_values']:.3f})")
    head = "space".ljust(28) + "".join(f"{f'hide {h:.0%}':>34s}" for h in HIDE)
    print(head)
    print(" " * 28 + "".join(f"{'  '.join(f't{t:.1f}' for t in THRESHOLDS):>34s}"
                             for _ in HIDE))
    for name, s in result["spaces"].items():
        for what in ("precision", "coverage"):
            cells = []
            for h in HIDE:
                vals = [r[what] for r in s["hide"][str(h)]]
                cells.append("  ".join("  -  " if v is None else f"{v:.3f}" for v in vals))
            print(f"{(name if what == 'precision' else '').ljust(22)}{what[:4]:>6s}"
                  + "".join(f"{c:>34s}" for c in cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="+", metavar="ATLAS:LABEL")
    ap.add_argument("--models", type=lambda s: s.split(","), default=None,
                    help="models to measure (default: every embedded one)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--reference", metavar="REF_ATLAS",
                    help="suggest from this atlas's labelled samples alone (suggest --from)")
    args = ap.parse_args(argv)
    common.print_facts(common.machine_facts())
    if args.reference:
        results = [measure_from(t, args.reference, args) for t in args.targets]
        for r in results:
            show_from(r)
    else:
        results = [measure(t, args) for t in args.targets]
        for r in results:
            show(r)
    if args.json:
        drawn = {} if args.reference else {"seeds": args.seeds, "hide": HIDE}  # nothing drawn
        args.json.write_text(json.dumps({"k": args.k, **drawn, "reference": args.reference,
                                         "thresholds": THRESHOLDS, "results": results},
                                        indent=1))
        print(f"\n# results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
