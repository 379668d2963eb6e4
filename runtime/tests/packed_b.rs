//! B laid out in the micro-kernel's panels against a naive f64 oracle, for
//! every micro-kernel this CPU has. `gemm_packed_b` (a linear's `x · W^T`
//! with the weight packed as B): row counts around A's panels, columns
//! around B's (a partial last panel), K blocks, column ranges from a
//! panel's start (thread splits), strided A, a bias per column (a residual
//! of row stride 0) and activations. A `GemmTask` whose B (a Winograd
//! transform's output) is in panels: several products, split by
//! `with_blocks` into column blocks of whole panels.

#![allow(unsafe_code)]

use nnc_runtime::kernels::gemm::{gemm_packed_b, Activation, GemmEpilogue, PackedA, PackedB};
use nnc_runtime::kernels::tasks::{nnc_gemm_task, Epilogue, GemmTask};
use nnc_runtime::kernels::Base;

mod common;
use common::{act_f64, kernels, values};

const SENTINEL: f32 = 12345.0;

/// `act(x · w^T + bias)` in f64, `x [m, k]` at row stride `lda`, `w [n, k]`.
fn oracle(
    x: &[f32],
    lda: usize,
    w: &[f32],
    bias: &[f32],
    (m, n, k): (usize, usize, usize),
    act: Activation,
) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for r in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|kk| f64::from(x[r * lda + kk]) * f64::from(w[j * k + kk]))
                .sum();
            out[r * n + j] = act_f64(act, dot + f64::from(bias[j]));
        }
    }
    out
}

/// Computes the product in calls of `split` columns (a multiple of the
/// panel width, or all) and checks every output and that nothing past
/// the columns was written.
fn check(m: usize, n: usize, k: usize, lda_pad: usize, split: Option<usize>, act: Activation) {
    for kernel in kernels() {
        let lda = k + lda_pad;
        let x = values(m * lda, (m * 31 + n * 7 + k) as u64);
        let w = values(n * k, (n * 13 + k) as u64 + 1);
        let bias = values(n, n as u64 + 5);
        let b = PackedB::pack_transposed(kernel, &w, n, k);
        let ldc = n + 3;
        let mut c = vec![SENTINEL; m * ldc];
        let epi = GemmEpilogue {
            bias: std::ptr::null(),
            residual: bias.as_ptr(),
            ldr: 0,
            activation: act,
        };
        let step = split.map_or(n.max(1), |s| s * b.panel_width());
        for n0 in (0..n.max(1)).step_by(step) {
            // SAFETY: x holds `m` rows of `lda`, c `m` rows of `ldc >= n`,
            // the residual `n` columns at row stride 0; `n0` starts a panel.
            unsafe {
                gemm_packed_b(
                    x.as_ptr(),
                    lda,
                    m,
                    &b,
                    c.as_mut_ptr(),
                    ldc,
                    n0..n0 + step,
                    &epi,
                );
            }
        }
        let want = oracle(&x, lda, &w, &bias, (m, n, k), act);
        for r in 0..m {
            for j in 0..ldc {
                let got = c[r * ldc + j];
                if j >= n {
                    assert_eq!(
                        got, SENTINEL,
                        "{kernel:?} {m}x{n}x{k}: column {j} past n written"
                    );
                    continue;
                }
                let want = want[r * n + j];
                let tol = 1e-4 * (1.0 + want.abs());
                assert!(
                    (f64::from(got) - want).abs() <= tol,
                    "{kernel:?} {m}x{n}x{k} {act:?}: C[{r}][{j}] = {got}, want {want}"
                );
            }
        }
    }
}

#[test]
fn shapes_around_the_panels() {
    for m in [1, 7, 13, 14, 15, 29, 35] {
        for n in [1, 15, 16, 17, 31, 32, 33, 100] {
            check(m, n, 37, 0, None, Activation::None);
        }
    }
}

