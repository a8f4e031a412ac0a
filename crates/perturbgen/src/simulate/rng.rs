//! Seeded random streams. Every entity (a gene's parameters, a compound's effects, one cell)
//! draws from its own stream derived from (seed, purpose, index), so results do not depend on
//! thread count or processing order, and the same seed gives the same bytes.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64's finaliser: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Purposes of the streams (part of the derivation, so streams never collide).
#[derive(Clone, Copy)]
#[repr(u64)]
pub enum Purpose {
    Layout = 1,
    Genes = 2,
    CellTypes = 3,
    Donors = 4,
    Plates = 5,
    Compounds = 6,
    Wells = 7,
    Cells = 8,
    Libraries = 9,
}

pub fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(seed ^ mix(purpose as u64)) ^ index))
}

/// A 64-bit id derived from the same mix (for cell ids).
pub fn hash64(seed: u64, index: u64) -> u64 {
    mix(mix(seed.wrapping_add(0xA5A5_5A5A)) ^ mix(index))
}
