#!/usr/bin/env bash
# The DISTL claim on real chest X-rays (issue 6), end to end and resumable:
#   Kermany pediatric (normal vs pneumonia), official test_ files as the test set, the train_
#   files split by patient into 10% labeled + 3 unlabeled folds (+ a 10% validation split for
#   tuning, never the test files), for each seed:
#     initial model on the labeled 10% -> DISTL T = 1..3 (sevit evolve),
#     supervised baselines with labels on the labeled set + folds 1..T (sevit pretrain --label-folds T),
#     a labeled-only control: the initial model trained on its labeled 10% alone for as many
#       optimiser updates as DISTL step T made (chained over T like the DISTL steps), which
#       separates what the unlabeled folds bring from what more training brings,
#     every model evaluated on the test set (and on the validation split, reported apart),
#   then docs/results.md (tables, paired DeLong tests, AUC-vs-T plot, links to attention maps) and the
#   raw JSON/CSV in docs/results/ (sevit experiment-report).
#
# Usage: scripts/experiment.sh [CONFIG] [SEEDS] [EXP_DIR]
#   CONFIG   training preset (default configs/cpu.toml; configs/paper.toml is the GPU recipe)
#   SEEDS    space-separated seeds (default "0 1 2")
#   EXP_DIR  where runs go (default runs/experiment); rerunning continues where it stopped.
#            It keeps one preset (CONFIG, EXTRA_SET, SSL_POOL, BASELINE_EPOCHS): use another
#            EXP_DIR for another.
# Environment: SEVIT (binary, default target/release/sevit), DOCS (default docs),
#   SSL_POOL=1 to pretrain the backbone self-supervised on the covid_* sets first,
#   EXTRA_SET="k=v k=v" extra --set overrides for every training command,
#   ABLATIONS="NAME:KEY=VALUE ...": DISTL curricula run beside the preset from the same initial
#     model with one override each, reported apart and never used to choose the preset
#     (default: no-dino:distl.dino_epochs=0 no-self-training:distl.self_training=false;
#     ABLATIONS="" runs none),
#   BASELINE_EPOCHS: epochs of every supervised baseline; by default each baseline gets the
#     initial model's number of iterations (pretrain.epochs x labeled / its image count,
#     rounded up), so more labels are not confounded with more optimisation steps.
set -euo pipefail
CONFIG="${1:-configs/cpu.toml}"
SEEDS="${2:-0 1 2}"
EXP="${3:-runs/experiment}"
DOCS="${DOCS:-docs}"
SEVIT="${SEVIT:-target/release/sevit}"
DATASET="data-manifests/kermany_pediatric_224src.toml"
ABLATIONS="${ABLATIONS-no-dino:distl.dino_epochs=0 no-self-training:distl.self_training=false}"
POOL=(data-manifests/covid_ieee8023.toml data-manifests/covid_actualmed.toml data-manifests/covid_figure1.toml)

die() { echo "experiment: $*" >&2; exit 1; }
[[ -x "$SEVIT" ]] || die "$SEVIT not found: build it first (just build)"
[[ -f "$CONFIG" ]] || die "config $CONFIG not found"
[[ -f ../shared/data/kermany_pediatric_224src/manifest.csv ]] ||
    die "../shared/data/kermany_pediatric_224src is missing: this experiment needs the real Kermany data beside the checkout"

sets=()
init_epochs=$(awk '/^\[pretrain\]/{p=1;next} /^\[/{p=0} p && $1=="epochs"{print $3}' "$CONFIG")
for kv in ${EXTRA_SET:-}; do
    sets+=(--set "$kv")
    if [[ $kv == pretrain.epochs=* ]]; then init_epochs="${kv#pretrain.epochs=}"; fi
done
[[ "$init_epochs" =~ ^[0-9]+$ ]] || die "cannot read [pretrain] epochs from $CONFIG"
# images with labels at T: the labeled set plus folds 0..T-1 of a split.csv
n_labeled_at() {
    awk -F, -v T="$2" '!/^#/ && $4=="labeled"{n++} !/^#/ && $4 ~ /^fold[0-9]+$/ {if (substr($4,5)+0 < T) n++} END{print n+0}' "$1"
}
mkdir -p "$EXP"
# Finished stages are skipped by their .done markers, so an experiment directory must keep one
# preset: another config (or other EXTRA_SET, SSL_POOL, BASELINE_EPOCHS) would silently mix
# models trained with both.
preset="$EXP/preset.txt"
{ echo "# config $CONFIG, EXTRA_SET=${EXTRA_SET:-}, SSL_POOL=${SSL_POOL:-0}, BASELINE_EPOCHS=${BASELINE_EPOCHS:-}"; cat "$CONFIG"; } >"$preset.new"
if [[ -f "$preset" ]] && ! cmp -s "$preset" "$preset.new"; then
    rm -f "$preset.new"
    die "$EXP was run with another preset ($(head -n1 "$preset" | cut -c3-)): pass another EXP_DIR (the third argument) for this one, or remove $EXP"
