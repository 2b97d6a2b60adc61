//! The Vision Transformer backbone, as DINO's `vision_transformer.VisionTransformer`:
//! conv patch embedding, learnable CLS token and position embeddings (bicubically
//! interpolated to the input size), pre-norm blocks with stochastic depth, final LayerNorm.

use anyhow::{bail, Result};
use tch::nn::{Init, ModuleT, Path};
use tch::{Kind, Tensor};

use crate::config::ViTConfig;
use crate::layers::{
    add_drop_path, torch_default_uniform, trunc_normal, LayerNorm, Linear, INIT_STD,
};
use crate::ops;

/// Multi-head self-attention with a fused qkv projection (`attn.qkv`, `attn.proj`).
#[derive(Debug)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: i64,
    scale: f64,
}

impl Attention {
    fn new(p: &Path, dim: i64, num_heads: i64, qkv_bias: bool) -> Self {
        Attention {
            qkv: Linear::new(&p.sub("qkv"), dim, 3 * dim, qkv_bias),
            proj: Linear::new(&p.sub("proj"), dim, dim, true),
            num_heads,
            scale: ((dim / num_heads) as f64).powf(-0.5),
        }
    }

    /// Returns the heads' outputs `[B, N, C]` before the output projection (`proj`, which the
    /// block applies with its residual) and, when `want_attn`, the softmaxed attention
    /// `[B, heads, N, N]` (computed explicitly; otherwise a fused kernel is used).
    fn heads(&self, x: &Tensor, want_attn: bool) -> (Tensor, Option<Tensor>) {
        // Shapes name the batch as -1, so that a traced graph (TorchScript export) takes any
        // batch size.
        let (_, n, c) = x.size3().expect("attention input must be [B, N, C]");
        if !want_attn {
            if let Some(out) = ops::short_attention(x, &self.qkv, self.num_heads, self.scale) {
                return (out, None);
            }
        }
        let qkv = self
            .qkv
            .forward(x)
            .reshape([-1, n, 3, self.num_heads, c / self.num_heads]);
        // Split before moving the heads forward: unbind's backward (a stack on dim 2) then
        // writes the qkv gradient in the linear layer's [B, N, 3C] layout, with no extra
        // copy; indexing a permuted tensor three times would scatter into three zeroed
        // full-size gradients that autograd then sums and copies back.
        let (q, k, v) = match qkv.unbind(2).as_slice() {
            [q, k, v] => (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)),
            _ => unreachable!("qkv has 3 parts by construction"),
        };
        let (out, attn) = self.attend(&q, &k, &v, want_attn);
        (out.transpose(1, 2).reshape([-1, n, c]), attn)
    }

    /// The heads' outputs `[B, 1, C]` of the first (CLS) token alone: its query against the
    /// keys and values of every token. The same values as `heads(x).0.narrow(1, 0, 1)`, without
    /// the other tokens' queries and attention rows.
    fn heads_cls(&self, x: &Tensor) -> Tensor {
        let (_, n, c) = x.size3().expect("attention input must be [B, N, C]");
        let (h, d) = (self.num_heads, c / self.num_heads);
        let q = self
            .qkv
            .forward_outputs(&x.narrow(1, 0, 1), 0, c)
            .reshape([-1, 1, h, d]);
        let kv = self
            .qkv
            .forward_outputs(x, c, 2 * c)
            .reshape([-1, n, 2, h, d]);
        let (k, v) = match kv.unbind(2).as_slice() {
            [k, v] => (k.transpose(1, 2), v.transpose(1, 2)),
            _ => unreachable!("kv has 2 parts by construction"),
        };
        let (out, _) = self.attend(&q.transpose(1, 2), &k, &v, false);
        out.transpose(1, 2).reshape([-1, 1, c])
    }

    /// `softmax(q kᵀ · scale) v` for `[B, heads, N_q, d]` queries and `[B, heads, N, d]` keys
    /// and values; the attention maps too when `want_attn`.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        want_attn: bool,
    ) -> (Tensor, Option<Tensor>) {
        let n = k.size()[2];
        // On short sequences libtorch's CPU flash-attention kernel is slower in bf16 than two
        // AMX/AVX512-bf16 matrix products and a softmax (PyTorch tiny/16 DISTL step: 16 vs
        // 25 img/s, bench `--precision bf16`), so bf16 on the CPU takes the explicit path up
        // to 256 tokens; longer sequences keep the fused kernel, which stores no [N, N] maps.
        let explicit =
            want_attn || (q.kind() == Kind::BFloat16 && q.device() == tch::Device::Cpu && n <= 256);
        if explicit {
            let attn = (q.matmul(&k.transpose(-2, -1)) * self.scale).softmax(-1, None::<Kind>);
            (attn.matmul(v), want_attn.then_some(attn))
        } else {
            let out = Tensor::scaled_dot_product_attention(
                q,
                k,
                v,
                None::<Tensor>,
                0.0,
                false,
                self.scale,
                false,
            );
            (out, None)
        }
    }
}

