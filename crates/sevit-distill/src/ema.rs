//! Teacher EMA: θ_t ← m·θ_t + (1−m)·θ_s over every variable, matched by name.

use anyhow::{bail, Context};
use tch::nn::VarStore;

/// Updates every teacher variable from the student variable of the same name:
/// `t <- m t + (1 - m) s`, without gradient. Heads are included; frozen variables (such as
/// the fixed `weight_g` of a normalised last layer) too, which is harmless as both sides hold
/// the same value. Errors when a name is missing on either side or shapes differ.
pub fn update_momentum(teacher: &VarStore, student: &VarStore, m: f64) -> anyhow::Result<()> {
    let t_vars = teacher.variables();
    let s_vars = student.variables();
    if t_vars.len() != s_vars.len() {
        bail!(
            "teacher has {} variables but student has {}: they must be the same network",
            t_vars.len(),
            s_vars.len()
        );
    }
    let mut dst = Vec::with_capacity(t_vars.len());
    let mut src = Vec::with_capacity(t_vars.len());
    for (name, t) in t_vars.iter() {
        let s = s_vars
            .get(name)
            .with_context(|| format!("student has no variable `{name}`"))?;
        if t.size() != s.size() {
            bail!(
                "variable `{name}`: teacher shape {:?} vs student {:?}",
                t.size(),
                s.size()
            );
        }
        dst.push(t);
        src.push(s);
    }
    // m·t + (1−m)·s in one pass over every variable.
    crate::foreach::lerp_(&dst, &src, 1.0 - m)
}

/// Copies every student variable into the teacher variable of the same name (`m = 0`),
/// used to start a teacher from a student.
pub fn copy_weights(dst: &VarStore, src: &VarStore) -> anyhow::Result<()> {
    let d = dst.variables();
    let s = src.variables();
    tch::no_grad(|| -> anyhow::Result<()> {
        for (name, t) in d.iter() {
            let v = s
                .get(name)
                .with_context(|| format!("source has no variable `{name}`"))?;
            t.shallow_clone().f_copy_(v)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind, Tensor};

    fn store(v: f64) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let _w = root.var("w", &[2, 2], nn::Init::Const(v));
        let _b = (&root / "head").var("b", &[3], nn::Init::Const(v));
        let _g = (&root / "head").zeros_no_train("g", &[1]);
        vs
    }

    #[test]
    fn ema_by_name() {
        let t = store(1.0);
        let s = store(3.0);
        update_momentum(&t, &s, 0.9).unwrap();
        let vars = t.variables();
        let w = &vars["w"];
        let expected = Tensor::full([2, 2], 0.9 * 1.0 + 0.1 * 3.0, (Kind::Float, Device::Cpu));
        assert!(w.allclose(&expected, 1e-6, 1e-7, false));
        let b = &vars["head.b"];
        assert!((b.double_value(&[2]) - 1.2).abs() < 1e-6);
        // twice more with m=0.5
        update_momentum(&t, &s, 0.5).unwrap();
        assert!((t.variables()["w"].double_value(&[0, 0]) - 2.1).abs() < 1e-6);
        // no autograd history on the teacher
        assert!(!t.variables()["head.g"].requires_grad());
    }

    #[test]
    fn mismatch_is_an_error() {
        let t = store(1.0);
        let s = VarStore::new(Device::Cpu);
        let _ = s.root().var("w", &[2, 2], nn::Init::Const(0.0));
        assert!(update_momentum(&t, &s, 0.9).is_err());
    }

    #[test]
    fn copy_then_identical() {
        let t = store(1.0);
        let s = store(5.0);
        copy_weights(&t, &s).unwrap();
        assert!((t.variables()["head.b"].double_value(&[0]) - 5.0).abs() < 1e-9);
    }
}
