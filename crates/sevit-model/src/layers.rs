//! Small building blocks with DINO's initialisation: Linear, LayerNorm, MLP and drop-path.
//!
//! Each layer registers its parameters under the given `tch::nn::Path` with PyTorch's names
//! (`weight`, `bias`), so a model's variable names equal the PyTorch state-dict keys.

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

/// Standard deviation of DINO's truncated-normal initialisation.
pub const INIT_STD: f64 = 0.02;

/// Creates a trainable variable drawn from N(0, std²) truncated to [-2, 2] (DINO's
/// `trunc_normal_(std=.02)`, whose bounds are absolute values, not multiples of std).
pub fn trunc_normal(p: &Path, name: &str, dims: &[i64], std: f64) -> Tensor {
    let mut t = p.var(
        name,
        dims,
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    );
    tch::no_grad(|| {
        let _ = t.clamp_(-2.0, 2.0);
    });
    t
}

/// PyTorch's default `nn.Linear`/`nn.Conv2d` weight initialisation
/// (kaiming-uniform with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn torch_default_uniform(p: &Path, name: &str, dims: &[i64], fan_in: i64) -> Tensor {
    let bound = 1.0 / (fan_in as f64).sqrt();
    p.var(
        name,
        dims,
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )
}

/// A fully connected layer `y = x Wᵀ + b`, weight `[out, in]`.
#[derive(Debug)]
pub struct Linear {
    /// Weight `[out, in]`.
    pub weight: Tensor,
    /// Optional bias `[out]`.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// DINO initialisation: weight trunc_normal(0.02), bias zero.
    pub fn new(p: &Path, input: i64, output: i64, bias: bool) -> Self {
        let weight = trunc_normal(p, "weight", &[output, input], INIT_STD);
        let bias = bias.then(|| p.zeros("bias", &[output]));
        Linear { weight, bias }
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// Output features `start .. start + len` only (the same values as
    /// `forward(x).narrow(-1, start, len)`, computing just those).
    pub fn forward_outputs(&self, x: &Tensor, start: i64, len: i64) -> Tensor {
        let bias = self.bias.as_ref().map(|b| b.narrow(0, start, len));
        x.linear(&self.weight.narrow(0, start, len), bias.as_ref())
    }
}

/// Layer normalisation over the last dimension, weight 1 and bias 0 at init.
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale `[dim]`.
    pub weight: Tensor,
    /// Shift `[dim]`.
    pub bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    /// Creates the layer under `p` (`weight`, `bias`).
    pub fn new(p: &Path, dim: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.ones("weight", &[dim]),
            bias: p.zeros("bias", &[dim]),
            dim,
            eps,
        }
    }

    /// Normalises the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

/// Activation function between the layers of an [`Mlp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU, as `nn.GELU()`.
    Gelu,
    /// ReLU.
    Relu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Gelu => x.gelu("none"),
            Activation::Relu => x.relu(),
        }
    }
}

/// An `nn.Sequential(Linear, act, Linear, act, ..., Linear)`: linear layers are named by their
/// index in the sequence (`0`, `2`, `4`, ...), as PyTorch names them. With a single layer the
/// layer's parameters sit directly under the path (as DINO's `nlayers == 1` head does).
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    act: Activation,
}

impl Mlp {
    /// `dims` lists the widths: `[in, hidden.., out]` (at least two entries).
    pub fn new(p: &Path, dims: &[i64], act: Activation) -> Self {
        assert!(
            dims.len() >= 2,
            "an MLP needs at least an input and an output width"
        );
        let n = dims.len() - 1;
        let layers = (0..n)
            .map(|i| {
                if n == 1 {
                    Linear::new(p, dims[0], dims[1], true)
                } else {
                    Linear::new(&p.sub(2 * i), dims[i], dims[i + 1], true)
                }
            })
            .collect();
        Mlp { layers, act }
    }

    /// Applies the layers with the activation between them (not after the last).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let n = self.layers.len();
        let mut h = self.layers[0].forward(x);
        for layer in &self.layers[1..n] {
            h = layer.forward(&self.act.apply(&h));
        }
        h
    }
}

/// Stochastic depth (DINO's `drop_path`): zeroes whole samples of the residual branch `x`
/// with probability `p` and rescales the kept ones by 1/(1-p). Identity when not training.
pub fn drop_path(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    x * drop_path_scale(x, p)
}