#[test]
fn k_blocks_strided_rows_and_activations() {
    // K past one block (768), with A rows padded apart.
    check(20, 70, 1000, 5, None, Activation::Relu);
    check(35, 64, 512, 0, None, Activation::Tanh);
    check(
        3,
        40,
        1,
        2,
        None,
        Activation::Clip {
            min: -0.25,
            max: 0.5,
        },
    );
}

#[test]
fn column_ranges_from_panel_starts() {
    // One call per panel and per two panels, as threads split a linear.
    for split in [1, 2] {
        check(35, 200, 64, 0, Some(split), Activation::None);
        check(16, 97, 33, 1, Some(split), Activation::Relu);
    }
}

#[test]
fn packed_panels_survive_a_bundle_round_trip_or_are_refused() -> Result<(), postcard::Error> {
    let w = values(40 * 9, 3);
    let b = PackedB::pack_transposed(kernels()[0], &w, 40, 9);
    let back: PackedB = postcard::from_bytes(&postcard::to_allocvec(&b)?)?;
    assert_eq!((back.n(), back.k(), back.bytes()), (40, 9, b.bytes()));
    // A shape larger than its data is refused, not read past: panels of
    // K = 1 saved, K = 9 claimed (postcard: the kernel's variant, then
    // `n` and `k` as one-byte varints).
    let thin = PackedB::pack_transposed(kernels()[0], &w, 40, 1);
    let mut bytes = postcard::to_allocvec(&thin)?;
    assert_eq!(bytes[1..3], [40, 1], "the layout this test edits");
    bytes[2] = 9;
    let refused = postcard::from_bytes::<PackedB>(&bytes);
    assert!(
        matches!(refused, Err(postcard::Error::SerdeDeCustom)),
        "{:?}",
        refused.map(|b| b.k())
    );
    Ok(())
}

#[test]
fn a_task_reads_b_from_its_panels() {
    let (m, k, n, products) = (30, 70, 200, 3);
    let a = values(m * k, 7);
    let b = values(products * k * n, 8);
    let bias = values(m, 9);
    for kernel in kernels() {
        let width = kernel.panel_width();
        let padded = n.next_multiple_of(width);
        // B of each product as its transform lays it out: `[panel][k]
        // [width]`, zero past `n`.
        let mut panels = vec![0.0f32; products * k * padded];
        for p in 0..products {
            for kk in 0..k {
                for j in 0..n {
                    panels[(p * padded + j / width * width) * k + kk * width + j % width] =
                        b[(p * k + kk) * n + j];
                }
            }
        }
        let mut arena = vec![SENTINEL; products * m * n];
        let task = GemmTask {
            packed: vec![PackedA::pack(kernel, &a, m, k)],
            m,
            k,
            n,
            groups: 1,
            products,
            b: Base::Const(panels.as_ptr() as usize),
            b_stride: k * padded,
            ldb: n,
            c: Base::Arena(0),
            c_stride: m * n,
            ldc: n,
            epilogue: Epilogue {
                bias: Some(bias.clone()),
                residual: None,
                activation: Activation::Relu,
            },
            m_block: m,
            n_block: n,
            b_panels: true,
        }
        .with_blocks(2);
        assert!(
            task.tasks() > products,
            "{} tasks: columns split",
            task.tasks()
        );
        for t in 0..task.tasks() {
            // SAFETY: B's panels and C lie inside `panels` and `arena`.
            unsafe { nnc_gemm_task(&task, arena.as_mut_ptr(), t) };
        }
        for p in 0..products {
            for r in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|kk| f64::from(a[r * k + kk]) * f64::from(b[(p * k + kk) * n + j]))
                        .sum();
                    let want = (dot + f64::from(bias[r])).max(0.0);
                    let got = arena[(p * m + r) * n + j];
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{kernel:?}: product {p}, C[{r}][{j}] = {got}, want {want}"
                    );
                }
            }
        }
    }
}
