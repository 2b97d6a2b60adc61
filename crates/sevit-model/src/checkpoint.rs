//! Checkpoints as one safetensors file: named tensors plus a string metadata map.
//!
//! Writing is atomic (temporary file in the same directory, fsync, rename), so a crash
//! leaves either the old or the new file. Loading names the file and says what is wrong
//! (missing, truncated, corrupt). Each file carries a CRC-32 of its tensors (names, types,
//! shapes, bytes) and metadata under [`CHECKSUM_KEY`], verified on load, so flipped bytes in
//! the weights are an error rather than a silently different model. [`Checkpoint::put_vars`] / [`Checkpoint::load_vars`] copy
//! a `VarStore` out / in under a prefix such as `student.`; loading is strict and lists
//! missing keys, unexpected keys and shape mismatches.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{de::DeserializeOwned, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::layers::is_float;

/// Metadata key holding the checkpoint format version.
pub const FORMAT_KEY: &str = "sevit.format";
/// Current checkpoint format version.
pub const FORMAT_VERSION: &str = "1";
/// Metadata key holding the checksum (`crc32:<8 hex digits>`) of everything else in the file.
pub const CHECKSUM_KEY: &str = "sevit.checksum";

/// CRC-32 over the metadata (but the checksum itself) and the tensors, both in name order.
fn checksum<'a>(
    metadata: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    for (k, v) in metadata.iter().filter(|(k, _)| *k != CHECKSUM_KEY) {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    for (name, dtype, shape, data) in tensors {
        field(name.as_bytes());
        field(format!("{dtype:?}{shape:?}").as_bytes());
        field(data);
    }
    format!("crc32:{:08x}", h.finalize())
}

/// Named CPU tensors and string metadata, saved as one safetensors file.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Tensors by name (e.g. `student.backbone.pos_embed`, `dino.center`).
    pub tensors: BTreeMap<String, Tensor>,
    /// Free-form metadata (config JSON, seed, counters, format version).
    pub metadata: BTreeMap<String, String>,
}

fn to_dtype(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        k => bail!("tensor kind {k:?} cannot be stored in a checkpoint"),
    })
}

fn to_kind(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        d => bail!("safetensors dtype {d:?} is not supported"),
    })
}

/// Raw little-endian bytes of a tensor (moved to CPU, made contiguous).
pub(crate) fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let numel = t.numel();
    let mut buf = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    if numel > 0 {
        t.copy_data_u8(&mut buf, numel);
    }
    buf
}

/// Writes `bytes` to `path` atomically (see `sevit-fs`).
pub use sevit_fs::write_atomic;

impl Checkpoint {
    /// An empty checkpoint (format version set).
    pub fn new() -> Self {
        let mut c = Checkpoint::default();
        c.metadata.insert(FORMAT_KEY.into(), FORMAT_VERSION.into());
        c
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut raw = Vec::with_capacity(self.tensors.len());
        for (name, t) in &self.tensors {
            let dtype = to_dtype(t.kind()).with_context(|| format!("tensor {name}"))?;
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            raw.push((name.as_str(), dtype, shape, tensor_bytes(t)));
        }
        let views = raw
            .iter()
            .map(|(n, d, s, b)| {
                Ok((
                    *n,
                    TensorView::new(*d, s.clone(), b).map_err(|e| anyhow!("tensor {n}: {e:?}"))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut metadata = self.metadata.clone();
        let sum = checksum(
            &metadata,
            raw.iter()
                .map(|(n, d, s, b)| (*n, *d, s.as_slice(), b.as_slice())),
        );
        metadata.insert(CHECKSUM_KEY.into(), sum);
        let meta: HashMap<String, String> = metadata.into_iter().collect();
        let meta = Some(meta);
        safetensors::tensor::serialize(views, &meta)
            .map_err(|e| anyhow!("serialising checkpoint: {e:?}"))
    }

    /// Parses safetensors bytes; `origin` names the source in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            anyhow!("{origin} is not a valid safetensors checkpoint (corrupt or truncated file?): {e:?}")
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| anyhow!("{origin}: bad header: {e:?}"))?;
        let mut metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut views = st.tensors();
        views.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(stored) = metadata.get(CHECKSUM_KEY) {
            let actual = checksum(
                &metadata,
                views
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())),
            );
            if *stored != actual {
                bail!(
                    "{origin} is corrupt: its contents do not match the checksum stored in it \
                     ({stored}, computed {actual}); the file was damaged after it was written \
                     (disk or copy error): use another copy or an earlier checkpoint"
                );
            }
        }
        // A property of the file, verified above; in memory it would only go stale.
        metadata.remove(CHECKSUM_KEY);
        let mut tensors = BTreeMap::new();
        for (name, view) in views {
            let kind = to_kind(view.dtype()).with_context(|| format!("{origin}: tensor {name}"))?;
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_data_size(view.data(), &shape, kind)
                .with_context(|| format!("{origin}: tensor {name}"))?;
            tensors.insert(name, t);
        }
        Ok(Checkpoint { tensors, metadata })
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self
            .to_bytes()
            .with_context(|| format!("saving checkpoint {}", path.display()))?;
        write_atomic(path, &bytes)
            .with_context(|| format!("saving checkpoint {}", path.display()))?;
        tracing::debug!(path = %path.display(), tensors = self.tensors.len(), bytes = bytes.len(), "checkpoint saved");
        Ok(())
    }

