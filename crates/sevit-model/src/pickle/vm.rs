//! The unpickling machine: the opcode loop, the memo, and the bounds on depth and size.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};

use super::*;

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() - self.pos < n {
            bail!(
                "pickle truncated: wanted {n} bytes at offset {}, {} left",
                self.pos,
                self.data.len() - self.pos
            );
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| anyhow!("pickle truncated: no newline"))?;
        self.pos += end + 1;
        let s = &rest[..end];
        let s = s.strip_suffix(b"\r").unwrap_or(s);
        std::str::from_utf8(s).context("pickle text argument is not UTF-8")
    }
    fn len_prefixed(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).context("length too large")?;
        self.take(n)
    }
}

fn utf8(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).context("pickle string is not valid UTF-8")
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

fn long_from_le(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let neg = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if neg { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(bytes);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(bytes.to_vec())
    }
}

fn text_int(s: &str) -> Result<Value> {
    let s = s.trim_end_matches('L');
    match s {
        "00" => Ok(Value::Bool(false)),
        "01" => Ok(Value::Bool(true)),
        _ => Ok(Value::Int(
            s.parse()
                .with_context(|| format!("bad INT literal {s:?}"))?,
        )),
    }
}

/// The unpickling machine state.
struct Vm<'r, R: Resolver> {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    resolver: &'r mut R,
    /// Nesting depth and expanded size of every container built so far, by allocation address.
    depth: HashMap<usize, Extent>,
    /// Containers already placed inside another container (and so frozen).
    nested: HashSet<usize>,
}

/// How deep a value nests and how many values a walk over it visits.
#[derive(Clone, Copy)]
struct Extent {
    depth: u32,
    values: u64,
}

impl Extent {
    fn check(self) -> Result<Self> {
        if self.depth > MAX_DEPTH {
            bail!("containers nested deeper than {MAX_DEPTH} levels: refused (a checkpoint never needs that)");
        }
        if self.values > MAX_EXPANDED_VALUES {
            bail!(
                "shared containers expand to more than {MAX_EXPANDED_VALUES} values: refused (a checkpoint never needs that)"
            );
        }
        Ok(self)
    }
}

impl<'r, R: Resolver> Vm<'r, R> {
    fn extent_of(&self, v: &Value) -> Extent {
        match v.container_id() {
            Some(id) => self.depth.get(&id).copied().unwrap_or(Extent {
                depth: 1,
                values: 1,
            }),
            // A string is copied whole by a walk such as `to_json`: it weighs by its length.
            None => Extent {
                depth: 0,
                values: match v {
                    Value::Str(s) => 1 + s.len() as u64 / 64,
                    _ => 1,
                },
            },
        }
    }

    /// Records a container the VM has just built from `v`'s children (marking them nested),
    /// or fails when it nests deeper than [`MAX_DEPTH`]; then pushes it.
    fn push_new(&mut self, v: Value) -> Result<()> {
        if let Some(id) = v.container_id() {
            let mut e = Extent {
                depth: 1,
                values: 1,
            };
            let mut children = Vec::new();
            v.for_each_child(&mut |c| {
                let ce = self.extent_of(c);
                e.depth = e.depth.max(ce.depth + 1);
                e.values = e.values.saturating_add(ce.values);
                children.extend(c.container_id());
            });
            let e = e.check()?;
            self.nested.extend(children);
            self.nested.remove(&id);
            self.depth.insert(id, e);
        }
        self.stack.push(v);
        Ok(())
    }

    /// Pushes a value a call or the resolver returned: an existing container stays as it is,
    /// a new one is recorded as by [`Vm::push_new`].
    fn push_returned(&mut self, v: Value) -> Result<()> {
        match v.container_id() {
            Some(id) if self.depth.contains_key(&id) => {
                self.stack.push(v);
                Ok(())
            }
            _ => self.push_new(v),
        }
    }