fi
mv "$preset.new" "$preset"
start_all=$(date +%s)
timing="$EXP/timing.tsv"
[[ -f "$timing" ]] || printf 'what\tseconds\n' >"$timing"
timed() { # timed LABEL CMD...: runs CMD, appends its wall time (only when it did work)
    local label="$1"; shift
    local t0; t0=$(date +%s)
    "$@"
    printf '%s\t%s\n' "$label" "$(($(date +%s) - t0))" >>"$timing"
}

init=()
if [[ "${SSL_POOL:-0}" == 1 ]]; then
    ssl_run="$EXP/ssl-pool"
    mkdir -p "$ssl_run"
    timed "ssl-pool" "$SEVIT" pretrain --self-supervised --run "$ssl_run" --config "$CONFIG" \
        --pool "${POOL[@]}" --resume --no-progress "${sets[@]}"
    init=(--init "$ssl_run/ssl/checkpoint.safetensors" --init-weights teacher)
fi

for seed in $SEEDS; do
    dir="$EXP/seed-$seed"
    run="$dir/run"
    mkdir -p "$dir"
    if [[ ! -f "$run/split.csv" ]]; then
        "$SEVIT" split --dataset "$DATASET" --out "$run" --seed "$seed" --val-fraction 0.1 \
            | tee "$dir/split.txt"
    fi
    common=(--run "$run" --config "$CONFIG" --set "seed=$seed" --resume --no-progress "${sets[@]}")
    if [[ ! -f "$run/step3/.done" ]]; then
        timed "seed $seed: initial model + DISTL T=1..3 (evolve)" "$SEVIT" evolve "${common[@]}" "${init[@]}"
        touch "$run/step3/.done"
    fi
    for t in 1 2 3; do
        if [[ ! -f "$run/supervised$t/.done" ]]; then
            n0=$(n_labeled_at "$run/split.csv" 0)
            nt=$(n_labeled_at "$run/split.csv" "$t")
            epochs="${BASELINE_EPOCHS:-$(((init_epochs * n0 + nt - 1) / nt))}"
            timed "seed $seed: supervised T=$t ($nt images, $epochs epochs)" "$SEVIT" pretrain "${common[@]}" \
                --label-folds "$t" --set "pretrain.epochs=$epochs" "${init[@]}"
            touch "$run/supervised$t/.done"
        fi
    done
    # The labeled-only control of step T: its own run directory (same split), whose `pretrain`
    # stage starts from the initial model (T=1) or the control of T-1, trained with labels on the
    # labeled set alone, last epoch kept, for the optimiser updates of DISTL step T (the lines
    # of its log: unlabeled iterations and correction batches), rounded to whole epochs of the
    # labeled set (the initial model's iterations in its first epoch).
    ipe_labeled=$(grep '"epoch":0,' "$run/pretrain/log.jsonl" | grep -vc '"kind":"validation"' || true)
    [[ "$ipe_labeled" -gt 0 ]] ||
        die "$run/pretrain/log.jsonl has no first-epoch iterations: the initial model's log is missing or empty"
    prev="$run/pretrain/checkpoint.safetensors"
    for t in 1 2 3; do
        ctl="$dir/control/T$t"
        if [[ ! -f "$ctl/pretrain/.done" ]]; then
            mkdir -p "$ctl"
            cp "$run/split.csv" "$ctl/split.csv"
            updates=$(wc -l <"$run/step$t/log.jsonl")
            epochs=$(((updates + ipe_labeled / 2) / ipe_labeled))
            timed "seed $seed: labeled-only control T=$t ($epochs epochs, $updates updates in DISTL)" \
                "$SEVIT" pretrain --run "$ctl" --config "$CONFIG" --set "seed=$seed" --resume \
                --no-progress "${sets[@]}" --init "$prev" --set "pretrain.epochs=$epochs" \
                --set pretrain.select=last --set pretrain.restarts=1
            touch "$ctl/pretrain/.done"
        fi
        prev="$ctl/pretrain/checkpoint.safetensors"
    done
    # Ablations: the DISTL curriculum from a copy of the same initial model, one override each.
    for ab in $ABLATIONS; do
        arun="$dir/ablation-${ab%%:*}"
        if [[ ! -f "$arun/step3/.done" ]]; then
            mkdir -p "$arun/pretrain"
            cp "$run/split.csv" "$arun/split.csv"
            [[ -f "$arun/pretrain/checkpoint.safetensors" ]] ||
                cp "$run/pretrain/checkpoint.safetensors" "$arun/pretrain/"
            timed "seed $seed: ablation ${ab%%:*} (${ab#*:}), DISTL T=1..3" "$SEVIT" evolve \
                --run "$arun" --config "$CONFIG" --set "seed=$seed" --resume --no-progress \
                "${sets[@]}" --set "${ab#*:}"
            touch "$arun/step3/.done"
        fi
    done
    evaluate() { # evaluate STAGE NAME [WEIGHTS [RUN]]: on the test set (eval/) and the validation split (eval-val/)
        local subset out
        for subset in test val; do
            out="$dir/eval/$2"; [[ $subset == val ]] && out="$dir/eval-val/$2"
            [[ -f "$out/predictions.csv" ]] && continue
            "$SEVIT" eval --run "${4:-$run}" --stage "$1" --subset "$subset" --weights "${3:-student}" \
                --out "$out" --log warn >/dev/null
        done
    }
    evaluate pretrain distl-T0
    for t in 1 2 3; do
        evaluate "step$t" "distl-T$t"
        evaluate "step$t" "distl-teacher-T$t" teacher
        evaluate "supervised$t" "supervised-T$t"
        evaluate pretrain "control-T$t" student "$dir/control/T$t"
        for ab in $ABLATIONS; do
            name="${ab%%:*}"
            evaluate "step$t" "ablation-$name-T$t" student "$dir/ablation-$name"
            cmp="$dir/eval/ablation-$name-vs-distl-T$t.json"
            [[ -f "$cmp" ]] || "$SEVIT" compare "$dir/eval/ablation-$name-T$t" "$dir/eval/distl-T$t" \
                --name-a "$name T=$t" --name-b "DISTL T=$t" --out "$cmp" --log warn >/dev/null
        done
    done
