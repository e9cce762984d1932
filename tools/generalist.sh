#!/usr/bin/env bash
# Makes the generalist model from scratch with the recipe of the shipped default
# (docs/RESULTS.md, "A pitch phase after an instrument phase", "The whole network tuned with the
# pitch axis in place" and "Two seeds a recipe"): renders the training corpus at 16 kHz from the
# training banks (never the held-out TimGM6mb), indexes it with the multirate CQT and trains in
# four phases around a pitch axis. Resumable: run it again after an interruption (each step that
# finished is skipped; a phase goes on from its last checkpoint). 40 to 70 minutes on two cores:
# rendering and indexing 12,723 files, 12,000 + 3,000 iterations of training, the pitch axis's
# plane and 3,000 more iterations; then rendering and indexing the 128 GM programs (27,135 files
# in all) and 3,000 iterations on them.
#
#   tools/generalist.sh WORK [--seed N] [--iterations N] [--pitch-iterations N] [--name NAME]
#
# The corpus: the 24-class demo set of FluidR3 GM and of the OPL3 FM bank, and every drum kit of
# FluidR3 GM, FluidR3 GS and OPL3, under WORK/corpus with one metadata.csv whose `bank` column
# names each file's SoundFont, so that `bank+instrument` means "same instrument, same maker".
# Phase 1 (NAME-phase1): instrument-pitch-2 within each maker and same GM drum (weight 0.25),
# Adam lr 0.0005, cosine schedule, standardised input, 12,000 iterations. Phase 2 (NAME) starts
# from it (--init-from: its weights and input statistics) and adds pitch order inside each
# instrument (`pitch-within`, weight 0.5) for 3,000 iterations at lr 0.0002. NAME-pa keeps
# NAME's network and replaces its last layer by a plane fitted beside each frame's measured
# pitch (tools/pitch_axis_model.py, about 4 minutes). Phase 3 (NAME-pa-tuned) trains the whole
# network again with that height in place, on phase 1's mixture, for 3,000 iterations at lr
# 0.0002 (about 5 minutes). Last, phase 4 (NAME-pa-gm, the shipped default) goes on from it on
# WORK/corpus-gm, the corpus and the 128 GM programs of FluidR3 GM and OPL3 (hard links to
# WORK/corpus's files beside WORK/gm128's renders, one manifest), with the drum part at weight
# 0.5 and every point held near where phase 3 puts it (--anchor 1), for 3,000 iterations.
#
# Needs the Debian packages fluid-soundfont-gm fluid-soundfont-gs opl3-soundfont (installed here
# when missing) and `make setup`.
set -euo pipefail
usage="usage: tools/generalist.sh WORK [--seed N] [--iterations N] [--pitch-iterations N] [--name NAME]"
WORK=${1:?$usage}
shift
SEED=0
ITERATIONS=12000
PITCH_ITERATIONS=3000
NAME=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pitch-iterations) PITCH_ITERATIONS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --iterations) ITERATIONS=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    *) echo "unknown option $1; $usage" >&2; exit 2 ;;
  esac
done
NAME=${NAME:-generalist-s${SEED}}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SA="$ROOT/.venv/bin/soundatlas"
PY="$ROOT/.venv/bin/python"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
missing=""
for p in fluid-soundfont-gm fluid-soundfont-gs opl3-soundfont; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
SF2=/usr/share/sounds/sf2
C="$WORK/corpus"
if [ ! -f "$C/.rendered" ]; then
  "$SA" demo-library "$C/fluidr3" --set demo --soundfont "$SF2/FluidR3_GM.sf2" --sample-rate 16000 -q
  "$SA" demo-library "$C/opl3" --set demo --soundfont "$SF2/OPL-3_FM_128M.sf2" --sample-rate 16000 -q
  for bank in FluidR3_GM FluidR3_GS OPL-3_FM_128M; do
    "$SA" demo-library "$C/kits" --set drums --soundfont "$SF2/$bank.sf2" --sample-rate 16000 -q
  done
  # One manifest for the corpus; the demo sets' own manifests have no bank column.
  "$PY" - "$C" <<'EOF'
