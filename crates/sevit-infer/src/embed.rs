//! `sevit embed`: what the network computes for each image, for use outside sevit: the CLS
//! features, the class logit and the last block's CLS attention over the patches, as one
//! safetensors file or a folder of `.npy` arrays.

use std::path::Path;

use anyhow::{bail, Context};
use sevit_model::Checkpoint;
use tch::{Device, Kind, Tensor};

use super::images::load_all;
use super::model::InferenceModel;
use super::source::ImageList;

/// Per-image outputs, rows in the order of the image list.
pub struct Embeddings {
    /// Image ids (as in predictions CSVs).
    pub ids: Vec<String>,
    /// CLS features `[N, D]` (f32).
    pub features: Tensor,
    /// Class logits `[N]` (f32); `sigmoid` gives the probabilities `sevit predict` writes.
    pub logits: Tensor,
    /// Last-block CLS attention `[N, heads, grid_h, grid_w]` (f32), each head's map summing to
    /// at most 1 (the CLS token's attention to itself left out).
    pub attention: Tensor,
}

/// Output format of [`Embeddings::write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedFormat {
    /// One `.safetensors` file: tensors `features`, `logits`, `attention`; the ids (JSON) and
    /// the checkpoint in its metadata.
    Safetensors,
    /// A folder: `features.npy`, `logits.npy`, `attention.npy` and `ids.txt` (one per line).
    Npy,
}

/// Runs the model on every image of `list` (unreadable images are errors naming the file).
///
/// # Errors
/// Unreadable images; a non-finite output.
pub fn embed_images(model: &InferenceModel, list: &ImageList) -> anyhow::Result<Embeddings> {
    let bs = model.settings.batch_size.max(1);
    let (mut feats, mut logits, mut attn) = (Vec::new(), Vec::new(), Vec::new());
    for (c, chunk) in list.paths.chunks(bs).enumerate() {
        let mut images = Vec::with_capacity(chunk.len());
        for (k, r) in load_all(chunk, model.settings.image_size)
            .into_iter()
            .enumerate()
        {
            images.push(r.with_context(|| {
                format!("image {} is unreadable", list.paths[c * bs + k].display())
            })?);
        }
        let (f, l, a) = model.embed_batch(&images)?;
        feats.push(f);
        logits.push(l);
        attn.push(a);
    }
    let out = Embeddings {
        ids: list.ids.clone(),
        features: Tensor::cat(&feats, 0),
        logits: Tensor::cat(&logits, 0),
        attention: Tensor::cat(&attn, 0),
    };
    for (name, t) in [
        ("features", &out.features),
        ("logits", &out.logits),
        ("attention", &out.attention),
    ] {
        if !bool::try_from(t.isfinite().all())? {
            bail!(
                "the model gave non-finite {name}: the checkpoint's weights are probably corrupt"
            );
        }
    }
    Ok(out)
}

impl Embeddings {
    /// Writes the arrays to `out` (a file for safetensors, a folder for npy), atomically per
    /// file. `checkpoint` is recorded with them.
    pub fn write(&self, out: &Path, format: EmbedFormat, checkpoint: &Path) -> anyhow::Result<()> {
        match format {
            EmbedFormat::Safetensors => {
                let mut ck = Checkpoint::new();
                for (name, t) in [
                    ("features", &self.features),
                    ("logits", &self.logits),
                    ("attention", &self.attention),
                ] {
                    ck.tensors.insert(name.into(), t.shallow_clone());
                }
                ck.put_json("ids", &self.ids)?;
                ck.metadata
                    .insert("checkpoint".into(), checkpoint.display().to_string());
                ck.save(out)
            }
            EmbedFormat::Npy => {
                std::fs::create_dir_all(out)
                    .with_context(|| format!("creating {}", out.display()))?;
                for (name, t) in [
                    ("features", &self.features),
                    ("logits", &self.logits),
                    ("attention", &self.attention),
                ] {
                    let path = out.join(format!("{name}.npy"));
                    let tmp = out.join(format!(".{name}.npy.tmp"));
                    t.write_npy(&tmp)
                        .with_context(|| format!("writing {}", path.display()))?;
                    std::fs::rename(&tmp, &path)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                let mut ids = self.ids.join("\n");
                ids.push('\n');
                sevit_distill::layout::write_atomic(&out.join("ids.txt"), ids.as_bytes())
            }
        }
    }
}

impl InferenceModel {
    /// CLS features `[B, D]`, class logits `[B]` and last-block CLS attention
    /// `[B, heads, grid, grid]` of loaded images (as [`InferenceModel::score`]'s input), on
    /// the CPU in f32.
    pub fn embed_batch(
        &self,
        images: &[sevit_data::GrayImage],
    ) -> anyhow::Result<(Tensor, Tensor, Tensor)> {
        let x = self.batch_tensor(images)?;
        let net = self.network();
        let (f, l, a) = tch::no_grad(|| {
            let f = net.features(&x, false);
            let l = net.class_head(&f).reshape([-1]);
            let a = net.last_self_attention(&x);
            (f, l, a)
        });
        let size = a.size();
        let (b, heads, tokens) = (size[0], size[1], size[3]);
        let grid = ((tokens - 1) as f64).sqrt().round() as i64;
        let cls = a
            .narrow(2, 0, 1)
            .narrow(3, 1, tokens - 1)
            .reshape([b, heads, grid, grid]);
        let cpu = |t: Tensor| t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
        Ok((cpu(f), cpu(l), cpu(cls)))
    }
}
