"""How well the 'far' mark of ``suggest --from`` tells sounds like the reference's from others.

For each scored atlas, the share of its samples whose nearest labelled reference sample lies
beyond a quantile of the reference voters' own leave-one-out nearest distances (``suggest``
uses the largest, q = 1: ``suggest.reach``), split into the samples that carry KEY and those
that do not (a set of drums and notes, say); and for those that carry it, the accuracy of the
vote (k = 10) within reach and beyond it. docs/RESULTS.md, "Labels from another library".

    python tools/probes/far_mark.py REF_ATLAS KEY ATLAS [ATLAS ...] [--space similarity]
        [--quantiles 0.95,0.99,1]
"""
import argparse

import numpy as np

from soundatlas.atlas import Atlas
from soundatlas.suggest import SPACES, reference_model, representation, vote


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference")
    ap.add_argument("key")
    ap.add_argument("targets", nargs="+")
    ap.add_argument("--space", choices=SPACES, default="similarity")
    ap.add_argument("--model", default="default")
    ap.add_argument("--quantiles", default="0.95,0.99,1")
    args = ap.parse_args()
    import faiss

    quantiles = [float(q) for q in args.quantiles.split(",")]
    with Atlas.open(args.reference) as ref:
        rm = ref.model(args.model)
        rids, rv = representation(ref, rm, args.space)
        have = ref.labels(args.key, suggested=False)
        rows = np.array([r for r, i in enumerate(rids) if int(i) in have])
        rv = np.ascontiguousarray(rv[rows], np.float32)
        rvalues = [have[int(rids[r])] for r in rows]
    index = faiss.IndexFlatL2(rv.shape[1])
    index.add(rv)
    distinct = np.unique(rv, axis=0)  # copies count once, as in suggest.reach
    own = faiss.IndexFlatL2(rv.shape[1])
    own.add(distinct)
    d2, _ = own.search(distinct, 2)
    loo = np.sqrt(np.maximum(d2[:, 1], 0))
    reach = {q: float(np.quantile(loo, q)) for q in quantiles}
    print(f"{args.reference}: {len(rv)} voters of {args.key} ({len(distinct)} distinct); "
          f"{args.space} reach by quantile: "
          + ", ".join(f"{q:g}: {r:.3f}" for q, r in reach.items()))
    for path in args.targets:
        with Atlas.open(path) as atlas, Atlas.open(args.reference) as ref:
            model = atlas.model(args.model)
            reference_model(atlas, model, ref, args.space)  # the two can be searched together
            ids, v = representation(atlas, model, args.space)
            truth = atlas.labels(args.key, suggested=False) if args.key in atlas.label_keys() \
                else {}
        v = np.ascontiguousarray(v, np.float32)
        d, _ = index.search(v, 1)
        d = np.sqrt(np.maximum(d[:, 0], 0))
        labelled = np.array([int(i) in truth for i in ids])
        both = np.concatenate([v, rv])
        values, _ = vote(both, len(v) + np.arange(len(rv)), rvalues, np.arange(len(v)), 10)
        right = np.array([values[j] == truth.get(int(i)) for j, i in enumerate(ids)])
        for q, r in reach.items():
            far = d > r
            parts = [f"with {args.key} (n={labelled.sum()}) {far[labelled].mean():.3f}"
                     if labelled.any() else None,
                     f"without (n={(~labelled).sum()}) {far[~labelled].mean():.3f}"
                     if (~labelled).any() else None]
            line = f"  {path} q={q:g}: marked far: " + "; ".join(p for p in parts if p)
            if labelled.any():
                near_l, far_l = labelled & ~far, labelled & far
                line += (f"; accuracy within reach {right[near_l].mean():.3f} (n={near_l.sum()})"
                         if near_l.any() else "") + (
                         f", far {right[far_l].mean():.3f} (n={far_l.sum()})"
                         if far_l.any() else "")
            print(line)


if __name__ == "__main__":
    main()
