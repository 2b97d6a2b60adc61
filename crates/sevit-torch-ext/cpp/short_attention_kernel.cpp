// Self-attention over short token sequences (a ViT's 17 or 65 tokens), forward and backward,
// on f32 CPU tensors, one (image, head) problem at a time with everything of the problem in
// cache. See short_attention.cpp for why and for the tensor layouts.
//
// This file holds no libtorch code: build.rs compiles it once per instruction set, with
// SEVIT_VW (floats per vector register), SEVIT_MR / SEVIT_NV (register tile: rows x vectors)
// and the names of its two entry points defined, and short_attention.cpp picks the widest
// build the CPU runs. GCC's vector extensions become AVX-512, AVX2 or SSE code by the flags.
//
// Layouts, for one batch of B images, N tokens, H heads of width D, C = H * D:
//   qkv   [B, N, 3C]: token t of image b holds q (heads in order), then k, then v, before
//         the projection's bias [3C] (if any), which is added as the rows are read;
//   out   [B, N, C]:  the heads' outputs side by side (what the output projection reads);
//   probs [B, H, N, Np]: the softmaxed attention, rows padded with zeros to Np (a multiple
//         of 16), kept from the forward for the backward;
//   gqkv  [B, N, 3C]: the gradient of qkv, each element written once (the bias's gradient is
//         the sum of its rows).
// Problems p0..p1 are (b, h) = (p / H, p % H).

#include <cstdint>
#include <cstring>
#include <vector>

#include "simd.h"

