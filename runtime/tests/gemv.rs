//! The in-place matrix-vector product of a `linear` (every micro-kernel
//! this CPU has) against an f64 oracle written from its definition: `k`
//! below, at and between whole vectors of 8, 16 and 32 (the tails), output
//! feature counts that leave partial groups of four rows and partial
//! thread blocks, several rows of `x`, bias, residual (also in place, over
//! the output) and every activation; sentinels after the output catch
//! stray stores.

#![allow(unsafe_code)]

use nnc_runtime::kernels::gemm::Activation;
use nnc_runtime::kernels::gemv::{nnc_gemv, Gemv};
use proptest::prelude::*;

mod common;
use common::{act_f64, kernels, values, ACTIVATIONS};

const SENTINEL: f32 = 12345.0;

#[derive(Clone, Copy, Debug)]
enum Residual {
    None,
    Separate,
    /// The residual is the output buffer itself.
    InPlace,
}

fn check(
    (m, k, rows): (usize, usize, usize),
    bias: bool,
    residual: Residual,
    act: Activation,
    threads: usize,
    seed: u64,
) {
    let w = values(m * k, seed);
    let x = values(rows * k, seed ^ 0x3333);
    let b = values(m, seed ^ 0x5555);
    let r = values(rows * m, seed ^ 0x7777);
    let expected: Vec<f64> = (0..rows * m)
        .map(|at| {
            let (row, i) = (at / m, at % m);
            let dot: f64 = (0..k)
                .map(|kk| f64::from(w[i * k + kk]) * f64::from(x[row * k + kk]))
                .sum();
            let b = if bias { f64::from(b[i]) } else { 0.0 };
            let r = match residual {
                Residual::None => 0.0,
                _ => f64::from(r[at]),
            };
            act_f64(act, dot + b + r)
        })
        .collect();
    for kernel in kernels() {
        let spec = Gemv::new(kernel, (m, k, rows), bias.then_some(&b[..]), act, threads);
        assert!(spec.is_ok(), "{kernel:?}: {spec:?}");
        let Ok(spec) = spec else { return };
        let mut out = vec![SENTINEL; rows * m + 16];
        if let Residual::InPlace = residual {
            out[..rows * m].copy_from_slice(&r);
        }
        let res = match residual {
            Residual::None => std::ptr::null(),
            Residual::Separate => r.as_ptr(),
            Residual::InPlace => out.as_ptr(),
        };
        for t in 0..spec.tasks() {
            // SAFETY: the buffers have the sizes `Gemv::run` asks for.
            unsafe { nnc_gemv(&spec, w.as_ptr(), x.as_ptr(), out.as_mut_ptr(), res, t) };
        }
        for (at, (&got, &want)) in out.iter().zip(&expected).enumerate() {
            let tolerance = 1e-5 * (1.0 + (k as f64).sqrt()) * (1.0 + want.abs());
            assert!(
                (f64::from(got) - want).abs() <= tolerance || (got.is_nan() && want.is_nan()),
                "{kernel:?} m {m} k {k} rows {rows} {act:?} {residual:?}: output {at} is {got}, want {want}"
            );
        }
        assert!(
            out[rows * m..].iter().all(|&v| v == SENTINEL),
            "{kernel:?}: a store past the output"
        );
    }
}

#[test]
fn tails_of_k_and_partial_row_groups() {
    for k in [1, 7, 8, 15, 16, 17, 31, 32, 33, 47, 64, 100] {
        for m in [1, 3, 4, 5, 9] {
            check(
                (m, k, 1),
                true,
                Residual::None,
                Activation::None,
                1,
                k as u64,
            );
        }
    }
}

#[test]
fn a_vgg_sized_product_split_across_threads() {
    check(
        (1000, 4096, 1),
        true,
        Residual::None,
        Activation::Relu,
        2,
        7,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn products_match_the_oracle(
        (m, k, rows) in (1usize..40, 1usize..200, 1usize..4),
        bias in any::<bool>(),
        residual in 0usize..3,
        act in 0usize..ACTIVATIONS.len(),
        threads in 1usize..4,
        seed in any::<u64>(),
    ) {
        let residual = [Residual::None, Residual::Separate, Residual::InPlace][residual];
        check((m, k, rows), bias, residual, ACTIVATIONS[act], threads, seed);
    }
}

#[test]
fn a_short_bias_is_an_error() {
    let bias = [0.0f32; 3];
    let err = Gemv::new(
        nnc_runtime::kernels::gemm::MicroKernel::Portable,
        (4, 8, 1),
        Some(&bias),
        Activation::None,
        1,
    );
    assert!(err.is_err_and(|e| e.to_string().contains("bias")));
}
