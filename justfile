# sevit recipes. `./sevitw RECIPE` installs what is missing first; `just RECIPE` works after that.
set shell := ["bash", "-euo", "pipefail", "-c"]

run := "runs/demo"
config := "configs/cpu.toml"

# list the recipes
default:
    @just --list

# install libtorch (PyPI torch wheel, cached outside the repo) and wire cargo's environment
setup:
    @bash scripts/setup.sh

# build the `sevit` binary (release)
build: setup
    cargo build --release -p sevit-cli

# the whole test suite (unit tests of every crate + cross-crate integration tests)
test: setup
    cargo test --workspace --no-fail-fast

# the main job end to end on the embedded synthetic data
demo: build
    bash scripts/demo.sh {{run}}
