// A C ABI over libtorch's autocast state (at::autocast), which tch 0.26 exposes only as
// "CUDA autocast on/off" with its default fp16 dtype. sevit-model's `precision` module uses
// it to run forward passes under bf16 (or fp16) autocast on CUDA, and bf16 on CPU, exactly as
// PyTorch's `torch.autocast(device_type, dtype)` context manager does.

#include <ATen/autocast_mode.h>

namespace {

at::DeviceType device_type(int device) {
  return device == 1 ? at::kCUDA : at::kCPU;
}

at::ScalarType scalar_type(int dtype) {
  switch (dtype) {
    case 1:
      return at::kBFloat16;
    case 2:
      return at::kFloat;
    default:
      return at::kHalf;
  }
}

int dtype_code(at::ScalarType t) {
  if (t == at::kBFloat16) return 1;
  if (t == at::kFloat) return 2;
  return 0;
}

} // namespace

extern "C" {

// Enters an autocast region for `device` (0 CPU, 1 CUDA) with `dtype` (0 fp16, 1 bf16);
// stores the previous state in `prev_enabled` / `prev_dtype` for `sevit_autocast_exit`.
void sevit_autocast_enter(int device, int dtype, int* prev_enabled, int* prev_dtype) {
  const auto dev = device_type(device);
  *prev_enabled = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
  *prev_dtype = dtype_code(at::autocast::get_autocast_dtype(dev));
  at::autocast::set_autocast_enabled(dev, true);
  at::autocast::set_autocast_dtype(dev, scalar_type(dtype));
  at::autocast::increment_nesting();
}

// Leaves the region entered by `sevit_autocast_enter`: clears the cast cache when the
// outermost region ends and restores the previous state.
void sevit_autocast_exit(int device, int prev_enabled, int prev_dtype) {
  const auto dev = device_type(device);
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(dev, prev_enabled != 0);
  at::autocast::set_autocast_dtype(dev, scalar_type(prev_dtype));
}

// Whether autocast is on for `device`, and its dtype code (0 fp16, 1 bf16, 2 fp32).
int sevit_autocast_state(int device, int* dtype) {
  const auto dev = device_type(device);
  *dtype = dtype_code(at::autocast::get_autocast_dtype(dev));
  return at::autocast::is_autocast_enabled(dev) ? 1 : 0;
}

} // extern "C"
