#!/usr/bin/env python3
"""Attention forward+backward on CPU: fused `scaled_dot_product_attention` vs the explicit
`softmax(q k^T * scale) v`, at the shapes of the DISTL step (libtorch kernels, the same ones
sevit calls through tch). Prints one JSON line per shape; used for docs/performance.md.

    OMP_WAIT_POLICY=PASSIVE $SEVIT_TORCH_PYTHON bench/attention_torch.py --threads 2
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

# name: (batch * views, heads, tokens, head dim) of one block's attention in the student
SHAPES = {
    "tiny16 global (2 views x 16, 65 tokens)": (32, 3, 65, 64),
    "tiny16 local (8 views x 16, 17 tokens)": (128, 3, 17, 64),
    "small8 global (2 views x 4, 1025 tokens)": (8, 6, 1025, 64),
    "small8 local (8 views x 4, 257 tokens)": (32, 6, 257, 64),
}


def explicit(q, k, v, scale):
    return ((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v


def sdpa(q, k, v, scale):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def timed(fn, shape, reps):
    b, h, n, d = shape
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    scale = d**-0.5
    out = []
    for i in range(reps + 1):
        t = time.perf_counter()
        y = fn(q, k, v, scale)
        y.sum().backward()
        if i:
            out.append(time.perf_counter() - t)
        q.grad = k.grad = v.grad = None
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name, shape in SHAPES.items():
        reps = max(2, a.reps // 2) if shape[2] > 1000 else a.reps
        te, ts = timed(explicit, shape, reps), timed(sdpa, shape, reps)
        print(json.dumps({"shape": name, "bhnd": shape, "explicit_s": te, "sdpa_s": ts, "sdpa_speedup": te / ts}))


if __name__ == "__main__":
    main()
