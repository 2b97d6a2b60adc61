// Multi-head self-attention for short sequences on the CPU in f32, as one autograd node that
// takes the qkv projection's output [B, N, 3C] and returns the heads' outputs [B, N, C].
//
// Why: at a ViT's 17 and 65 tokens libtorch's CPU flash-attention kernel runs its per-block
// products through general GEMM calls sized for long sequences (26-73 GFLOP/s on the DISTL
// step's shapes, on a machine whose GEMMs reach 300+), and its backward returns q, k and v
// gradients that the q/k/v split turns back into the projection's layout with one more copy.
// Here each (image, head) problem runs its five small products in registers with everything
// in cache, reads q, k, v where the projection wrote them and writes their gradients straight
// into the projection's layout. The attention probabilities are kept from the forward (the
// explicit attention of DINO's code keeps them too; at <= 128 tokens they are small).
//
// The kernels (short_attention_kernel.cpp) are built for AVX-512, AVX2 and the baseline
// instruction set; the widest one the CPU runs is used.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <utility>

#include "bridge.h"

extern "C" {
#define SEVIT_DECLARE(isa)                                                                     \
  void sevit_sa_forward_##isa(const float*, const float*, float*, float*, int64_t, int64_t,     \
                              int64_t, int64_t, float, int64_t, int64_t);                       \
  void sevit_sa_backward_##isa(const float*, const float*, const float*, const float*,          \
                               const float*, float*, float*, int64_t, int64_t, int64_t, int64_t, \
                               float, int64_t, int64_t);
SEVIT_DECLARE(base)
SEVIT_DECLARE(avx2)
SEVIT_DECLARE(avx512)
#undef SEVIT_DECLARE
}

