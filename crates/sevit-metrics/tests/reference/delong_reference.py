#!/usr/bin/env python3
"""Independent reference values for sevit-metrics' AUC, DeLong CI and paired DeLong test.

Straight from the formulas of DeLong, DeLong & Clarke-Pearson, "Comparing the areas under two or
more correlated receiver operating characteristic curves: a nonparametric approach",
Biometrics 44(3):837-845, 1988 -- with O(m*n) pairwise kernels, no ranks, no sorting -- so it
shares nothing with the Rust implementation (Sun & Xu's O(n log n) midrank algorithm):

  psi(X, Y)  = 1 if X > Y, 1/2 if X == Y, 0 if X < Y   (X a positive's score, Y a negative's)
  AUC        = (1 / (m n)) sum_i sum_j psi(X_i, Y_j)
  V10(X_i)   = (1 / n) sum_j psi(X_i, Y_j)               (i = 1..m)
  V01(Y_j)   = (1 / m) sum_i psi(X_i, Y_j)               (j = 1..n)
  S10[r, s]  = 1/(m-1) sum_i (V10_r(X_i) - AUC_r)(V10_s(X_i) - AUC_s)
  S01[r, s]  = 1/(n-1) sum_j (V01_r(Y_j) - AUC_r)(V01_s(Y_j) - AUC_s)
  S          = S10 / m + S01 / n
  Var(AUC_r) = S[r, r];  Var(AUC_a - AUC_b) = S[a,a] + S[b,b] - 2 S[a,b]
  z          = (AUC_a - AUC_b) / sqrt(Var(AUC_a - AUC_b)),  p = 2 (1 - Phi(|z|)) = erfc(|z|/sqrt 2)
  CI(AUC)    = AUC -+ Phi^-1(0.975) sqrt(Var), clipped to [0, 1]      (as pROC's ci.auc, delong)
  CI(diff)   = diff -+ Phi^-1(0.975) sqrt(Var(diff))                   (as pROC's roc.test)

Phi^-1 is Python's statistics.NormalDist().inv_cdf, erfc is math.erfc. If scikit-learn is
importable, its roc_auc_score is recorded too (as `sklearn_auc_a`/`sklearn_auc_b`); the committed
fixture was generated with scikit-learn present.

Usage:  python delong_reference.py OUT.json
Test vectors are generated here from a fixed numpy seed; the scores are rounded so that many
ties occur, within and across classes.
"""
import json
import math
import sys
from statistics import NormalDist

import numpy as np

LEVEL = 0.95


def psi_matrix(pos, neg):
    x = np.asarray(pos, dtype=np.float64)[:, None]
    y = np.asarray(neg, dtype=np.float64)[None, :]
    return (x > y).astype(np.float64) + 0.5 * (x == y).astype(np.float64)


def placements(labels, scores):
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    psi = psi_matrix(scores[labels], scores[~labels])
    m, n = psi.shape
    auc = psi.sum() / (m * n)
    v10 = psi.mean(axis=1)  # per positive
    v01 = psi.mean(axis=0)  # per negative
    return auc, v10, v01


