// x + s ⊙ (z + b) as one autograd node: a transformer block's residual update whose branch
// ends in a bias-free matrix product z = h Wᵀ with bias b, s being stochastic depth's
// per-sample factor (f32, CPU).
//
// Why: `addmm` copies the bias into every row of its output before accumulating the product,
// and the residual `addcmul` reads that output back; the backward multiplies the gradient by
// s and then reads the result again for the bias gradient. Here the product is written once,
// the bias and the factor are applied where the residual reads it, and the backward writes
// s ⊙ g while summing it (or, with no factor, only sums g). The kernels
// (bias_residual_kernel.cpp) are built per instruction set (isa.h).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "bridge.h"

extern "C" {
#define SEVIT_DECLARE(isa)                                                                      \
  void sevit_br_forward_##isa(const float*, const float*, const float*, const float*, float*,   \
                              int64_t, int64_t, int64_t, int64_t);                              \
  void sevit_br_backward_##isa(const float*, const float*, float*, float*, int64_t, int64_t,    \
                               int64_t, int64_t);
SEVIT_DECLARE(base)
SEVIT_DECLARE(avx2)
SEVIT_DECLARE(avx512)
#undef SEVIT_DECLARE
}

namespace {

using Forward = void (*)(const float*, const float*, const float*, const float*, float*, int64_t,
                         int64_t, int64_t, int64_t);
using Backward = void (*)(const float*, const float*, float*, float*, int64_t, int64_t, int64_t,
                          int64_t);

struct Kernels {
  Forward forward;
  Backward backward;
};

Kernels kernels(int64_t isa) {
  return sevit::pick<Kernels>(isa, "bias + residual", {sevit_br_forward_base, sevit_br_backward_base},
                              {sevit_br_forward_avx2, sevit_br_backward_avx2},
                              {sevit_br_forward_avx512, sevit_br_backward_avx512});
}

struct Shape {
  int64_t rows, cols, per_sample;
};

// Rows, width and rows per sample of a [B, ..., C] tensor.
Shape shape_of(const at::Tensor& t) {
  const int64_t cols = t.size(-1), samples = t.size(0);
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  return {rows, cols, samples == 0 ? 1 : std::max<int64_t>(rows / samples, 1)};
}

// x and z [B, ..., cols] alike, b [cols], s [B] or empty (no factor).
Shape check(const at::Tensor& x, const at::Tensor& z, const at::Tensor& b, const at::Tensor& s) {
  for (const at::Tensor* t : {&x, &z, &b}) {
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->device().is_cpu(),
                "bias + residual: needs f32 CPU tensors, got ", t->scalar_type(), " on ",
                t->device());
  }
  TORCH_CHECK(x.dim() >= 2 && x.sizes() == z.sizes(), "bias + residual: residual ", x.sizes(),
              " and branch ", z.sizes(), " differ (need [B, ..., C])");
  TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(-1), "bias + residual: bias ", b.sizes(),
              " for width ", x.size(-1));
  if (s.numel() > 0) {
    TORCH_CHECK(s.scalar_type() == at::kFloat && s.device().is_cpu() && s.numel() == x.size(0),
                "bias + residual: the per-sample factor must be ", x.size(0), " f32 CPU values, got ",
                s.sizes());
  }
  return shape_of(x);
}

at::Tensor run_forward(const at::Tensor& x_in, const at::Tensor& z_in, const at::Tensor& b_in,
                       const at::Tensor& s_in, int64_t isa) {
  const Shape sh = check(x_in, z_in, b_in, s_in);
  const at::Tensor x = x_in.contiguous(), z = z_in.contiguous(), b = b_in.contiguous();
  const at::Tensor s = s_in.contiguous();
  auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
  const float *xp = x.data_ptr<float>(), *zp = z.data_ptr<float>(), *bp = b.data_ptr<float>();
  const float* sp = s.numel() > 0 ? s.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  const Forward f = kernels(isa).forward;
  at::parallel_for(0, sh.rows, sevit::kRowBlock, [&](int64_t r0, int64_t r1) {
    f(xp, zp, bp, sp, op, sh.cols, sh.per_sample, r0, r1);
  });
  return out;
}

struct BiasResidual : public torch::autograd::Function<BiasResidual> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& z, const at::Tensor& b, const at::Tensor& s,
                            int64_t isa) {
    auto out = run_forward(x, z, b, s, isa);
    ctx->save_for_backward({s.contiguous()});
    ctx->saved_data["isa"] = isa;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor s = ctx->get_saved_variables()[0];
    const at::Tensor g = grads[0].contiguous();
    const Shape sh = shape_of(g);  // the gradient has the output's (x's) shape
    const bool factor = s.numel() > 0;
    at::Tensor gz = factor ? at::empty_like(g) : g;
    const float* gp = g.data_ptr<float>();
    const float* sp = factor ? s.data_ptr<float>() : nullptr;
    float* gzp = factor ? gz.data_ptr<float>() : nullptr;
    const Backward f = kernels(ctx->saved_data["isa"].toInt()).backward;
    auto gb = sevit::sum_by_row_blocks(sh.rows, sh.cols, g.options(), [&](float* sum, int64_t r0, int64_t r1) {
      f(gp, sp, gzp, sum, sh.cols, sh.per_sample, r0, r1);
    });
    return {g, gz, gb, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// x + s ⊙ (z + b) for x, z [B, ..., C], b [C] and s [B] (`s` null: no factor), f32 on the
// CPU: a new tensor to `*out`. Differentiable with respect to x, z and b (not s) when grad mode
// is on. `isa` as for sevit_short_attention. Returns 0, or 1 with the message in `err`.
int sevit_bias_residual(const at::Tensor* x, const at::Tensor* z, const at::Tensor* b,
                        const at::Tensor* s, int64_t isa, at::Tensor** out, char* err,
                        size_t err_len) {
  try {
    kernels(isa);
    // No factor: an empty tensor (an undefined one cannot be an autograd function's input).
    const at::Tensor factor = s == nullptr ? at::empty({0}, x->options()) : s->detach();
    at::Tensor result;
    if (at::GradMode::is_enabled() &&
        (x->requires_grad() || z->requires_grad() || b->requires_grad())) {
      result = BiasResidual::apply(*x, *z, *b, factor, isa);
    } else {
      result = run_forward(*x, *z, *b, factor, isa);
    }
    *out = new at::Tensor(std::move(result));
    return 0;
  } catch (const std::exception& e) {
    return sevit::report(e, err, err_len);
  }
}

}  // extern "C"
