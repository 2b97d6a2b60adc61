//! A small Python pickle virtual machine, enough for the files `torch.save` writes
//! (protocol 2, plus the protocol 3-5 opcodes that `pickle` may emit).
//!
//! Unknown classes never fail: calling or instantiating them builds an opaque
//! [`Value::Object`] that keeps the class name, the arguments and the `BUILD` state, so an
//! `argparse.Namespace` (or anything else a training script pickled) reads fine. The
//! torch-specific parts (persistent storage ids, `_rebuild_tensor_v2`) are supplied by a
//! [`Resolver`]; see `crate::pth`.
//!
//! Hostile input is bounded: containers nest at most [`MAX_DEPTH`] levels (deeper pickles are
//! an error, not a stack overflow in whatever walks or drops the value), every container is
//! shared by reference (so `DUP`/`GET` cannot double a structure's memory per opcode), a walk
//! over the result visits at most [`MAX_EXPANDED_VALUES`] values, and a
//! container may only be filled before it is placed inside another one, which rules out
//! reference cycles and keeps the recorded depths exact. `torch.save` files never need more.

use std::cell::RefCell;

use std::rc::Rc;

use anyhow::{bail, Result};

mod vm;
pub use vm::unpickle;

/// A shared, mutable list (Python lists are mutated after being memoised).
pub type List = Rc<RefCell<Vec<Value>>>;
/// A shared tuple.
pub type Tuple = Rc<Vec<Value>>;

/// The deepest container nesting a pickle may have (Python's own default recursion limit).
pub const MAX_DEPTH: u32 = 1000;
/// The most values a pickle's result may hold when shared containers are counted once per
/// reference, as any walk over it (e.g. [`Value::to_json`]) visits them: sharing makes a
/// structure of 2^n values from n opcodes. A checkpoint's metadata holds far fewer.
pub const MAX_EXPANDED_VALUES: u64 = 1 << 20;
/// A shared, mutable dict as ordered `(key, value)` pairs.
pub type Dict = Rc<RefCell<Vec<(Value, Value)>>>;

/// An opaque instance of a class the VM does not know.
#[derive(Debug, Clone)]
pub struct Object {
    /// `module`, `name` of the class or function that built it.
    pub class: (String, String),
    /// Arguments given to the constructor / reduce function.
    pub args: Vec<Value>,
    /// State given by `BUILD` (usually a dict of attributes).
    pub state: Option<Value>,
}

/// A Python value as far as checkpoints need it.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int that fits in i64.
    Int(i64),
    /// An int too big for i64 (little-endian two's complement bytes).
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes / bytearray.
    Bytes(Vec<u8>),
    /// A list.
    List(List),
    /// A tuple.
    Tuple(Tuple),
    /// A dict (or OrderedDict).
    Dict(Dict),
    /// A set or frozenset, as its items.
    Set(List),
    /// A reference to a class or function (`GLOBAL`).
    Global(String, String),
    /// An opaque object.
    Object(Rc<RefCell<Object>>),
    /// A tensor materialised by the resolver.
    Tensor(Rc<tch::Tensor>),
    /// Anything the resolver wants to pass around (e.g. a storage), by name.
    Opaque(String, Rc<dyn std::any::Any>),
}

impl Value {
    /// A new empty dict value.
    pub fn new_dict(items: Vec<(Value, Value)>) -> Value {
        Value::Dict(Rc::new(RefCell::new(items)))
    }

    /// A new tuple value.
    pub fn new_tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::new(items))
    }

    /// The address of a container's shared allocation; `None` for scalars.
    fn container_id(&self) -> Option<usize> {
        match self {
            Value::List(l) | Value::Set(l) => Some(Rc::as_ptr(l) as *const () as usize),
            Value::Tuple(t) => Some(Rc::as_ptr(t) as *const () as usize),
            Value::Dict(d) => Some(Rc::as_ptr(d) as *const () as usize),
            Value::Object(o) => Some(Rc::as_ptr(o) as *const () as usize),
            _ => None,
        }
    }

    /// Calls `f` on each direct child of a container.
    fn for_each_child(&self, f: &mut dyn FnMut(&Value)) {
        match self {
            Value::List(l) | Value::Set(l) => l.borrow().iter().for_each(f),
            Value::Tuple(t) => t.iter().for_each(f),
            Value::Dict(d) => d.borrow().iter().for_each(|(k, v)| {
                f(k);
                f(v)
            }),
            Value::Object(o) => {
                let o = o.borrow();
                o.args.iter().for_each(&mut *f);
                if let Some(s) = &o.state {
                    f(s);
                }
            }
            _ => {}
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one (bools count as 0/1).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    pub fn as_seq(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(v) => Some(v.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// Entry `key` of a dict with string keys.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(d) => d
                .borrow()
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    /// A short description of the value's type, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Dict(_) => "dict".into(),
            Value::Set(_) => "set".into(),
            Value::Global(m, n) => format!("<class {m}.{n}>"),
            Value::Object(o) => format!("{}.{}", o.borrow().class.0, o.borrow().class.1),
            Value::Tensor(_) => "tensor".into(),
            Value::Opaque(n, _) => n.clone(),
        }
    }

    /// A JSON rendering for metadata (tensors and opaque objects become short strings; an
    /// object with a dict state, such as an `argparse.Namespace`, becomes that dict).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::BigInt(_) => J::String("<big int>".into()),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(format!("<{} bytes>", b.len())),
            Value::List(l) | Value::Set(l) => {
                J::Array(l.borrow().iter().map(Value::to_json).collect())
            }
            Value::Tuple(t) => J::Array(t.iter().map(Value::to_json).collect()),
            Value::Dict(d) => {
                let mut m = serde_json::Map::new();
                for (k, v) in d.borrow().iter() {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        other => other.to_json().to_string(),
                    };
                    m.insert(key, v.to_json());
                }
                J::Object(m)
            }
            Value::Global(m, n) => J::String(format!("<{m}.{n}>")),
            Value::Object(o) => match &o.borrow().state {
                Some(s @ Value::Dict(_)) => s.to_json(),
                _ => J::String(format!("<{}.{}>", o.borrow().class.0, o.borrow().class.1)),
            },
            Value::Tensor(t) => J::String(format!("<tensor {:?} {:?}>", t.kind(), t.size())),
            Value::Opaque(n, _) => J::String(format!("<{n}>")),
        }
    }
}

/// Hooks for the parts of unpickling that depend on the file format.
pub trait Resolver {
    /// Resolves a persistent id (`BINPERSID`).
    fn persistent_load(&mut self, pid: Value) -> Result<Value>;
    /// Calls `module.name(*args)` for a `REDUCE`; `Ok(None)` means "not handled here", and
    /// the VM then builds a known builtin or an opaque object.
    fn reduce(&mut self, module: &str, name: &str, args: &[Value]) -> Result<Option<Value>>;
}

/// A resolver that knows nothing: persistent ids are an error, every call is opaque.
pub struct NoResolver;

impl Resolver for NoResolver {
    fn persistent_load(&mut self, pid: Value) -> Result<Value> {
        bail!(
            "unexpected persistent id {:?} in a plain pickle",
            pid.to_json()
        )
    }
    fn reduce(&mut self, _: &str, _: &str, _: &[Value]) -> Result<Option<Value>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