def reference(labels, a, b):
    z975 = NormalDist().inv_cdf(0.5 + LEVEL / 2)
    auc_a, v10a, v01a = placements(labels, a)
    auc_b, v10b, v01b = placements(labels, b)
    m, n = len(v10a), len(v01a)

    def cov(u, v, mu_u, mu_v):
        return float(np.sum((u - mu_u) * (v - mu_v)) / (len(u) - 1))

    s_aa = cov(v10a, v10a, auc_a, auc_a) / m + cov(v01a, v01a, auc_a, auc_a) / n
    s_bb = cov(v10b, v10b, auc_b, auc_b) / m + cov(v01b, v01b, auc_b, auc_b) / n
    s_ab = cov(v10a, v10b, auc_a, auc_b) / m + cov(v01a, v01b, auc_a, auc_b) / n
    var_diff = s_aa + s_bb - 2 * s_ab
    diff = auc_a - auc_b
    z = diff / math.sqrt(var_diff)
    out = {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "var_a": s_aa,
        "var_b": s_bb,
        "ci_a": [max(0.0, auc_a - z975 * math.sqrt(s_aa)), min(1.0, auc_a + z975 * math.sqrt(s_aa))],
        "ci_b": [max(0.0, auc_b - z975 * math.sqrt(s_bb)), min(1.0, auc_b + z975 * math.sqrt(s_bb))],
        "diff": diff,
        "var_diff": var_diff,
        "z": z,
        "p_value": math.erfc(abs(z) / math.sqrt(2)),
        "ci_diff": [diff - z975 * math.sqrt(var_diff), diff + z975 * math.sqrt(var_diff)],
    }
    try:
        from sklearn.metrics import roc_auc_score

        out["sklearn_auc_a"] = float(roc_auc_score(labels, a))
        out["sklearn_auc_b"] = float(roc_auc_score(labels, b))
    except ImportError:
        pass
    return {k: (float(v) if not isinstance(v, list) else [float(x) for x in v]) for k, v in out.items()}


def cases():
    rng = np.random.default_rng(20240531)
    out = []

    # 1. Tiny, by hand: ties within and across classes.
    labels = [1, 0, 1, 1, 0, 0, 1, 0, 0, 1]
    a = [0.9, 0.9, 0.3, 0.5, 0.5, 0.1, 0.9, 0.3, 0.2, 0.7]
    b = [0.8, 0.2, 0.8, 0.4, 0.6, 0.1, 0.5, 0.5, 0.3, 0.2]
    out.append(("tiny_ties", labels, a, b))

    # 2. Two correlated continuous models, scores rounded to 2 decimals (many ties), n = 240.
    n = 240
    y = rng.random(n) < 0.4
    latent = rng.normal(size=n)
    a = 1 / (1 + np.exp(-(1.2 * y + latent + 0.8 * rng.normal(size=n))))
    b = 1 / (1 + np.exp(-(0.7 * y + latent + 1.0 * rng.normal(size=n))))
    out.append(("correlated_rounded", y.astype(int).tolist(), np.round(a, 2).tolist(), np.round(b, 2).tolist()))

    # 3. Five-level ratings (a radiologist-style scale) versus a continuous score, n = 150.
    n = 150
    y = rng.random(n) < 0.5
    a = np.clip(np.round(2 + 1.1 * y + rng.normal(size=n)), 1, 5)
    b = np.round(0.8 * y + rng.normal(size=n), 3)
    out.append(("ratings_vs_continuous", y.astype(int).tolist(), a.tolist(), b.tolist()))

    # 4. Imbalanced: 12 positives among 400, scores on a 0.05 grid.
    y = np.zeros(400, dtype=bool)
    y[rng.choice(400, 12, replace=False)] = True
    a = np.round(np.clip(0.3 + 0.25 * y + 0.2 * rng.normal(size=400), 0, 1) * 20) / 20
    b = np.round(np.clip(0.3 + 0.15 * y + 0.2 * rng.normal(size=400), 0, 1) * 20) / 20
    out.append(("imbalanced_grid", y.astype(int).tolist(), a.tolist(), b.tolist()))

    # 5. Model b worse than chance (AUC < 0.5), continuous without ties, n = 60.
    n = 60
    y = np.arange(n) % 2 == 0
    a = 0.9 * y + rng.normal(size=n)
    b = -0.6 * y + rng.normal(size=n)
    out.append(("below_chance", y.astype(int).tolist(), a.tolist(), b.tolist()))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: delong_reference.py OUT.json")
    result = {
        "generator": "crates/sevit-metrics/tests/reference/delong_reference.py",
        "level": LEVEL,
        "cases": [
            {"name": name, "labels": labels, "scores_a": a, "scores_b": b, "expected": reference(labels, a, b)}
            for name, labels, a, b in cases()
        ],
    }
    with open(sys.argv[1], "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
