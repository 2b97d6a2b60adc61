// A C ABI over libtorch's multi-tensor optimiser kernels, which tch 0.26 does not expose:
// the fused AdamW kernel (`at::_fused_adamw_`, the kernel behind PyTorch's
// `torch.optim.AdamW(fused=True)`, on CPU and CUDA), `at::_foreach_lerp_` (the EMA update) and
// `at::_foreach_norm` (per-tensor gradient clipping).
// One call replaces a dozen small element-wise ops per parameter, each a parallel region of
// its own. Tensors arrive as tch's `C_tensor` pointers, which are `at::Tensor*`.

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <vector>

#include "error.h"

namespace {

std::vector<at::Tensor> list(at::Tensor* const* ts, int64_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int64_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}

} // namespace

extern "C" {

// One AdamW step (PyTorch's formula, decoupled weight decay `wd`) over `n` parameters with
// their gradients and moments; `steps[i]` is the parameter's step count *after* this update.
// Returns 0, or 1 with libtorch's message in `err`.
int sevit_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads,
                      at::Tensor* const* exp_avgs, at::Tensor* const* exp_avg_sqs,
                      const double* steps, int64_t n, double lr, double beta1, double beta2,
                      double wd, double eps, char* err, size_t err_len) {
  try {
    if (n == 0) return 0;
    c10::AutoGradMode no_grad(false);
    auto p = list(params, n);
    // The step counts as one host-to-device copy, then one 0-d view per parameter (one copy
    // per parameter would be a synchronous transfer each on CUDA).
    auto all_steps = at::tensor(at::ArrayRef<double>(steps, n), at::kDouble)
                         .to(p[0].device(), at::kFloat);
    std::vector<at::Tensor> state_steps = all_steps.unbind(0);
    at::_fused_adamw_(p, list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), {},
                      state_steps, lr, beta1, beta2, wd, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
    return 0;
  } catch (const std::exception& e) {
    return sevit::report(e, err, err_len);
  }
}

// dst[i] <- dst[i] + weight (src[i] - dst[i]) for every i, without gradient.
int sevit_foreach_lerp(at::Tensor* const* dst, at::Tensor* const* src, int64_t n, double weight,
                       char* err, size_t err_len) {
  try {
    if (n == 0) return 0;
    c10::AutoGradMode no_grad(false);
    auto d = list(dst, n);
    at::_foreach_lerp_(d, list(src, n), weight);
    return 0;
  } catch (const std::exception& e) {
    return sevit::report(e, err, err_len);
  }
}

// DINO's per-tensor clipping, g[i] *= min(1, clip / (||g[i]||_2 + 1e-6)), with the norms of
// all tensors from one multi-tensor kernel and no host read.
int sevit_clip_per_tensor(at::Tensor* const* grads, int64_t n, double clip, char* err,
                          size_t err_len) {
  try {
    if (n == 0) return 0;
    c10::AutoGradMode no_grad(false);
    auto g = list(grads, n);
    auto norms = at::stack(at::_foreach_norm(g, 2)).to(at::kFloat);
    auto coef = (norms + 1e-6).reciprocal_().mul_(clip).clamp_max_(1.0);
    std::vector<at::Tensor> coefs = coef.unbind(0);
    for (int64_t i = 0; i < n; ++i) {
      if (coefs[i].scalar_type() != g[i].scalar_type()) coefs[i] = coefs[i].to(g[i].scalar_type());
    }
    at::_foreach_mul_(g, coefs);
    return 0;
  } catch (const std::exception& e) {
    return sevit::report(e, err, err_len);
  }
}

} // extern "C"
