//! Deterministic, seeded initialisation of weights and inputs.
//!
//! When a model runs without a weights file, nnc fills each weight with
//! pseudo-random values that are a pure function of three things: the
//! weight's name, its shape and a seed (default [`DEFAULT_SEED`], which is 0).
//! The other weights of the model play no part, so adding, removing or
//! reordering layers never changes the values of the weights that remain.
//! The same name, shape and seed give bit-identical values on every machine
//! and every run.
//!
//! # Weights: [`seeded_uniform`]
//!
//! `seeded_uniform(name, shape, low, high, seed)` computes its values as
//! follows.
//!
//! 1. Hash the name with 64-bit FNV-1a ([`fnv1a64`]): start from the offset
//!    basis `0xcbf2_9ce4_8422_2325`, and for each byte of the name's UTF-8
//!    encoding, XOR the byte into the low bits of the hash, then multiply by
//!    the FNV prime `0x0000_0100_0000_01b3`, wrapping modulo 2^64.
//! 2. Create the generator `ChaCha8Rng::seed_from_u64(seed ^ hash)` from the
//!    `rand_chacha` 0.9 crate. `seed_from_u64` is `rand_core` 0.9's: it
//!    expands the 64-bit seed into the 32-byte ChaCha key with PCG32.
//! 3. Draw one value per element in row-major order (the last dimension
//!    varies fastest) from `rand::distr::Uniform::<f32>::new(low, high)` of
//!    `rand` 0.9. Each draw takes the next `u32` from the generator, keeps its
//!    top 23 bits as the mantissa of a float `u` in `[1, 2)`, and returns
//!    `(u - 1) * scale + low` (a multiply, then an add), where `scale` is
//!    `high - low`, lowered by as many units in the last place as needed
//!    for the largest draw not to exceed `high`. Every value therefore lies
//!    in `[low, high]`; only where rounding the sum lands on `high` (a
//!    range narrow next to its bounds, such as `[1e7, 1e7 + 1)`) can the
//!    largest draw, one in 2^23, equal it.
//!
//! Each draw takes exactly one `u32`, so draw `i` is made from word `i` of
//! the generator's stream: [`seeded_uniform_part`] draws any run of a
//! tensor's elements on its own (seeking the stream with ChaCha's
//! `set_word_pos`), which lets large tensors be drawn on several threads
//! with the same values.
//!
//! Because the elements are consecutive draws of one stream, the values
//! depend on the shape only through the element count: a tensor of shape
//! `[2, 3]` holds the same six values as one of shape `[6]`, and a larger
//! tensor starts with the values of a smaller one.
//!
//! # Inputs: [`random_input`]
//!
//! `random_input(shape, seed)` draws from `[-1, 1)` exactly as in step 3,
//! with the generator `ChaCha8Rng::seed_from_u64(seed)`: inputs have no name,
//! so no hash is mixed into the seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::TensorError;
use crate::tensor::{checked_numel, Tensor};

/// The seed used when the user gives none.
pub const DEFAULT_SEED: u64 = 0;

/// The FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// The FNV 64-bit prime, 2^40 + 2^8 + 0xb3.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit FNV-1a hash of `bytes`, which mixes a weight's name into the
/// seed (see the module documentation).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// A tensor of values drawn uniformly from `[low, high)`, determined by
/// `name`, `shape` and `seed` alone, as the module documentation specifies.
///
/// Fails if `low` or `high` is not finite, if `low >= high`, or if the
/// element count of `shape` overflows.
pub fn seeded_uniform(
    name: &str,
    shape: &[usize],
    low: f32,
    high: f32,
    seed: u64,
) -> Result<Tensor, TensorError> {
    uniform(shape, low, high, seed ^ fnv1a64(name.as_bytes()))
}

/// Elements `start .. start + out.len()` of the tensor [`seeded_uniform`]
/// gives for `name`, `low`, `high` and `seed` (of any shape with at least
/// that many elements), written to `out`: a part of a large tensor, drawn
/// on its own so that parts can be drawn on several threads.
///
/// Fails if `low` or `high` is not finite or if `low >= high`.
pub fn seeded_uniform_part(
    name: &str,
    low: f32,
    high: f32,
    seed: u64,
    start: usize,
    out: &mut [f32],
) -> Result<(), TensorError> {
    draw(low, high, seed ^ fnv1a64(name.as_bytes()), start, out)
}

/// An input tensor of values drawn uniformly from `[-1, 1)` by a generator
/// seeded with `seed`, as the module documentation specifies.
pub fn random_input(shape: &[usize], seed: u64) -> Result<Tensor, TensorError> {
    uniform(shape, -1.0, 1.0, seed)
}