namespace {

using Forward = void (*)(const float*, const float*, float*, float*, int64_t, int64_t, int64_t,
                         int64_t, float, int64_t, int64_t);
using Backward = void (*)(const float*, const float*, const float*, const float*, const float*,
                          float*, float*, int64_t, int64_t, int64_t, int64_t, float, int64_t,
                          int64_t);

struct Kernels {
  Forward forward;
  Backward backward;
};

// The kernels for `isa` (0 base, 1 avx2, 2 avx512; -1: the widest this CPU runs).
Kernels kernels(int64_t isa) {
  return sevit::pick<Kernels>(isa, "short attention", {sevit_sa_forward_base, sevit_sa_backward_base},
                              {sevit_sa_forward_avx2, sevit_sa_backward_avx2},
                              {sevit_sa_forward_avx512, sevit_sa_backward_avx512});
}

constexpr int64_t kPad = 16;

int64_t padded(int64_t n) { return (n + kPad - 1) / kPad * kPad; }

struct Shape {
  int64_t B, N, H, D, Np;
};

Shape shape_of(const at::Tensor& qkv, int64_t heads) {
  TORCH_CHECK(qkv.dim() == 3, "short attention: qkv must be [B, N, 3C], got ", qkv.sizes());
  TORCH_CHECK(qkv.scalar_type() == at::kFloat && qkv.device().is_cpu(),
              "short attention: qkv must be an f32 CPU tensor, got ", qkv.scalar_type(), " on ",
              qkv.device());
  TORCH_CHECK(heads > 0 && qkv.size(2) % (3 * heads) == 0,
              "short attention: width ", qkv.size(2), " is not 3 x heads (", heads, ") x head width");
  TORCH_CHECK(qkv.size(1) > 0, "short attention: empty sequence");
  const int64_t D = qkv.size(2) / (3 * heads);
  return {qkv.size(0), qkv.size(1), heads, D, padded(qkv.size(1))};
}

// The bias [3C] as a contiguous tensor, or an empty one for none.
void check_bias(const at::Tensor& bias, const Shape& s) {
  if (bias.numel() == 0) return;
  TORCH_CHECK(bias.scalar_type() == at::kFloat && bias.device().is_cpu() && bias.dim() == 1 &&
                  bias.size(0) == 3 * s.H * s.D,
              "short attention: the qkv bias must be ", 3 * s.H * s.D, " f32 CPU values, got ",
              bias.sizes());
}

// The heads' outputs [B, N, C]; the probabilities [B, H, N, Np] into `probs` when asked.
at::Tensor run_forward(const at::Tensor& qkv_in, const at::Tensor& bias_in, int64_t heads,
                       double scale, int64_t isa, at::Tensor* probs) {
  const at::Tensor qkv = qkv_in.contiguous(), bias = bias_in.contiguous();
  const Shape s = shape_of(qkv, heads);
  check_bias(bias, s);
  auto out = at::empty({s.B, s.N, s.H * s.D}, qkv.options());
  float* pr = nullptr;
  if (probs != nullptr) {
    *probs = at::empty({s.B, s.H, s.N, s.Np}, qkv.options());
    pr = probs->data_ptr<float>();
  }
  const float* q = qkv.data_ptr<float>();
  const float* bp = bias.numel() > 0 ? bias.data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
  const Forward f = kernels(isa).forward;
  at::parallel_for(0, s.B * s.H, 1, [&](int64_t p0, int64_t p1) {
    f(q, bp, o, pr, s.N, s.H, s.D, s.Np, static_cast<float>(scale), p0, p1);
  });
  return out;
}

// The gradients of qkv and (when there is one) of the bias.
std::pair<at::Tensor, at::Tensor> run_backward(const at::Tensor& qkv, const at::Tensor& bias,
                                               const at::Tensor& out, const at::Tensor& probs,
                                               const at::Tensor& gout_in, int64_t heads,
                                               double scale, int64_t isa) {
  const Shape s = shape_of(qkv, heads);
  const at::Tensor gout = gout_in.contiguous();
  TORCH_CHECK(gout.sizes() == out.sizes(), "short attention: gradient ", gout.sizes(),
              " for an output ", out.sizes());
  const bool with_bias = bias.numel() > 0;
  auto gqkv = at::empty_like(qkv);
  at::Tensor rows = with_bias ? at::empty({s.B, 3 * s.H * s.D}, qkv.options()) : at::Tensor();
  const float *q = qkv.data_ptr<float>(), *o = out.data_ptr<float>(),
              *pr = probs.data_ptr<float>(), *go = gout.data_ptr<float>();
  const float* bp = with_bias ? bias.data_ptr<float>() : nullptr;
  float* g = gqkv.data_ptr<float>();
  float* rp = with_bias ? rows.data_ptr<float>() : nullptr;
  const Backward f = kernels(isa).backward;
  at::parallel_for(0, s.B * s.H, 1, [&](int64_t p0, int64_t p1) {
    f(q, bp, o, pr, go, g, rp, s.N, s.H, s.D, s.Np, static_cast<float>(scale), p0, p1);
  });
  // the bias gradient summed over the images in order: the same rounding on any thread count
  return {gqkv, with_bias ? sevit::sum_in_order(rows) : at::Tensor()};
}

struct ShortAttention : public torch::autograd::Function<ShortAttention> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv,
                            const at::Tensor& bias, int64_t heads, double scale, int64_t isa) {
    at::Tensor probs;
    const at::Tensor qkv_c = qkv.contiguous(), bias_c = bias.contiguous();
    auto out = run_forward(qkv_c, bias_c, heads, scale, isa, &probs);
    ctx->save_for_backward({qkv_c, bias_c, out, probs});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["isa"] = isa;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const double scale = ctx->saved_data["scale"].toDouble();
    const int64_t isa = ctx->saved_data["isa"].toInt();
    auto [gqkv, gbias] =
        run_backward(saved[0], saved[1], saved[2], saved[3], grads[0], heads, scale, isa);
    return {gqkv, gbias, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// softmax(q kᵀ · scale) v per head for a qkv projection `qkv` [B, N, 3C] (f32, CPU) with
// `heads` heads, its bias `bias` [3C] (null: none) added here: writes a new tensor [B, N, C]
// to `*out`. Differentiable with respect to qkv and the bias when grad mode is on. `isa`: -1
// for the widest kernels this CPU runs, else an index (0 base, 1 avx2, 2 avx512). Returns 0,
// or 1 with the message in `err`.
int sevit_short_attention(const at::Tensor* qkv, const at::Tensor* bias, int64_t heads,
                          double scale, int64_t isa, at::Tensor** out, char* err,
                          size_t err_len) {
  try {
    kernels(isa);  // fails here, not in the backward, when the CPU lacks the kernels
    // No bias: an empty tensor (an undefined one cannot be an autograd function's input).
    const at::Tensor b = bias == nullptr ? at::empty({0}, qkv->options()) : *bias;
    at::Tensor result;
    if (at::GradMode::is_enabled() && (qkv->requires_grad() || b.requires_grad())) {
      result = ShortAttention::apply(*qkv, b, heads, scale, isa);
    } else {
      result = run_forward(*qkv, b, heads, scale, isa, nullptr);
    }
    *out = new at::Tensor(std::move(result));
    return 0;
  } catch (const std::exception& e) {
    return sevit::report(e, err, err_len);
  }
}

}  // extern "C"
