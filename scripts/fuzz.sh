#!/usr/bin/env bash
# Coverage-guided fuzzing of the input parsers (cargo-fuzz / libFuzzer, fuzz/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (`just fuzz`, `just fuzz-smoke`)
#
# Builds every target once (stable toolchain, no sanitizer: the code under test is safe Rust
# and libtorch is not built for ASan), then runs the given targets (default: all) one after
# another for SECONDS_PER_TARGET each (default 600). Inputs that find new coverage go to
# fuzz/corpus-run/<target> (untracked), seeded from the committed fuzz/corpus/<target>;
# crashes, timeouts and OOMs to fuzz/artifacts/<target>/. One line per target is printed and
# appended to fuzz/last-run.csv (untracked). Exits non-zero if any target found something.
#
# Environment: FUZZ_TOOLCHAIN (e.g. `+nightly`; default: the default toolchain),
# FUZZ_ARGS (extra libFuzzer flags, e.g. `-jobs=1 -dict=...`).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-600}
if (($#)); then shift; fi
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1)); then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...] (got seconds=$secs)" >&2
    exit 2
fi
tc=${FUZZ_TOOLCHAIN:-}

if ! cargo $tc fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz sets RUSTFLAGS, so cargo ignores build.rustflags of .cargo/config.toml (the
# rpath to libtorch): pass it again. LIBTORCH etc. still come from [env] of that file.
config=.cargo/config.toml
if [[ ! -f $config ]]; then
    echo "error: $config is missing; run scripts/setup.sh (or any just recipe) first" >&2
    exit 2
fi
torch_lib=$(sed -n 's/^LD_LIBRARY_PATH *= *"\(.*\)"$/\1/p' "$config")
if [[ -z $torch_lib || ! -d $torch_lib ]]; then
    echo "error: no libtorch lib folder (LD_LIBRARY_PATH) in $config; rerun scripts/setup.sh" >&2
    exit 2
fi
export RUSTFLAGS="-C link-arg=-Wl,-rpath,$torch_lib${RUSTFLAGS:+ $RUSTFLAGS}"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

all=$(cargo $tc fuzz list)
targets=("$@")
((${#targets[@]})) || mapfile -t targets <<<"$all"
for t in "${targets[@]}"; do
    if ! grep -qx -- "$t" <<<"$all"; then
        echo "error: unknown fuzz target $t (targets: $(echo $all))" >&2
        exit 2
    fi
done

echo "== building $(wc -l <<<"$all") fuzz targets (cargo ${tc:+$tc }fuzz build -s none)"
t0=$SECONDS
nice -n 10 cargo $tc fuzz build -s none
echo "   built in $((SECONDS - t0)) s"

triple=$(rustc $tc -vV | sed -n 's/^host: //p')
bindir=fuzz/target/$triple/release
logdir=fuzz/target/logs
csv=fuzz/last-run.csv
mkdir -p "$logdir"
[[ -f $csv ]] || echo "date,commit,target,seconds,runs,execs_per_s,cov,ft,corpus,peak_rss_mb,result,artifact,wall_s" >"$csv"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain 2>/dev/null) ]] || commit+="-dirty"

# libtorch (tensors of the checkpoint targets) on one thread: the fuzzer runs one input at a time.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

failed=()
for t in "${targets[@]}"; do
    run_corpus=fuzz/corpus-run/$t
    artifacts=fuzz/artifacts/$t
    scratch=fuzz/target/tmp/$t
    mkdir -p "$run_corpus" "$artifacts" "$scratch" fuzz/corpus/"$t"
    log=$logdir/$t.log
    before=$(ls "$artifacts" | sort)
    t0=$SECONDS
    rc=0
    # New inputs go to the first corpus folder; the committed seeds are only read.
    # shellcheck disable=SC2086
    TMPDIR=$PWD/$scratch nice -n 10 "$bindir/$t" "$run_corpus" fuzz/corpus/"$t" \
        -max_total_time="$secs" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
    wall=$((SECONDS - t0))
    rm -rf "$scratch"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    if [[ -z $runs ]]; then # crashed before the final stats: the last status line
        runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
    fi
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [[ -z $artifact ]]; then # e.g. a deadly signal before libFuzzer wrote the unit
        artifact=$(comm -13 <(echo "$before") <(ls "$artifacts" | sort) | head -1)
        [[ -z $artifact ]] || artifact=$artifacts/$artifact
    fi
    if ((rc == 0)) && [[ -z $artifact ]]; then
        result=ok
    else
        kind=$(grep -oE 'ERROR: libFuzzer: [a-z-]+|panicked at' "$log" | head -1 || true)
        result="FAIL(rc=$rc${kind:+; $kind})"
        failed+=("$t: ${artifact:-no artifact} (log $log)")
    fi
    printf '%-24s runs=%-9s exec/s=%-7s cov=%-6s ft=%-6s corpus=%-5s rss=%sMB  %s  %ss%s\n' \
        "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" \
        "$result" "$wall" "${artifact:+  artifact: $artifact}"
    echo "$(date -u +%FT%TZ),$commit,$t,$secs,${runs:-},${eps:-},${cov:-},${ft:-},${corp:-},${rss:-},\"$result\",${artifact:-},$wall" >>"$csv"
done

if ((${#failed[@]})); then
    echo "== ${#failed[@]} target(s) found a crash/timeout/OOM; reproduce with" >&2
    echo "   RUST_BACKTRACE=1 $bindir/<target> <artifact>" >&2
    printf '   %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "== no findings (${#targets[@]} target(s), ${secs} s each); rows appended to $csv"
