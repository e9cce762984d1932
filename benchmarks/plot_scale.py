"""Curves of ``bench_scale.py``'s figures against library size, from its ``--json`` files.

Each panel is one figure against the size on a log axis: times and latencies on a log axis
beside a dotted line of slope 1 through the smallest size (a figure above it grows worse than
linearly), speeds, memory and bytes per sample on a linear axis from 0 (flat is the goal). Several JSON files may be
given; for a size measured more than once, the file given last wins.

    python benchmarks/plot_scale.py RESULTS.json [MORE.json ...] -o benchmarks/results/scale.svg
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "soundatlas"  # the same figures give the same file
import matplotlib.pyplot as plt  # noqa: E402

PANELS = [  # title, unit, [(label, path into a size's results)], linear reference
    ("index + embed", "s", [("index", ("index", "wall_s")), ("embed", ("embed", "wall_s")),
                            ("both", ("map_wall_s",))], True),
    ("speed", "per s", [("index files", ("index", "files_per_s")),
                        ("embed frames / 10", ("embed", "frames_per_s"), 0.1)], False),
    ("main process peak", "MB", [("index", ("index", "main_peak_mb")),
                                 ("index, anonymous", ("index", "main_anon_peak_mb")),
                                 ("embed", ("embed", "main_peak_mb")),
                                 ("serve", ("serve", "memory", "main_peak_mb"))], False),
    ("index again, nothing changed", "s", [("wall", ("index_again", "wall_s"))], True),
    ("API p99, 20 clients", "ms", [(k, ("api", k, "p99_ms"))
                                   for k in ("points", "neighbours", "search", "lookup")], True),
    ("atlas on disk", "bytes per sample", [("atlas", ("atlas_bytes_per_sample",))], False),
]


def _get(d: dict, path: tuple):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results/scale.svg"))
    args = ap.parse_args(argv)
    by_n: dict[int, dict] = {}
    for path in args.json:
        for res in json.loads(path.read_text())["results"]:
            by_n[res["n"]] = res
    sizes = sorted(by_n)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, (title, unit, series, linear) in zip(axes.flat, PANELS):
        for label, path, *factor in series:
            xs = [n for n in sizes if _get(by_n[n], path) is not None]
            ys = [_get(by_n[n], path) * (factor[0] if factor else 1) for n in xs]
            if xs:
                ax.plot(xs, ys, "o-", label=label)
                if linear and len(xs) > 1:
                    ax.plot(xs, [ys[0] * n / xs[0] for n in xs], ":", color="grey", lw=1)
        ax.set_xscale("log")
        if linear:
            ax.set_yscale("log")
        else:  # flat is the goal here: a linear axis from 0 shows how flat
            ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
        ax.set_title(title)
        ax.set_xlabel("samples")
        ax.set_ylabel(unit)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("bench_scale.py: figures against library size (dotted: linear growth)")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, metadata={"Date": None})
    print(f"{args.output}: sizes {', '.join(f'{n:,}' for n in sizes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
