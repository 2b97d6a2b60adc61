//! Deterministic seed derivation: every random stream is a ChaCha8 generator seeded by a hash of
//! explicit integers (seed, epoch, image index, view index, ...), so results never depend on
//! thread scheduling.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64 finaliser: a fast bijective 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of integers into one 64-bit seed (order-sensitive).
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut h = mix(0x5EE7_DA7A ^ parts.len() as u64);
    for &p in parts {
        h = mix(h ^ mix(p));
    }
    h
}

/// Hashes a string (FNV-1a) to a 64-bit value, for use as a [`derive_seed`] part.
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// A ChaCha8 generator seeded from [`derive_seed`]`(parts)`.
pub fn rng_for(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn seeds_are_order_sensitive_and_stable() {
        assert_eq!(derive_seed(&[1, 2, 3]), derive_seed(&[1, 2, 3]));
        assert_ne!(derive_seed(&[1, 2, 3]), derive_seed(&[3, 2, 1]));
        assert_ne!(derive_seed(&[1, 2]), derive_seed(&[1, 2, 0]));
        let a: u64 = rng_for(&[7, 0, 5]).gen();
        let b: u64 = rng_for(&[7, 0, 5]).gen();
        assert_eq!(a, b);
    }
}
