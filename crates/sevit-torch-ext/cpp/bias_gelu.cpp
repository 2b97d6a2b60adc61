// gelu(z + b) as one autograd node, for a bias-free matrix product z = x Wᵀ (f32, CPU).
//
// Why: `addmm` first copies the bias into every row of its output and then accumulates the
// product onto it, and the GELU reads that output back; its backward reads the GELU's
// gradient once more to sum the bias gradient. For a ViT's MLP (4x the width) those are
// passes over the block's largest activations. Here the product is written once, the bias
// is added where the GELU reads it, and the backward sums the bias gradient while it writes
// the pre-activation gradient. The kernels (bias_gelu_kernel.cpp) are built per instruction
// set (isa.h).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "bridge.h"

extern "C" {
#define SEVIT_DECLARE(isa)                                                                 \
  void sevit_bg_forward_##isa(const float*, const float*, float*, int64_t, int64_t, int64_t); \
  void sevit_bg_backward_##isa(const float*, const float*, const float*, float*, float*,     \
                               int64_t, int64_t, int64_t);
SEVIT_DECLARE(base)
SEVIT_DECLARE(avx2)
SEVIT_DECLARE(avx512)
#undef SEVIT_DECLARE
}

namespace {

using Forward = void (*)(const float*, const float*, float*, int64_t, int64_t, int64_t);
using Backward = void (*)(const float*, const float*, const float*, float*, float*, int64_t,
                          int64_t, int64_t);

struct Kernels {
  Forward forward;
  Backward backward;
};

Kernels kernels(int64_t isa) {
  return sevit::pick<Kernels>(isa, "bias + GELU", {sevit_bg_forward_base, sevit_bg_backward_base},
                              {sevit_bg_forward_avx2, sevit_bg_backward_avx2},
                              {sevit_bg_forward_avx512, sevit_bg_backward_avx512});
}

void check(const at::Tensor& z, const at::Tensor& b) {
  TORCH_CHECK(z.scalar_type() == at::kFloat && z.device().is_cpu() && b.scalar_type() == at::kFloat &&
                  b.device().is_cpu(),
              "bias + GELU: needs f32 CPU tensors, got ", z.scalar_type(), " on ", z.device(),
              " and ", b.scalar_type(), " on ", b.device());
  TORCH_CHECK(z.dim() >= 1 && b.dim() == 1 && z.size(-1) == b.size(0), "bias + GELU: input ",
              z.sizes(), " and bias ", b.sizes(), " do not match");
}

at::Tensor run_forward(const at::Tensor& z_in, const at::Tensor& b_in, int64_t isa) {
  check(z_in, b_in);
  const at::Tensor z = z_in.contiguous(), b = b_in.contiguous();
  auto h = at::empty_like(z);
  const int64_t cols = b.size(0), rows = cols == 0 ? 0 : z.numel() / cols;
  const float *zp = z.data_ptr<float>(), *bp = b.data_ptr<float>();
  float* hp = h.data_ptr<float>();
  const Forward f = kernels(isa).forward;
  at::parallel_for(0, rows, sevit::kRowBlock, [&](int64_t r0, int64_t r1) { f(zp, bp, hp, cols, r0, r1); });
  return h;
}

struct BiasGelu : public torch::autograd::Function<BiasGelu> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z,
                            const at::Tensor& b, int64_t isa) {
    const at::Tensor zc = z.contiguous(), bc = b.contiguous();
    auto h = run_forward(zc, bc, isa);
    ctx->save_for_backward({zc, bc});
    ctx->saved_data["isa"] = isa;
    return h;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &z = saved[0], &b = saved[1];
    const at::Tensor gh = grads[0].contiguous();
    const int64_t cols = b.size(0), rows = cols == 0 ? 0 : z.numel() / cols;
    auto gz = at::empty_like(z);
    const float *zp = z.data_ptr<float>(), *bp = b.data_ptr<float>(), *ghp = gh.data_ptr<float>();
    float* gzp = gz.data_ptr<float>();
    const Backward f = kernels(ctx->saved_data["isa"].toInt()).backward;
    auto gb = sevit::sum_by_row_blocks(rows, cols, b.options(), [&](float* sum, int64_t r0, int64_t r1) {
      f(zp, bp, ghp, gzp, sum, cols, r0, r1);
    });
    return {gz, gb, at::Tensor()};
  }
};

}  // namespace

extern "C" {

// gelu(z + b) (exact GELU) for z [..., cols] and b [cols], f32 on the CPU: a new tensor to
// `*out`. Differentiable with respect to z and b when grad mode is on and either requires grad.
// `isa` as for sevit_short_attention. Returns 0, or 1 with the message in `err`.
int sevit_bias_gelu(const at::Tensor* z, const at::Tensor* b, int64_t isa, at::Tensor** out,
                    char* err, size_t err_len) {
  try {
    kernels(isa);
    at::Tensor result;
    if (at::GradMode::is_enabled() && (z->requires_grad() || b->requires_grad())) {
      result = BiasGelu::apply(*z, *b, isa);
    } else {
      result = run_forward(*z, *b, isa);
    }
    *out = new at::Tensor(std::move(result));
    return 0;
  } catch (const std::exception& e) {
    return sevit::report(e, err, err_len);
  }
}

}  // extern "C"
