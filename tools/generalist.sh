#!/usr/bin/env bash
# Makes a generalist model from scratch with the current recipe (docs/RESULTS.md, "Longer at
# half the rate, and pitch order inside each instrument"): renders the training corpus at 16 kHz
# from the training banks (never the held-out TimGM6mb), indexes it with the multirate CQT and
# trains the neighbourhood mixture. Resumable: run it again after an interruption (each step
# that finished is skipped; training goes on from its last checkpoint). About 30 minutes on two
# cores for the default 12,000 iterations (27 minutes of them training), 12,723 files.
#
#   tools/generalist.sh WORK [--weight W] [--seed N] [--iterations N] [--name NAME]
#
# The corpus: the 24-class demo set of FluidR3 GM and of the OPL3 FM bank, and every drum kit of
# FluidR3 GM, FluidR3 GS and OPL3, under WORK/corpus with one metadata.csv whose `bank` column
# names each file's SoundFont, so that `bank+instrument` means "same instrument, same maker".
# The mixture: instrument-pitch-2 within each maker, pitch order inside each instrument
# (`pitch-within`, weight W, default 0.25) and same GM drum (0.25); Adam lr 0.0005 with a cosine
# schedule on standardised input.
#
# Needs the Debian packages fluid-soundfont-gm fluid-soundfont-gs opl3-soundfont (installed here
# when missing) and `make setup`.
set -euo pipefail
usage="usage: tools/generalist.sh WORK [--weight W] [--seed N] [--iterations N] [--name NAME]"
WORK=${1:?$usage}
shift
WEIGHT=0.25
SEED=0
ITERATIONS=12000
NAME=""
while [ $# -gt 0 ]; do
  case "$1" in
    --weight) WEIGHT=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --iterations) ITERATIONS=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    *) echo "unknown option $1; $usage" >&2; exit 2 ;;
  esac
done
NAME=${NAME:-generalist-w${WEIGHT}-s${SEED}}
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
import csv, sys
from pathlib import Path
corpus = Path(sys.argv[1])
rows, columns = [], ["path"]
for folder, bank in (("fluidr3", "FluidR3_GM"), ("opl3", "OPL-3_FM_128M"), ("kits", None)):
    with open(corpus / folder / "metadata.csv", newline="") as f:
        for row in csv.DictReader(f):
            row["path"] = f"{folder}/{row['path']}"
            if bank:
                row["bank"] = bank
            rows.append(row)
            columns += [k for k in row if k not in columns]
with open(corpus / "metadata.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
print(f"{corpus / 'metadata.csv'}: {len(rows)} files")
EOF
  touch "$C/.rendered"
fi
"$SA" index "$C" --cqt-kernel multirate -q
MIX="instrument-pitch-2:bank+instrument:1,pitch-within:bank+instrument:$WEIGHT,label:drum:0.25"
"$SA" train --atlas "$C/.soundatlas" --name "$NAME" -n "$MIX" --preset fast --optimizer adam \
  --lr 0.0005 --schedule cosine --warmup 100 --standardize --iterations "$ITERATIONS" \
  --seed "$SEED" --threads 1 --resume