    /// Reads a checkpoint written by [`save`](Self::save) (or any safetensors file).
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("checkpoint {} does not exist", path.display());
        }
        let bytes =
            fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
        let ck = Self::from_bytes(&bytes, &format!("checkpoint {}", path.display()))?;
        if let Some(v) = ck.metadata.get(FORMAT_KEY) {
            if v != FORMAT_VERSION {
                bail!(
                    "checkpoint {} has format version {v}, this build reads {FORMAT_VERSION}",
                    path.display()
                );
            }
        }
        Ok(ck)
    }

    /// Copies every variable of `vs` in as `prefix + name` (detached CPU copies, so later
    /// training does not change the checkpoint).
    pub fn put_vars(&mut self, prefix: &str, vs: &VarStore) {
        for (name, t) in vs.variables() {
            let copy = tch::no_grad(|| t.detach().to_device(Device::Cpu).copy());
            self.tensors.insert(format!("{prefix}{name}"), copy);
        }
    }

    /// Names (without the prefix) of the tensors stored under `prefix`.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.tensors
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    /// Copies the tensors stored under `prefix` into the variables of `vs` (device and float
    /// kind converted to the variable's). Strict: every variable must be present with its
    /// shape and no extra key may exist under the prefix; otherwise nothing is copied and the
    /// error lists the missing keys, the unexpected keys and the shape mismatches.
    pub fn load_vars(&self, prefix: &str, vs: &mut VarStore) -> Result<()> {
        let vars = vs.variables();
        let report = self.compare(prefix, &vars);
        if !report.is_empty() {
            bail!("checkpoint does not fit the model under prefix {prefix:?}:\n{report}");
        }
        tch::no_grad(|| -> Result<()> {
            for (name, var) in &vars {
                let src = &self.tensors[&format!("{prefix}{name}")];
                let src = if is_float(var.kind()) {
                    src.to_kind(var.kind())
                } else {
                    src.shallow_clone()
                };
                var.shallow_clone()
                    .f_copy_(&src.to_device(var.device()))
                    .with_context(|| format!("copying {prefix}{name}"))?;
            }
            Ok(())
        })
    }

    /// Describes how the tensors under `prefix` differ from `vars` (empty when they fit).
    pub fn compare(&self, prefix: &str, vars: &HashMap<String, Tensor>) -> KeyReport {
        let mut r = KeyReport::default();
        for (name, var) in vars {
            match self.tensors.get(&format!("{prefix}{name}")) {
                None => r.missing.push(name.clone()),
                Some(t) if t.size() != var.size() => r.mismatched.push(format!(
                    "{name}: checkpoint {:?}, model {:?}",
                    t.size(),
                    var.size()
                )),
                Some(_) => {}
            }
        }
        for k in self.keys_under(prefix) {
            if !vars.contains_key(&k) {
                r.unexpected.push(k);
            }
        }
        r.missing.sort();
        r.unexpected.sort();
        r.mismatched.sort();
        r
    }

    /// Stores `value` as JSON under metadata key `key`.
    pub fn put_json<T: Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        let s =
            serde_json::to_string(value).with_context(|| format!("serialising metadata {key}"))?;
        self.metadata.insert(key.to_string(), s);
        Ok(())
    }

    /// Reads the JSON value under metadata key `key`.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let s = self
            .metadata
            .get(key)
            .ok_or_else(|| anyhow!("checkpoint has no metadata entry {key:?}"))?;
        serde_json::from_str(s).with_context(|| format!("parsing checkpoint metadata {key:?}"))
    }

    /// The tensor `name`, or an error naming it.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow!("checkpoint has no tensor {name:?}"))
    }
}

/// Differences between a checkpoint's keys and a model's variables.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KeyReport {
    /// Model variables absent from the checkpoint.
    pub missing: Vec<String>,
    /// Checkpoint keys the model does not have.
    pub unexpected: Vec<String>,
    /// `name: checkpoint [..], model [..]` for each shape mismatch.
    pub mismatched: Vec<String>,
}

