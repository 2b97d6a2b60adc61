//! Tests of [`super`] (`pickle.rs`).

use super::*;

// Bytes produced by CPython 3.11: pickle.dumps(obj, protocol=2) for
// obj = {'a': [1, -2, 300, 70000, 2**40], 'b': (1.5, None, True, False), 'c': 'héllo'}
const P2: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01eX\x01\x00\x00\x00bq\x03(G?\xf8\x00\x00\x00\x00\x00\x00N\x88\x89tq\x04X\x01\x00\x00\x00cq\x05X\x06\x00\x00\x00h\xc3\xa9lloq\x06u.";

#[test]
fn protocol2_builtins() {
    let v = unpickle(P2, &mut NoResolver).unwrap();
    let a = v.get("a").unwrap().as_seq().unwrap();
    let ints: Vec<i64> = a.iter().map(|x| x.as_int().unwrap()).collect();
    assert_eq!(ints, [1, -2, 300, 70000, 1 << 40]);
    let b = v.get("b").unwrap().as_seq().unwrap();
    assert!(matches!(b[0], Value::Float(f) if f == 1.5));
    assert!(matches!(b[1], Value::None));
    assert!(matches!(b[2], Value::Bool(true)));
    assert_eq!(v.get("c").unwrap().as_str(), Some("héllo"));
}

#[test]
fn unknown_class_becomes_object_with_state() {
    // pickle.dumps(argparse.Namespace(lr=0.5, arch='vit_small'), protocol=2)
    let data = b"\x80\x02cargparse\nNamespace\nq\x00)\x81q\x01}q\x02(X\x02\x00\x00\x00lrq\x03G?\xe0\x00\x00\x00\x00\x00\x00X\x04\x00\x00\x00archq\x04X\t\x00\x00\x00vit_smallq\x05ub.";
    let v = unpickle(data, &mut NoResolver).unwrap();
    match &v {
        Value::Object(o) => assert_eq!(
            o.borrow().class,
            ("argparse".to_string(), "Namespace".to_string())
        ),
        other => panic!("got {}", other.type_name()),
    }
    let j = v.to_json();
    assert_eq!(j["lr"], 0.5);
    assert_eq!(j["arch"], "vit_small");
}

#[test]
fn memo_shares_mutable_containers() {
    // x = []; pickle.dumps([x, x]) then x mutated before pickling: [[1], [1]]
    // Hand-written: EMPTY_LIST, BINPUT 0, MARK, EMPTY_LIST, BINPUT 1, BINGET 1, APPENDS,
    // then BINGET 1, K 1, APPEND (mutating through the memo), STOP.
    let data = b"\x80\x02]q\x00(]q\x01h\x01e0h\x01K\x01a0h\x00.";
    let v = unpickle(data, &mut NoResolver).unwrap();
    let outer = v.as_seq().unwrap();
    assert_eq!(outer.len(), 2);
    for inner in outer {
        assert_eq!(inner.as_seq().unwrap().len(), 1);
    }
}

/// `depth` nested one-element tuples (`)` then `TUPLE1` repeated), then STOP.
fn nested_tuples(depth: usize) -> Vec<u8> {
    let mut p = vec![0x80, 2, b')'];
    p.extend(std::iter::repeat_n(0x85u8, depth));
    p.push(b'.');
    p
}

#[test]
fn nesting_is_bounded() {
    let ok = unpickle(&nested_tuples(MAX_DEPTH as usize - 1), &mut NoResolver).unwrap();
    assert!(ok.to_json().is_array());
    // 200k levels aborted the process (stack overflow while dropping) before the bound.
    for depth in [MAX_DEPTH as usize, 200_000] {
        let e = format!(
            "{:#}",
            unpickle(&nested_tuples(depth), &mut NoResolver).unwrap_err()
        );
        assert!(e.contains("nested deeper than 1000"), "{e}");
    }
    // The same through lists: MARK x n, `]`, LIST x n.
    let n = 200_000;
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat_n(b'(', n));
    p.push(b']');
    p.extend(std::iter::repeat_n(b'l', n));
    p.push(b'.');
    let e = format!("{:#}", unpickle(&p, &mut NoResolver).unwrap_err());
    assert!(e.contains("nested deeper than 1000"), "{e}");
}

#[test]
fn dup_cannot_double_a_structure_per_opcode() {
    // `)` then n x (DUP, TUPLE2): 2^n values when walked, n + 1 containers in memory.
    let doubling = |n: usize| {
        let mut p = vec![0x80, 2, b')'];
        for _ in 0..n {
            p.extend([b'2', 0x86]);
        }
        p.push(b'.');
        p
    };
    let v = unpickle(&doubling(10), &mut NoResolver).unwrap();
    assert!(v.to_json().is_array());
    // 60 levels: 2^60 values for to_json to visit (found by the pickle fuzz target as a
    // 746-byte input that ran for minutes).
    let e = format!(
        "{:#}",
        unpickle(&doubling(60), &mut NoResolver).unwrap_err()
    );
    assert!(e.contains("expand to more than"), "{e}");
}

#[test]
fn hidden_depth_and_cycles_are_refused() {
    // A list memoised, placed in a tuple, then filled through the memo: refused (it
    // would hide depth from the tuple, and is how reference cycles are built).
    let p = [0x80, 2, b']', b'q', 0, 0x85, b'h', 0, b']', b'a', b'.'];
    let e = format!("{:#}", unpickle(&p, &mut NoResolver).unwrap_err());
    assert!(e.contains("recursive structures"), "{e}");
    // A list appended to itself.
    let p = [0x80, 2, b']', b'q', 0, b'h', 0, b'a', b'.'];
    let e = format!("{:#}", unpickle(&p, &mut NoResolver).unwrap_err());
    assert!(e.contains("contains itself"), "{e}");
    // Filling a list with scalars after memoising it (what pickle.dumps does) is fine.
    let p = [0x80, 2, b']', b'q', 0, b'(', b'K', 1, b'K', 2, b'e', b'.'];
    assert_eq!(
        unpickle(&p, &mut NoResolver).unwrap().to_json(),
        serde_json::json!([1, 2])
    );
}

#[test]
fn truncated_and_garbage_fail_cleanly() {
    for n in [1, 5, P2.len() / 2, P2.len() - 1] {
        let e = unpickle(&P2[..n], &mut NoResolver).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("pickle"), "{msg}");
    }
    assert!(unpickle(b"\xff\xff", &mut NoResolver).is_err());
}
