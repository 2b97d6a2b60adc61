// Vector helpers shared by this crate's CPU kernel files. Each kernel file is compiled once
// per instruction set (build.rs) with SEVIT_VW, the floats per vector register, defined; GCC's
// vector extensions then become AVX-512, AVX2 or SSE code by the compiler flags.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>

namespace {

constexpr int VW = SEVIT_VW;

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(float))));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }

inline vf splat(float x) {
  const vf v = {x};
  return __builtin_shuffle(v, vi{});  // lane 0 everywhere: one broadcast
}

// Lane-index vectors written as literals, so that the shuffles below get constant masks.
template <int... P>
constexpr vi lanes_plus(std::integer_sequence<int, P...>, int k) {
  return vi{(P + k)...};
}

template <int S, int... P>
constexpr vi lanes_xor(std::integer_sequence<int, P...>) {
  return vi{(P ^ S)...};
}

// Masks of a transpose stage (see swap_stage).
template <int S, int... P>
constexpr vi stage_lo(std::integer_sequence<int, P...>) {
  return vi{((P & S) ? VW + P - S : P)...};
}

template <int S, int... P>
constexpr vi stage_hi(std::integer_sequence<int, P...>) {
  return vi{((P & S) ? VW + P : P + S)...};
}

using Lanes = std::make_integer_sequence<int, VW>;

inline vi iota() { return lanes_plus(Lanes{}, 0); }

// Every lane of the result holds the sum (the maximum) of v's lanes: a butterfly of
// log2(VW) shuffles, with no trip through scalar registers.
template <int S>
inline vf sum_all_from(vf v) {
  if constexpr (S >= 1) {
    v += __builtin_shuffle(v, lanes_xor<S>(Lanes{}));
    return sum_all_from<S / 2>(v);
  }
  return v;
}

template <int S>
inline vf max_all_from(vf v) {
  if constexpr (S >= 1) {
    const vf w = __builtin_shuffle(v, lanes_xor<S>(Lanes{}));
    return max_all_from<S / 2>(w > v ? w : v);
  }
  return v;
}

inline vf sum_all(vf v) { return sum_all_from<VW / 2>(v); }

inline vf max_all(vf v) { return max_all_from<VW / 2>(v); }

// exp(x), Cephes' single-precision polynomial (about 1 ulp on the reduced range), x clamped
// to [-87.3, 88.7]: a softmax only evaluates it at x <= 0.
inline vf vexp(vf x) {
  const vf lo = splat(-87.3365447505531f), hi = splat(88.7228391116729f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick: the sum's low mantissa bits hold n.
  const vf magic = splat(12582912.f);
  const vf t = x * 1.44269504088896341f + magic;
  const vf nf = t - magic;
  vi n, m;
  std::memcpy(&n, &t, sizeof n);
  std::memcpy(&m, &magic, sizeof m);
  n -= m;
  x = x - nf * 0.693359375f;
  x = x - nf * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * x + 1.3981999507e-3f;
  p = p * x + 8.3334519073e-3f;
  p = p * x + 4.1665795894e-2f;
  p = p * x + 1.6666665459e-1f;
  p = p * x + 5.0000001201e-1f;
  p = p * (x * x) + x + 1.f;
  const vi e = (n + 127) << 23;
  vf two_n;
  std::memcpy(&two_n, &e, sizeof two_n);
  return p * two_n;
}

}  // namespace
