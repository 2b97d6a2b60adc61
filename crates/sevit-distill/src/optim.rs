//! AdamW written on tensors (as PyTorch's single-tensor `AdamW`), with DINO's two parameter
//! groups and a state that round-trips through checkpoints.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use tch::{nn::VarStore, Kind, Tensor};

/// One optimised parameter and its Adam state.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    regularized: bool,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: i64,
}

/// AdamW over the trainable variables of a [`VarStore`].
///
/// Groups as DINO's `get_params_groups`: biases (`*.bias`) and 1-D parameters (norms) get no
/// weight decay; every other trainable parameter is "regularised" and receives the scheduled
/// weight decay. Frozen variables (`requires_grad == false`) are not optimised. Parameters whose
/// gradient is undefined at a step (not in the graph, or cancelled) are skipped entirely, as
/// PyTorch skips parameters whose `.grad` is `None`.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    /// β1 (0.9).
    pub beta1: f64,
    /// β2 (0.999).
    pub beta2: f64,
    /// ε (1e-8).
    pub eps: f64,
}

/// `true` for parameters DINO does not regularise: biases and 1-D tensors.
pub fn is_unregularized(name: &str, shape: &[i64]) -> bool {
    name.ends_with(".bias") || shape.len() == 1
}

impl AdamW {
    /// Optimises the trainable variables of `vs` whose name passes `include`, in name order.
    pub fn new(vs: &VarStore, include: impl Fn(&str) -> bool) -> Self {
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let slots = vars
            .into_iter()
            .filter(|(name, t)| t.requires_grad() && include(name))
            .map(|(name, t)| {
                let regularized = !is_unregularized(&name, &t.size());
                Slot {
                    exp_avg: t.zeros_like().detach(),
                    exp_avg_sq: t.zeros_like().detach(),
                    regularized,
                    param: t,
                    name,
                    step: 0,
                }
            })
            .collect();
        Self {
            slots,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// Names of the optimised parameters, in the order of [`AdamW::params`].
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// The optimised parameters (shallow clones), to pass to `Tensor::run_backward`.
    pub fn params(&self) -> Vec<Tensor> {
        self.slots.iter().map(|s| s.param.shallow_clone()).collect()
    }

    /// Whether the parameter at `index` is in the regularised group.
    pub fn is_regularized(&self, index: usize) -> bool {
        self.slots[index].regularized
    }

    /// Gradients of `loss` with respect to [`AdamW::params`] (undefined where a parameter is
    /// not in the graph). Does not accumulate into `.grad`.
    pub fn gradients(&self, loss: &Tensor) -> Vec<Tensor> {
        let params = self.params();
        Tensor::run_backward(&[loss], &params, false, false)
    }

    /// One AdamW step with learning rate `lr` and weight decay `wd` (regularised group only).
    /// `grads[i]` belongs to parameter `i`; undefined gradients skip their parameter.
    pub fn step(&mut self, grads: &[Tensor], lr: f64, wd: f64) -> anyhow::Result<()> {
        if grads.len() != self.slots.len() {
            bail!(
                "AdamW got {} gradients for {} parameters",
                grads.len(),
                self.slots.len()
            );
        }
        // Two fused multi-tensor calls (one per weight-decay group) over the parameters that
        // have a gradient this step.
        for regularized in [true, false] {
            let live: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.slots[i].regularized == regularized && grads[i].defined())
                .collect();
            if live.is_empty() {
                continue;
            }
            for &i in &live {
                self.slots[i].step += 1;
            }
            let slots: Vec<&Slot> = live.iter().map(|&i| &self.slots[i]).collect();
            crate::foreach::fused_adamw(
                &slots.iter().map(|s| &s.param).collect::<Vec<_>>(),
                &live.iter().map(|&i| &grads[i]).collect::<Vec<_>>(),
                &slots.iter().map(|s| &s.exp_avg).collect::<Vec<_>>(),
                &slots.iter().map(|s| &s.exp_avg_sq).collect::<Vec<_>>(),
                &slots.iter().map(|s| s.step).collect::<Vec<_>>(),
                crate::foreach::AdamWStep {
                    lr,
                    beta1: self.beta1,
                    beta2: self.beta2,
                    weight_decay: if regularized { wd } else { 0.0 },
                    eps: self.eps,
                },
            )?;
        }
        Ok(())
    }

    /// The optimiser state as named tensors: `exp_avg.<param>`, `exp_avg_sq.<param>`,
    /// `step.<param>` (int64 scalar). Prefix them when storing in a checkpoint.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut m = BTreeMap::new();
        for s in &self.slots {
            m.insert(format!("exp_avg.{}", s.name), s.exp_avg.shallow_clone());
            m.insert(
                format!("exp_avg_sq.{}", s.name),
                s.exp_avg_sq.shallow_clone(),
            );
            m.insert(format!("step.{}", s.name), Tensor::from(s.step));
        }
        m
    }