/// The block's MLP (`mlp.fc1`, GELU, `mlp.fc2`).
#[derive(Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(p: &Path, dim: i64, hidden: i64) -> Self {
        Mlp {
            fc1: Linear::new(&p.sub("fc1"), dim, hidden, true),
            fc2: Linear::new(&p.sub("fc2"), hidden, dim, true),
        }
    }

    /// The hidden layer `gelu(fc1(x))` (the block adds `fc2` of it to its residual).
    fn hidden(&self, x: &Tensor) -> Tensor {
        ops::linear_gelu(x, &self.fc1)
    }
}

impl ModuleT for Mlp {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        self.fc2.forward(&self.hidden(x))
    }
}

/// One pre-norm transformer block (`norm1`, `attn`, `norm2`, `mlp`, and with LayerScale
/// `ls1.gamma`, `ls2.gamma`).
#[derive(Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    ls1: Option<Tensor>,
    norm2: LayerNorm,
    mlp: Mlp,
    ls2: Option<Tensor>,
    drop_path: f64,
}

impl Block {
    fn new(p: &Path, cfg: &ViTConfig, drop_path: f64) -> Self {
        let dim = cfg.embed_dim;
        let gamma = |name: &str| {
            cfg.layer_scale
                .map(|v| p.sub(name).var("gamma", &[dim], Init::Const(v)))
        };
        // creation order as timm's Block: norm1, attn, ls1, norm2, mlp, ls2
        let norm1 = LayerNorm::new(&p.sub("norm1"), dim, cfg.ln_eps);
        let attn = Attention::new(&p.sub("attn"), dim, cfg.num_heads, cfg.qkv_bias);
        let ls1 = gamma("ls1");
        let norm2 = LayerNorm::new(&p.sub("norm2"), dim, cfg.ln_eps);
        let mlp = Mlp::new(&p.sub("mlp"), dim, cfg.mlp_hidden());
        Block {
            norm1,
            attn,
            ls1,
            norm2,
            mlp,
            ls2: gamma("ls2"),
            drop_path,
        }
    }

    fn forward(&self, x: &Tensor, train: bool, want_attn: bool) -> (Tensor, Option<Tensor>) {
        let (heads, attn) = self.attn.heads(&self.norm1.forward(x), want_attn);
        let x = self.residual(x, &self.attn.proj, self.ls1.as_ref(), &heads, train);
        let hidden = self.mlp.hidden(&self.norm2.forward(&x));
        let x = self.residual(&x, &self.mlp.fc2, self.ls2.as_ref(), &hidden, train);
        (x, attn)
    }

    /// The residual update `x + drop_path(gamma * layer(h))` of a branch ending in `layer`
    /// (`gamma`: its LayerScale, if any), with the stochastic depth of this block (the same
    /// draws on either path).
    fn residual(
        &self,
        x: &Tensor,
        layer: &Linear,
        gamma: Option<&Tensor>,
        h: &Tensor,
        train: bool,
    ) -> Tensor {
        match gamma {
            Some(g) => add_drop_path(x, &(layer.forward(h) * g), self.drop_path, train),
            None => ops::linear_residual(x, h, layer, self.drop_path, train),
        }
    }

