#!/usr/bin/env bash
# `just cuda-check`: the checks that need a GPU, in one go, writing everything under OUT:
#   1. `sevit info` (libtorch build, CUDA devices);
#   2. the bench on CUDA against the PyTorch eager reference, f32 then bf16 autocast
#      (bench/run_bench.py --device cuda: tiny/16 step, out 65536, correction, eval, small/8),
#      with PyTorch + SDPA under torch.compile beside them in bf16, and end to end: the step
#      fed by the real loader (`train`) and the loader alone on one and on every core (`data`),
#      on 256 px PNG files (../shared/data when present, else `sevit synth` phantoms);
#   3. the engine end to end on CUDA: the demo curriculum (synthetic data, micro model,
#      initial model + DISTL T=1..3 + eval) with device = "cuda" and precision = "bf16".
#
# Usage: scripts/cuda-check.sh [--out DIR] [--bin-dir DIR] [--skip-bench] [--skip-demo]
#                              [--skip-compile] [--skip-data]
#   --out DIR      where results go (default target/cuda-check)
#   --skip-compile no torch.compile variant (it compiles for minutes per process)
#   --skip-data    no train/data modes
#   --bin-dir DIR  prebuilt `sevit` and `distl_step` executables (for a GPU machine without
#                  cargo; they must be linked against the libtorch of the python used there).
#                  Default: build both here with cargo (release).
# The PyTorch side runs with $SEVIT_TORCH_PYTHON, else python3. The libtorch of that python is
# put on LD_LIBRARY_PATH for the Rust side too, so both sides use the same kernels.
set -uo pipefail
cd "$(dirname "$0")/.."

out=target/cuda-check
bin_dir=""
bench=1
demo=1
compile=1
data=1
while (($#)); do
    case "$1" in
        --out) out="$2"; shift ;;
        --bin-dir) bin_dir="$2"; shift ;;
        --skip-bench) bench=0 ;;
        --skip-demo) demo=0 ;;
        --skip-compile) compile=0 ;;
        --skip-data) data=0 ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "cuda-check.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
py="${SEVIT_TORCH_PYTHON:-python3}"
fail=0
step() { echo "== cuda-check: $*" | tee -a "$out/summary.txt" >&2; }

if [[ -z "$bin_dir" ]]; then
    step "building sevit and the distl_step bench (release)"
    cargo build --release -p sevit-cli || exit 1
    b="$(scripts/distl-step-bin.sh "$py" "$out/build.log")"
    [[ -x "$b" ]] || { echo "cuda-check.sh: building the distl_step bench failed; see $out/build.log" >&2; exit 1; }
    bin_dir=target/cuda-check-bin
    mkdir -p "$bin_dir"
    cp target/release/sevit "$bin_dir/sevit"
    cp "$b" "$bin_dir/distl_step"
fi
sevit="$(cd "$bin_dir" && pwd)/sevit"
distl_step="$(cd "$bin_dir" && pwd)/distl_step"
torch_lib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || {
    echo "cuda-check.sh: $py has no torch" >&2
    exit 1
}
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

step "GPU and libtorch"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.csv"
"$py" -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' | tee -a "$out/summary.txt"
"$sevit" info 2>&1 | tee "$out/sevit-info.txt" || { step "FAILED: sevit info"; exit 1; }
grep -q "cuda available: true" "$out/sevit-info.txt" || { step "FAILED: sevit sees no CUDA device"; exit 1; }
step "smoke: one micro DISTL step on CUDA, f32 and bf16"
for prec in fp32 bf16; do
    "$distl_step" --config micro --device cuda --precision "$prec" --iters 2 --warmup 1 >"$out/smoke-$prec.json" ||
        { step "FAILED: micro step on CUDA ($prec)"; exit 1; }
done

if ((bench)); then
    extra_data=()
    if ((data)); then
        kermany=../shared/data/kermany_pediatric_224src/manifest.csv
        if [[ -f "$kermany" ]]; then
            extra_data=(--data data-manifests/kermany_pediatric_224src.toml)
        else
            step "no ../shared/data here: 256 px PNG phantoms for the train/data modes"
            "$sevit" synth --out "$out/bench-data" --n 1200 --size 256 --seed 3 >"$out/synth.log" 2>&1 ||
                { step "FAILED: sevit synth"; exit 1; }
            extra_data=(--data "$out/bench-data/dataset.toml")
        fi
    fi
    for prec in fp32 bf16; do
        step "bench on CUDA, $prec"
        extra=("${extra_data[@]}")
        if ((compile)) && [[ $prec == bf16 ]]; then extra+=(--compile); fi
        if "$py" bench/run_bench.py --rust-bin "$distl_step" --python "$py" --device cuda \
            --precision "$prec" --out "$out/bench-$prec" "${extra[@]}" >"$out/bench-$prec.log" 2>&1; then
            sed -n '/^## Rust/,/^## Step/p' "$out/bench-$prec/report.md" | tee -a "$out/summary.txt"
        else
            step "FAILED: bench $prec (see bench-$prec.log)"
            tail -n 30 "$out/bench-$prec.log" >&2
            fail=1
        fi
    done
fi

if ((demo)); then
    step "engine on CUDA: demo curriculum, bf16"
    run="$out/demo-run"
    rm -rf "$run"
    t0=$(date +%s)
    if {
        "$sevit" synth --out "$run/data" --n 600 --size 64 --difficulty 0.2 --seed 7 &&
            "$sevit" split --dataset "$run/data/dataset.toml" --out "$run" --seed 7 --test-fraction 0.25 --labeled-fraction 0.2 &&
            "$sevit" evolve --run "$run" --config configs/demo.toml --no-progress --set device=cuda --set precision=bf16 &&
            "$sevit" eval --run "$run" --stage step3 --out "$run/eval/step3"
    } >"$out/demo.log" 2>&1; then
        step "demo on CUDA: done in $(($(date +%s) - t0)) s"
        cp "$run/summary.csv" "$out/demo-summary.csv" 2>/dev/null
        cat "$run/summary.csv" >>"$out/summary.txt" 2>/dev/null
    else
        step "FAILED: demo on CUDA (see demo.log)"
        tail -n 30 "$out/demo.log" >&2
        fail=1
    fi
fi
exit $fail
