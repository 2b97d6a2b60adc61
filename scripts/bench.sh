#!/usr/bin/env bash
# `just bench`: throughput and peak memory of the DISTL step (tiny/16@128 with out 4096 and
# 65536, small/8@256), the correction step and evaluation, against a plain PyTorch eager
# implementation of the same step measured in the same run; plus the augmentation bench of
# sevit-data when present. Writes target/bench/report.json, report.md (printed) and runs.jsonl.
#
# Usage: scripts/bench.sh [--quick] [--focus] [--no-small] [--no-torch] [--smoke] [--threads N]
#        [--precision fp32|bf16] [--omp spin10k|passive|default] [--hugepages on|off]
#        [--device cpu|cuda] [--modes M] [--op-profile]
#   --quick     tiny/16 only, fewer rounds (a few minutes)
#   --focus     only the tiny/16 step, 4 interleaved rounds: the steadiest Rust/PyTorch ratio
#   --no-small  skip small/8@256 (the paper configuration, tens of seconds per step on CPU)
#   --no-torch  skip the PyTorch comparison
#   --smoke     micro model, one iteration each: checks that the bench itself runs
#   --threads N torch intra-op threads for both sides (default 2)
#   --precision fp32|bf16  forward passes of both sides in f32 (default) or under bf16 autocast
#   --omp P     libgomp wait policy of both sides: spin10k (default, what sevit sets), passive, default
#   --hugepages on|off  glibc's allocator on transparent huge pages in both sides (default on,
#               what sevit sets)
#   --device D  where both sides run the step: cpu (default), cuda or cuda:N (more iterations per
#               process, an 8192 matmul reference, GPU memory per process; no `train` mode)
#   --modes M   only these measurements, comma-separated: step, correction, eval, train
#   --op-profile  instead of the bench: self time per aten operator of the tiny/16 step, sevit's
#               and the PyTorch reference's side by side (bench/op_profile.py; writes
#               op-profile.csv, op-profile-torch.csv and op-profile.md; honours --threads and
#               --no-torch)
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/bench
args=()
op_profile=0
while (($#)); do
    case "$1" in
        --quick | --focus | --no-small | --no-torch | --smoke) args+=("$1") ;;
        --omp | --hugepages | --precision | --device | --modes) args+=("$1" "$2"); shift ;;
        --threads) args+=("$1" "$2"); shift ;;
        --out) out="$2"; shift ;;
        --op-profile) op_profile=1 ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"

# The PyTorch used for the comparison (and to run the orchestrator): the environment, else the
# generated cargo config, else the default cache location of scripts/setup.sh.
py="${SEVIT_TORCH_PYTHON:-}"
if [[ -z "$py" && -f .cargo/config.toml ]]; then
    py="$(sed -n 's/^SEVIT_TORCH_PYTHON *= *"\(.*\)"/\1/p' .cargo/config.toml | head -n1)"
fi
py="${py:-${SEVIT_CACHE:-$HOME/.cache/sevit}/torch-2.13.0/bin/python}"
if [[ ! -x "$py" ]]; then
    echo "bench.sh: no python with torch at $py: run scripts/setup.sh (or ./sevitw setup) first" >&2
    exit 1
fi

echo "bench: building the benches (release)..." >&2
bin="$(scripts/distl-step-bin.sh "$py" "$out/build.log")" || true
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "bench.sh: building the distl_step bench failed; see $out/build.log" >&2
    tail -n 30 "$out/build.log" >&2
    exit 1
fi
# A private copy: a rebuild during the run (other jobs share the target dir) cannot swap it.
cp "$bin" "$out/distl_step.bin"
bin="$out/distl_step.bin"
if ((op_profile)); then
    # Of the other flags only --threads and --no-torch apply here.
    threads=2
    with_torch=(--torch)
    for ((i = 0; i < ${#args[@]}; i++)); do
        [[ "${args[i]}" == --threads ]] && threads="${args[i + 1]}"
        [[ "${args[i]}" == --no-torch ]] && with_torch=()
    done
    exec "$py" bench/op_profile.py --rust-bin "$bin" --python "$py" --out "$out" \
        --threads "$threads" "${with_torch[@]}"
fi

# Augmentation: sevit-data's bench (writes target/bench/augment.json) and the torchvision +
# Pillow reference with 2 DataLoader workers (writes target/bench/augment_torchvision.json).
rm -f target/bench/augment.json target/bench/augment_torchvision.json
if [[ -f crates/sevit-data/benches/augment.rs ]]; then
    echo "bench: augmentation (sevit-data)..." >&2
    if ! cargo bench -p sevit-data --bench augment >"$out/augment-rust.txt" 2>>"$out/build.log"; then
        echo "bench.sh: the sevit-data augmentation bench failed (see $out/build.log); continuing" >&2
    fi
    if [[ -f bench/torchvision_augment.py ]] && [[ ! " ${args[*]} " =~ " --no-torch " ]]; then
        echo "bench: augmentation (torchvision + Pillow, 2 workers)..." >&2
        tv_args=()
        [[ " ${args[*]} " =~ " --quick " || " ${args[*]} " =~ " --smoke " || " ${args[*]} " =~ " --focus " ]] && tv_args=(--n 64 --runs 2)
        if ! "$py" bench/torchvision_augment.py "${tv_args[@]}" >"$out/augment-torch.txt" 2>>"$out/build.log"; then
            echo "bench.sh: bench/torchvision_augment.py failed (see $out/build.log); continuing" >&2
        fi
    fi
fi

exec "$py" bench/run_bench.py --rust-bin "$bin" --python "$py" --out "$out" \
    --aug-rust target/bench/augment.json --aug-torch target/bench/augment_torchvision.json "${args[@]}"