    /// The block's output `[B, 1, C]` for the first (CLS) token alone (every token still
    /// serves as key and value): `forward(x).0.narrow(1, 0, 1)` without the other tokens'
    /// queries, projections and MLP. The stochastic-depth draws are the same as `forward`'s.
    fn forward_cls(&self, x: &Tensor, train: bool) -> Tensor {
        let heads = self.attn.heads_cls(&self.norm1.forward(x));
        let x = self.residual(
            &x.narrow(1, 0, 1),
            &self.attn.proj,
            self.ls1.as_ref(),
            &heads,
            train,
        );
        let hidden = self.mlp.hidden(&self.norm2.forward(&x));
        self.residual(&x, &self.mlp.fc2, self.ls2.as_ref(), &hidden, train)
    }
}

/// The patch embedding (`patch_embed.proj`): a `P x P` convolution with stride `P`, the
/// patches as a token sequence `[B, N, D]`.
#[derive(Debug)]
pub struct PatchEmbed {
    weight: Tensor,
    bias: Tensor,
    patch: i64,
}

impl PatchEmbed {
    fn new(p: &Path, dim: i64, patch: i64) -> Self {
        let proj = p.sub("proj");
        let fan_in = 3 * patch * patch;
        PatchEmbed {
            weight: torch_default_uniform(&proj, "weight", &[dim, 3, patch, patch], fan_in),
            bias: torch_default_uniform(&proj, "bias", &[dim], fan_in),
            patch,
        }
    }
}

impl ModuleT for PatchEmbed {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let p = self.patch;
        x.conv2d(&self.weight, Some(&self.bias), [p, p], [0, 0], [1, 1], 1)
            .flatten(2, -1)
            .transpose(1, 2)
    }
}

/// The ViT backbone. Parameters: `cls_token [1,1,D]`, `pos_embed [1,G²+1,D]`,
/// `patch_embed.proj.{weight,bias}`, `blocks.{i}.*`, `norm.{weight,bias}`.
#[derive(Debug)]
pub struct VisionTransformer {
    cfg: ViTConfig,
    patch_embed: PatchEmbed,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward(x, train, false).0
    }
}

impl ModuleT for VisionTransformer {
    /// CLS-token features `[B, D]` (see [`VisionTransformer::forward`]).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward(x, train)
    }
}

/// The per-block stochastic depth rates: `linspace(0, rate, depth)`.
pub fn drop_path_rates(rate: f64, depth: i64) -> Vec<f64> {
    match depth {
        d if d <= 0 => vec![],
        1 => vec![0.0],
        d => (0..d).map(|i| rate * i as f64 / (d - 1) as f64).collect(),
    }
}

