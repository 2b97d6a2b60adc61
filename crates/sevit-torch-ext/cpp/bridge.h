// What the bridges of this crate's CPU kernels (short_attention.cpp, bias_gelu.cpp,
// bias_residual.cpp) share: picking a kernel build, the bias-gradient sum over fixed row
// blocks, and reporting an error through the C ABI.
//
// build.rs compiles every kernel file three times (base, avx2, avx512: on other CPUs than x86
// all three are baseline code), so every build's entry points exist; isa.h says which run.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>

#include "error.h"
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

// The bias gradient [cols] of `rows` rows: `block(partial, r0, r1)` writes the sum of rows
// r0..r1 (at most kRowBlock of them) to `partial` [cols]; blocks run in parallel and their
// sums are added in block order.
template <class Block>
at::Tensor sum_by_row_blocks(int64_t rows, int64_t cols, const at::TensorOptions& options,
                             const Block& block) {
  const int64_t blocks = row_blocks(rows);
  auto partial = at::empty({blocks, cols}, options);
  float* p = partial.data_ptr<float>();
  at::parallel_for(0, blocks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      block(p + k * cols, k * kRowBlock, std::min(rows, (k + 1) * kRowBlock));
  });
  return sum_in_order(partial);
}

}  // namespace sevit
