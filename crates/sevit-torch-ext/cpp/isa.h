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

// Whether this CPU runs build `isa`; asked once per process (callers are on the hot path).
inline bool isa_supported(int64_t isa) {
#if defined(SEVIT_SA_X86)
  static const bool supported[kIsaCount] = {
      true,
      (__builtin_cpu_init(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")),
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"),
  };
  return isa >= 0 && isa < kIsaCount && supported[isa];
#else
  return isa == 0;  // the avx2 and avx512 builds are compiled as the baseline here, never used
#endif
}

// The widest set this CPU runs.
inline int best_isa() {
  static const int b = isa_supported(2) ? 2 : isa_supported(1) ? 1 : 0;
  return b;
}

}  // namespace sevit
