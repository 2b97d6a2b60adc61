//! Training config TOML + `--set` overrides. Input: TOML text, a 0x00 byte, then one
//! override per line. Invariant: a config that loads serialises to TOML that loads again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevit_distill::config::TrainConfig;

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let overrides: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else {
        String::from_utf8_lossy(rest).split('\n').map(str::to_string).collect()
    };
    let Ok(cfg) = TrainConfig::from_toml_with_overrides(&text, "fuzz", &overrides) else {
        return;
    };
    let toml = cfg.to_toml().expect("a valid config serialises to TOML");
    if let Err(e) = TrainConfig::from_toml_str(&toml, "fuzz (round trip)") {
        panic!("a valid config does not round-trip: {e:#}\n--- to_toml:\n{toml}");
    }
});
