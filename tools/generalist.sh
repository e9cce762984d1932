#!/usr/bin/env bash
# Makes the generalist model from scratch: renders the training corpus from the training banks
# (never the held-out TimGM6mb), indexes it with the multirate CQT and trains the neighbourhood
# mixture. Resumable: run it again after an interruption. About 40 minutes on 2 cores.
#
#   tools/generalist.sh WORK [--augment default|none] [--name NAME]
#
# Needs the Debian packages fluid-soundfont-gm fluid-soundfont-gs musescore-general-soundfont
# opl3-soundfont (installed here when missing) and `make setup`.
set -euo pipefail
WORK=${1:?usage: tools/generalist.sh WORK [--augment default|none] [--name NAME]}
shift
AUGMENT=default
NAME=generalist
while [ $# -gt 0 ]; do
  case "$1" in
    --augment) AUGMENT=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SA="$ROOT/.venv/bin/soundatlas"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
missing=""
for p in fluid-soundfont-gm fluid-soundfont-gs musescore-general-soundfont opl3-soundfont; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
SF2=/usr/share/sounds/sf2
SF3=/usr/share/sounds/sf3
C="$WORK/corpus"
if [ ! -f "$C/.rendered" ]; then
  for bank in "$SF2/FluidR3_GM.sf2" "$SF2/OPL-3_FM_128M.sf2" "$SF3/MuseScore_General_Full.sf3"; do
    "$SA" demo-library "$C" --set gm --soundfont "$bank" --sample-rate 16000 -q
    "$SA" demo-library "$C" --set drums --soundfont "$bank" --sample-rate 16000 -q
  done
  "$SA" demo-library "$C" --set drums --soundfont "$SF2/FluidR3_GS.sf2" --sample-rate 16000 -q
  "$SA" demo-library "$C" --set synth --count 3000 --seed 0 --sample-rate 16000 -q
  touch "$C/.rendered"
fi
"$SA" index "$C" --cqt-kernel multirate -q
MIX="instrument:1,label:family:0.5,label:drum_class:1,pitch:1,instrument-pitch-2:1,input-knn:0.5,augment-pair:0.5"
"$SA" train --atlas "$C/.soundatlas" -n "$MIX" --preset fast --iterations 30000 \
  --augment "$AUGMENT" --seed 0 --threads 1 --name "$NAME" --resume
