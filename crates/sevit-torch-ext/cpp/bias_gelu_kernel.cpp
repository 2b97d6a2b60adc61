// h = gelu(z + b) (exact, erf form) over the rows of z [rows, cols] with a bias b [cols], and
// its backward: gz = gh * gelu'(z + b), with the bias gradient summed per block of rows.
// See bias_gelu.cpp. No libtorch code here: build.rs compiles this file once per instruction
// set (simd.h), with the entry points' names defined.

#include <cstdint>

#include "simd.h"

namespace {

// 1 / q: the reciprocal estimate and one Newton step where the ISA has one (about 2^-23
// relative error, like a division), else a division.
inline vf reciprocal(vf q) {
#if defined(__AVX512F__) && SEVIT_VW == 16
  const vf r = __builtin_ia32_rcp14ps512_mask(q, vf{}, static_cast<unsigned short>(0xffff));
  return r * (2.f - q * r);
#elif defined(__AVX__) && SEVIT_VW == 8
  const vf r = __builtin_ia32_rcpps256(q);
  return r * (2.f - q * r);
#else
  return 1.f / q;
#endif
}

// erf(x) as a rational function x P(x²) / Q(x²) on [-4, 4] (outside, erf is ±1 in f32): the
// minimax coefficients of Eigen's float erf (also TensorFlow's), a few ulp, no exp.
inline vf verf(vf x) {
  x = x > 4.f ? splat(4.f) : x;
  x = x < -4.f ? splat(-4.f) : x;
  const vf x2 = x * x;
  vf p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = x2 * p - 2.10102402082508e-06f;
  p = x2 * p - 5.69250639462346e-05f;
  p = x2 * p - 7.34990630326855e-04f;
  p = x2 * p - 2.95459980854025e-03f;
  p = x2 * p - 1.60960333262415e-02f;
  p = x * p;
  vf q = x2 * -1.45660718464996e-05f - 2.13374055278905e-04f;
  q = x2 * q - 1.68282697438203e-03f;
  q = x2 * q - 7.37332916720468e-03f;
  q = x2 * q - 1.42647390514189e-02f;
  return p * reciprocal(q);
}

constexpr float kRsqrt2 = 0.70710678118654752f;
constexpr float kRsqrt2Pi = 0.39894228040143268f;

}  // namespace

extern "C" {

// h[r, :] = gelu(z[r, :] + b) for rows r0..r1.
void SEVIT_BG_FORWARD(const float* z, const float* b, float* h, int64_t cols, int64_t r0,
                      int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* zr = z + r * cols;
    float* hr = h + r * cols;
    int64_t c = 0;
    for (; c + VW <= cols; c += VW) {
      const vf y = load(zr + c) + load(b + c);
      store(hr + c, 0.5f * y * (1.f + verf(y * kRsqrt2)));
    }
    for (; c < cols; ++c) {
      const float y = zr[c] + b[c];
      hr[c] = 0.5f * y * (1.f + __builtin_erff(y * kRsqrt2));
    }
  }
}

// gz[r, :] = gh[r, :] * gelu'(z[r, :] + b) for rows r0..r1, and gb[:] = the sum of those
// rows of gz (written, not added).
void SEVIT_BG_BACKWARD(const float* z, const float* b, const float* gh, float* gz, float* gb,
                       int64_t cols, int64_t r0, int64_t r1) {
  for (int64_t c = 0; c < cols; ++c) gb[c] = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    const float *zr = z + r * cols, *ghr = gh + r * cols;
    float* gzr = gz + r * cols;
    int64_t c = 0;
    for (; c + VW <= cols; c += VW) {
      const vf y = load(zr + c) + load(b + c);
      const vf cdf = 0.5f * (1.f + verf(y * kRsqrt2));
      const vf pdf = kRsqrt2Pi * vexp(-0.5f * y * y);
      const vf g = load(ghr + c) * (cdf + y * pdf);
      store(gzr + c, g);
      store(gb + c, load(gb + c) + g);
    }
    for (; c < cols; ++c) {
      const float y = zr[c] + b[c];
      const float cdf = 0.5f * (1.f + __builtin_erff(y * kRsqrt2));
      const float pdf = kRsqrt2Pi * __builtin_expf(-0.5f * y * y);
      const float g = ghr[c] * (cdf + y * pdf);
      gzr[c] = g;
      gb[c] += g;
    }
  }
}

}  // extern "C"
