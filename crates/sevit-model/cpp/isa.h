// The instruction sets the CPU kernels of this crate are built for (build.rs compiles each
// kernel file once per set), and which of them this CPU runs.
#pragma once

#include <cstdint>

namespace sevit {

// Indices of the kernel builds: 0 baseline, 1 AVX2 + FMA, 2 AVX-512 (F, VL, DQ, BW).
constexpr int kIsaCount = 3;

inline const char* isa_name(int64_t isa) {
  static const char* const names[kIsaCount] = {"base", "avx2", "avx512"};
  return isa >= 0 && isa < kIsaCount ? names[isa] : "?";
}

inline bool isa_supported(int64_t isa) {
#if defined(SEVIT_SA_X86)
  __builtin_cpu_init();
  switch (isa) {
    case 0: return true;
    case 1: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case 2:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    default: return false;
  }
#else
  return isa == 0;
#endif
}

// The widest set this CPU runs.
inline int best_isa() {
  static const int b = isa_supported(2) ? 2 : isa_supported(1) ? 1 : 0;
  return b;
}

}  // namespace sevit