impl KeyReport {
    /// True when the checkpoint fits.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl std::fmt::Display for KeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 25;
        for (title, list) in [
            ("missing keys", &self.missing),
            ("unexpected keys", &self.unexpected),
            ("shape mismatches", &self.mismatched),
        ] {
            if list.is_empty() {
                continue;
            }
            writeln!(f, "  {} {title}:", list.len())?;
            for k in list.iter().take(SHOW) {
                writeln!(f, "    {k}")?;
            }
            if list.len() > SHOW {
                writeln!(f, "    ... and {} more", list.len() - SHOW)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DistlNet, ModelConfig};

    fn model(seed: i64, cfg: &ModelConfig) -> VarStore {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let _ = DistlNet::new(&vs.root(), cfg, 0.0);
        vs
    }

    #[test]
    fn roundtrip_all_kinds_and_metadata() {
        let _rng = crate::torch_rng();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ck.safetensors");
        let mut ck = Checkpoint::new();
        ck.tensors.insert(
            "f".into(),
            Tensor::randn([2, 3], (Kind::Float, Device::Cpu)),
        );
        ck.tensors
            .insert("h".into(), Tensor::randn([4], (Kind::Half, Device::Cpu)));
        ck.tensors.insert(
            "b".into(),
            Tensor::randn([4], (Kind::BFloat16, Device::Cpu)),
        );
        ck.tensors
            .insert("i".into(), Tensor::from_slice(&[1i64, 2, 3]));
        ck.tensors.insert("s".into(), Tensor::from(5.0f64));
        ck.put_json("seed", &42u64).unwrap();
        ck.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.metadata, ck.metadata);
        assert_eq!(back.get_json::<u64>("seed").unwrap(), 42);
        for (k, t) in &ck.tensors {
            assert_eq!(back.tensors[k].kind(), t.kind(), "{k}");
            assert!(back.tensors[k].equal(t), "{k}");
        }
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn errors_are_clear() {
        let _rng = crate::torch_rng();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.safetensors");
        let e = Checkpoint::load(&missing).unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains("nope.safetensors"),
            "{e}"
        );

        let path = dir.path().join("ck.safetensors");
        let mut ck = Checkpoint::new();
        ck.tensors.insert(
            "w".into(),
            Tensor::randn([64, 64], (Kind::Float, Device::Cpu)),
        );
        ck.save(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let e = format!("{:#}", Checkpoint::load(&path).unwrap_err());
        assert!(
            e.contains("corrupt or truncated") && e.contains("ck.safetensors"),
            "{e}"
        );
        fs::write(&path, b"garbage").unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }

    #[test]
    fn flipped_bytes_fail_the_checksum() {
        let _rng = crate::torch_rng();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let mut ck = Checkpoint::new();
        ck.tensors.insert(
            "w".into(),
            Tensor::randn([64, 64], (Kind::Float, Device::Cpu)),
        );
        ck.put_json("seed", &7u64).unwrap();
        ck.save(&path).unwrap();
        let good = fs::read(&path).unwrap();
        assert!(Checkpoint::load(&path).is_ok());
        // One flipped bit in the weights (the data follows the header).
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1000] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let e = format!("{:#}", Checkpoint::load(&path).unwrap_err());
        assert!(e.contains("is corrupt") && e.contains("checksum"), "{e}");
        // A file written without a checksum (older sevit, other tools) still loads.
        let st = SafeTensors::deserialize(&good).unwrap();
        let views: Vec<(String, TensorView)> = st.tensors();
        let plain = safetensors::tensor::serialize(views, &None).unwrap();
        fs::write(&path, plain).unwrap();
        assert!(Checkpoint::load(&path).unwrap().tensors.contains_key("w"));
    }

    #[test]
    fn vars_roundtrip_under_prefix() {
        let _rng = crate::torch_rng();
        let cfg = ModelConfig::micro();
        let src = model(1, &cfg);
        let mut dst = model(2, &cfg);
        let mut ck = Checkpoint::new();
        ck.put_vars("student.", &src);
        ck.put_vars("teacher.", &src);
        ck.load_vars("student.", &mut dst).unwrap();
        let (a, b) = (src.variables(), dst.variables());
        for (k, t) in &a {
            assert!(t.equal(&b[k]), "{k}");
        }
        // weight_g is stored although it is not trainable.
        assert!(ck.tensors.contains_key("student.head.last_layer.weight_g"));
    }

    #[test]
    fn mismatch_lists_everything() {
        let _rng = crate::torch_rng();
        let cfg = ModelConfig::micro();
        let src = model(1, &cfg);
        let mut ck = Checkpoint::new();
        ck.put_vars("student.", &src);
        ck.tensors.remove("student.backbone.norm.bias");
        ck.tensors.insert(
            "student.extra.weight".into(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        let mut other = cfg.clone();
        other.head.out_dim = 64;
        let mut dst = model(2, &other);
        let before = dst.variables()["backbone.cls_token"].copy();
        let e = ck.load_vars("student.", &mut dst).unwrap_err().to_string();
        assert!(
            e.contains("missing keys") && e.contains("backbone.norm.bias"),
            "{e}"
        );
        assert!(
            e.contains("unexpected keys") && e.contains("extra.weight"),
            "{e}"
        );
        assert!(
            e.contains("head.last_layer.weight_v: checkpoint [128, 16], model [64, 16]"),
            "{e}"
        );
        // Nothing was copied.
        assert!(dst.variables()["backbone.cls_token"].equal(&before));
    }
}
