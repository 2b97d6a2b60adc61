#!/usr/bin/env python3
"""Per-operator profile of the DISTL step (`scripts/bench.sh --op-profile`): sevit's, and with
--torch the PyTorch reference's (bench/distl_step_torch.py) side by side.

Builds bench/op_profile.cpp (a RecordFunction callback, loaded with LD_PRELOAD) against the
libtorch of PYTHON's torch and runs the step benches under it. Counting starts when the
warm-up's last optimiser step has finished (sevit calls libtorch's fused AdamW once per
weight-decay group; the reference's `torch.optim.AdamW.step` is one user scope), so network
building and warm-up are left out. Writes op-profile.csv (and op-profile-torch.csv) and
op-profile.md (printed) under --out. The timings carry the callback's own overhead (about a
microsecond per operator); each step's wall time with and without the callback is reported next
to them, and the wall time the operators do not account for (the interpreter, the Rust code,
the autograd engine between operators) is given per side.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

# bench/ is this script's directory: the allocator setting and warm-up count the bench uses
from run_bench import SEVIT_MALLOC, STEADY

ADAMW = "aten::_fused_adamw_"
TORCH_STEP = "Optimizer.step#AdamW.step"


def build_library(python, source, out_dir):
    torch_dir = subprocess.check_output(
        [python, "-c", "import os, torch; print(os.path.dirname(torch.__file__))"], text=True
    ).strip()
    lib = os.path.join(out_dir, "libsevit_op_profile.so")
    cmd = [
        "g++", "-O2", "-shared", "-fPIC", "-std=c++17", "-w",
        "-I", os.path.join(torch_dir, "include"),
        "-I", os.path.join(torch_dir, "include", "torch", "csrc", "api", "include"),
        source, "-L", os.path.join(torch_dir, "lib"), "-ltorch_cpu", "-lc10",
        # so that a process without the torch libraries on its search path (python) loads it
        "-Wl,-rpath," + os.path.join(torch_dir, "lib"), "-o", lib,
    ]
    subprocess.run(cmd, check=True)
    return lib


def run_step(cmd, config, mode, warmup, iters, threads, env):
    cmd = [*cmd, "--config", config, "--mode", mode, "--iters", str(iters),
           "--warmup", str(warmup), "--threads", str(threads)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"op_profile.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def profile(cmd, marker, per_step, a, env, lib):
    """Per-step (calls, self ms) of every operator over a.iters steps, heaviest first, and the
    median step wall time (ms) without and with the callback."""
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = os.path.join(tmp, "ops.csv")
        prof_env = dict(env, LD_PRELOAD=lib, SEVIT_OP_PROFILE=csv_path,
                        SEVIT_OP_PROFILE_AFTER=f"{marker}:{per_step * a.warmup}")
        profiled = run_step(cmd, a.config, a.mode, a.warmup, a.iters, a.threads, prof_env)
        with open(csv_path) as f:
            ops = {r["op"]: (int(r["calls"]), float(r["self_ms"])) for r in csv.DictReader(f)}
    plain = run_step(cmd, a.config, a.mode, a.warmup, a.iters, a.threads, env)
    if ops.get(marker, (0, 0))[0] != per_step * a.iters:
        sys.exit(f"op_profile.py: expected {per_step * a.iters} calls of {marker} in {a.iters} "
                 f"steps, got {ops.get(marker, (0, 0))[0]}: the step no longer matches this script")
    per_op = {op: (calls / a.iters, ms / a.iters)
              for op, (calls, ms) in sorted(ops.items(), key=lambda kv: -kv[1][1])}
    walls = (statistics.median(plain["times_s"]) * 1e3, statistics.median(profiled["times_s"]) * 1e3)
    return per_op, walls


def write_csv(path, per_op):
    total = sum(ms for _, ms in per_op.values())
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "calls_per_step", "self_ms_per_step", "share"])
        for op, (calls, ms) in per_op.items():
            w.writerow([op, f"{calls:.1f}", f"{ms:.3f}", f"{ms / total:.4f}"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rust-bin", required=True, help="the distl_step bench executable")
    ap.add_argument("--python", required=True, help="python with the torch that the bench links")
    ap.add_argument("--torch", action="store_true", help="profile the PyTorch reference too")
    ap.add_argument("--out", default="target/bench")
    ap.add_argument("--config", default="tiny16")
    ap.add_argument("--mode", default="step", choices=["step", "correction"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=STEADY)
    ap.add_argument("--iters", type=int, default=6, help="profiled steps")
    ap.add_argument("--top", type=int, default=25, help="operators listed in op-profile.md")
    a = ap.parse_args()
    if a.iters < 1 or a.warmup < 1:
        sys.exit("op_profile.py: --iters and --warmup must be at least 1")
    os.makedirs(a.out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    lib = build_library(a.python, os.path.join(here, "op_profile.cpp"), a.out)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    env.setdefault("GOMP_SPINCOUNT", "10000")
    env.setdefault("GLIBC_TUNABLES", SEVIT_MALLOC)

    # fused AdamW calls per sevit step: the regularised and the unregularised group
    rust, rust_wall = profile([a.rust_bin], ADAMW, 2, a, env, lib)
    write_csv(os.path.join(a.out, "op-profile.csv"), rust)
    sides = [("sevit", rust, rust_wall)]
    if a.torch:
        ref_cmd = [a.python, os.path.join(here, "distl_step_torch.py"), "--attn", "explicit"]
        ref, ref_wall = profile(ref_cmd, TORCH_STEP, 1, a, env, lib)
        write_csv(os.path.join(a.out, "op-profile-torch.csv"), ref)
        sides.append(("PyTorch reference", ref, ref_wall))

    lines = [f"# Operator profile: {a.config} {a.mode}, {a.threads} threads", "",
             f"Self time per step (operators it calls excluded), {a.iters} steps after {a.warmup} "
             "warm-up steps.", "",
             "| side | step wall ms (plain) | step wall ms (profiled) | operators' self time ms | "
             "outside the operators ms |", "|---|---|---|---|---|"]
    for name, ops, (plain, profiled) in sides:
        total = sum(ms for _, ms in ops.values())
        lines.append(f"| {name} | {plain:.1f} | {profiled:.1f} | {total:.1f} | "
                     f"{max(profiled - total, 0.0):.1f} |")
    lines += ["", "(outside: profiled wall time minus the self times, i.e. the interpreter, the "
              "Rust code and the autograd engine between operators.)", ""]
    if len(sides) == 1:
        total = sum(ms for _, ms in rust.values())
        lines += ["| operator | calls/step | ms/step | share |", "|---|---|---|---|"]
        for op, (calls, ms) in list(rust.items())[: a.top]:
            lines.append(f"| `{op}` | {calls:.0f} | {ms:.2f} | {100 * ms / total:.1f}% |")
    else:
        ref = sides[1][1]
        names = sorted(set(rust) | set(ref), key=lambda op: -max(rust.get(op, (0, 0))[1], ref.get(op, (0, 0))[1]))
        lines += ["| operator | sevit calls/step | sevit ms/step | reference calls/step | "
                  "reference ms/step |", "|---|---|---|---|---|"]
        for op in names[: a.top]:
            rc, rm = rust.get(op, (0, 0.0))
            pc, pm = ref.get(op, (0, 0.0))
            lines.append(f"| `{op}` | {rc:.0f} | {rm:.2f} | {pc:.0f} | {pm:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "op-profile.md"), "w") as f:
        f.write(text)
    print(text)
    written = ["op-profile.csv"] + (["op-profile-torch.csv"] if a.torch else []) + ["op-profile.md"]
    print("written: " + ", ".join(f"{a.out}/{w}" for w in written))


if __name__ == "__main__":
    main()