    /// Restores a state written by [`AdamW::state`]; errors on missing entries or shapes.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for s in self.slots.iter_mut() {
                for (key, dst) in [
                    ("exp_avg", &mut s.exp_avg),
                    ("exp_avg_sq", &mut s.exp_avg_sq),
                ] {
                    let k = format!("{key}.{}", s.name);
                    let src = state
                        .get(&k)
                        .with_context(|| format!("optimiser state lacks `{k}`"))?;
                    if src.size() != dst.size() {
                        bail!(
                            "optimiser state `{k}` has shape {:?}, expected {:?}",
                            src.size(),
                            dst.size()
                        );
                    }
                    dst.f_copy_(src)?;
                }
                let k = format!("step.{}", s.name);
                let st = state
                    .get(&k)
                    .with_context(|| format!("optimiser state lacks `{k}`"))?;
                s.step = st.to_kind(Kind::Int64).int64_value(&[]);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    fn store() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let r = vs.root();
        let _ = (&r / "lin").var_copy("weight", &Tensor::from_slice(&[1.0f32, -2.0]).view([1, 2]));
        let _ = (&r / "lin").var_copy("bias", &Tensor::from_slice(&[0.5f32]));
        let _ = (&r / "norm").var_copy("weight", &Tensor::from_slice(&[1.0f32, 1.0]));
        let _ = (&r / "frozen").zeros_no_train("weight_g", &[1, 1]);
        let _ = (&r / "unused").var("weight", &[2, 2], nn::Init::Const(1.0));
        vs
    }

    /// One scalar PyTorch-AdamW step by hand.
    fn adamw_hand(p: f64, g: f64, m: f64, v: f64, t: i32, lr: f64, wd: f64) -> (f64, f64, f64) {
        let p = p * (1.0 - lr * wd);
        let m = 0.9 * m + 0.1 * g;
        let v = 0.999 * v + 0.001 * g * g;
        let mhat_step = lr / (1.0 - 0.9f64.powi(t));
        let denom = v.sqrt() / (1.0 - 0.999f64.powi(t)).sqrt() + 1e-8;
        (p - mhat_step * m / denom, m, v)
    }

    #[test]
    fn groups() {
        let vs = store();
        let opt = AdamW::new(&vs, |_| true);
        assert_eq!(
            opt.names(),
            vec!["lin.bias", "lin.weight", "norm.weight", "unused.weight"]
        );
        assert!(!opt.is_regularized(0));
        assert!(opt.is_regularized(1));
        assert!(!opt.is_regularized(2));
        let opt = AdamW::new(&vs, |n| !n.starts_with("unused"));
        assert_eq!(opt.names().len(), 3);
    }

    #[test]
    fn two_steps_match_hand_computation_and_skip_unused() {
        let vs = store();
        let mut opt = AdamW::new(&vs, |_| true);
        let vars = vs.variables();
        let (w, b) = (&vars["lin.weight"], &vars["lin.bias"]);
        let x = Tensor::from_slice(&[3.0f32, 1.0]).view([1, 2]);
        let (lr, wd) = (0.1, 0.05);
        // hand state for w[0], w[1], b
        let mut hand = [(1.0f64, 0.0, 0.0), (-2.0, 0.0, 0.0), (0.5, 0.0, 0.0)];
        for t in 1..=2 {
            let wv = [hand[0].0, hand[1].0];
            let bv = hand[2].0;
            // loss = (w x + b)^2 -> dL/dw = 2 y x, dL/db = 2 y
            let y = wv[0] * 3.0 + wv[1] * 1.0 + bv;
            let grads_hand = [2.0 * y * 3.0, 2.0 * y * 1.0, 2.0 * y];
            let out = (x.matmul(&w.tr()) + b)
                .pow_tensor_scalar(2)
                .sum(Kind::Float);
            let grads = opt.gradients(&out);
            assert!(!grads[3].defined(), "unused parameter must get no gradient");
            opt.step(&grads, lr, wd).unwrap();
            for (i, gh) in grads_hand.iter().enumerate() {
                let decay = if i < 2 { wd } else { 0.0 };
                let (p, m, v) = hand[i];
                hand[i] = adamw_hand(p, *gh, m, v, t, lr, decay);
            }
        }
        assert!((w.double_value(&[0, 0]) - hand[0].0).abs() < 1e-5);
        assert!((w.double_value(&[0, 1]) - hand[1].0).abs() < 1e-5);
        assert!((b.double_value(&[0]) - hand[2].0).abs() < 1e-5);
        // the unused parameter was neither moved nor decayed
        assert_eq!(vars["unused.weight"].double_value(&[0, 0]), 1.0);
        let st = opt.state();
        assert_eq!(st["step.lin.weight"].int64_value(&[]), 2);
        assert_eq!(st["step.unused.weight"].int64_value(&[]), 0);
    }

    #[test]
    fn state_roundtrip() {
        let vs = store();
        let mut opt = AdamW::new(&vs, |_| true);
        let vars = vs.variables();
        let loss = (&vars["lin.weight"] * 2.0).sum(Kind::Float) + vars["lin.bias"].sum(Kind::Float);
        let g = opt.gradients(&loss);
        opt.step(&g, 0.1, 0.0).unwrap();
        let saved: BTreeMap<String, Tensor> = opt
            .state()
            .into_iter()
            .map(|(k, v)| (k, v.copy()))
            .collect();
        let vs2 = store();
        let mut opt2 = AdamW::new(&vs2, |_| true);
        opt2.load_state(&saved).unwrap();
        let st2 = opt2.state();
        for (k, v) in &saved {
            assert!(v.equal(&st2[k]), "{k}");
        }
        let mut missing: BTreeMap<String, Tensor> = saved
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect();
        missing.remove("exp_avg.lin.bias");
        assert!(opt2.load_state(&missing).is_err());
    }
}