import sys
from pathlib import Path
from soundatlas.demo.manifests import METADATA_FILE, read_rows, write_rows
corpus = Path(sys.argv[1])
rows = []
for folder, bank in (("fluidr3", "FluidR3_GM"), ("opl3", "OPL-3_FM_128M"), ("kits", None)):
    for row in read_rows(corpus / folder / METADATA_FILE, prefix=f"{folder}/"):
        rows.append({**row, "bank": bank} if bank else row)
write_rows(corpus / METADATA_FILE, rows)
print(f"{corpus / METADATA_FILE}: {len(rows)} files")
EOF
  touch "$C/.rendered"
fi
"$SA" index "$C" --cqt-kernel multirate -q
PHASE1="instrument-pitch-2:bank+instrument:1,label:drum:0.25"
"$SA" train --atlas "$C/.soundatlas" --name "$NAME-phase1" -n "$PHASE1" --preset fast \
  --optimizer adam --lr 0.0005 --schedule cosine --warmup 100 --standardize \
  --iterations "$ITERATIONS" --seed "$SEED" --threads 1 --resume
PHASE2="instrument-pitch-2:bank+instrument:1,pitch-within:bank+instrument:0.5,label:drum:0.25"
"$SA" train --atlas "$C/.soundatlas" --name "$NAME" --init-from "$NAME-phase1" -n "$PHASE2" \
  --preset fast --optimizer adam --lr 0.0002 --schedule cosine --warmup 100 \
  --iterations "$PITCH_ITERATIONS" --seed "$SEED" --threads 1 --resume
# the pitch axis: NAME's L0-L3, a plane fitted beside each frame's measured pitch (NAME-pa)
if [ ! -f "$C/.soundatlas/models/$NAME-pa/weights.npz" ]; then
  "$ROOT/.venv/bin/python" "$ROOT/tools/pitch_axis_model.py" --atlas "$C/.soundatlas" \
    --base "$NAME" --name "$NAME-pa" --seed "$SEED"
fi
# phase 3: the whole network again with the pitch axis in place (NAME-pa-tuned)
"$SA" train --atlas "$C/.soundatlas" --name "$NAME-pa-tuned" --init-from "$NAME-pa" --pitch-axis \
  -n "$PHASE1" --preset fast --optimizer adam --lr 0.0002 --schedule cosine --warmup 100 \
  --iterations "$PITCH_ITERATIONS" --seed "$SEED" --threads 1 --resume
# phase 4: the corpus and the 128 GM programs, held near phase 3's map (NAME-pa-gm, the shipped default)
G="$WORK/corpus-gm"
if [ ! -f "$G/.rendered" ]; then
  rm -rf "$WORK/gm128"  # a render cut short starts again: the two banks share one manifest
  for bank in FluidR3_GM OPL-3_FM_128M; do
    "$SA" demo-library "$WORK/gm128" --set gm --soundfont "$SF2/$bank.sf2" --sample-rate 16000 -q
  done
  rm -rf "$G"
  mkdir -p "$G"
  for folder in fluidr3 opl3 kits; do cp -al "$C/$folder" "$G/$folder"; done
  cp -al "$WORK/gm128/gm" "$G/gm"
  # one manifest: the corpus's and the 128 programs' (paths under gm/, with a family column)
  "$PY" - "$C" "$WORK/gm128" "$G" <<'EOF'
import sys
from pathlib import Path
from soundatlas.demo.manifests import METADATA_FILE, read_rows, write_rows
corpus, programs, out = map(Path, sys.argv[1:4])
rows = read_rows(corpus / METADATA_FILE) + read_rows(programs / METADATA_FILE)
write_rows(out / METADATA_FILE, rows)
print(f"{out / METADATA_FILE}: {len(rows)} files")
EOF
  touch "$G/.rendered"
fi
"$SA" index "$G" --cqt-kernel multirate -q
"$SA" train --atlas "$G/.soundatlas" --name "$NAME-pa-gm" \
  --init-from "$C/.soundatlas/models/$NAME-pa-tuned" --pitch-axis \
  -n "instrument-pitch-2:bank+instrument:1,label:drum:0.5" --anchor 1 --preset fast \
  --optimizer adam --lr 0.0002 --schedule cosine --warmup 100 --iterations "$PITCH_ITERATIONS" \
  --seed "$SEED" --threads 1 --resume
