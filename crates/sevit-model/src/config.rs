//! Model configurations: the ViT backbone presets, the DINO feature head and the class head.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of the Vision Transformer backbone (DINO's `VisionTransformer`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ViTConfig {
    /// Image size the position embeddings are sized for (square); other sizes that are a
    /// multiple of the patch are handled by bicubic interpolation of the embeddings.
    pub img_size: i64,
    /// Side of the square patches (8 or 16 in the presets).
    pub patch_size: i64,
    /// Token width.
    pub embed_dim: i64,
    /// Number of transformer blocks.
    pub depth: i64,
    /// Number of attention heads (must divide `embed_dim`).
    pub num_heads: i64,
    /// Hidden width of the block MLP as a multiple of `embed_dim`.
    pub mlp_ratio: f64,
    /// Whether the fused qkv projection has a bias.
    pub qkv_bias: bool,
    /// LayerNorm epsilon.
    pub ln_eps: f64,
    /// `(mean, std)` the input pixels are standardised with before the patch embedding
    /// (`None`: pixels in [0, 1] as they are, the DISTL reference). Not in DINO's
    /// `VisionTransformer`: it helps a backbone trained from random weights on few images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_norm: Option<(f64, f64)>,
    /// LayerScale (DINOv2, CaiT): each residual branch is multiplied by a learned per-channel
    /// `gamma` (`blocks.i.ls1.gamma`, `blocks.i.ls2.gamma`) initialised to this value. `None`:
    /// no LayerScale, as DINO's ViT and the DISTL reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_scale: Option<f64>,
}

impl ViTConfig {
    fn with(patch_size: i64, embed_dim: i64, depth: i64, num_heads: i64) -> Self {
        ViTConfig {
            img_size: 224,
            patch_size,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            qkv_bias: true,
            ln_eps: 1e-6,
            input_norm: None,
            layer_scale: None,
        }
    }

    /// A very small ViT for tests: embed 32, depth 2, 2 heads, patch 8, sized for 32 px images.
    pub fn micro() -> Self {
        ViTConfig {
            img_size: 32,
            ..Self::with(8, 32, 2, 2)
        }
    }

    /// ViT-Tiny: embed 192, depth 12, 3 heads.
    pub fn tiny(patch: i64) -> Self {
        Self::with(patch, 192, 12, 3)
    }

    /// ViT-Small: embed 384, depth 12, 6 heads (the DISTL default with patch 8).
    pub fn small(patch: i64) -> Self {
        Self::with(patch, 384, 12, 6)
    }

    /// ViT-Base: embed 768, depth 12, 12 heads.
    pub fn base(patch: i64) -> Self {
        Self::with(patch, 768, 12, 12)
    }

    /// Looks a preset up by name: `micro`, or `tiny`, `small`, `base` followed by `/8` or
    /// `/16` (the patch size; `/16` when omitted). `vit_small/8` style names are accepted too.
    pub fn preset(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let lower = lower
            .strip_prefix("vit_")
            .or_else(|| lower.strip_prefix("vit-"))
            .unwrap_or(&lower);
        let (arch, patch) = match lower.split_once(['/', '@']) {
            Some((a, p)) => {
                let p: i64 = p.parse().with_context(|| {
                    format!("model preset {name:?}: patch size {p:?} is not an integer")
                })?;
                (a, Some(p))
            }
            None => (lower, None),
        };
        if let Some(p) = patch {
            if p != 8 && p != 16 {
                bail!("model preset {name:?}: patch size must be 8 or 16, got {p}");
            }
        }
        let cfg = match arch {
            "micro" => {
                let p = patch.unwrap_or(8);
                ViTConfig { patch_size: p, img_size: 4 * p, ..Self::micro() }
            }
            "tiny" => Self::tiny(patch.unwrap_or(16)),
            "small" => Self::small(patch.unwrap_or(16)),
            "base" => Self::base(patch.unwrap_or(16)),
            _ => bail!("unknown model preset {name:?}: expected micro, tiny/P, small/P or base/P (P = 8 or 16)"),
        };
        Ok(cfg)
    }

    /// Checks the internal consistency of the configuration.
    pub fn validate(&self) -> Result<()> {
        if self.patch_size <= 0 || self.embed_dim <= 0 || self.depth <= 0 || self.num_heads <= 0 {
            bail!("ViT config {self:?}: sizes must be positive");
        }
        if self.embed_dim % self.num_heads != 0 {
            bail!(
                "ViT config: embed_dim {} is not divisible by num_heads {}",
                self.embed_dim,
                self.num_heads
            );
        }
        if self.img_size % self.patch_size != 0 {
            bail!(
                "ViT config: img_size {} is not a multiple of patch_size {}",
                self.img_size,
                self.patch_size
            );
        }
        if self.mlp_ratio.is_nan()
            || self.mlp_ratio <= 0.0
            || self.ln_eps.is_nan()
            || self.ln_eps <= 0.0
        {
            bail!("ViT config: mlp_ratio and ln_eps must be positive");
        }
        if self.layer_scale.is_some_and(|v| !v.is_finite()) {
            bail!("ViT config: layer_scale must be a finite number");
        }
        Ok(())
    }