namespace {

constexpr int MR = SEVIT_MR;  // register tile: rows
constexpr int NV = SEVIT_NV;  // register tile: vectors per row

// C[r, 0 : R*VW] = sum_k A(r, k) B[k, 0 : R*VW] for a tile of M rows (M <= MR), with
// A(r, k) = A[r * a_rs + k * a_cs]: the accumulators stay in registers over k.
template <int M, int R>
inline void tile(int64_t K, const float* A, int64_t a_rs, int64_t a_cs, const float* B,
                 int64_t b_rs, float* C, int64_t c_rs) {
  vf acc[M][R];
#pragma GCC unroll 8
  for (int r = 0; r < M; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < R; ++v) acc[r][v] = vf{};
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * b_rs;
    vf bv[R];
#pragma GCC unroll 8
    for (int v = 0; v < R; ++v) bv[v] = load(b + v * VW);
#pragma GCC unroll 8
    for (int r = 0; r < M; ++r) {
      const vf a = splat(A[r * a_rs + k * a_cs]);
#pragma GCC unroll 8
      for (int v = 0; v < R; ++v) acc[r][v] += bv[v] * a;
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < M; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < R; ++v) store(C + r * c_rs + v * VW, acc[r][v]);
}

template <int M>
void row_block(int64_t W, int64_t K, const float* A, int64_t a_rs, int64_t a_cs,
               const float* B, int64_t b_rs, float* C, int64_t c_rs) {
  int64_t j = 0;
  for (; j + NV * VW <= W; j += NV * VW) tile<M, NV>(K, A, a_rs, a_cs, B + j, b_rs, C + j, c_rs);
  const int64_t rest = (W - j) / VW;
  switch (rest) {
    case 0: break;
#if SEVIT_NV > 1
    case 1: tile<M, 1>(K, A, a_rs, a_cs, B + j, b_rs, C + j, c_rs); break;
#endif
#if SEVIT_NV > 2
    case 2: tile<M, 2>(K, A, a_rs, a_cs, B + j, b_rs, C + j, c_rs); break;
#endif
#if SEVIT_NV > 3
    case 3: tile<M, 3>(K, A, a_rs, a_cs, B + j, b_rs, C + j, c_rs); break;
#endif
    default: break;  // rest < NV by construction
  }
  j += rest * VW;
  for (; j < W; ++j)  // columns that do not fill a vector (narrow heads)
    for (int r = 0; r < M; ++r) {
      float s = 0.f;
      for (int64_t k = 0; k < K; ++k) s += A[r * a_rs + k * a_cs] * B[k * b_rs + j];
      C[r * c_rs + j] = s;
    }
}

template <int M>
void rows_tail(int64_t m, int64_t W, int64_t K, const float* A, int64_t a_rs, int64_t a_cs,
               const float* B, int64_t b_rs, float* C, int64_t c_rs) {
  if constexpr (M > 0) {
    if (m == M) {
      row_block<M>(W, K, A, a_rs, a_cs, B, b_rs, C, c_rs);
    } else {
      rows_tail<M - 1>(m, W, K, A, a_rs, a_cs, B, b_rs, C, c_rs);
    }
  }
}

// C[i, 0:W] = sum_{k < K} A(i, k) B[k, 0:W] for i < M (a small product, written, not added).
void gemm(int64_t M, int64_t W, int64_t K, const float* A, int64_t a_rs, int64_t a_cs,
          const float* B, int64_t b_rs, float* C, int64_t c_rs) {
  // One row left over (17 or 65 tokens) joins the last block: a single-row tile has too few
  // accumulators to hide the multiply-add latency. MR + 1 rows still fit the registers.
  const int64_t last = M > MR && M % MR == 1 ? M - (MR + 1) : M - M % MR;
  int64_t i = 0;
  for (; i < last; i += MR)
    row_block<MR>(W, K, A + i * a_rs, a_rs, a_cs, B, b_rs, C + i * c_rs, c_rs);
  if (M - i == MR + 1) {
    row_block<MR + 1>(W, K, A + i * a_rs, a_rs, a_cs, B, b_rs, C + i * c_rs, c_rs);
  } else if (i < M) {
    rows_tail<MR - 1>(M - i, W, K, A + i * a_rs, a_rs, a_cs, B, b_rs, C + i * c_rs, c_rs);
  }
}

// One stage of an in-register transpose of a VW x VW block: swaps bit S of the row index
// with bit S of the column index (rows i and i + S exchange their off-diagonal halves).
template <int S>
inline void swap_stage(vf* r) {
  constexpr vi lo = stage_lo<S>(Lanes{}), hi = stage_hi<S>(Lanes{});
  for (int i = 0; i < VW; ++i)
    if ((i & S) == 0) {
      const vf a = r[i], b = r[i + S];
      r[i] = __builtin_shuffle(a, b, lo);
      r[i + S] = __builtin_shuffle(a, b, hi);
    }
}

template <int S>
inline void transpose_block(vf* r) {
  if constexpr (S >= 1) {
    swap_stage<S>(r);
    transpose_block<S / 2>(r);
  }
}

// dst[d, j] = src[j * s_rs + d] for j < N, d < D; columns N..Np are zero.
void transpose_padded(int64_t N, int64_t D, int64_t Np, const float* src, int64_t s_rs, float* dst) {
  if (D % VW == 0) {
    vf r[VW];
    for (int64_t j0 = 0; j0 < Np; j0 += VW)
      for (int64_t d0 = 0; d0 < D; d0 += VW) {
        for (int i = 0; i < VW; ++i) r[i] = j0 + i < N ? load(src + (j0 + i) * s_rs + d0) : vf{};
        transpose_block<VW / 2>(r);
        for (int i = 0; i < VW; ++i) store(dst + (d0 + i) * Np + j0, r[i]);
      }
    return;
  }
  for (int64_t d = 0; d < D; ++d) {
    float* row = dst + d * Np;
    for (int64_t j = 0; j < N; ++j) row[j] = src[j * s_rs + d];
    for (int64_t j = N; j < Np; ++j) row[j] = 0.f;
  }
}

// Row-wise softmax of scale * s over the first N of Np entries; the padding becomes 0.
void softmax_rows(int64_t N, int64_t Np, float scale, float* s) {
  const vf neg_inf = splat(-__builtin_inff());
  const int64_t full = N / VW * VW;  // the vectors left after it hold padding
  for (int64_t i = 0; i < N; ++i) {
    float* row = s + i * Np;
    vf m = neg_inf;
    for (int64_t j = 0; j < Np; j += VW) {
      vf x = load(row + j);
      if (j >= full) x = (iota() + static_cast<int32_t>(j)) < static_cast<int32_t>(N) ? x : neg_inf;
      m = x > m ? x : m;
    }
    const vf shift = max_all(m) * scale;
    vf sum = vf{};
    for (int64_t j = 0; j < Np; j += VW) {
      vf e = vexp(load(row + j) * scale - shift);
      if (j >= full) e = (iota() + static_cast<int32_t>(j)) < static_cast<int32_t>(N) ? e : vf{};
      sum += e;
      store(row + j, e);
    }
    const vf inv = 1.f / sum_all(sum);
    for (int64_t j = 0; j < Np; j += VW) store(row + j, load(row + j) * inv);
  }
}

float dot(const float* a, const float* b, int64_t n) {
  vf acc = vf{};
  int64_t d = 0;
  for (; d + VW <= n; d += VW) acc += load(a + d) * load(b + d);
  float s = sum_all(acc)[0];
  for (; d < n; ++d) s += a[d] * b[d];
  return s;
}

// The q, k and v rows of problem (b, h): pointers and row strides into qkv, or, with a bias,
// into `local` (3 x N x D floats) holding the biased rows.
struct Operands {
  const float *q, *k, *v;
  int64_t rs;
};

Operands operands(const float* qkv, const float* bias, int64_t b, int64_t h, int64_t N,
                  int64_t D, int64_t C, float* local) {
  const int64_t qkv_rs = 3 * C;
  const float* q = qkv + b * N * qkv_rs + h * D;
  if (bias == nullptr) return {q, q + C, q + 2 * C, qkv_rs};
  for (int part = 0; part < 3; ++part) {
    const float* src = q + part * C;
    const float* bp = bias + part * C + h * D;
    float* dst = local + part * N * D;
    for (int64_t i = 0; i < N; ++i) {
      int64_t d = 0;
      for (; d + VW <= D; d += VW) store(dst + i * D + d, load(src + i * qkv_rs + d) + load(bp + d));
      for (; d < D; ++d) dst[i * D + d] = src[i * qkv_rs + d] + bp[d];
    }
  }
  return {local, local + N * D, local + 2 * N * D, D};
}

// dst[0:D] = the sum of the N rows (stride rs) of src.
void column_sums(const float* src, int64_t rs, int64_t N, int64_t D, float* dst) {
  int64_t d = 0;
  for (; d + VW <= D; d += VW) {
    vf acc = vf{};
    for (int64_t i = 0; i < N; ++i) acc += load(src + i * rs + d);
    store(dst + d, acc);
  }
  for (; d < D; ++d) {
    float acc = 0.f;
    for (int64_t i = 0; i < N; ++i) acc += src[i * rs + d];
    dst[d] = acc;
  }
}

}  // namespace

