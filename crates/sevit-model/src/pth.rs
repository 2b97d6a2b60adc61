//! Reading files written by `torch.save` (the zip format of PyTorch >= 1.6): a zip holding
//! `<name>/data.pkl` (the pickled object, tensors as persistent ids of storages) and
//! `<name>/data/<key>` (the raw little-endian storages). No Python involved.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Kind, Tensor};

use crate::pickle::{self, Resolver, Value};

/// Maps a torch storage class name (`FloatStorage`, ...) or dtype name to a tch kind.
fn storage_kind(name: &str) -> Result<Kind> {
    Ok(match name {
        "FloatStorage" | "float32" | "float" => Kind::Float,
        "DoubleStorage" | "float64" | "double" => Kind::Double,
        "HalfStorage" | "float16" | "half" => Kind::Half,
        "BFloat16Storage" | "bfloat16" => Kind::BFloat16,
        "LongStorage" | "int64" | "long" => Kind::Int64,
        "IntStorage" | "int32" | "int" => Kind::Int,
        "ShortStorage" | "int16" | "short" => Kind::Int16,
        "CharStorage" | "int8" => Kind::Int8,
        "ByteStorage" | "uint8" => Kind::Uint8,
        "BoolStorage" | "bool" => Kind::Bool,
        other => bail!("unsupported torch storage type {other}"),
    })
}

/// A storage loaded from the archive: a flat 1-D tensor of its element kind.
struct Storage(Tensor);

struct TorchResolver<'a, R: Read + std::io::Seek> {
    zip: &'a mut zip::ZipArchive<R>,
    prefix: String,
    storages: HashMap<String, Rc<dyn std::any::Any>>,
}

impl<R: Read + std::io::Seek> TorchResolver<'_, R> {
    fn load_storage(&mut self, key: &str, kind: Kind) -> Result<Rc<dyn std::any::Any>> {
        if let Some(s) = self.storages.get(key) {
            return Ok(s.clone());
        }
        let name = format!("{}data/{key}", self.prefix);
        let mut entry = self
            .zip
            .by_name(&name)
            .with_context(|| format!("storage {name} missing from the archive"))?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading storage {name}"))?;
        let esize = kind.elt_size_in_bytes();
        if bytes.len() % esize != 0 {
            bail!(
                "storage {name}: {} bytes is not a multiple of the {kind:?} element size {esize}",
                bytes.len()
            );
        }
        let numel = (bytes.len() / esize) as i64;
        let t = Tensor::f_from_data_size(&bytes, &[numel], kind)?;
        let rc: Rc<dyn std::any::Any> = Rc::new(Storage(t));
        self.storages.insert(key.to_string(), rc.clone());
        Ok(rc)
    }
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>> {
    v.as_seq()
        .ok_or_else(|| anyhow!("{what} is not a tuple"))?
        .iter()
        .map(|x| {
            x.as_int()
                .ok_or_else(|| anyhow!("{what} has a non-integer entry"))
        })
        .collect()
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: a checked strided view, copied
/// out as a contiguous tensor.
fn rebuild_tensor(args: &[Value]) -> Result<Value> {
    if args.len() < 4 {
        bail!(
            "_rebuild_tensor needs at least 4 arguments, got {}",
            args.len()
        );
    }
    let storage = match &args[0] {
        Value::Opaque(_, rc) => rc
            .downcast_ref::<Storage>()
            .ok_or_else(|| anyhow!("first argument is not a storage"))?,
        other => bail!("first argument is a {}, not a storage", other.type_name()),
    };
    let offset = args[1]
        .as_int()
        .ok_or_else(|| anyhow!("storage offset is not an int"))?;
    let size = ints(&args[2], "size")?;
    let stride = ints(&args[3], "stride")?;
    if size.len() != stride.len() {
        bail!("size {size:?} and stride {stride:?} differ in length");
    }
    let numel = storage.0.size()[0];
    if size.iter().any(|&s| s < 0) || stride.iter().any(|&s| s < 0) || offset < 0 {
        bail!("negative size/stride/offset");
    }
    if size.iter().all(|&s| s > 0) {
        let last = offset
            + size
                .iter()
                .zip(&stride)
                .map(|(s, st)| (s - 1) * st)
                .sum::<i64>();
        if last >= numel {
            bail!("tensor of size {size:?} stride {stride:?} offset {offset} overruns its storage of {numel} elements");
        }
    }
    let t = storage
        .0
        .f_as_strided(size.as_slice(), stride.as_slice(), offset)?
        .contiguous();
    Ok(Value::Tensor(Rc::new(t)))
}

impl<R: Read + std::io::Seek> Resolver for TorchResolver<'_, R> {
    fn persistent_load(&mut self, pid: Value) -> Result<Value> {
        let items = pid
            .as_seq()
            .ok_or_else(|| anyhow!("persistent id is a {}, not a tuple", pid.type_name()))?;
        if items.first().and_then(Value::as_str) != Some("storage") || items.len() < 3 {
            bail!("unsupported persistent id {}", pid.to_json());
        }
        let kind = match &items[1] {
            Value::Global(_, name) => storage_kind(name)?,
            Value::Object(o) => {
                // torch.<dtype> objects (torch >= 2 may write UntypedStorage + dtype)
                storage_kind(&o.borrow().class.1)?
            }
            other => bail!("storage type is a {}", other.type_name()),
        };
        let key = items[2]
            .as_str()
            .ok_or_else(|| anyhow!("storage key is not a string"))?
            .to_string();
        let rc = self.load_storage(&key, kind)?;
        Ok(Value::Opaque("storage".into(), rc))
    }

    fn reduce(&mut self, module: &str, name: &str, args: &[Value]) -> Result<Option<Value>> {
        Ok(match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                Some(rebuild_tensor(args)?)
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => Some(
                args.first()
                    .cloned()
                    .ok_or_else(|| anyhow!("_rebuild_parameter without data"))?,
            ),
            ("torch", _) if name.ends_with("Storage") || name == "device" || name == "Size" => None,
            ("torch._tensor", "_rebuild_from_type_v2") => {
                // (func, type, args, state): rebuild with func(*args)
                let func = args
                    .first()
                    .cloned()
                    .ok_or_else(|| anyhow!("missing function"))?;
                let inner = args.get(2).and_then(Value::as_seq).unwrap_or_default();
                match func {
                    Value::Global(m, n) => self.reduce(&m, &n, &inner)?,
                    _ => None,
                }
            }
            _ => None,
        })
    }
}

