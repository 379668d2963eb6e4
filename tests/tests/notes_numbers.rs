//! `nnc stats` reproduces the numbers of the notes (`shared/seed/README.md`):
//! two stacked 3x3 convs see 5x5 with 0.72 of a 5x5 conv's weights; a 3x3
//! conv 16 -> 32 has 4608 weights and its depthwise-separable version 656.

use nnc_compiler::driver::load;
use nnc_compiler::stats::{stats, ModelStats, ReceptiveField};

fn stats_of(case: &str) -> ModelStats {
    let path = nnc_tests::repo_root().join("tests/cases/stats").join(case);
    let model = load(&path).unwrap_or_else(|e| panic!("{case}: {e}"));
    stats(&model.graph)
}

fn last_field(s: &ModelStats) -> ReceptiveField {
    s.layers
        .last()
        .map(|l| l.receptive_field)
        .unwrap_or(ReceptiveField::None)
}

#[test]
fn two_3x3_convs_see_5x5_with_072_of_the_weights() {
    let two = stats_of("two_3x3.nn");
    let one = stats_of("one_5x5.nn");
    let window = ReceptiveField::Window {
        size: [5.0, 5.0],
        stride: [1.0, 1.0],
    };
    assert_eq!(last_field(&two), window);
    assert_eq!(last_field(&one), window);
    // 2 * 3*3 / (5*5), exactly.
    assert_eq!(two.total_params * 25, one.total_params * 18);
    assert!((two.total_params as f64 / one.total_params as f64 - 0.72).abs() < 1e-12);
}

#[test]
fn depthwise_separable_3x3_16_to_32_has_656_weights() {
    assert_eq!(stats_of("conv3x3_16_32.nn").total_params, 3 * 3 * 16 * 32);
    assert_eq!(stats_of("conv3x3_16_32.nn").total_params, 4608);
    assert_eq!(
        stats_of("separable_16_32.nn").total_params,
        16 * 3 * 3 + 16 * 32
    );
    assert_eq!(stats_of("separable_16_32.nn").total_params, 656);
}

#[test]
fn flops_of_a_conv_are_two_per_multiply_add() {
    // 3x3 conv 16 -> 32, no bias: every output element takes 16*9 MACs.
    let s = stats_of("conv3x3_16_32.nn");
    let conv = &s.layers[0];
    let outputs: u64 = conv.shape.iter().map(|&d| d as u64).product();
    assert_eq!(conv.flops, 2 * outputs * 16 * 9);
}
