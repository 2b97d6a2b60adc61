// out = x + s ⊙ (z + b): a residual update whose branch is a bias-free matrix product z plus its
// bias b, scaled per sample by stochastic depth's factor s; and the backward's
// gz = s ⊙ g with the bias gradient summed per block of rows. See bias_residual.cpp. No libtorch
// code here: build.rs compiles this file once per instruction set (simd.h).

#include <cstdint>

#include "simd.h"

extern "C" {

// Rows r0..r1 of x, z, out [rows, cols]; row r belongs to sample r / per_sample, whose factor
// is s[r / per_sample] (s == nullptr: 1 for every sample).
void SEVIT_BR_FORWARD(const float* x, const float* z, const float* b, const float* s, float* out,
                      int64_t cols, int64_t per_sample, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float k = s == nullptr ? 1.f : s[r / per_sample];
    const vf kv = splat(k);
    const float *xr = x + r * cols, *zr = z + r * cols;
    float* o = out + r * cols;
    int64_t c = 0;
    for (; c + VW <= cols; c += VW) store(o + c, load(xr + c) + kv * (load(zr + c) + load(b + c)));
    for (; c < cols; ++c) o[c] = xr[c] + k * (zr[c] + b[c]);
  }
}

// gz[r, :] = s[r / per_sample] g[r, :] for rows r0..r1 (gz == nullptr: s is all ones and gz
// is g itself), and gb[:] = the sum of those rows of gz (written, not added).
void SEVIT_BR_BACKWARD(const float* g, const float* s, float* gz, float* gb, int64_t cols,
                       int64_t per_sample, int64_t r0, int64_t r1) {
  for (int64_t c = 0; c < cols; ++c) gb[c] = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    const float* gr = g + r * cols;
    const float k = s == nullptr ? 1.f : s[r / per_sample];
    const vf kv = splat(k);
    float* gzr = gz == nullptr ? nullptr : gz + r * cols;
    int64_t c = 0;
    for (; c + VW <= cols; c += VW) {
      const vf v = load(gr + c) * kv;
      if (gzr != nullptr) store(gzr + c, v);
      store(gb + c, load(gb + c) + v);
    }
    for (; c < cols; ++c) {
      const float v = gr[c] * k;
      if (gzr != nullptr) gzr[c] = v;
      gb[c] += v;
    }
  }
}

}  // extern "C"