/// Reads a `torch.save` file into its object tree, tensors materialised on the CPU.
pub fn load_pth(path: &Path) -> Result<Value> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 4];
    {
        let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let n = f.read(&mut magic).unwrap_or(0);
        if n < 4 {
            bail!("{} is empty or truncated ({n} bytes)", path.display());
        }
    }
    if &magic != b"PK\x03\x04" {
        if magic[0] == 0x80 {
            bail!(
                "{} is in the legacy (pre-1.6) torch.save format, which is not supported; \
                 re-save it with a recent PyTorch (torch.save(torch.load(f), g))",
                path.display()
            );
        }
        bail!(
            "{} is not a PyTorch checkpoint (no zip signature)",
            path.display()
        );
    }
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).with_context(|| {
        format!(
            "{} is not a valid PyTorch zip checkpoint (truncated or corrupt?)",
            path.display()
        )
    })?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|e| e.name().to_string()))
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .min_by_key(|n| n.len())
        .ok_or_else(|| {
            anyhow!(
                "{}: no <name>/data.pkl inside the zip, not a torch.save file",
                path.display()
            )
        })?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap().to_string();
    if let Ok(mut e) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut s = String::new();
        let _ = e.read_to_string(&mut s);
        if s.trim() == "big" {
            bail!(
                "{}: big-endian checkpoints are not supported",
                path.display()
            );
        }
    }
    let mut data = Vec::new();
    zip.by_name(&pkl)
        .and_then(|mut e| e.read_to_end(&mut data).map_err(Into::into))
        .with_context(|| format!("{}: reading {pkl} (truncated or corrupt?)", path.display()))?;
    let mut resolver = TorchResolver {
        zip: &mut zip,
        prefix,
        storages: HashMap::new(),
    };
    pickle::unpickle(&data, &mut resolver)
        .with_context(|| format!("{}: unpickling {pkl}", path.display()))
}

/// Collects the tensors of a (possibly nested) dict with string keys, as flat
/// `name -> tensor` with nested keys joined by `.`; non-tensor leaves are skipped.
pub fn flatten_tensors(v: &Value, prefix: &str, out: &mut Vec<(String, Tensor)>) {
    match v {
        Value::Tensor(t) => out.push((prefix.to_string(), t.shallow_clone())),
        Value::Dict(d) => {
            for (k, val) in d.borrow().iter() {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_tensors(val, &name, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_torch_files_are_refused_clearly() {
        let _rng = crate::torch_rng();
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 4] = [
            ("empty.pth", b"", "empty or truncated"),
            (
                "legacy.pth",
                b"\x80\x02\x8a\x0alz\xfc\x9cF\xf9 j\xa8P\x19.",
                "legacy (pre-1.6)",
            ),
            ("text.pth", b"hello world", "no zip signature"),
            (
                "cut.pth",
                b"PK\x03\x04\x14\x00\x00\x00\x00\x00",
                "truncated or corrupt",
            ),
        ];
        for (name, bytes, want) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = format!("{:#}", load_pth(&p).unwrap_err());
            assert!(e.contains(want) && e.contains(name), "{name}: {e}");
        }
        let e = format!(
            "{:#}",
            load_pth(&dir.path().join("absent.pth")).unwrap_err()
        );
        assert!(e.contains("absent.pth"), "{e}");
    }

    #[test]
    fn rebuild_checks_bounds() {
        let _rng = crate::torch_rng();
        let storage = Value::Opaque(
            "storage".into(),
            Rc::new(Storage(Tensor::arange(6, (Kind::Float, tch::Device::Cpu)))),
        );
        let tuple = |v: &[i64]| Value::new_tuple(v.iter().map(|&i| Value::Int(i)).collect());
        let ok = rebuild_tensor(&[
            storage.clone(),
            Value::Int(1),
            tuple(&[2, 2]),
            tuple(&[1, 2]),
        ])
        .unwrap();
        match ok {
            Value::Tensor(t) => {
                let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
                assert_eq!(v, [1.0, 3.0, 2.0, 4.0]);
            }
            other => panic!("{}", other.type_name()),
        }
        let e =
            rebuild_tensor(&[storage, Value::Int(3), tuple(&[2, 2]), tuple(&[2, 1])]).unwrap_err();
        assert!(e.to_string().contains("overruns"), "{e}");
    }
}
