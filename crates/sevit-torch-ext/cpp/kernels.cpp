// The C ABI's view of which builds of this crate's CPU kernels this CPU runs (isa.h), for the
// Rust side's `kernels` module.

#include "isa.h"

extern "C" {

// The name of kernel build `isa` ("base", "avx2", "avx512"; -1: the one in use) and, in
// `*supported`, whether this CPU runs it.
const char* sevit_kernel_isa(int64_t isa, int* supported) {
  if (isa < 0) isa = sevit::best_isa();
  *supported = sevit::isa_supported(isa) ? 1 : 0;
  return sevit::isa_name(isa);
}

}  // extern "C"