/// The residual update `x + drop_path(y, p, train)` as one fused `addcmul` (one pass over the
/// activations forward and backward instead of three); the same random mask as [`drop_path`].
pub fn add_drop_path(x: &Tensor, y: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x + y;
    }
    x.addcmul(y, &drop_path_scale(y, p))
}

/// The per-sample factor of stochastic depth, shaped to broadcast over `like`: `1 / (1 − p)`
/// for a kept sample (probability `1 − p`), 0 for a dropped one.
pub(crate) fn drop_path_scale(like: &Tensor, p: f64) -> Tensor {
    let keep = 1.0 - p;
    let mut shape = vec![like.size()[0]];
    shape.extend(std::iter::repeat_n(1, like.dim() - 1));
    (Tensor::rand(shape.as_slice(), (like.kind(), like.device())) + keep).floor() / keep
}

/// True when `kind` is a floating-point kind.
pub(crate) fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn names_follow_pytorch_sequential() {
        let _rng = crate::torch_rng();
        let vs = VarStore::new(Device::Cpu);
        let _ = Mlp::new(&vs.root().sub("m"), &[4, 8, 8, 2], Activation::Relu);
        let mut names: Vec<_> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "m.0.bias",
                "m.0.weight",
                "m.2.bias",
                "m.2.weight",
                "m.4.bias",
                "m.4.weight"
            ]
        );
    }

    #[test]
    fn init_statistics() {
        let _rng = crate::torch_rng();
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let l = Linear::new(&vs.root(), 256, 512, true);
        let std = f64::try_from(l.weight.std(true)).unwrap();
        assert!((std - INIT_STD).abs() < 1e-3, "std {std}");
        assert_eq!(
            f64::try_from(l.bias.as_ref().unwrap().abs().sum(Kind::Float)).unwrap(),
            0.0
        );
    }

    #[test]
    fn drop_path_eval_is_identity_and_train_drops_samples() {
        let _rng = crate::torch_rng();
        tch::manual_seed(1);
        let x = Tensor::ones([64, 3, 4], (Kind::Float, Device::Cpu));
        assert!(drop_path(&x, 0.5, false).equal(&x));
        let y = drop_path(&x, 0.5, true);
        let per_sample = y.sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Float);
        let v: Vec<f32> = Vec::try_from(per_sample).unwrap();
        assert!(v.iter().all(|&s| s == 0.0 || (s - 24.0).abs() < 1e-5));
        assert!(v.contains(&0.0) && v.iter().any(|&s| s > 0.0));
    }

    #[test]
    fn forward_outputs_is_a_slice_of_forward() {
        let _rng = crate::torch_rng();
        tch::manual_seed(2);
        let vs = VarStore::new(Device::Cpu);
        let lin = Linear::new(&vs.root(), 8, 12, true);
        let x = Tensor::randn([3, 5, 8], (Kind::Float, Device::Cpu));
        let want = lin.forward(&x).narrow(-1, 4, 6);
        assert!(lin
            .forward_outputs(&x, 4, 6)
            .allclose(&want, 1e-6, 1e-6, false));
    }

    #[test]
    fn fused_residual_matches_add_plus_drop_path() {
        let _rng = crate::torch_rng();
        let x = Tensor::randn([32, 5, 4], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([32, 5, 4], (Kind::Float, Device::Cpu));
        for (p, train) in [(0.3, true), (0.3, false), (0.0, true)] {
            tch::manual_seed(7);
            let fused = add_drop_path(&x, &y, p, train);
            tch::manual_seed(7);
            let plain = &x + drop_path(&y, p, train);
            assert!(
                fused.allclose(&plain, 1e-6, 1e-6, false),
                "p {p} train {train}"
            );
        }
        // the mask does drop whole samples of the branch
        tch::manual_seed(7);
        let z = add_drop_path(&x, &y, 0.5, true) - &x;
        let per_sample: Vec<f32> = Vec::try_from(z.abs().sum_dim_intlist(
            [1i64, 2].as_slice(),
            false,
            Kind::Float,
        ))
        .unwrap();
        assert!(per_sample.contains(&0.0) && per_sample.iter().any(|&s| s > 0.0));
    }
}
