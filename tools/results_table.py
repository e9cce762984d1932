"""Markdown tables for docs/RESULTS.md from an evaluation, so no number is copied by hand.

    soundatlas evaluate --atlas ATLAS -m MODEL ... --output EVAL.json
    python tools/results_table.py EVAL.json --atlas ATLAS

Prints the reproduction table (our figures beside the paper's published ones and the
baselines, with each model's training preset, iterations and CPU time) and the table of the
further metrics (retrieval, trustworthiness/continuity, analogies).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# docs/DESIGN.md §1: published test accuracies on 24 orchestral classes (instrument, pitch)
PAPER = {"instrument": (0.448, None), "pitch": (None, 0.624),
         "instrument-pitch": (0.288, 0.585), "instrument-pitch-2": (0.388, 0.347),
         "input-knn": (None, None)}


def _f(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evaluation", help="JSON written by `soundatlas evaluate --output`")
    ap.add_argument("--atlas", required=True, help="the atlas holding the models")
    args = ap.parse_args()
    from soundatlas.atlas import Atlas

    ev = json.loads(Path(args.evaluation).read_text())
    with Atlas.open(args.atlas) as atlas:
        configs = {m["name"]: m["config"] for m in atlas.models()}
    res = ev["results"]

    print("| map | neighbourhood | preset | iterations | CPU s | instrument acc. | pitch acc. "
          "| paper: instrument | paper: pitch |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        acc = r.get("accuracy", {})
        inst = acc.get("instrument", {}).get("test_accuracy")
        pitch = acc.get("pitch", {}).get("test_accuracy")
        if name.startswith("baseline:"):
            print(f"| {name} | | | | | {_f(inst)} | {_f(pitch)} | | |")
            continue
        cfg = configs.get(name, {})
        nb = cfg.get("neighbourhood", {}).get("name", "?")
        tr = cfg.get("training", {})
        p_inst, p_pitch = PAPER.get(nb, (None, None))
        print(f"| {name} | {nb} | {cfg.get('preset', '?')} | {tr.get('iterations', '?'):,} | "
              f"{tr.get('cpu_seconds', 0):,.0f} | {_f(inst)} | {_f(pitch)} | {_f(p_inst)} | "
              f"{_f(p_pitch)} |")
    print()
    print("| map | instr. P@10 | instr. MAP@R | pitch P@10 | pitch MAP@R | trust. k=10 | "
          "cont. k=10 | analogy instr. (control) | analogy pitch (control) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        ret = r.get("retrieval", {})
        m = r.get("manifold", {})
        a = r.get("analogies", {})

        def an(key):
            v = a.get(key)
            return f"{_f(v['win_rate'])} ({_f(v['control_win_rate'])})" if v else "–"

        print(f"| {name} | {_f(ret.get('instrument', {}).get('precision_at_k'))} | "
              f"{_f(ret.get('instrument', {}).get('map_at_r'))} | "
              f"{_f(ret.get('pitch', {}).get('precision_at_k'))} | "
              f"{_f(ret.get('pitch', {}).get('map_at_r'))} | "
              f"{_f(m.get('trustworthiness', {}).get('10'))} | "
              f"{_f(m.get('continuity', {}).get('10'))} | {an('instrument')} | {an('pitch')} |")


if __name__ == "__main__":
    main()
