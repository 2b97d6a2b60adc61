#!/usr/bin/env python3
"""Per-operator profile of the Rust DISTL step (`scripts/bench.sh --op-profile`).

Builds bench/op_profile.cpp (a RecordFunction callback, loaded with LD_PRELOAD) against the
libtorch of PYTHON's torch and runs the step bench under it. Counting starts when the warm-up's
last optimiser step has finished (the step calls libtorch's fused AdamW once per weight-decay
group), so network building and warm-up are left out. Writes op-profile.csv and op-profile.md
(printed) under --out. The timings carry the callback's own overhead (about a microsecond per
operator); the step's wall time with and without the callback is reported next to them.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

ADAMW = "aten::_fused_adamw_"


def build_library(python, source, out_dir):
    torch_dir = subprocess.check_output(
        [python, "-c", "import os, torch; print(os.path.dirname(torch.__file__))"], text=True
    ).strip()
    lib = os.path.join(out_dir, "libsevit_op_profile.so")
    cmd = [
        "g++", "-O2", "-shared", "-fPIC", "-std=c++17", "-w",
        "-I", os.path.join(torch_dir, "include"),
        "-I", os.path.join(torch_dir, "include", "torch", "csrc", "api", "include"),
        source, "-L", os.path.join(torch_dir, "lib"), "-ltorch_cpu", "-lc10", "-o", lib,
    ]
    subprocess.run(cmd, check=True)
    return lib


def run_step(bin_path, config, mode, warmup, iters, threads, env):
    cmd = [bin_path, "--config", config, "--mode", mode, "--iters", str(iters),
           "--warmup", str(warmup), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rust-bin", required=True, help="the distl_step bench executable")
    ap.add_argument("--python", required=True, help="python with the torch that the bench links")
    ap.add_argument("--out", default="target/bench")
    ap.add_argument("--config", default="tiny16")
    ap.add_argument("--mode", default="step", choices=["step", "correction"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
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
    env.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")

    groups = 2  # fused AdamW calls per step: the regularised and the unregularised group
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = os.path.join(tmp, "ops.csv")
        prof_env = dict(env, LD_PRELOAD=lib, SEVIT_OP_PROFILE=csv_path,
                        SEVIT_OP_PROFILE_AFTER=f"{ADAMW}:{groups * a.warmup}")
        profiled = run_step(a.rust_bin, a.config, a.mode, a.warmup, a.iters, a.threads, prof_env)
        with open(csv_path) as f:
            ops = {r["op"]: (int(r["calls"]), float(r["self_ms"])) for r in csv.DictReader(f)}
    plain = run_step(a.rust_bin, a.config, a.mode, a.warmup, a.iters, a.threads, env)
    if ops.get(ADAMW, (0, 0))[0] != groups * a.iters:
        sys.exit(f"op_profile.py: expected {groups * a.iters} calls of {ADAMW} in {a.iters} steps, "
                 f"got {ops.get(ADAMW, (0, 0))[0]}: the step no longer matches this script")
    rows = sorted(((op, calls / a.iters, ms / a.iters) for op, (calls, ms) in ops.items()), key=lambda r: -r[2])
    total = sum(r[2] for r in rows)
    step_profiled = statistics.median(profiled["times_s"]) * 1e3
    step_plain = statistics.median(plain["times_s"]) * 1e3
    with open(os.path.join(a.out, "op-profile.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "calls_per_step", "self_ms_per_step", "share"])
        for op, calls, ms in rows:
            w.writerow([op, f"{calls:.1f}", f"{ms:.3f}", f"{ms / total:.4f}"])
    lines = [
        f"# Operator profile: {a.config} {a.mode}, {a.threads} threads",
        "",
        f"Self time per step (operators it calls excluded), {a.iters} steps after {a.warmup} "
        f"warm-up steps. Step wall time: {step_plain:.1f} ms plain, "
        f"{step_profiled:.1f} ms profiled; the operators' self times add up to {total:.1f} ms "
        "per step (Rust, tch and the autograd engine run between them).",
        "",
        "| operator | calls/step | ms/step | share |",
        "|---|---|---|---|",
    ]
    for op, calls, ms in rows[: a.top]:
        lines.append(f"| `{op}` | {calls:.0f} | {ms:.2f} | {100 * ms / total:.1f}% |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "op-profile.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"written: {a.out}/op-profile.csv, {a.out}/op-profile.md")


if __name__ == "__main__":
    main()