done

# Validation AUC of every model: the split the presets were tuned on, drawn from the same
# `train_` files as the training images (the test files come from another collection period).
auc_in() { # auc_in REPORT_JSON: its AUC, or - when missing
    if [[ -f "$1" ]]; then grep -m1 -o '"auc": *[0-9.eE+-]*' "$1" | awk -F: '{printf "%.3f", $2}'; else echo "-"; fi
}
val_auc() { # val_auc SEED NAME
    auc_in "$EXP/seed-$1/eval-val/$2/report.json"
}
test_auc() { # test_auc SEED NAME
    auc_in "$EXP/seed-$1/eval/$2/report.json"
}
diff_p() { # diff_p COMPARE_JSON: "A - B (p)" of a `sevit compare` report, or - when missing
    if [[ ! -f "$1" ]]; then echo "-"; return; fi
    tr -d ' \n' <"$1" | grep -o '"test":{.*' | awk '{
        match($0, /"diff":[-0-9.eE+]+/); d = substr($0, RSTART + 7, RLENGTH - 7)
        match($0, /"p_value":[-0-9.eE+]+/); p = substr($0, RSTART + 10, RLENGTH - 10)
        printf "%+.3f (%s)", d, (p + 0 < 0.0001 ? "p < 0.0001" : sprintf("p = %.4f", p)) }'
}
mean_test_auc() { # mean_test_auc NAME: over the seeds
    for seed in $SEEDS; do test_auc "$seed" "$1"; echo; done |
        awk '$1 != "-" { s += $1; n++ } END { if (n) printf "%.3f", s / n; else printf "-" }'
}
restart_aucs() { # restart_aucs SEED STAGE: each restart's validation AUC, the kept one in bold
    local f="$EXP/seed-$1/run/$2/restarts.csv"
    if [[ -f "$f" ]]; then
        awk -F, 'NR > 1 { a = sprintf("%.3f", $4); if ($5 == "true") a = "**" a "**"; s = s (s == "" ? "" : ", ") a } END { print s }' "$f"
    else
        echo "-"
    fi
}
val_md="$EXP/validation.md"
{
    echo "## Validation AUC of every model"
    echo
    echo "The same models on the validation split (about 140 \`train_\` images held out by patient; what"
    echo "the presets were tuned on, never the test files). Raw: \`$EXP/seed-S/eval-val/\`."
    echo
    echo "| seed | arm | T=0 | T=1 | T=2 | T=3 |"
    echo "|---|---|---|---|---|---|"
    for seed in $SEEDS; do
        t0=$(val_auc "$seed" distl-T0)
        echo "| $seed | DISTL | $t0 | $(val_auc "$seed" distl-T1) | $(val_auc "$seed" distl-T2) | $(val_auc "$seed" distl-T3) |"
        echo "| $seed | supervised | $t0 | $(val_auc "$seed" supervised-T1) | $(val_auc "$seed" supervised-T2) | $(val_auc "$seed" supervised-T3) |"
        echo "| $seed | labeled-only control | $t0 | $(val_auc "$seed" control-T1) | $(val_auc "$seed" control-T2) | $(val_auc "$seed" control-T3) |"
    done
    if compgen -G "$EXP/seed-*/run/*/restarts.csv" >/dev/null; then
        echo
        echo "Restarts (\`pretrain.restarts\`): the validation AUC of each training of a supervised"
        echo "stage (at its best epoch); the stage keeps the one in bold. Raw: \`$EXP/seed-S/run/STAGE/restarts.csv\`."
        echo
        echo "| seed | initial model (T=0) | supervised T=1 | supervised T=2 | supervised T=3 |"
        echo "|---|---|---|---|---|"
        for seed in $SEEDS; do
            echo "| $seed | $(restart_aucs "$seed" pretrain) | $(restart_aucs "$seed" supervised1) | $(restart_aucs "$seed" supervised2) | $(restart_aucs "$seed" supervised3) |"
        done
    fi
    echo
    echo "## DISTL's EMA teacher"
    echo
    echo "The tables above evaluate the student of each DISTL step (DISTL.md: student weights by"
    echo "default). The same steps' teacher (the EMA of the student) on the test set, validation AUC"
    echo "in brackets; T=0 is the initial model, where teacher and student are one network. Raw:"
    echo "\`$EXP/seed-S/eval/distl-teacher-T*\`."
    echo
    echo "| seed | T=0 | T=1 | T=2 | T=3 |"
    echo "|---|---|---|---|---|"
    for seed in $SEEDS; do
        row="| $seed | $(test_auc "$seed" distl-T0) ($(val_auc "$seed" distl-T0))"
        for t in 1 2 3; do
            row+=" | $(test_auc "$seed" "distl-teacher-T$t") ($(val_auc "$seed" "distl-teacher-T$t"))"
        done
        echo "$row |"
    done
    mean_row="| mean (test) | "
    for name in distl-T0 distl-teacher-T1 distl-teacher-T2 distl-teacher-T3; do
        mean_row+="$(mean_test_auc "$name") | "
    done
    echo "${mean_row% }"
    if [[ -n "$ABLATIONS" ]]; then
        echo
        echo "## Ablations of the DISTL step"
        echo
        echo "The same curriculum from the same initial models with one override each (reported, never"
        echo "used to choose the preset): $(for ab in $ABLATIONS; do printf '`%s`: `%s`; ' "${ab%%:*}" "${ab#*:}"; done | sed 's/; $//')."
        echo "(\`distl.dino_epochs = 0\` drops the DINO term, from the corrections too, and"
        echo "\`distl.self_training = false\` the pseudo-labels.) Test AUC, validation AUC in brackets,"
        echo "and the difference from DISTL with its paired DeLong p. Raw: \`$EXP/seed-S/eval/ablation-*\`."
        echo
        header="| seed | T | DISTL"; rule="|---|---|---"
        for ab in $ABLATIONS; do header+=" | ${ab%%:*} | − DISTL (p)"; rule+="|---|---"; done
        echo "$header |"; echo "$rule|"
        for seed in $SEEDS; do
            for t in 1 2 3; do
                row="| $seed | $t | $(test_auc "$seed" "distl-T$t") ($(val_auc "$seed" "distl-T$t"))"
                for ab in $ABLATIONS; do
                    name="ablation-${ab%%:*}"
                    row+=" | $(test_auc "$seed" "$name-T$t") ($(val_auc "$seed" "$name-T$t")) | $(diff_p "$EXP/seed-$seed/eval/$name-vs-distl-T$t.json")"
                done
                echo "$row |"
            done
        done
        for t in 1 2 3; do
            row="| mean | $t | $(mean_test_auc "distl-T$t")"
            for ab in $ABLATIONS; do row+=" | $(mean_test_auc "ablation-${ab%%:*}-T$t") | "; done
            echo "$row |"
        done
    fi
} >"$val_md"

# Attention maps of the same test images at T = 0..3 (first seed). They show the test X-rays,
# so they stay beside the runs (git-ignored), never in docs/.
first_seed="${SEEDS%% *}"
att="$EXP/attention"
rm -rf "$att"
for t in 0 1 2 3; do
    stage="step$t"; [[ $t == 0 ]] && stage=pretrain
    "$SEVIT" visualize --run "$EXP/seed-$first_seed/run" --stage "$stage" --n 2 --tile-size 160 \
        --out "$att/T$t" --log warn >/dev/null
done

# Robustness to image nuisances of the initial model and DISTL T=3 (first seed): AUC under
# noise, blur, contrast, gamma, rotation, JPEG and down-sampling at severities 1, 3, 5.
rob="$DOCS/results/robustness"
robust_md="$EXP/robustness.md"
mkdir -p "$rob"
for pair in "pretrain T0" "step3 T3"; do
    set -- $pair
    out="$EXP/seed-$first_seed/robustness/$2"
    if [[ ! -f "$out/nuisance.csv" ]]; then
        "$SEVIT" eval --run "$EXP/seed-$first_seed/run" --stage "$1" --nuisance --severities 1,3,5 \
            --out "$out" --log warn >/dev/null
    fi
    cp "$out/nuisance.csv" "$rob/nuisance-$2.csv"
    cp "$out/nuisance.png" "$rob/nuisance-$2.png"
done
{
    echo "## Robustness to image nuisances (seed $first_seed, test set)"
    echo
    echo "Test AUC (DeLong 95% CI) when every test image is perturbed; severity 0 is the clean image."
    echo "Raw: \`results/robustness/nuisance-T0.csv\`, \`results/robustness/nuisance-T3.csv\`."
    echo
    echo "| nuisance | severity | initial model (T=0) | DISTL T=3 |"
    echo "|---|---|---|---|"
    paste -d, "$rob/nuisance-T0.csv" "$rob/nuisance-T3.csv" | awk -F, 'NR>1 && ($3+0 > 0 || !clean++) {
        printf "| %s | %d | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) |\n", ($3+0 > 0 ? $2 : "none"), $3, $4, $5, $6, $10, $11, $12 }'
    echo
    echo "![nuisances, T=0](results/robustness/nuisance-T0.png) ![nuisances, T=3](results/robustness/nuisance-T3.png)"
} >"$robust_md"

