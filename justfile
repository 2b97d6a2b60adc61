# sevit recipes. `./sevitw RECIPE` installs what is missing first; `just RECIPE` works after that.
set shell := ["bash", "-euo", "pipefail", "-c"]

sevit := "target/release/sevit"
run := "runs/demo"
config := "configs/demo.toml"
data := "data-manifests/kermany_pediatric_224src.toml"

# list the recipes
default:
    @just --list

# install libtorch (PyPI torch wheel, cached outside the repo) and wire cargo's environment
setup:
    @bash scripts/setup.sh

# build the `sevit` binary (release)
build: setup
    cargo build --release -p sevit-cli

# the whole test suite (rustfmt and clippy, then the unit tests of every crate and the
# cross-crate integration tests)
test: setup lint
    cargo test --workspace --no-fail-fast

# formatting and lints, as CI checks them (part of `just test`)
lint: setup
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# the main job end to end on the embedded synthetic data
demo: build
    SEVIT={{sevit}} bash scripts/demo.sh {{run}} {{config}}

# self-evolution with a promotion gate on synthetic phantoms: inbox -> evolve -> gate, three
# arrivals (one off-distribution), then the registry (docs/evolution.md)
demo-evolution dir="runs/demo-evolution" config=config: build
    SEVIT={{sevit}} bash scripts/demo-evolution.sh {{dir}} {{config}}

# split a dataset descriptor into run/split.csv (Kermany: official test_ files as the test set)
split run=run data=data: build
    {{sevit}} split --dataset {{data}} --out {{run}} --test-prefix images/test_ --seed 0

# initial model (supervised on the labeled split) of a run
pretrain run=run config=config *flags='': build
    {{sevit}} pretrain --run {{run}} --config {{config}} --resume {{flags}}

# one DISTL step T of a run
distill step run=run config=config *flags='': build
    {{sevit}} distill --step {{step}} --run {{run}} --config {{config}} --resume {{flags}}

# the whole curriculum: initial model then T=1..k, with the per-T summary
evolve run=run config=config *flags='': build
    {{sevit}} evolve --run {{run}} --config {{config}} --resume {{flags}}

# an engine command as N data-parallel processes on this node, e.g. `just launch 4 evolve --run R`
launch nproc *args: build
    {{sevit}} launch --nproc {{nproc}} -- {{args}}

# this node's part of a multi-node job (docs/distributed.md): run on every node with its index
launch-node nnodes node_rank master_addr nproc *args: build
    {{sevit}} launch --nnodes {{nnodes}} --node-rank {{node_rank}} --master-addr {{master_addr}} --nproc {{nproc}} -- {{args}}

# evaluate a stage of a run on its test split (report.json, predictions.csv, roc.png, report.html)
eval run=run stage="step3" *flags='': build
    {{sevit}} eval --run {{run}} --stage {{stage}} --out {{run}}/eval/{{stage}} {{flags}}

# an eval's report.html as headless Chromium shows it, to a PNG (needs Debian's chromium)
report-screenshot report out="report.png":
    bash scripts/report-screenshot.sh {{report}} {{out}}

# attention maps of test images for a stage of a run
visualize run=run stage="step3" n="8": build
    {{sevit}} visualize --run {{run}} --stage {{stage}} --n {{n}} --out {{run}}/attention/{{stage}}

# benchmarks: augmentation, DISTL step vs PyTorch eager, eval; writes target/bench/report.json
bench *flags='': setup
    bash scripts/bench.sh {{flags}}

# the checks that need a GPU: sevit info, the bench on CUDA (f32, bf16), the demo on CUDA
cuda-check *flags='': setup
    bash scripts/cuda-check.sh {{flags}}

# run an experiment protocol (experiments/*.toml) end to end, resumable (a rerun continues),
# with progress and ETA; writes the protocol's docs/results.md and docs/results/
experiment protocol="experiments/cpu-2core.toml": build
    {{sevit}} experiment run {{protocol}}

# the report of an experiment protocol from the stages run so far
experiment-report protocol="experiments/cpu-2core.toml": build
    {{sevit}} experiment report {{protocol}}

# which stages of an experiment protocol have finished, with their wall times
experiment-status protocol="experiments/cpu-2core.toml": build
    {{sevit}} experiment status {{protocol}}

# coverage-guided fuzzing of the input parsers (cargo-fuzz, fuzz/): each target for `seconds`
# (all targets when none named); findings in fuzz/artifacts/, one row per target in fuzz/last-run.csv
fuzz seconds="600" *targets='': setup
    bash scripts/fuzz.sh {{seconds}} {{targets}}

# every fuzz target for 5 s: the harnesses build and run
fuzz-smoke: setup
    bash scripts/fuzz.sh 5