    /// Number of patches along one side of the image the position embeddings are sized for.
    pub fn grid(&self) -> i64 {
        self.img_size / self.patch_size
    }

    /// Width of the block MLP hidden layer.
    pub fn mlp_hidden(&self) -> i64 {
        (self.embed_dim as f64 * self.mlp_ratio) as i64
    }

    /// Number of tokens (patches + CLS) for an input of `h` x `w` pixels.
    pub fn tokens_for(&self, h: i64, w: i64) -> i64 {
        (h / self.patch_size) * (w / self.patch_size) + 1
    }
}

/// Hyper-parameters of the DINO feature head (`DINOHead`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DinoHeadConfig {
    /// Output dimension (number of prototypes), 65536 in the paper.
    pub out_dim: i64,
    /// Hidden width of the MLP.
    pub hidden_dim: i64,
    /// Width of the bottleneck (input of the weight-normalised last layer).
    pub bottleneck_dim: i64,
    /// Number of linear layers of the MLP (at least 1).
    pub nlayers: i64,
    /// Fix the last layer's norm `weight_g` to 1 and keep it out of training.
    pub norm_last_layer: bool,
}

impl Default for DinoHeadConfig {
    /// The reference DINO/DISTL head: 2048 hidden, 256 bottleneck, 3 layers, 65536 out, normed.
    fn default() -> Self {
        DinoHeadConfig {
            out_dim: 65536,
            hidden_dim: 2048,
            bottleneck_dim: 256,
            nlayers: 3,
            norm_last_layer: true,
        }
    }
}

impl DinoHeadConfig {
    /// A very small head for tests (64 hidden, 16 bottleneck, 3 layers, 128 out).
    pub fn micro() -> Self {
        DinoHeadConfig {
            out_dim: 128,
            hidden_dim: 64,
            bottleneck_dim: 16,
            nlayers: 3,
            norm_last_layer: true,
        }
    }
}

/// The whole DISTL network: backbone, DINO feature head and class head.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelConfig {
    /// Backbone.
    pub vit: ViTConfig,
    /// Feature head.
    pub head: DinoHeadConfig,
    /// Hidden width of the class head MLP (256 in the reference).
    pub cls_hidden_dim: i64,
}

impl ModelConfig {
    /// The reference heads on the given backbone.
    pub fn new(vit: ViTConfig) -> Self {
        ModelConfig {
            vit,
            head: DinoHeadConfig::default(),
            cls_hidden_dim: 256,
        }
    }

    /// Micro backbone and micro heads, for tests.
    pub fn micro() -> Self {
        ModelConfig {
            vit: ViTConfig::micro(),
            head: DinoHeadConfig::micro(),
            cls_hidden_dim: 32,
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        self.vit.validate()?;
        let h = &self.head;
        if h.out_dim <= 0 || h.hidden_dim <= 0 || h.bottleneck_dim <= 0 || h.nlayers < 1 {
            bail!("DINO head config {h:?}: sizes must be positive and nlayers >= 1");
        }
        if self.cls_hidden_dim <= 0 {
            bail!(
                "class head hidden dim must be positive, got {}",
                self.cls_hidden_dim
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse() {
        assert_eq!(ViTConfig::preset("small/8").unwrap(), ViTConfig::small(8));
        assert_eq!(
            ViTConfig::preset("vit_tiny/16").unwrap(),
            ViTConfig::tiny(16)
        );
        assert_eq!(ViTConfig::preset("base").unwrap(), ViTConfig::base(16));
        assert_eq!(ViTConfig::preset("micro").unwrap(), ViTConfig::micro());
        assert_eq!(ViTConfig::preset("micro/16").unwrap().patch_size, 16);
        assert!(ViTConfig::preset("huge/14").is_err());
        assert!(ViTConfig::preset("small/12").is_err());
        assert!(ViTConfig::preset("small/x").is_err());
        for name in ["micro", "micro/16", "tiny/8", "small/16", "base/8"] {
            ViTConfig::preset(name).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn reference_values() {
        let s = ViTConfig::small(8);
        assert_eq!(
            (s.embed_dim, s.depth, s.num_heads, s.mlp_hidden()),
            (384, 12, 6, 1536)
        );
        assert_eq!(s.ln_eps, 1e-6);
        assert_eq!(s.tokens_for(256, 256), 32 * 32 + 1);
        let m = ModelConfig::new(s);
        assert_eq!(m.head.out_dim, 65536);
        assert_eq!(m.cls_hidden_dim, 256);
    }

    #[test]
    fn validate_rejects_bad_heads() {
        let mut c = ViTConfig::micro();
        c.num_heads = 3;
        assert!(c.validate().is_err());
    }

    #[test]
    fn json_roundtrip() {
        let m = ModelConfig::micro();
        let s = serde_json::to_string(&m).unwrap();
        let back: ModelConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(m, back);
    }
}