/// Fills a tensor with draws of `Uniform::new(low, high)` from
/// `ChaCha8Rng::seed_from_u64(generator_seed)`.
fn uniform(
    shape: &[usize],
    low: f32,
    high: f32,
    generator_seed: u64,
) -> Result<Tensor, TensorError> {
    let count = checked_numel(shape).ok_or_else(|| TensorError::Overflow {
        shape: shape.to_vec(),
    })?;
    let mut data = vec![0.0; count];
    draw(low, high, generator_seed, 0, &mut data)?;
    Tensor::new(shape.to_vec(), data)
}

/// Draws `start .. start + out.len()` of `Uniform::new(low, high)` from
/// `ChaCha8Rng::seed_from_u64(generator_seed)` into `out`.
///
/// The words are taken from the generator a block at a time and turned into
/// floats in a loop the compiler vectorises, computing what
/// `Uniform::sample` computes per word: one `sample` call at a time took
/// 1.75 times as long, and seeding resnet18's 47 MB of weights was then
/// about a third of its time from source to ready to run.
fn draw(
    low: f32,
    high: f32,
    generator_seed: u64,
    start: usize,
    out: &mut [f32],
) -> Result<(), TensorError> {
    let distribution = UniformF32::new(low, high)?;
    let mut rng = ChaCha8Rng::seed_from_u64(generator_seed);
    // One word per draw (see the module documentation).
    rng.set_word_pos(start as u128);
    let mut words = [0u32; 256];
    for part in out.chunks_mut(words.len()) {
        let words = &mut words[..part.len()];
        rng.fill(words);
        for (v, &word) in part.iter_mut().zip(words.iter()) {
            *v = distribution.sample(word);
        }
    }
    Ok(())
}

/// `rand::distr::Uniform::<f32>::new(low, high)` of `rand` 0.9, with its
/// sampling split from the generator so that words can be drawn in bulk.
/// The test `bulk_draws_match_rand_s_uniform` holds it to `rand`'s.
#[derive(Clone, Copy, Debug)]
struct UniformF32 {
    low: f32,
    scale: f32,
}