# The setup section of the report: regenerated each time from what actually ran.
setup="$EXP/setup.md"
{
    echo "## Setup"
    echo
    echo "* Command: \`just experiment $CONFIG \"$SEEDS\"\` (scripts/experiment.sh), seeds: $SEEDS$([[ ${SSL_POOL:-0} == 1 ]] && echo ', backbone pretrained self-supervised on the covid_* pool')$([[ -n ${EXTRA_SET:-} ]] && echo ", overrides: \`$EXTRA_SET\`"); supervised baselines trained for $([[ -n ${BASELINE_EPOCHS:-} ]] && echo "$BASELINE_EPOCHS epochs" || echo "as many iterations as the initial model")."
    echo "* Data: \`$DATASET\` (Kermany pediatric CXR, normal vs pneumonia, downsampled PNGs in ../shared/data);"
    echo "  test set = the official \`test_\` files; the \`train_\` files split by patient, stratified:"
    echo "  10% labeled, 3 unlabeled folds, 10% validation (used for tuning only)."
    echo "* Attention grids: \`$att\` (not committed: they show the test X-rays; the links in the"
    echo "  attention section work in a checkout where \`just experiment\` has run)."
    echo "* Machine: $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //' || echo unknown)), $(date -u +%Y-%m-%d)."
    echo
    echo "Split of seed $first_seed (images per subset):"
    echo
    echo '```'
    cat "$EXP/seed-$first_seed/split.txt" 2>/dev/null || echo "(split table not recorded)"
    echo '```'
    echo
    echo "Wall time of each training command (seconds; resumed commands count only their last run):"
    echo
    echo "| what | seconds |"
    echo "|---|---|"
    tail -n +2 "$timing" | awk -F'\t' '{print "| " $1 " | " $2 " |"}'
    echo
    echo "Training preset \`$CONFIG\`:"
    echo
    echo '```toml'
    cat "$CONFIG"
    echo '```'
} >"$setup"

appendix=(--appendix "$val_md" --appendix "$robust_md")
if [[ -f "$DOCS/experiment-notes.md" ]]; then appendix+=(--appendix "$DOCS/experiment-notes.md"); fi
"$SEVIT" experiment-report --exp "$EXP" --out "$DOCS/results.md" --assets "$DOCS/results" \
    --preamble "$setup" "${appendix[@]}" --attention "$att"
echo "experiment: done in $(($(date +%s) - start_all)) s; see $DOCS/results.md"
