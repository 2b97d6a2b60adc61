#!/usr/bin/env bash
# Self-evolution with a promotion gate on synthetic phantoms (docs/evolution.md):
# an initial model on a few labels, then three arrivals of unlabeled images through
# inbox -> evolve -> gate. Arrival 2 is off-distribution (inverted gray levels, a MONOCHROME1
# export gone wrong); the gate must keep its candidate out of service.
# Usage: scripts/demo-evolution.sh [DIR] [CONFIG]   (a fresh DIR each time; DIR is replaced)
set -euo pipefail
DIR="${1:-runs/demo-evolution}"
CONFIG="${2:-configs/demo.toml}"
SEVIT="${SEVIT:-target/release/sevit}"
SIZE=32
rm -rf "$DIR"
mkdir -p "$DIR"
log() { printf '\n== %s\n' "$*"; }

log "the hospital's labeled images: labeled set, locked validation set"
"$SEVIT" synth --out "$DIR/labeled" --n 500 --size "$SIZE" --difficulty 0 --seed 1 >/dev/null
"$SEVIT" split --dataset "$DIR/labeled/dataset.toml" --out "$DIR/run" --seed 0 \
    --labeled-fraction 0.15 --val-fraction 0.7 --test-fraction 0.05 --folds 1
log "initial model (deliberately short: 3 epochs on the labeled set)"
"$SEVIT" pretrain --run "$DIR/run" --config "$CONFIG" --set pretrain.epochs=3 --no-progress
"$SEVIT" models init --store "$DIR/site" --run "$DIR/run" --min-new 150

arrive() { # name seed n [--invert]
    "$SEVIT" synth --out "$DIR/arrivals/$1" --n "$3" --size "$SIZE" --difficulty 0 --seed "$2" ${4:-} >/dev/null
    "$SEVIT" inbox add --store "$DIR/site" "$DIR/arrivals/$1/images"
    "$SEVIT" evolve --store "$DIR/site" --no-progress
}
log "arrival 1: 300 new images"
arrive arrival1 2 300
log "arrival 2: 600 images from a misconfigured export (inverted gray levels)"
arrive arrival2 3 600 --invert
log "arrival 3: 300 new images"
arrive arrival3 4 300

log "registry"
"$SEVIT" models list --store "$DIR/site"
"$SEVIT" inbox status --store "$DIR/site"
log "audit log: $DIR/site/audit.jsonl"
cut -c1-160 "$DIR/site/audit.jsonl"
"$SEVIT" predict --store "$DIR/site" --folder "$DIR/arrivals/arrival3/images" --out "$DIR/predictions.csv" >/dev/null
echo "predictions of the model in service: $DIR/predictions.csv"
