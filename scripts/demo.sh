#!/usr/bin/env bash
# The main job end to end on the embedded synthetic CXR data (no dataset needed):
# synth -> split -> augmentation preview -> initial model -> DISTL T=1..3 -> eval -> attention maps.
# Usage: scripts/demo.sh [RUN_DIR] [CONFIG]   (resumable: rerun continues where it stopped)
set -euo pipefail
RUN="${1:-runs/demo}"
CONFIG="${2:-configs/demo.toml}"
SEVIT="${SEVIT:-target/release/sevit}"
DATA="$RUN/data"
mkdir -p "$RUN"

if [[ ! -f "$DATA/dataset.toml" ]]; then
    "$SEVIT" synth --out "$DATA" --n 600 --size 64 --difficulty 0.2 --seed 7
fi
if [[ ! -f "$RUN/split.csv" ]]; then
    "$SEVIT" split --dataset "$DATA/dataset.toml" --out "$RUN" --seed 7 --test-fraction 0.25 --labeled-fraction 0.2
fi
first_image="$(find "$DATA" -name '*.png' | sort | sed -n 1p)"
"$SEVIT" augment-preview "$first_image" --out "$RUN/augment-preview.png" --seed 7
"$SEVIT" evolve --run "$RUN" --config "$CONFIG" --resume
"$SEVIT" eval --run "$RUN" --stage step3 --out "$RUN/eval/step3"
"$SEVIT" eval --run "$RUN" --stage pretrain --out "$RUN/eval/pretrain"
"$SEVIT" compare "$RUN/eval/pretrain/predictions.csv" "$RUN/eval/step3/predictions.csv" \
    --name-a "T=0" --name-b "T=3" --out "$RUN/eval/compare-T0-T3.json"
"$SEVIT" visualize --run "$RUN" --stage step3 --n 4 --out "$RUN/attention"
echo "demo: done; outputs in $RUN (summary.csv, eval/, attention/, augment-preview.png)"
