"""Tempo and key of loops, measured: loops rendered at known tempo and key, indexed by
`soundatlas index`, their `tempo` and `key` labels scored.

    python benchmarks/bench_loops.py OUT [--tune] [--n 48] [--seed 0] [--bars 4]

Without --tune: MuseScore General, a synth bass and an electric piano, 48 loops (each of the 24
keys twice, tempos drawn uniformly from 70 to 170 BPM, seeded). With --tune: the loops the
method was chosen on (FluidR3, a finger bass and a piano, tempo 80 + 3 per key). Scored:
tempo within 2 % (a tempo half or double the truth within 2 % is an octave error, counted
apart), key exactly, and the key's relative, parallel and fifth neighbours counted apart.
`--bars 2` renders two-bar loops (4 s at 120 BPM, the shortest a loop label is given to).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from soundatlas.atlas import Atlas  # noqa: E402
from soundatlas.demo.loops import loop_events  # noqa: E402
from soundatlas.demo.render import NoteSynth  # noqa: E402
from soundatlas.indexing import index_library  # noqa: E402
from soundatlas.rhythm import NOTE_NAMES, relative_key  # noqa: E402

KEYS = [f"{n} {m}" for n in NOTE_NAMES for m in ("major", "minor")]
SETS = {
    "tune": {"soundfont": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
             "programs": {9: (128, 0), 0: (0, 33), 1: (0, 0)}},
    "measure": {"soundfont": "/usr/share/sounds/sf3/MuseScore_General.sf3",
                "programs": {9: (128, 0), 0: (0, 38), 1: (0, 4)}},
}


def render(out: Path, tune: bool, n: int, seed: int, bars: int = 4) -> list[dict]:
    spec = SETS["tune" if tune else "measure"]
    rng = np.random.default_rng(seed)
    plan = ([(80 + 3 * i, k) for i, k in enumerate(KEYS)] if tune else
            [(float(np.round(rng.uniform(70, 170), 1)), KEYS[i % 24]) for i in range(n)])
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    with NoteSynth(spec["soundfont"], sample_rate=44100) as synth:
        for i, (tempo, key) in enumerate(plan):
            events, seconds = loop_events(tempo, key, bars=bars)
            y = synth.render_events(events, seconds, spec["programs"])
            name = f"loop_{i:03d}.wav"
            sf.write(out / name, np.clip(y, -1, 1), 44100, subtype="PCM_16")
            rows.append({"path": name, "true_tempo": tempo, "true_key": key})
    return rows


def fifth(key: str) -> set[str]:
    name, mode = key.split()
    i = NOTE_NAMES.index(name)
    return {f"{NOTE_NAMES[(i + 7) % 12]} {mode}", f"{NOTE_NAMES[(i + 5) % 12]} {mode}"}


def score(rows: list[dict], labels: dict[str, dict]) -> dict:
    tempo_ok = octave = no_tempo = 0
    key_ok = relative = parallel = fifths = other = no_key = 0
    for r in rows:
        lab = labels.get(r["path"], {})
        t = float(lab["tempo"]) if "tempo" in lab else None
        if t is None:
            no_tempo += 1
        elif abs(t / r["true_tempo"] - 1) <= 0.02:
            tempo_ok += 1
        elif any(abs(t / (r["true_tempo"] * f) - 1) <= 0.02 for f in (0.5, 2.0)):
            octave += 1
        k, truth = lab.get("key"), r["true_key"]
        if k is None:
            no_key += 1
        elif k == truth:
            key_ok += 1
        elif k == relative_key(truth):
            relative += 1
        elif k.split()[0] == truth.split()[0]:
            parallel += 1
        elif k in fifth(truth):
            fifths += 1
        else:
            other += 1
    n = len(rows)
    return {"n": n, "tempo_within_2pc": tempo_ok / n, "tempo_octave_errors": octave / n,
            "no_tempo": no_tempo / n, "key_right": key_ok / n, "key_relative": relative / n,
            "key_parallel": parallel / n, "key_fifth": fifths / n, "key_other": other / n,
            "no_key": no_key / n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    common.print_facts(common.machine_facts())
    t = time.perf_counter()
    rows = render(args.out, args.tune, args.n, args.seed, args.bars)
    with open(args.out / "truth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "true_tempo", "true_key"])
        w.writeheader()
        w.writerows(rows)
    rendered = time.perf_counter() - t
    t = time.perf_counter()
    index_library(args.out, n_jobs=1)
    indexed = time.perf_counter() - t
    with Atlas.open(args.out / ".soundatlas") as atlas:
        paths = {r.id: r.path for r in atlas.samples()}
        found = atlas.labels_of(list(paths))
    labels = {paths[i]: kv for i, kv in found.items()}
    result = score(rows, labels)
    result.update(set="tune" if args.tune else "measure", bars=args.bars, rendered_s=rendered,
                  index_s=indexed,
                  soundfont=SETS["tune" if args.tune else "measure"]["soundfont"])
    print(json.dumps(result, indent=1))
    for r in rows:
        lab = labels.get(r["path"], {})
        print(f"{r['path']}  {r['true_tempo']:6.1f} -> {lab.get('tempo', '-'):>6}   "
              f"{r['true_key']:9s} -> {lab.get('key', '-')}")
    if args.json:
        args.json.write_text(json.dumps({"result": result, "rows": rows, "labels": labels},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