    /// Checks that the container on top of the stack may take `items` (APPEND, SETITEM,
    /// BUILD...) and records its new depth. A container already inside another one is
    /// frozen: changing it could hide depth from its parents or close a reference cycle.
    fn grow_top(&mut self, items: &[&Value]) -> Result<()> {
        let top = self.top()?.clone();
        let Some(id) = top.container_id() else {
            return Ok(());
        };
        if items.iter().any(|v| v.container_id() == Some(id)) {
            bail!("a container that contains itself: recursive structures are not supported");
        }
        if self.nested.contains(&id) && items.iter().any(|v| v.container_id().is_some()) {
            bail!("a container is filled after it was placed inside another one: recursive structures are not supported");
        }
        let mut e = self.extent_of(&top);
        for v in items {
            let ve = self.extent_of(v);
            e.depth = e.depth.max(ve.depth + 1);
            e.values = e.values.saturating_add(ve.values);
        }
        let e = e.check()?;
        for v in items {
            self.nested.extend(v.container_id());
        }
        self.depth.insert(id, e);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        if let Some(&m) = self.marks.last() {
            if self.stack.len() <= m {
                bail!("pickle stack underflow (pop below mark)");
            }
        }
        self.stack
            .pop()
            .ok_or_else(|| anyhow!("pickle stack underflow"))
    }
    fn top(&mut self) -> Result<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| anyhow!("pickle stack empty"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| anyhow!("pickle MARK missing"))?;
        if m > self.stack.len() {
            bail!("pickle mark beyond stack");
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_get(&self, k: u64) -> Result<Value> {
        self.memo
            .get(&k)
            .cloned()
            .ok_or_else(|| anyhow!("pickle memo key {k} not found"))
    }
    fn memo_put(&mut self, k: u64) -> Result<()> {
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| anyhow!("pickle PUT on empty stack"))?;
        self.memo.insert(k, v);
        Ok(())
    }