extern "C" {

// `bias` (3C floats, or null) is added to qkv's rows as they are read.
void SEVIT_SA_FORWARD(const float* qkv, const float* bias, float* out, float* probs, int64_t N,
                      int64_t H, int64_t D, int64_t Np, float scale, int64_t p0, int64_t p1) {
  const int64_t C = H * D;
  std::vector<float> kt(D * Np), local(probs == nullptr ? N * Np : 0);
  std::vector<float> biased(bias == nullptr ? 0 : 3 * N * D);
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t b = p / H, h = p % H;
    const Operands x = operands(qkv, bias, b, h, N, D, C, biased.data());
    float* s = probs != nullptr ? probs + p * N * Np : local.data();
    transpose_padded(N, D, Np, x.k, x.rs, kt.data());
    gemm(N, Np, D, x.q, x.rs, 1, kt.data(), Np, s, Np);  // S = Q K^T
    softmax_rows(N, Np, scale, s);                         // P
    gemm(N, D, N, s, Np, 1, x.v, x.rs, out + b * N * C + h * D, C);  // O = P V
  }
}

// With a bias, `gbias_rows` [B, 3C] receives each image's sums of the q, k, v gradient rows
// (problem (b, h) writes its head's columns of row b); the caller sums over the images.
void SEVIT_SA_BACKWARD(const float* qkv, const float* bias, const float* out, const float* probs,
                       const float* gout, float* gqkv, float* gbias_rows, int64_t N, int64_t H,
                       int64_t D, int64_t Np, float scale, int64_t p0, int64_t p1) {
  const int64_t C = H * D, qkv_rs = 3 * C;
  std::vector<float> vt(D * Np), ds(N * Np), delta(N);
  std::vector<float> biased(bias == nullptr ? 0 : 3 * N * D);
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t b = p / H, h = p % H;
    const Operands x = operands(qkv, bias, b, h, N, D, C, biased.data());
    const int64_t qoff = b * N * qkv_rs + h * D, ooff = b * N * C + h * D;
    const float *o = out + ooff, *go = gout + ooff;
    const float* pr = probs + p * N * Np;
    float *gq = gqkv + qoff, *gk = gq + C, *gv = gq + 2 * C;
    for (int64_t i = 0; i < N; ++i) delta[i] = dot(go + i * C, o + i * C, D);
    gemm(N, D, N, pr, 1, Np, go, C, gv, qkv_rs);  // dV = P^T dO
    transpose_padded(N, D, Np, x.v, x.rs, vt.data());
    gemm(N, Np, D, go, C, 1, vt.data(), Np, ds.data(), Np);  // dP = dO V^T
    for (int64_t i = 0; i < N; ++i) {  // dS = P * (dP - delta) * scale
      float* row = ds.data() + i * Np;
      const float* prow = pr + i * Np;
      const vf di = splat(delta[i]);
      for (int64_t j = 0; j < Np; j += VW) store(row + j, load(prow + j) * (load(row + j) - di) * scale);
    }
    gemm(N, D, N, ds.data(), Np, 1, x.k, x.rs, gq, qkv_rs);  // dQ = dS K
    gemm(N, D, N, ds.data(), 1, Np, x.q, x.rs, gk, qkv_rs);  // dK = dS^T Q
    if (gbias_rows != nullptr) {
      float* row = gbias_rows + b * qkv_rs + h * D;
      for (int part = 0; part < 3; ++part) column_sums(gq + part * C, qkv_rs, N, D, row + part * C);
    }
  }
}

}  // extern "C"