impl UniformF32 {
    /// Refuses a range that is empty or not finite (`Uniform::new` checks
    /// finiteness only in debug builds; this checks in every build).
    fn new(low: f32, high: f32) -> Result<UniformF32, TensorError> {
        let invalid_range = TensorError::InvalidRange { low, high };
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(invalid_range);
        }
        let mut scale = high - low;
        if !scale.is_finite() {
            return Err(invalid_range);
        }
        // As `UniformFloat::new_bounded`: lowered a unit in the last place
        // at a time until the largest draw does not exceed `high`.
        let max_rand = 1.0 - f32::EPSILON;
        while scale * max_rand + low > high {
            scale = f32::from_bits(scale.to_bits() - 1);
        }
        Ok(UniformF32 { low, scale })
    }

    /// The value `Uniform::sample` makes from the generator's word `word`:
    /// its top 23 bits as the mantissa of a float in `[1, 2)`, moved to
    /// `[0, 1)`, then scaled (a multiply and an add, not fused).
    #[inline]
    fn sample(self, word: u32) -> f32 {
        let unit = f32::from_bits((word >> 9) | 1.0f32.to_bits()) - 1.0;
        unit * self.scale + self.low
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use rand::distr::{Distribution, Uniform};
    use rand::RngCore;

    use super::*;

    #[test]
    fn fnv1a64_matches_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn same_name_shape_and_seed_give_identical_values() {
        let a = seeded_uniform("conv1.weight", &[4, 3, 3, 3], -0.5, 0.5, 7).unwrap();
        let b = seeded_uniform("conv1.weight", &[4, 3, 3, 3], -0.5, 0.5, 7).unwrap();
        assert_eq!(a.shape(), [4, 3, 3, 3]);
        let bits = |t: &Tensor| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
    }

    #[test]
    fn different_names_or_seeds_give_different_values() {
        let base = seeded_uniform("conv1.weight", &[64], -1.0, 1.0, 0).unwrap();
        let renamed = seeded_uniform("conv2.weight", &[64], -1.0, 1.0, 0).unwrap();
        let reseeded = seeded_uniform("conv1.weight", &[64], -1.0, 1.0, 1).unwrap();
        assert_ne!(base.data(), renamed.data());
        assert_ne!(base.data(), reseeded.data());
    }

    #[test]
    fn values_lie_in_the_half_open_range_and_fill_it() {
        let t = seeded_uniform("w", &[10_000], 2.0, 3.0, DEFAULT_SEED).unwrap();
        assert!(t.data().iter().all(|&x| (2.0..3.0).contains(&x)));
        // A uniform sample this large reaches close to both ends.
        let min = t.data().iter().copied().fold(f32::INFINITY, f32::min);
        let max = t.data().iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(min < 2.01 && max > 2.99, "min {min}, max {max}");
    }

    #[test]
    fn values_follow_the_documented_recipe() {
        // Re-derive the values from the module documentation, step by step.
        let (name, seed, low, high) = ("layer1.0.conv1.weight", 42u64, -0.25f32, 0.75f32);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a64(name.as_bytes()));
        let scale = high - low;
        // `scale * (1 - f32::EPSILON) + low` stays below `high` here, so the
        // scale needs no lowering.
        assert!(scale * (1.0 - f32::EPSILON) + low < high);
        let expected: Vec<f32> = (0..12)
            .map(|_| {
                let u = f32::from_bits((rng.next_u32() >> 9) | 1.0f32.to_bits());
                (u - 1.0) * scale + low
            })
            .collect();
        let t = seeded_uniform(name, &[3, 4], low, high, seed).unwrap();
        assert_eq!(t.data(), expected);
    }

    #[test]
    fn values_depend_on_the_shape_only_through_the_element_count() {
        let flat = seeded_uniform("w", &[6], -1.0, 1.0, 3).unwrap();
        let matrix = seeded_uniform("w", &[2, 3], -1.0, 1.0, 3).unwrap();
        let longer = seeded_uniform("w", &[8], -1.0, 1.0, 3).unwrap();
        assert_eq!(flat.data(), matrix.data());
        assert_eq!(flat.data(), &longer.data()[..6]);
    }

    #[test]
    fn parts_are_the_whole_tensors_elements() {
        let whole = seeded_uniform("layer4.0.conv1.weight", &[1000], -0.5, 0.25, 9).unwrap();
        for (start, len) in [(0, 1000), (0, 7), (1, 16), (15, 17), (16, 16), (333, 667)] {
            let mut part = vec![0.0; len];
            seeded_uniform_part("layer4.0.conv1.weight", -0.5, 0.25, 9, start, &mut part).unwrap();
            assert_eq!(part, &whole.data()[start..start + len], "from {start}");
        }
        let mut part = [0.0; 4];
        assert!(seeded_uniform_part("w", 1.0, f32::NAN, 0, 0, &mut part).is_err());
    }

    #[test]
    fn bulk_draws_match_rand_s_uniform() {
        // Tiny, huge and lopsided ranges, each drawn in bulk from a word
        // offset and one `Uniform::sample` call at a time (the oracle).
        let ranges = [
            (-1.0f32, 1.0f32),
            (2.0, 3.0),
            (-0.0417, 0.0417),
            (0.1, 0.1 + 1e-6),
            (-1.0e38, 1.5e38),
            (1.0e-30, 7.0e-30),
            (-5.0, 1.0e-3),
            (16_777_215.0, 16_777_217.0),
        ];
        for (i, &(low, high)) in ranges.iter().enumerate() {
            let ours = UniformF32::new(low, high).unwrap();
            assert!(ours.scale * (1.0 - f32::EPSILON) + low <= high);
            let theirs = Uniform::new(low, high).unwrap();
            let seed = 11 + i as u64;
            for start in [0, 3, 300] {
                let mut bulk = vec![0.0; 700];
                draw(low, high, seed, start, &mut bulk).unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_word_pos(start as u128);
                for (j, v) in bulk.iter().enumerate() {
                    let expected = theirs.sample(&mut rng);
                    assert_eq!(
                        v.to_bits(),
                        expected.to_bits(),
                        "[{low}, {high}) draw {j} from {start}"
                    );
                }
            }
        }
    }

    #[test]
    fn random_input_is_seeded_and_in_range() {
        let a = random_input(&[1, 3, 8, 8], 5).unwrap();
        let b = random_input(&[1, 3, 8, 8], 5).unwrap();
        let c = random_input(&[1, 3, 8, 8], 6).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.data().iter().all(|&x| (-1.0..1.0).contains(&x)));
        // Inputs mix no name into the seed, unlike weights.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let first = Uniform::new(-1.0f32, 1.0).unwrap().sample(&mut rng);
        assert_eq!(a.data()[0], first);
    }

    #[test]
    fn scalars_and_empty_shapes_work() {
        assert_eq!(seeded_uniform("s", &[], 0.0, 1.0, 0).unwrap().len(), 1);
        assert!(random_input(&[3, 0], 0).unwrap().is_empty());
    }

    #[test]
    fn invalid_ranges_and_shapes_are_errors() {
        for (low, high) in [
            (1.0, 1.0),
            (2.0, 1.0),
            (f32::NAN, 1.0),
            (0.0, f32::INFINITY),
        ] {
            assert!(matches!(
                seeded_uniform("w", &[2], low, high, 0),
                Err(TensorError::InvalidRange { .. })
            ));
        }
        assert!(matches!(
            random_input(&[usize::MAX, 2], 0),
            Err(TensorError::Overflow { .. })
        ));
    }
}
