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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evaluation", help="JSON written by `soundatlas evaluate --output`")
    ap.add_argument("--atlas", required=True, help="the atlas holding the models")
    args = ap.parse_args()
    from soundatlas.atlas import Atlas

    ev = json.loads(Path(args.evaluation).read_text())
    with Atlas.open(args.atlas) as atlas:
        configs = {m.name: m.config for m in atlas.models()}
    print("\n".join(reproduction_table(ev["results"], configs)))
    print()
    print("\n".join(further_table(ev["results"])))


def reproduction_table(results: dict, configs: dict) -> list[str]:
    """Markdown lines: each map's training and k-NN accuracies beside the paper's figures.

    Parameters
    ----------
    results : dict
        name -> result, as ``evaluate(...)["results"]``.
    configs : dict
        model name -> its registered config (baselines have none).
    """
    from soundatlas import scoretable as st

    def model(describe):
        """A cell from the model's config; empty on a baseline's row."""
        def cell(name, result, fmt):
            if name.startswith("baseline:"):
                return ""
            cfg = configs.get(name, {})
            return describe(cfg, cfg.get("neighbourhood", {}).get("name", "?"), fmt)
        return cell

    columns = [
        st.Column("neighbourhood", model(lambda cfg, nb, fmt: nb), align="left"),
        st.Column("preset", model(lambda cfg, nb, fmt: str(cfg.get("preset", "?"))),
                  align="left"),
        st.Column("iterations", model(
            lambda cfg, nb, fmt: f"{cfg.get('training', {}).get('iterations', '?'):,}")),
        st.Column("CPU s", model(
            lambda cfg, nb, fmt: f"{cfg.get('training', {}).get('cpu_seconds', 0):,.0f}")),
        st.Column("instrument acc.", st.accuracy("instrument")),
        st.Column("pitch acc.", st.accuracy("pitch")),
        st.Column("paper: instrument",
                  model(lambda cfg, nb, fmt: fmt(PAPER.get(nb, (None, None))[0]))),
        st.Column("paper: pitch", model(lambda cfg, nb, fmt: fmt(PAPER.get(nb, (None, None))[1]))),
    ]
    return st.markdown_table(results, columns)


def further_table(results: dict) -> list[str]:
    """Markdown lines: retrieval, trustworthiness/continuity and analogies of each map."""
    from soundatlas import scoretable as st

    columns = [
        st.Column("instr. P@10", st.precision("instrument")),
        st.Column("instr. MAP@R", st.map_at_r("instrument")),
        st.Column("pitch P@10", st.precision("pitch")),
        st.Column("pitch MAP@R", st.map_at_r("pitch")),
        st.Column("trust. k=10", st.trustworthiness()),
        st.Column("cont. k=10", st.continuity()),
        st.Column("analogy instr. (control)", st.analogy_win("instrument", control=True)),
        st.Column("analogy pitch (control)", st.analogy_win("pitch", control=True)),
    ]
    return st.markdown_table(results, columns)


if __name__ == "__main__":
    main()
