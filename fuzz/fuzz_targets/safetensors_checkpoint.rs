//! safetensors bytes -> Checkpoint (tensors built through libtorch).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevit_model::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(ck) = Checkpoint::from_bytes(data, "fuzz") else {
        return;
    };
    for name in ck.keys_under("") {
        let t = ck.tensor(&name).expect("a listed key has a tensor");
        let _ = (t.size(), t.kind(), t.numel());
    }
    for key in ck.metadata.keys() {
        let _ = ck.get_json::<serde_json::Value>(key);
    }
});
