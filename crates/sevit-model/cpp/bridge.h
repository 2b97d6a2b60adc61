// What the bridges of this crate's CPU kernels (short_attention.cpp, bias_gelu.cpp,
// bias_residual.cpp) share: picking a kernel build, the bias-gradient sum over fixed row
// blocks, and reporting an error through the C ABI.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <exception>

#include "isa.h"

namespace sevit {

// The kernels of build `isa` (0 base, 1 avx2, 2 avx512; -1: the widest this CPU runs) among
// the three builds of one kernel file; an error naming `what` when the CPU lacks that build.
template <class Kernels>
Kernels pick(int64_t isa, const char* what, Kernels base, Kernels avx2, Kernels avx512) {
  if (isa < 0) isa = best_isa();
  TORCH_CHECK(isa < kIsaCount && isa_supported(isa), what, ": instruction set ", isa,
              " is not available on this CPU");
  return isa == 2 ? avx512 : isa == 1 ? avx2 : base;
}

// Rows per block of a bias-gradient sum: a fixed size, so that the sum's order (and so its
// rounding) does not depend on the number of threads.
constexpr int64_t kRowBlock = 64;

inline int64_t row_blocks(int64_t rows) { return (rows + kRowBlock - 1) / kRowBlock; }

// The sum over the rows of `partial` [blocks, cols], in block order: [cols].
inline at::Tensor sum_in_order(const at::Tensor& partial) {
  const int64_t blocks = partial.size(0), cols = partial.size(1);
  auto total = at::zeros({cols}, partial.options());
  float* t = total.data_ptr<float>();
  const float* p = partial.data_ptr<float>();
  for (int64_t k = 0; k < blocks; ++k)
    for (int64_t c = 0; c < cols; ++c) t[c] += p[k * cols + c];
  return total;
}

// Writes the exception's message to `err` for the Rust side; returns the C ABI's failure code.
inline int report(const std::exception& e, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) std::snprintf(err, err_len, "%s", e.what());
  return 1;
}

}  // namespace sevit