    /// `callable(*args)`: resolver first, then builtins, else an opaque object.
    fn call(&mut self, callable: Value, args: Vec<Value>) -> Result<Value> {
        let (module, name) = match callable {
            Value::Global(m, n) => (m, n),
            other => bail!("pickle REDUCE on a non-class value {}", other.type_name()),
        };
        if let Some(v) = self
            .resolver
            .reduce(&module, &name, &args)
            .with_context(|| format!("calling {module}.{name}"))?
        {
            return Ok(v);
        }
        Ok(match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
                let mut items = Vec::new();
                if let Some(seq) = args.first().and_then(Value::as_seq) {
                    for kv in seq {
                        if let Some(p) = kv.as_seq().filter(|p| p.len() == 2) {
                            items.push((p[0].clone(), p[1].clone()));
                        }
                    }
                }
                Value::new_dict(items)
            }
            ("builtins", "set") | ("builtins", "frozenset") | ("__builtin__", "set") => {
                let items = args.first().and_then(Value::as_seq).unwrap_or_default();
                Value::Set(Rc::new(RefCell::new(items)))
            }
            ("builtins", "list") => Value::List(Rc::new(RefCell::new(
                args.first().and_then(Value::as_seq).unwrap_or_default(),
            ))),
            ("builtins", "tuple") => {
                Value::new_tuple(args.first().and_then(Value::as_seq).unwrap_or_default())
            }
            ("builtins", "bytearray") | ("__builtin__", "bytearray") => match args.first() {
                Some(Value::Bytes(b)) => Value::Bytes(b.clone()),
                _ => Value::Bytes(vec![]),
            },
            _ => Value::Object(Rc::new(RefCell::new(Object {
                class: (module, name),
                args,
                state: None,
            }))),
        })
    }

    /// `BUILD`: sets the state of an opaque object. For anything else (a dict subclass's
    /// attributes, a rebuilt tensor's Python attributes) the state carries nothing the
    /// checkpoint readers need, so it is dropped.
    fn build(&mut self, state: Value) -> Result<()> {
        if matches!(self.top()?, Value::Object(_)) {
            self.grow_top(&[&state])?;
        }
        if let Value::Object(o) = self.top()? {
            o.borrow_mut().state = Some(state);
        }
        Ok(())
    }

    fn run(&mut self, data: &[u8]) -> Result<Value> {
        let mut r = Reader { data, pos: 0 };
        loop {
            let at = r.pos;
            let op = r.u8().context("pickle ended without STOP")?;
            let step = self
                .step(op, &mut r)
                .with_context(|| format!("pickle opcode 0x{op:02x} at offset {at}"))?;
            if let Some(v) = step {
                return Ok(v);
            }
        }
    }

    fn step(&mut self, op: u8, r: &mut Reader) -> Result<Option<Value>> {
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    bail!("unsupported pickle protocol {proto}");
                }
            }
            0x95 => {
                r.u64()?; // FRAME: only a length hint
            }
            b'.' => {
                let v = self.pop()?;
                return Ok(Some(v));
            }
            // containers
            b'}' => self.push_new(Value::new_dict(vec![]))?,
            b']' => self.push_new(Value::List(Rc::new(RefCell::new(vec![]))))?,
            b')' => self.push_new(Value::new_tuple(vec![]))?,
            0x8f => self.push_new(Value::Set(Rc::new(RefCell::new(vec![]))))?,
            b'(' => self.marks.push(self.stack.len()),
            b'1' => {
                self.pop_mark()?;
            }
            b'0' => {
                self.pop()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push_new(Value::new_tuple(items))?;
            }
            0x85 => {
                let a = self.pop()?;
                self.push_new(Value::new_tuple(vec![a]))?;
            }
            0x86 => {
                let b = self.pop()?;
                let a = self.pop()?;
                self.push_new(Value::new_tuple(vec![a, b]))?;
            }
            0x87 => {
                let c = self.pop()?;
                let b = self.pop()?;
                let a = self.pop()?;
                self.push_new(Value::new_tuple(vec![a, b, c]))?;
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push_new(Value::List(Rc::new(RefCell::new(items))))?;
            }
            b'd' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    bail!("DICT with an odd number of items");
                }
                let pairs = items
                    .chunks(2)
                    .map(|c| (c[0].clone(), c[1].clone()))
                    .collect();
                self.push_new(Value::new_dict(pairs))?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push_new(Value::Set(Rc::new(RefCell::new(items))))?;
            }
            b'a' => {
                let v = self.pop()?;
                self.grow_top(&[&v])?;
                match self.top()? {
                    Value::List(l) => l.borrow_mut().push(v),
                    other => bail!("APPEND to {}", other.type_name()),
                }
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                self.grow_top(&items.iter().collect::<Vec<_>>())?;
                match self.top()? {
                    Value::List(l) | Value::Set(l) => l.borrow_mut().extend(items),
                    Value::Object(o) => o.borrow_mut().args.extend(items),
                    other => bail!("APPENDS to {}", other.type_name()),
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                if matches!(self.top()?, Value::Dict(_)) {
                    self.grow_top(&[&k, &v])?;
                }
                match self.top()? {
                    Value::Dict(d) => d.borrow_mut().push((k, v)),
                    Value::Object(_) => {}
                    other => bail!("SETITEM on {}", other.type_name()),
                }
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    bail!("SETITEMS with an odd number of items");
                }
                if matches!(self.top()?, Value::Dict(_)) {
                    self.grow_top(&items.iter().collect::<Vec<_>>())?;
                }
                match self.top()? {
                    Value::Dict(d) => {
                        let mut d = d.borrow_mut();
                        for c in items.chunks(2) {
                            d.push((c[0].clone(), c[1].clone()));
                        }
                    }
                    Value::Object(_) => {}
                    other => bail!("SETITEMS on {}", other.type_name()),
                }
            }
            // scalars
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'J' => self.stack.push(Value::Int(r.u32()? as i32 as i64)),
            b'K' => self.stack.push(Value::Int(r.u8()? as i64)),
            b'M' => self.stack.push(Value::Int(r.u16()? as i64)),
            0x8a => {
                let n = r.u8()? as u64;
                let b = r.len_prefixed(n)?;
                self.stack.push(long_from_le(b));
            }
            0x8b => {
                let n = r.u32()? as u64;
                let b = r.len_prefixed(n)?;
                self.stack.push(long_from_le(b));
            }
            b'I' | b'L' => {
                let s = r.line()?;
                self.stack.push(text_int(s)?);
            }
            b'G' => self.stack.push(Value::Float(f64::from_be_bytes(
                r.take(8)?.try_into().unwrap(),
            ))),
            b'F' => {
                let s = r.line()?;
                self.stack.push(Value::Float(
                    s.trim()
                        .parse()
                        .with_context(|| format!("bad FLOAT {s:?}"))?,
                ));
            }
            // strings and bytes
            b'X' => {
                let n = r.u32()? as u64;
                let s = utf8(r.len_prefixed(n)?)?;
                self.stack.push(Value::Str(s));
            }
            0x8c => {
                let n = r.u8()? as u64;
                let s = utf8(r.len_prefixed(n)?)?;
                self.stack.push(Value::Str(s));
            }
            0x8d => {
                let n = r.u64()?;
                let s = utf8(r.len_prefixed(n)?)?;
                self.stack.push(Value::Str(s));
            }
            b'V' => {
                let s = r.line()?.to_string();
                self.stack.push(Value::Str(s));
            }
            b'T' => {
                let n = r.u32()? as u64;
                let s = latin1(r.len_prefixed(n)?);
                self.stack.push(Value::Str(s));
            }
            b'U' => {
                let n = r.u8()? as u64;
                let s = latin1(r.len_prefixed(n)?);
                self.stack.push(Value::Str(s));
            }
            b'S' => {
                let s = r.line()?;
                self.stack.push(Value::Str(
                    s.trim_matches(|c| c == '\'' || c == '"').to_string(),
                ));
            }
            b'B' => {
                let n = r.u32()? as u64;
                let b = r.len_prefixed(n)?.to_vec();
                self.stack.push(Value::Bytes(b));
            }
            b'C' => {
                let n = r.u8()? as u64;
                let b = r.len_prefixed(n)?.to_vec();
                self.stack.push(Value::Bytes(b));
            }
            0x8e | 0x96 => {
                let n = r.u64()?;
                let b = r.len_prefixed(n)?.to_vec();
                self.stack.push(Value::Bytes(b));
            }
            // memo
            b'q' => {
                let k = r.u8()? as u64;
                self.memo_put(k)?;
            }
            b'r' => {
                let k = r.u32()? as u64;
                self.memo_put(k)?;
            }
            b'p' => {
                let k: u64 = r.line()?.parse().context("bad PUT index")?;
                self.memo_put(k)?;
            }
            0x94 => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?;
            }
            b'h' => {
                let k = r.u8()? as u64;
                let v = self.memo_get(k)?;
                self.stack.push(v);
            }
            b'j' => {
                let k = r.u32()? as u64;
                let v = self.memo_get(k)?;
                self.stack.push(v);
            }
            b'g' => {
                let k: u64 = r.line()?.parse().context("bad GET index")?;
                let v = self.memo_get(k)?;
                self.stack.push(v);
            }
            // classes, calls, objects
            b'c' => {
                let module = r.line()?.to_string();
                let name = r.line()?.to_string();
                self.stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                    _ => bail!("STACK_GLOBAL needs two strings"),
                }
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = args
                    .as_seq()
                    .ok_or_else(|| anyhow!("REDUCE arguments are not a tuple"))?;
                let v = self.call(callable, args)?;
                self.push_returned(v)?;
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = args
                    .as_seq()
                    .ok_or_else(|| anyhow!("NEWOBJ arguments are not a tuple"))?;
                let v = self.call(cls, args)?;
                self.push_returned(v)?;
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = args
                    .as_seq()
                    .ok_or_else(|| anyhow!("NEWOBJ_EX arguments are not a tuple"))?;
                let v = self.call(cls, args)?;
                self.push_returned(v)?;
            }
            b'i' => {
                let module = r.line()?.to_string();
                let name = r.line()?.to_string();
                let args = self.pop_mark()?;
                let v = self.call(Value::Global(module, name), args)?;
                self.push_returned(v)?;
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    bail!("OBJ without a class");
                }
                let cls = items.remove(0);
                let v = self.call(cls, items)?;
                self.push_returned(v)?;
            }
            b'b' => {
                let state = self.pop()?;
                self.build(state)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.resolver.persistent_load(pid)?;
                self.push_returned(v)?;
            }
            b'P' => {
                let pid = Value::Str(r.line()?.to_string());
                let v = self.resolver.persistent_load(pid)?;
                self.push_returned(v)?;
            }
            0x82..=0x84 => bail!("pickle extension registry opcodes (EXT1/2/4) are not supported"),
            0x97 | 0x98 => bail!("out-of-band pickle buffers are not supported"),
            _ => bail!("unknown pickle opcode 0x{op:02x}"),
        }
        Ok(None)
    }
}

/// Unpickles `data` with `resolver` for persistent ids and calls.
pub fn unpickle<R: Resolver>(data: &[u8], resolver: &mut R) -> Result<Value> {
    let mut vm = Vm {
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        resolver,
        depth: HashMap::new(),
        nested: HashSet::new(),
    };
    vm.run(data)
}