impl VisionTransformer {
    /// Creates the backbone under `p`. `drop_path_rate` is the stochastic depth of the last
    /// block (0 for a teacher); block `i` uses `linspace(0, rate, depth)[i]`.
    pub fn new(p: &Path, cfg: &ViTConfig, drop_path_rate: f64) -> Self {
        let d = cfg.embed_dim;
        let (ps, grid) = (cfg.patch_size, cfg.grid());
        // Creation order follows DINO's module order so that a seed gives one model.
        let patch_embed = PatchEmbed::new(&p.sub("patch_embed"), d, ps);
        let cls_token = trunc_normal(p, "cls_token", &[1, 1, d], INIT_STD);
        let pos_embed = trunc_normal(p, "pos_embed", &[1, grid * grid + 1, d], INIT_STD);
        let rates = drop_path_rates(drop_path_rate, cfg.depth);
        let bp = p.sub("blocks");
        let blocks = (0..cfg.depth as usize)
            .map(|i| Block::new(&bp.sub(i), cfg, rates[i]))
            .collect();
        let norm = LayerNorm::new(&p.sub("norm"), d, cfg.ln_eps);
        VisionTransformer {
            cfg: cfg.clone(),
            patch_embed,
            cls_token,
            pos_embed,
            blocks,
            norm,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ViTConfig {
        &self.cfg
    }

    /// Checks that an image batch `[B, 3, H, W]` can go through the backbone.
    pub fn check_input(&self, x: &Tensor) -> Result<()> {
        let size = x.size();
        if size.len() != 4 || size[1] != 3 {
            bail!("ViT input must be [B, 3, H, W], got {size:?}");
        }
        let ps = self.cfg.patch_size;
        if size[2] % ps != 0 || size[3] % ps != 0 || size[2] == 0 || size[3] == 0 {
            bail!(
                "ViT input {}x{} is not a positive multiple of the patch size {ps}",
                size[2],
                size[3]
            );
        }
        Ok(())
    }

    /// Position embeddings for an `h` x `w` input, as DINO's `interpolate_pos_encoding`
    /// (bicubic, scale factors `(h/P + 0.1)/G`, `(w/P + 0.1)/G`, no corner alignment).
    pub fn interpolate_pos_encoding(&self, h: i64, w: i64) -> Tensor {
        let ps = self.cfg.patch_size;
        let n = self.pos_embed.size()[1] - 1;
        let (h0, w0) = (h / ps, w / ps);
        if h0 * w0 == n && h == w {
            return self.pos_embed.shallow_clone();
        }
        resize_pos_embed(&self.pos_embed, h0, w0)
    }

    /// Patch embedding + CLS token + position embedding: `[B, N+1, D]`.
    pub fn prepare_tokens(&self, x: &Tensor) -> Tensor {
        let (_, _, h, w) = x.size4().expect("ViT input must be [B, 3, H, W]");
        let standardised;
        let x = match self.cfg.input_norm {
            Some((mean, std)) => {
                standardised = (x - mean) / std;
                &standardised
            }
            None => x,
        };
        let t = self.patch_embed.forward_t(x, false);
        let cls = self
            .cls_token
            .to_kind(t.kind())
            .expand_as(&t.narrow(1, 0, 1));
        let t = Tensor::cat(&[cls, t], 1);
        t + self.interpolate_pos_encoding(h, w)
    }

    /// The final-normed token sequence `[B, N+1, D]`.
    pub fn forward_tokens(&self, x: &Tensor, train: bool) -> Tensor {
        let mut t = self.prepare_tokens(x);
        for block in &self.blocks {
            t = block.forward(&t, train, false).0;
        }
        self.norm.forward(&t)
    }

    /// CLS-token features `[B, D]` after the final norm: `forward_tokens(x, train).select(1, 0)`.
    /// Nothing reads the other tokens' outputs of the last block, so that block computes the
    /// CLS token's row alone (its query, projection and MLP on one token instead of N+1: a
    /// sixth of a block's work), forward and backward.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut t = self.prepare_tokens(x);
        let (last, rest) = self
            .blocks
            .split_last()
            .expect("a ViT has at least one block");
        for block in rest {
            t = block.forward(&t, train, false).0;
        }
        self.norm.forward(&last.forward_cls(&t, train)).select(1, 0)
    }

    /// The last block's softmaxed self-attention `[B, heads, N+1, N+1]` (eval mode: no
    /// stochastic depth).
    pub fn last_self_attention(&self, x: &Tensor) -> Tensor {
        let mut t = self.prepare_tokens(x);
        let last = self.blocks.len() - 1;
        for (i, block) in self.blocks.iter().enumerate() {
            let (next, attn) = block.forward(&t, false, i == last);
            if i == last {
                return attn.expect("attention requested");
            }
            t = next;
        }
        unreachable!("a ViT has at least one block")
    }
}

/// Position embeddings `[1, 1 + G*G, D]` (CLS first, a square grid of G x G patches) resized to
/// a `grid_h` x `grid_w` patch grid as DINO's `interpolate_pos_encoding` does (bicubic, scale
/// factors `(grid/G + 0.1/G)`, no corner alignment). Used at run time for other input sizes,
/// and to load a checkpoint trained at another image size (`load_matching`), so both give the
/// same embeddings.
pub fn resize_pos_embed(pos_embed: &Tensor, grid_h: i64, grid_w: i64) -> Tensor {
    let size = pos_embed.size();
    let (n, dim) = (size[1] - 1, size[2]);
    let g = (n as f64).sqrt() as i64;
    let class_pos = pos_embed.narrow(1, 0, 1);
    let patch_pos = pos_embed
        .narrow(1, 1, n)
        .reshape([1, g, g, dim])
        .permute([0, 3, 1, 2]);
    let (sh, sw) = (
        (grid_h as f64 + 0.1) / g as f64,
        (grid_w as f64 + 0.1) / g as f64,
    );
    let (oh, ow) = (
        (g as f64 * sh).floor() as i64,
        (g as f64 * sw).floor() as i64,
    );
    let patch_pos = patch_pos.upsample_bicubic2d([oh, ow], false, sh, sw);
    let patch_pos = patch_pos.permute([0, 2, 3, 1]).reshape([1, -1, dim]);
    let patch_pos = patch_pos.to_kind(class_pos.kind());
    Tensor::cat(&[class_pos, patch_pos], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn sub_layers_are_modules_with_dino_names() {
        let _rng = crate::torch_rng();
        tch::manual_seed(2);
        let vs = VarStore::new(Device::Cpu);
        let vit = VisionTransformer::new(&vs.root(), &ViTConfig::micro(), 0.0);
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert!(vit.forward_t(&x, false).equal(&vit.forward(&x, false)));
        assert_eq!(vit.patch_embed.forward_t(&x, false).size(), [2, 16, 32]);
        let mlp = &vit.blocks[0].mlp;
        let h = Tensor::randn([2, 5, 32], (Kind::Float, Device::Cpu));
        let plain = mlp.fc2.forward(&mlp.fc1.forward(&h).gelu("none"));
        assert!(mlp.forward_t(&h, false).allclose(&plain, 1e-5, 1e-6, false));
        let names = vs.variables();
        for n in [
            "patch_embed.proj.weight",
            "blocks.0.mlp.fc1.weight",
            "blocks.1.mlp.fc2.bias",
            "blocks.0.attn.qkv.weight",
        ] {
            assert!(names.contains_key(n), "{n}");
        }
    }

    #[test]
    fn rates_are_linspace() {
        let _rng = crate::torch_rng();
        assert_eq!(drop_path_rates(0.1, 3), vec![0.0, 0.05, 0.1]);
        assert_eq!(drop_path_rates(0.1, 1), vec![0.0]);
    }

    #[test]
    fn shapes_and_interpolation() {
        let _rng = crate::torch_rng();
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let cfg = ViTConfig::micro();
        let vit = VisionTransformer::new(&vs.root(), &cfg, 0.1);
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(vit.forward(&x, false).size(), [2, 32]);
        let x2 = Tensor::rand([2, 3, 48, 64], (Kind::Float, Device::Cpu));
        assert_eq!(vit.forward(&x2, true).size(), [2, 32]);
        assert_eq!(
            vit.interpolate_pos_encoding(48, 64).size(),
            [1, 6 * 8 + 1, 32]
        );
        let a = vit.last_self_attention(&x2);
        assert_eq!(a.size(), [2, 2, 49, 49]);
        let rows = a.sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
        assert!(rows.allclose(&rows.ones_like(), 1e-5, 1e-5, false));
        assert!(vit
            .check_input(&Tensor::zeros([1, 3, 30, 32], (Kind::Float, Device::Cpu)))
            .is_err());
    }

    #[test]
    fn cls_only_last_block_matches_the_full_sequence() {
        let _rng = crate::torch_rng();
        tch::manual_seed(5);
        let vs = VarStore::new(Device::Cpu);
        let vit = VisionTransformer::new(&vs.root(), &ViTConfig::micro(), 0.5);
        let x = Tensor::rand([6, 3, 32, 48], (Kind::Float, Device::Cpu));
        let r = Tensor::randn([6, 32], (Kind::Float, Device::Cpu));
        let grads = |cls: &Tensor| -> Vec<Tensor> {
            let params: Vec<Tensor> = vs.trainable_variables();
            Tensor::run_backward(&[(cls * &r).sum(Kind::Float)], &params, false, false)
        };
        for train in [false, true] {
            // same seed: the stochastic-depth draws are the same on both paths
            tch::manual_seed(11);
            let fast = vit.forward(&x, train);
            tch::manual_seed(11);
            let full = vit.forward_tokens(&x, train).select(1, 0);
            assert!(fast.allclose(&full, 1e-5, 1e-5, false), "train {train}");
            for (a, b) in grads(&fast).iter().zip(grads(&full).iter()) {
                // The two paths round differently (the last block's attention runs in another
                // kernel), so the bound is relative to the gradient's scale, not per element.
                let diff = f64::try_from((a - b).abs().max()).unwrap();
                let scale = f64::try_from(b.abs().max()).unwrap();
                assert!(
                    diff <= 1e-5 * scale + 1e-6,
                    "train {train}: gradients differ by {diff} (max {scale})"
                );
            }
        }
        // with p = 0.5 over 6 images, the training forward really dropped something
        tch::manual_seed(11);
        assert!(!vit
            .forward(&x, true)
            .allclose(&vit.forward(&x, false), 1e-4, 1e-4, false));
    }

    #[test]
    fn cpu_kernels_and_libtorch_paths_agree_in_f32_and_bf16() {
        // f32 on the CPU runs sevit's attention and bias + GELU kernels; under bf16 autocast
        // the products are bf16 and libtorch's operators run instead. Both train.
        let _rng = crate::torch_rng();
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let vit = VisionTransformer::new(&vs.root(), &ViTConfig::micro(), 0.0);
        let x = Tensor::rand([3, 3, 32, 32], (Kind::Float, Device::Cpu));
        let f32_out = vit.forward(&x, true);
        let bf16_out = crate::with_autocast(Device::Cpu, crate::Precision::Bf16, || {
            vit.forward(&x, true)
        });
        assert_eq!(f32_out.kind(), Kind::Float);
        assert_eq!(
            bf16_out.kind(),
            Kind::Float,
            "the final LayerNorm runs in f32 under autocast"
        );
        let diff = f64::try_from((&f32_out - &bf16_out).abs().max()).unwrap();
        assert!(diff < 0.1, "bf16 and f32 features differ by {diff}");
        for out in [f32_out, bf16_out] {
            let g = Tensor::run_backward(
                &[out.sum(Kind::Float)],
                &vs.trainable_variables(),
                false,
                false,
            );
            assert!(g
                .iter()
                .all(|t| f64::try_from(t.isfinite().all().to_kind(Kind::Double)).unwrap() == 1.0));
        }
    }

    #[test]
    fn input_norm_standardises_the_pixels() {
        let _rng = crate::torch_rng();
        tch::manual_seed(1);
        let vs = VarStore::new(Device::Cpu);
        let plain = VisionTransformer::new(&vs.root(), &ViTConfig::micro(), 0.0);
        let mut cfg = ViTConfig::micro();
        cfg.input_norm = Some((0.5, 0.25));
        // same parameters, only the input standardisation differs
        let mut vs2 = VarStore::new(Device::Cpu);
        let normed = VisionTransformer::new(&vs2.root(), &cfg, 0.0);
        vs2.copy(&vs).unwrap();
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let a = normed.forward(&x, false);
        let b = plain.forward(&((&x - 0.5) / 0.25), false);
        assert!(a.allclose(&b, 1e-6, 1e-6, false));
        assert!(!a.allclose(&plain.forward(&x, false), 1e-3, 1e-3, false));
    }

    #[test]
    fn sdpa_matches_explicit_attention() {
        let _rng = crate::torch_rng();
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let att = Attention::new(&vs.root(), 32, 4, true);
        let x = Tensor::randn([2, 5, 32], (Kind::Float, Device::Cpu));
        // the fused path (sevit's kernel for f32 on the CPU) against the explicit maps
        let (a, _) = att.heads(&x, false);
        let (b, m) = att.heads(&x, true);
        assert!(m.is_some());
        assert!(a.allclose(&b, 1e-5, 1e-6, false));
    }

    #[test]
    fn bf16_attention_on_cpu_matches_f32() {
        let _rng = crate::torch_rng();
        tch::manual_seed(3);
        let mut vs = VarStore::new(Device::Cpu);
        let att = Attention::new(&vs.root(), 32, 4, true);
        let x = Tensor::randn([2, 5, 32], (Kind::Float, Device::Cpu));
        let (want, _) = att.heads(&x, false);
        vs.bfloat16();
        let (got, maps) = att.heads(&x.to_kind(Kind::BFloat16), false);
        assert!(maps.is_none(), "maps only when asked for");
        assert_eq!(got.kind(), Kind::BFloat16);
        let err = (got.to_kind(Kind::Float) - &want)
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 0.05, "bf16 attention differs from f32 by {err}");
    }
}
