#!/usr/bin/env python3
"""`just bench`: runs every measurement in its own process, interleaved, and writes the report.

Called by `scripts/bench.sh` (which builds the Rust benches first and passes their paths).
Each measurement is one process printing one JSON line (`distl_step` of sevit-distill, or
`bench/distl_step_torch.py`); processes are run round-robin (Rust, PyTorch, Rust, ...) so that
machine load, which on a shared 2-core machine changes by the minute, hits both sides alike.
The 1-minute load average is read before and after every process and kept with its result.

Outputs (in --out, `target/bench` by default):
* `runs.jsonl`: every raw process result,
* `report.json`: per figure, images/s median/min/max over the timed iterations of all rounds,
  peak resident memory (VmHWM), the Rust/PyTorch ratio, the analytic FLOP count, the share of
  the measured matmul rate, the phase profile, the load averages,
* `report.md`: the same as tables (also printed).

Benchmarks only: Python never runs in sevit's runtime path.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# name: (preset, embed, depth, heads, patch, global, local, out_dim, batch)
CONFIGS = {
    "tiny16": ("tiny/16", 192, 12, 3, 16, 128, 64, 4096, 16),
    "tiny16-65k": ("tiny/16", 192, 12, 3, 16, 128, 64, 65536, 16),
    "small8": ("small/8", 384, 12, 6, 8, 256, 128, 65536, 4),
    "micro": ("micro", 32, 2, 2, 8, 32, 16, 128, 4),
}
LABELS = {
    "tiny16": "tiny/16@128, local 64, out 4096, batch 16",
    "tiny16-65k": "tiny/16@128, local 64, out 65536, batch 16",
    "small8": "small/8@256, local 128, out 65536, batch 4 (paper)",
    "micro": "micro (smoke test)",
}
N_GLOBAL, N_LOCAL = 2, 8


# ---- analytic FLOP counts (multiply-add = 2 FLOP) ----------------------------------------


def vit_fwd_flop(embed, depth, patch, size):
    """Forward FLOP of the backbone for one image of `size` px: patch embedding, per block
    qkv/proj/MLP (24 N D^2) and attention (QK^T and AV, 4 N^2 D)."""
    n_patch = (size // patch) ** 2
    n = n_patch + 1
    patch_embed = 2 * n_patch * (3 * patch * patch) * embed
    block = 24 * n * embed**2 + 4 * n * n * embed
    return patch_embed + depth * block


def heads_fwd_flop(embed, out_dim, cls_hidden, with_cls, hidden=2048, bottleneck=256):
    dino = 2 * (embed * hidden + hidden * hidden + hidden * bottleneck + bottleneck * out_dim)
    cls = 2 * (embed * cls_hidden + cls_hidden * cls_hidden + cls_hidden) if with_cls else 0
    return dino + cls


def flop_breakdown(cfg):
    """FLOP of one DISTL step per image, by part: student (fwd+bwd = 3x fwd) on all views,
    teacher forward on the global views."""
    _, embed, depth, _heads, patch, g, loc, out_dim, _b = CONFIGS[cfg]
    cls_hidden = 32 if cfg == "micro" else 256
    if cfg == "micro":
        hd = dict(hidden=64, bottleneck=16)
    else:
        hd = {}
    s_backbone = N_GLOBAL * vit_fwd_flop(embed, depth, patch, g) + N_LOCAL * vit_fwd_flop(embed, depth, patch, loc)
    s_heads = N_GLOBAL * heads_fwd_flop(embed, out_dim, cls_hidden, True, **hd) + N_LOCAL * heads_fwd_flop(
        embed, out_dim, cls_hidden, False, **hd
    )
    t_fwd = N_GLOBAL * (vit_fwd_flop(embed, depth, patch, g) + heads_fwd_flop(embed, out_dim, cls_hidden, True, **hd))
    attn_student = N_GLOBAL * depth * 4 * ((g // patch) ** 2 + 1) ** 2 * embed + N_LOCAL * depth * 4 * (
        (loc // patch) ** 2 + 1
    ) ** 2 * embed
    return {
        "student_backbone_fwd": s_backbone,
        "student_heads_fwd": s_heads,
        "student_fwd_bwd": 3 * (s_backbone + s_heads),
        "teacher_fwd": t_fwd,
        "step_total": 3 * (s_backbone + s_heads) + t_fwd,
        "attention_share_of_student_backbone": attn_student / s_backbone,
        "eval_fwd": vit_fwd_flop(embed, depth, patch, g) + heads_fwd_flop(embed, out_dim, cls_hidden, True, **hd)
        - heads_fwd_flop(embed, out_dim, cls_hidden, False, **hd),
    }


# ---- running -----------------------------------------------------------------------------


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def run_all(a, log, env, th, torch_script):
    """Runs the matmul reference then every planned measurement, round-robin."""
    results = []
    # the machine's matrix-multiply rate (Rust/tch and PyTorch; same libtorch)
    cuda = a.device != "cpu"
    dev = ["--device", a.device]
    mm = ["--mode", "matmul", "--matmul-n", str(matmul_n(a)), "--iters", "2" if a.smoke else ("20" if cuda else "5")]
    mm += ["--warmup", "3" if cuda else "1", "--precision", a.precision, *dev]
    results.append(run_one([a.rust_bin, *mm, *th], log, env))
    if not a.no_torch:
        results.append(run_one([a.python, torch_script, *mm, *th], log, env))
    if a.smoke:
        p = [("micro", m, 1, 1, 1) for m in ("step", "correction", "eval")]
    elif a.focus:
        p = [("tiny16", "step", 4, 30, 10)] if cuda else [("tiny16", "step", 4, 3, STEADY)]
    else:
        p = plan(a.quick, not a.no_small, cuda, with_data=bool(a.data))
    if a.modes:
        keep = set(a.modes.split(","))
        p = [x for x in p if x[1] in keep]
    for cfg, mode, rounds, iters, warmup in p:
        if mode == "data":
            # the data pipeline alone, on one loader thread and on every core: images/s per core
            for rnd in range(rounds):
                for t in sorted({1, os.cpu_count() or 1}):
                    cmd = [a.rust_bin, "--config", cfg, "--mode", "data", "--iters", str(iters), "--warmup", str(warmup), *th]
                    cmd += ["--data", a.data] if a.data else []
                    results.append(run_one(cmd, log, dict(env or os.environ, RAYON_NUM_THREADS=str(t)), {"round": rnd}))
            continue
        common = ["--config", cfg, "--mode", mode, "--iters", str(iters), "--warmup", str(warmup), *th]
        common += ["--precision", a.precision, *dev]
        if mode == "eval":
            common += ["--eval-batch", "8" if cfg == "small8" else "32"]
        if mode == "train" and a.data:
            common += ["--data", a.data]
        for rnd in range(rounds):
            variants = [("rust", "engine")]
            if not a.no_torch and mode != "train":
                variants.append(("torch", "explicit"))
                if mode in ("step", "eval"):
                    variants.append(("torch", "sdpa"))
                if mode == "step" and a.compile and rnd == 0 and cfg != "tiny16-65k":
                    variants.append(("torch", "sdpa+compile"))
            for impl, variant in variants:
                if impl == "rust":
                    cmd = [a.rust_bin, *common]
                else:
                    attn, compiled = variant.split("+")[0], variant.endswith("+compile")
                    cmd = [a.python, torch_script, *common, "--attn", attn] + (["--compile"] if compiled else [])
                results.append(run_one(cmd, log, env, {"round": rnd}))
    return results


def run_one(cmd, log, env=None, extra=None, timeout=1800):
    t = time.time()
    before = loadavg()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    after = loadavg()
    if p.returncode != 0:
        sys.stderr.write(f"bench: FAILED ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}\n")
        return None
    line = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not line:
        sys.stderr.write(f"bench: no JSON from {' '.join(cmd)}\n{p.stdout[-2000:]}\n")
        return None
    r = json.loads(line[-1])
    r["load_before"], r["load_after"], r["started"] = before, after, t
    r["cmd"] = " ".join(cmd)
    r.update(extra or {})
    log.write(json.dumps(r) + "\n")
    log.flush()
    ips = [r["images_per_iter"] / x for x in r["times_s"]] if r["images_per_iter"] else []
    what = f"{r['impl']:5} {r['config']:10} {r['mode']:10} {r['variant']:8}"
    if ips:
        sys.stderr.write(f"bench: {what} {statistics.median(ips):8.2f} img/s  HWM {r['vm_hwm_kb'] / 1024:7.0f} MiB  load {before}->{after}\n")
    else:
        sys.stderr.write(f"bench: {what} {r['times_s']}  load {before}->{after}\n")
    return r


def matmul_n(a):
    """Side of the square matrix-multiply reference: 2048 on the CPU, 8192 to fill a GPU."""
    return 2048 if a.device == "cpu" else 8192


# glibc's allocator settings that `sevit` gives itself (crates/sevit-cli/src/main.rs): huge
# pages for large blocks, and no fresh mappings for the blocks above glibc's 32 MiB mapping
# limit (reused from the heap instead). The bench gives both sides the same (`--hugepages`).
SEVIT_MALLOC = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"

# Warm-up iterations before the timed ones on the CPU. The PyTorch reference reaches its steady
# speed only at its third iteration (tiny/16 step, per-iteration ms from a cold process:
# 2765, 1283, 1006, 843, 861; sevit: 797, 733, 697, 696, 689), so a single warm-up iteration
# timed PyTorch's slow second one and overstated sevit's lead.
STEADY = 3


def plan(quick, include_small, cuda=False, with_data=False):
    """(config, mode, rounds, iters, warmup) of the DISTL measurements. `with_data`: the
    `train` and `data` modes read real image files (`--data`, e.g. `sevit synth` phantoms on a
    GPU machine without ../shared/data)."""
    if cuda:
        # milliseconds per step: many iterations per process after a warm-up that covers the
        # cuDNN/cuBLAS handle creation and the caching allocator's first growth.
        p = [
            ("tiny16", "step", 2, 30, 10),
            ("tiny16-65k", "step", 1, 30, 10),
            ("tiny16", "correction", 1, 30, 10),
            ("tiny16", "eval", 1, 30, 10),
        ]
        if quick:
            return p[:1]
        if include_small:
            p += [("small8", "step", 1, 20, 5), ("small8", "eval", 1, 30, 10)]
        if with_data:
            # end to end: decoding and 10-view augmentation feeding the step, and the loader
            # alone on one thread and on every core
            p += [("tiny16", "train", 1, 30, 10), ("tiny16", "data", 1, 30, 5)]
            if include_small:
                p += [("small8", "train", 1, 20, 5), ("small8", "data", 1, 20, 5)]
        return p
    if quick:
        return [
            ("tiny16", "step", 2, 2, STEADY),
            ("tiny16", "correction", 1, 2, STEADY),
            ("tiny16", "eval", 1, 3, STEADY),
        ]
    p = [
        ("tiny16", "step", 3, 3, STEADY),
        ("tiny16-65k", "step", 2, 3, STEADY),
        ("tiny16", "correction", 1, 3, STEADY),
        ("tiny16-65k", "correction", 1, 2, STEADY),
        ("tiny16", "eval", 1, 4, STEADY),
        # the step fed by the real loader (decode + augmentation on the same 2 cores)
        ("tiny16", "train", 1, 4, STEADY),
    ]
    if include_small:
        # about 3 TFLOP per step: one timed iteration per process, after two warm-up ones (the
        # first two of either side are still 20-45% slower)
        p += [("small8", "step", 1, 1, 2), ("small8", "eval", 1, 2, 1)]
    if with_data:
        p += [("tiny16", "data", 1, 10, 2)]
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rust-bin", help="the built distl_step bench executable")
    ap.add_argument("--python", default=sys.executable, help="python with torch (SEVIT_TORCH_PYTHON)")
    ap.add_argument("--from-runs", help="only aggregate an existing runs.jsonl into the report")
    ap.add_argument("--out", default="target/bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny/16 only, fewer rounds")
    ap.add_argument("--no-small", action="store_true", help="skip small/8@256")
    ap.add_argument(
        "--focus", action="store_true", help="only the tiny/16 step, 4 interleaved rounds (the steadiest ratio)"
    )
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument(
        "--data",
        default=None,
        help="dataset descriptor for the train and data modes (default: ../shared/data's Kermany set; "
        "on a GPU these modes run only when it is given)",
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also PyTorch with SDPA under torch.compile for the step (minutes of compilation per process)",
    )
    ap.add_argument("--smoke", action="store_true", help="micro model, one iteration (tests the bench itself)")
    ap.add_argument(
        "--omp",
        default="spin10k",
        choices=["spin10k", "passive", "default"],
        help="libgomp wait policy of both sides: GOMP_SPINCOUNT=10000 (what sevit sets), "
        "OMP_WAIT_POLICY=PASSIVE, or libgomp's default (~3 ms spin)",
    )
    ap.add_argument(
        "--hugepages",
        default="on",
        choices=["on", "off"],
        help="glibc's allocator settings of both sides: sevit's (GLIBC_TUNABLES=" + SEVIT_MALLOC
        + ": huge pages, big blocks reused from the heap), or glibc's default",
    )
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="forward passes of both sides in f32, or under bf16 autocast",
    )
    ap.add_argument("--modes", default=None, help="only these modes of the plan, comma-separated (step,correction,eval,train)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where both sides run")
    ap.add_argument("--aug-rust", default=None, help="augment.json of sevit-data's augmentation bench")
    ap.add_argument("--aug-torch", default=None, help="augment_torchvision.json of bench/torchvision_augment.py")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    torch_script = os.path.join(here, "distl_step_torch.py")
    th = ["--threads", str(a.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    # libgomp reads these when it is loaded, so they must be in the environment of the process.
    # Long spins collapse when the cores are shared, passive waiting costs when they are not;
    # see docs/performance.md. Both sides get the same policy.
    env.pop("GOMP_SPINCOUNT", None)
    env.pop("OMP_WAIT_POLICY", None)
    if a.omp == "spin10k":
        env["GOMP_SPINCOUNT"] = "10000"
    elif a.omp == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.pop("GLIBC_TUNABLES", None)
    if a.hugepages == "on":
        env["GLIBC_TUNABLES"] = SEVIT_MALLOC
    runs_path = os.path.join(a.out, "runs.jsonl")
    results = []
    t0 = time.time()
    if a.from_runs:
        with open(a.from_runs) as f:
            results = [json.loads(l) for l in f if l.strip()]
        seen = {}
        for r in results:  # runs logged without a round: the n-th process of its kind
            key = (r["impl"], r["config"], r["mode"], r["variant"])
            r.setdefault("round", seen.get(key, 0))
            seen[key] = seen.get(key, 0) + 1
        wall = sum(r.get("wall_s", 0) for r in results)
    elif not a.rust_bin:
        ap.error("--rust-bin is required unless --from-runs is given")
    if not a.from_runs:
        with open(runs_path, "w") as log:
            results = run_all(a, log, env, th, torch_script)
        wall = time.time() - t0
    results = [r for r in results if r]
    aug = {}
    for key, path in (("rust", a.aug_rust), ("torchvision", a.aug_torch)):
        if path and os.path.exists(path):
            with open(path) as f:
                aug[key] = json.load(f)
    if "rust" in aug and "torchvision" in aug:
        aug["speed_ratio"] = aug["rust"]["images_per_s_median"] / aug["torchvision"]["images_per_s_median"]
    report = build_report(results, aug, a, wall)
    with open(os.path.join(a.out, "report.json.tmp"), "w") as f:
        json.dump(report, f, indent=2)
    os.replace(os.path.join(a.out, "report.json.tmp"), os.path.join(a.out, "report.json"))
    md = render_md(report)
    with open(os.path.join(a.out, "report.md.tmp"), "w") as f:
        f.write(md)
    os.replace(os.path.join(a.out, "report.md.tmp"), os.path.join(a.out, "report.md"))
    print(md)
    print(f"written: {os.path.join(a.out, 'report.json')}, {os.path.join(a.out, 'report.md')}, {runs_path}")


# ---- aggregation -------------------------------------------------------------------------


def stats(xs):
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def build_report(results, aug, a, wall):
    groups = {}
    for r in results:
        key = (r["impl"], r["config"], r["mode"], r["variant"])
        groups.setdefault(key, []).append(r)
    matmul = {}
    for (impl, _c, mode, _v), rs in groups.items():
        if mode == "matmul":
            rates = [r["flop_per_iter"] / t / 1e9 for r in rs for t in r["times_s"]]
            matmul[impl] = stats(rates)
    mm_rate = (matmul.get("rust") or matmul.get("torch") or {}).get("median")
    figures = []
    order = {c: i for i, c in enumerate(CONFIGS)}
    modes = {"step": 0, "train": 1, "data": 2, "correction": 3, "eval": 4}
    keyf = lambda kv: (order.get(kv[0][1], 99), modes.get(kv[0][2], 9), kv[0][0] != "rust", kv[0][3])
    for (impl, cfg, mode, variant), rs in sorted(groups.items(), key=keyf):
        if mode == "matmul":
            continue
        ips = [r["images_per_iter"] / t for r in rs for t in r["times_s"]]
        fl = flop_breakdown(cfg)
        # step, correction, train; the loader alone (data) does no model arithmetic
        flop_per_img = {"eval": fl["eval_fwd"], "data": None}.get(mode, fl["step_total"])
        st = stats(ips)
        # images per CPU-second (user + system time of the process): much less sensitive to
        # other jobs on the machine than wall time, as waiting threads sleep (passive policy)
        ipc = [r["images_per_iter"] / c for r in rs for c in r.get("cpu_s", []) if c > 0]
        phases = {}
        for r in rs:
            for k, v in r.get("phases_s", {}).items():
                phases.setdefault(k, []).extend(v)
        ph = {k: statistics.median(v) for k, v in phases.items() if v}
        fig = {
            "impl": impl,
            "config": cfg,
            "label": LABELS.get(cfg, cfg),
            "mode": mode,
            "variant": variant,
            "images_per_s": st,
            "images_per_cpu_s": stats(ipc),
            "vm_hwm_mib": max(r["vm_hwm_kb"] for r in rs) / 1024,
            "rss_after_setup_mib": max(r.get("rss_after_setup_kb", 0) for r in rs) / 1024,
            # growth of the peak over the resident size once the networks exist: what the
            # measured loop itself needs (activations, gradients, optimiser state, temporaries)
            "loop_peak_growth_mib": max((r["vm_hwm_kb"] - r.get("rss_after_setup_kb", 0)) for r in rs) / 1024,
            # GPU memory in use at the end of the process (nvidia-smi: CUDA context plus what
            # the caching allocator reserved, which only grows), where run on a GPU
            "gpu_memory_mib": max((r.get("gpu_memory_used_mib") or 0) for r in rs) or None,
            "batch": rs[0].get("batch"),
            "params": rs[0].get("params"),
            "flop_per_image": flop_per_img,
            "achieved_gflop_s": st["median"] * flop_per_img / 1e9 if (st and flop_per_img) else None,
            "share_of_matmul_rate": (st["median"] * flop_per_img / 1e9 / mm_rate)
            if (st and mm_rate and flop_per_img)
            else None,
            "phases_median_s": ph,
            "load_avg": [x for r in rs for x in (r["load_before"], r["load_after"]) if x is not None],
            "processes": len(rs),
        }
        figures.append(fig)
    # ratios: Rust vs PyTorch (reference, explicit attention; and SDPA)
    ratios = []
    by = {(f["impl"], f["config"], f["mode"], f["variant"]): f for f in figures}
    for f in figures:
        if f["impl"] != "rust":
            continue
        for tv in ("explicit", "sdpa", "sdpa+compile"):
            t = by.get(("torch", f["config"], f["mode"], tv))
            if t and f["images_per_s"] and t["images_per_s"]:
                paired = paired_ratios(groups, f["config"], f["mode"], f["variant"], tv)
                ratios.append(
                    {
                        "paired_speed_ratio": stats(paired),
                        "cpu_time_ratio": (f["images_per_cpu_s"]["median"] / t["images_per_cpu_s"]["median"])
                        if f.get("images_per_cpu_s") and t.get("images_per_cpu_s")
                        else None,
                        "config": f["config"],
                        "mode": f["mode"],
                        "rust_variant": f["variant"],
                        "torch_variant": tv,
                        "speed_ratio": f["images_per_s"]["median"] / t["images_per_s"]["median"],
                        "memory_ratio": f["vm_hwm_mib"] / t["vm_hwm_mib"] if t["vm_hwm_mib"] else None,
                        "gpu_memory_ratio": f["gpu_memory_mib"] / t["gpu_memory_mib"]
                        if f.get("gpu_memory_mib") and t.get("gpu_memory_mib")
                        else None,
                        "loop_memory_ratio": f["loop_peak_growth_mib"] / t["loop_peak_growth_mib"]
                        if t["loop_peak_growth_mib"] > 0
                        else None,
                    }
                )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": cpu_model(),
            "threads": a.threads,
            "precision": a.precision,
            "device": a.device,
            "gpu": next((r["gpu_name"] for r in results if r.get("gpu_name")), None),
            "omp_wait_policy": {"spin10k": "GOMP_SPINCOUNT=10000", "passive": "OMP_WAIT_POLICY=PASSIVE", "default": "libgomp default"}[a.omp],
            "malloc": {"on": f"GLIBC_TUNABLES={SEVIT_MALLOC}", "off": "glibc default"}[a.hugepages],
            "load_avg_start_end": [results[0]["load_before"] if results else None, loadavg()],
        },
        "bench_wall_s": wall,
        "matmul_gflop_s": matmul,
        "matmul_n": matmul_n(a),
        "figures": figures,
        "ratios": ratios,
        "flops": {c: flop_breakdown(c) for c in sorted({f["config"] for f in figures})},
        "augmentation": aug,
    }


def paired_ratios(groups, cfg, mode, rust_variant, torch_variant):
    """Per round: median images/s of the Rust process / that of the PyTorch process run next to
    it. Load drifts slowly, so a ratio of neighbours is steadier than a ratio of medians."""
    def per_round(impl, variant):
        out = {}
        for r in groups.get((impl, cfg, mode, variant), []):
            if r["times_s"]:
                out[r.get("round", 0)] = statistics.median(r["images_per_iter"] / t for t in r["times_s"])
        return out

    rust, torch = per_round("rust", rust_variant), per_round("torch", torch_variant)
    return [rust[k] / torch[k] for k in sorted(rust) if k in torch]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fmt_stats(s, digits=2):
    if not s:
        return "-"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def render_md(rep):
    m = rep["machine"]
    out = ["# sevit bench report", ""]
    out.append(f"Machine: {m['processor']}, {m['cpus']} CPUs, {m['threads']} torch threads; "
               f"load average at start/end: {m['load_avg_start_end']}; bench wall time {rep['bench_wall_s']:.0f} s.")
    out.append("")
    mm = rep["matmul_gflop_s"]
    if m.get("device", "cpu") != "cpu":
        out.append(f"Device: {m['device']} ({m.get('gpu') or 'GPU'}); GPU MiB: memory in use at the end of each process (nvidia-smi).")
        out.append("")
    n = rep.get("matmul_n", 2048)
    out.append(f"Matrix multiply {n}x{n} {m.get('precision', 'fp32')}: " + ", ".join(f"{k} {fmt_stats(v, 1)} GFLOP/s" for k, v in mm.items()))
    out.append("")
    out.append("## DISTL throughput (images/s: median [min-max] over timed iterations)")
    out.append("")
    out.append("| config | mode | impl | variant | images/s | images/CPU-s | peak RSS MiB | loop growth MiB | GPU MiB | GFLOP/img | GFLOP/s | % matmul | load |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in rep["figures"]:
        load = f["load_avg"]
        la = f"{min(load):.1f}-{max(load):.1f}" if load else "-"
        share = f"{100 * f['share_of_matmul_rate']:.0f}%" if f["share_of_matmul_rate"] is not None else "-"
        gfs = f"{f['achieved_gflop_s']:.1f}" if f["achieved_gflop_s"] is not None else "-"
        fpi = f"{f['flop_per_image'] / 1e9:.2f}" if f["flop_per_image"] else "-"
        out.append(
            f"| {f['config']} | {f['mode']} | {f['impl']} | {f['variant']} | {fmt_stats(f['images_per_s'])} | "
            f"{fmt_stats(f['images_per_cpu_s'])} | "
            f"{f['vm_hwm_mib']:.0f} | {f['loop_peak_growth_mib']:.0f} | {f['gpu_memory_mib'] or '-'} | "
            f"{fpi} | {gfs} | {share} | {la} |"
        )
    out.append("")
    if rep["ratios"]:
        out.append("## Rust / PyTorch eager (same run, interleaved processes)")
        out.append("")
        out.append("Speed ratio: median Rust images/s over median PyTorch images/s; paired: per round, Rust over")
        out.append("the PyTorch process run next to it (median [min-max]); CPU: images per CPU-second.")
        out.append("")
        out.append("| config | mode | rust | torch attention | speed ratio | paired | CPU-time ratio | peak RSS ratio | loop growth ratio | GPU memory ratio |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in rep["ratios"]:
            mr = f"{r['memory_ratio']:.2f}" if r["memory_ratio"] else "-"
            lr = f"{r['loop_memory_ratio']:.2f}" if r.get("loop_memory_ratio") else "-"
            out.append(
                f"| {r['config']} | {r['mode']} | {r['rust_variant']} | {r['torch_variant']} | {r['speed_ratio']:.2f}x | "
                f"{fmt_stats(r['paired_speed_ratio'])} | {(str(round(r['cpu_time_ratio'], 2)) + 'x') if r['cpu_time_ratio'] else '-'} | {mr} | {lr} | "
                f"{(format(r['gpu_memory_ratio'], '.2f')) if r.get('gpu_memory_ratio') else '-'} |"
            )
        out.append("")
    out.append("## Step profile (median seconds per iteration by phase)")
    out.append("")
    for f in rep["figures"]:
        if f["mode"] != "step" or not f["phases_median_s"]:
            continue
        tot = sum(f["phases_median_s"].values())
        parts = ", ".join(f"{k} {v:.3f} ({100 * v / tot:.0f}%)" for k, v in f["phases_median_s"].items())
        out.append(f"* {f['config']} {f['impl']}/{f['variant']}: {parts}")
    out.append("")
    aug = rep["augmentation"]
    if aug:
        out.append("## Augmentation (decode + 10 views per image: 2x256 + 8x128)")
        out.append("")
        out.append("| implementation | images/s median [min-max] | detail |")
        out.append("|---|---|---|")
        for key, what in (("rust", "rayon_threads"), ("torchvision", "workers")):
            r = aug.get(key)
            if r:
                s = {"median": r["images_per_s_median"], "min": r["images_per_s_min"], "max": r["images_per_s_max"]}
                det = f"{what} {r.get(what)}, {r.get('n_images')} images, {r.get('runs')} runs"
                if key == "rust" and "loader_images_per_s_median" in r:
                    det += f"; full loader (tensors, batches of 32): {r['loader_images_per_s_median']:.1f} img/s"
                out.append(f"| {key} | {fmt_stats(s, 1)} | {det} |")
        if "speed_ratio" in aug:
            out.append("")
            out.append(f"sevit / torchvision: {aug['speed_ratio']:.2f}x")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
