//! Same seed -> same model and same outputs on CPU. Alone in its test binary because the
//! libtorch generator is process-global and parallel tests would interleave draws.

use sevit_model::{DistlNet, ModelConfig};
use tch::{nn::VarStore, Device, Kind, Tensor};

fn build(seed: i64) -> (VarStore, DistlNet) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let net = DistlNet::new(&vs.root(), &ModelConfig::micro(), 0.1);
    (vs, net)
}

#[test]
fn same_seed_same_model_and_outputs() {
    let (vs1, n1) = build(11);
    let (vs2, n2) = build(11);
    let (v1, v2) = (vs1.variables(), vs2.variables());
    assert_eq!(v1.len(), v2.len());
    for (k, t) in &v1 {
        assert!(t.equal(&v2[k]), "{k} differs");
    }
    let (_vs3, n3) = build(12);
    let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    tch::manual_seed(5);
    let a = n1.forward_multi(&[x.shallow_clone()], 1, true);
    tch::manual_seed(5);
    let b = n2.forward_multi(&[x.shallow_clone()], 1, true);
    assert!(a.dino.equal(&b.dino) && a.cls_logits.equal(&b.cls_logits));
    let c = n3.forward_multi(&[x], 1, false);
    assert!(
        !a.dino.allclose(&c.dino, 1e-3, 1e-3, false),
        "different seeds gave the same model"
    );
}
