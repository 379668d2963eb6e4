//! The native GEMM against a naive f64 triple-loop oracle, for every
//! micro-kernel this CPU has: edge shapes, sub-ranges (thread splits),
//! strided operands, every activation, bias and residual, B packed and read
//! in place, the `extern "C"` entry point, and a property test over random
//! small shapes.

#![allow(unsafe_code)]

use std::ops::Range;

use nnc_runtime::kernels::gemm::{gemm, Activation, BSource, GemmEpilogue, MicroKernel, PackedA};
use nnc_runtime::kernels::tasks::{nnc_gemm_task, Epilogue, GemmTask};
use nnc_runtime::kernels::Base;
use proptest::prelude::*;

mod common;
use common::{act_f64, kernels, Rng, ACTIVATIONS};

const SENTINEL: f32 = 12345.0;

/// One test case: shapes, strides, the block of C to compute, epilogue.
#[derive(Clone, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    ldb_pad: usize,
    ldc_pad: usize,
    /// Blocks of C computed by separate calls (like threads would).
    blocks: Vec<(Range<usize>, Range<usize>)>,
    bias: bool,
    residual: bool,
    /// The residual is C itself (in-place add).
    in_place: bool,
    activation: Activation,
}

/// `c = epilogue(a · b)` over all of `a`'s rows and `n` columns, B and C
/// dense row-major, B of no stated source ([`BSource::Any`]).
///
/// # Safety
/// The epilogue's bias and residual must cover C's rows and columns.
unsafe fn dense_product(a: &PackedA, b: &[f32], c: &mut [f32], n: usize, epi: &GemmEpilogue) {
    assert!(
        b.len() >= a.k() * n && c.len() >= a.m() * n,
        "operands too short"
    );
    // SAFETY: B and C checked above, the epilogue per the caller.
    unsafe {
        gemm(
            a,
            b.as_ptr(),
            n,
            BSource::Any,
            c.as_mut_ptr(),
            n,
            0..a.m(),
            0..n,
            epi,
        )
    }
}

/// Where a case tells [`gemm`] its B comes from: [`BSource::Any`] (B read
/// in place or packed as it chooses), [`BSource::Cache`] (whole panels of
/// B read in place) or [`BSource::Memory`] (B always packed).
#[derive(Clone, Copy, Debug)]
enum Path {
    Chosen,
    InCache,
    FromMemory,
}

impl Path {
    const ALL: [Path; 3] = [Path::Chosen, Path::InCache, Path::FromMemory];
}

impl Case {
    fn new(m: usize, n: usize, k: usize) -> Case {
        Case {
            m,
            n,
            k,
            ldb_pad: 0,
            ldc_pad: 0,
            blocks: vec![(0..m, 0..n)],
            bias: false,
            residual: false,
            in_place: false,
            activation: Activation::None,
        }
    }

    /// Through the entry point `path` names.
    fn run(&self, kernel: MicroKernel, seed: u64, path: Path) {
        let Case { m, n, k, .. } = *self;
        let (ldb, ldc) = (n + self.ldb_pad, n + self.ldc_pad);
        let mut rng = Rng(seed | 1);
        let a = rng.vec(m * k);
        let b = rng.vec(k * ldb);
        let bias = rng.vec(m);
        let res = rng.vec(m * ldc);
        let packed = PackedA::pack(kernel, &a, m, k);
        assert_eq!(packed.kernel(), kernel);
        assert_eq!((packed.m(), packed.k()), (m, k));

        let mut c = if self.in_place {
            res.clone()
        } else {
            vec![SENTINEL; m * ldc]
        };
        let covered = |i: usize, j: usize| {
            self.blocks
                .iter()
                .any(|(rm, rn)| rm.contains(&i) && rn.contains(&j))
        };
        let epi = GemmEpilogue {
            bias: if self.bias {
                bias.as_ptr()
            } else {
                std::ptr::null()
            },
            residual: match (self.residual, self.in_place) {
                (false, _) => std::ptr::null(),
                (true, false) => res.as_ptr(),
                (true, true) => c.as_ptr(),
            },
            ldr: ldc,
            activation: self.activation,
        };
        for (rm, rn) in &self.blocks {
            let source = match path {
                Path::Chosen => BSource::Any,
                Path::InCache => BSource::Cache,
                Path::FromMemory => BSource::Memory,
            };
            // SAFETY: every operand covers the whole matrix it stands for.
            unsafe {
                gemm(
                    &packed,
                    b.as_ptr(),
                    ldb,
                    source,
                    c.as_mut_ptr(),
                    ldc,
                    rm.clone(),
                    rn.clone(),
                    &epi,
                )
            };
        }

        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j];
                if j >= n || !covered(i, j) {
                    let want = if self.in_place {
                        res[i * ldc + j]
                    } else {
                        SENTINEL
                    };
                    assert_eq!(
                        got, want,
                        "{kernel:?} {self:?}: ({i}, {j}) outside the block was written"
                    );
                    continue;
                }
                let (mut sum, mut mag) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let t = a[i * k + p] as f64 * b[p * ldb + j] as f64;
                    sum += t;
                    mag += t.abs();
                }
                if self.bias {
                    sum += bias[i] as f64;
                    mag += (bias[i] as f64).abs();
                }
                if self.residual {
                    sum += res[i * ldc + j] as f64;
                    mag += (res[i * ldc + j] as f64).abs();
                }
                let want = act_f64(self.activation, sum);
                let tol = 1e-6 * (k as f64 + 4.0).sqrt() * (mag + 1.0);
                assert!(
                    (got as f64 - want).abs() <= tol,
                    "{kernel:?} {self:?}: ({i}, {j}) got {got}, want {want}"
                );
            }
        }
    }

    fn run_all(&self) {
        for (s, kernel) in kernels().into_iter().enumerate() {
            for path in Path::ALL {
                self.run(
                    kernel,
                    0x9e37_79b9 + s as u64 * 7 + (self.m * 31 + self.n * 17 + self.k) as u64,
                    path,
                );
            }
        }
    }
}

#[test]
fn detect_picks_an_available_kernel() {
    let best = MicroKernel::detect();
    assert!(best.is_available());
    assert!(MicroKernel::Portable.is_available());
    assert_eq!(MicroKernel::Avx512.name(), "avx512 14x32");
    assert_eq!(MicroKernel::Avx2Fma.name(), "avx2+fma 6x16");
    assert_eq!(MicroKernel::Portable.name(), "portable 4x8");
    // The first available kernel in preference order is the one detected.
    assert_eq!(kernels().first(), Some(&best));
}

#[test]
fn edge_shapes() {
    for m in [1, 2, 5, 6, 13, 14, 15, 29] {
        for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 23, 24, 31, 32, 33, 49] {
            for k in [1, 2, 17, 64] {
                Case::new(m, n, k).run_all();
            }
        }
    }
}

#[test]
fn several_k_blocks() {
    // KC is 256 for the portable kernel (257 and 600 need two and three
    // blocks) and 768 for the x86 ones (1000 and 1600 need two and three,
    // here with 17 to 24 columns past the last whole panel: AVX-512 takes
    // those in one pass with a vector of columns, the old C added on every
    // block but the first).
    for (m, n, k) in [
        (15, 49, 256),
        (15, 49, 257),
        (29, 35, 600),
        (3, 5, 600),
        (16, 1, 1000),
        (15, 49, 1000),
        (29, 24, 1600),
    ] {
        let mut case = Case::new(m, n, k);
        case.bias = true;
        case.residual = true;
        case.activation = Activation::Relu;
        case.run_all();
    }
}

#[test]
fn several_column_blocks() {
    // NC is 192 (256 for the portable kernel): columns span several blocks.
    for (m, n, k) in [(3, 1100, 9), (17, 530, 40)] {
        Case::new(m, n, k).run_all();
    }
}

#[test]
fn empty_k_writes_the_epilogue() {
    // 15 rows: a whole-height tile whose 20 columns are a vector and a
    // tail (AVX-512), and a one-row tile.
    for m in [5, 15] {
        let mut case = Case::new(m, 20, 0);
        case.bias = true;
        case.residual = true;
        case.activation = Activation::Sigmoid;
        case.run_all();
    }
}

#[test]
fn thread_splits_of_m_and_n() {
    // Odd boundaries in both dimensions, not aligned to any tile.
    let blocks = vec![
        (0..5, 0..11),
        (0..5, 11..40),
        (5..23, 0..3),
        (5..23, 3..40),
        (23..37, 0..40),
    ];
    for k in [7, 800] {
        let mut case = Case::new(37, 40, k);
        case.blocks = blocks.clone();
        case.bias = true;
        case.activation = Activation::Tanh;
        case.run_all();
    }
    // Only part of C: the rest must stay untouched.
    let mut case = Case::new(30, 70, 33);
    case.blocks = vec![(3, 4), (7, 28), (15, 29)]
        .into_iter()
        .map(|(m0, m1)| (m0..m1, m0 + 10..m1 + 30))
        .collect();
    case.run_all();
}

#[test]
fn strided_b_and_c() {
    for (m, n, k) in [(9, 5, 20), (17, 45, 31), (14, 64, 770), (6, 200, 9)] {
        let mut case = Case::new(m, n, k);
        case.ldb_pad = 7;
        case.ldc_pad = 13;
        case.residual = true;
        case.run_all();
    }
}

#[test]
fn every_activation_with_and_without_bias_and_residual() {
    for activation in ACTIVATIONS {
        for (bias, residual) in [(false, false), (true, false), (false, true), (true, true)] {
            // Narrow path (n < 8), blocked path with a thin tail, and a
            // shape needing two K blocks.
            for (m, n, k) in [(15, 3, 40), (15, 37, 40), (15, 49, 40), (7, 20, 800)] {
                let mut case = Case::new(m, n, k);
                case.bias = bias;
                case.residual = residual;
                case.activation = activation;
                case.ldc_pad = 2;
                case.run_all();
            }
        }
    }
}

#[test]
fn sigmoid_and_tanh_over_a_wide_range() {
    // C = act(a_i * b_j) with products from -60 to 60, on the vector path
    // (n = 48) and the narrow one (n = 3).
    let m = 61;
    let a: Vec<f32> = (0..m).map(|i| i as f32 - 30.0).collect();
    for n in [48, 3] {
        let b: Vec<f32> = (0..n)
            .map(|j| 2.0 * j as f32 / (n - 1) as f32 - 1.0)
            .collect();
        for kernel in kernels() {
            let packed = PackedA::pack(kernel, &a, m, 1);
            for activation in [Activation::Sigmoid, Activation::Tanh] {
                let mut c = vec![0.0f32; m * n];
                let epi = GemmEpilogue {
                    activation,
                    ..GemmEpilogue::NONE
                };
                // SAFETY: operands cover their matrices.
                unsafe { dense_product(&packed, &b, &mut c, n, &epi) };
                for i in 0..m {
                    for j in 0..n {
                        let x = a[i] as f64 * b[j] as f64;
                        let want = act_f64(activation, x);
                        let got = c[i * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-6 + 1e-6 * want.abs(),
                            "{kernel:?} {activation:?}({x}) = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn in_place_residual() {
    for (m, n, k) in [(15, 3, 40), (20, 37, 1600)] {
        let mut case = Case::new(m, n, k);
        case.residual = true;
        case.in_place = true;
        case.bias = true;
        case.activation = Activation::LeakyRelu {
            negative_slope: 0.2,
        };
        case.run_all();
    }
}

#[test]
fn extern_entry_point_resolves_arena_and_absolute_operands() {
    let (m, n, k) = (19, 21, 13);
    let mut rng = Rng(7);
    let a = rng.vec(m * k);
    let bias = rng.vec(m);
    // B outside the arena (a constant), C and the residual inside it.
    let b = rng.vec(k * n);
    for kernel in kernels() {
        let packed = PackedA::pack(kernel, &a, m, k);
        // Arena: [pad 3][C m*n][residual m*n].
        let (c_off, r_off) = (3, 3 + m * n);
        let mut arena = vec![0.0f32; r_off + m * n];
        for x in &mut arena {
            *x = rng.next();
        }
        let want = {
            let mut c = vec![0.0f32; m * n];
            let epi = GemmEpilogue {
                bias: bias.as_ptr(),
                residual: arena[r_off..].as_ptr(),
                ldr: n,
                activation: Activation::Relu,
            };
            // SAFETY: operands cover their matrices.
            unsafe { dense_product(&packed, &b, &mut c, n, &epi) };
            c
        };
        let task = GemmTask {
            packed: vec![PackedA::pack(kernel, &a, m, k)],
            m,
            k,
            n,
            groups: 1,
            products: 1,
            b: Base::Const(b.as_ptr() as usize),
            b_stride: 0,
            ldb: n,
            c: Base::Arena(c_off),
            c_stride: 0,
            ldc: n,
            epilogue: Epilogue {
                bias: Some(bias.clone()),
                residual: Some(Base::Arena(r_off)),
                activation: Activation::Relu,
            },
            m_block: 10,
            n_block: n,
            b_panels: false,
        };
        assert_eq!(task.tasks(), 2);
        // SAFETY: the task's operands lie inside `arena` and `b`.
        unsafe {
            nnc_gemm_task(&task, arena.as_mut_ptr(), 0);
            nnc_gemm_task(&task, arena.as_mut_ptr(), 1);
        }
        assert_eq!(&arena[c_off..c_off + m * n], &want[..]);
        // And against the oracle, through the same epilogue.
        let mut case = Case::new(m, n, k);
        case.bias = true;
        case.residual = true;
        case.activation = Activation::Relu;
        case.run(kernel, 11, Path::Chosen);
    }
}

#[test]
fn concurrent_calls_on_disjoint_blocks() {
    let (m, n, k) = (64, 300, 100);
    let mut rng = Rng(3);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let packed = PackedA::pack(MicroKernel::detect(), &a, m, k);
    let mut serial = vec![0.0f32; m * n];
    // SAFETY: operands cover their matrices.
    unsafe { dense_product(&packed, &b, &mut serial, n, &GemmEpilogue::NONE) };
    let mut parallel = vec![0.0f32; m * n];
    let (top, bottom) = parallel.split_at_mut(30 * n);
    std::thread::scope(|s| {
        for (rows, c) in [(0..30, top), (30..m, bottom)] {
            let (packed, b) = (&packed, &b);
            s.spawn(move || {
                let c = c.as_mut_ptr().wrapping_sub(rows.start * n);
                // SAFETY: each thread writes only its own rows of C.
                unsafe {
                    gemm(
                        packed,
                        b.as_ptr(),
                        n,
                        BSource::Any,
                        c,
                        n,
                        rows,
                        0..n,
                        &GemmEpilogue::NONE,
                    )
                };
            });
        }
    });
    assert_eq!(serial, parallel);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_small_shapes(
        m in 1usize..40,
        n in 1usize..70,
        k in 0usize..900,
        ldb_pad in 0usize..3,
        ldc_pad in 0usize..3,
        split in (0usize..40, 0usize..70),
        bias in any::<bool>(),
        residual in any::<bool>(),
        act in 0usize..6,
        seed in any::<u64>(),
        path in 0usize..3,
    ) {
        let mut case = Case::new(m, n, k);
        case.ldb_pad = ldb_pad;
        case.ldc_pad = ldc_pad;
        let (sm, sn) = (split.0.min(m), split.1.min(n));
        case.blocks = vec![(0..sm, 0..n), (sm..m, 0..sn), (sm..m, sn..n)];
        case.bias = bias;
        case.residual = residual;
        case.activation = ACTIVATIONS[act];
        for kernel in kernels() {
            case.run(kernel, seed, Path::ALL[path]);
        }
    }
}

/// `pack_winograd` transforms 3x3 filters while packing; its products must
/// be exactly those of the transformed weights packed whole.
#[test]
fn winograd_weights_packed_while_transforming_match_the_transform(
) -> Result<(), Box<dyn std::error::Error>> {
    use nnc_runtime::kernels::tasks::{pack, pack_winograd};
    use nnc_runtime::kernels::winograd::Transform;
    let mut rng = Rng(77);
    for (kernel, (tile, c_out, c_in, n)) in kernels()
        .into_iter()
        .flat_map(|k| [(2, 24, 19, 37), (4, 17, 16, 50)].map(|case| (k, case)))
    {
        let t = Transform::of(tile).ok_or("no such transform")?;
        let groups = t.a() * t.a();
        let w = rng.vec(c_out * c_in * 9);
        let b = rng.vec(c_in * n);
        let whole = pack(kernel, &t.filters(&w, c_out, c_in), groups, c_out, c_in)?;
        let streamed = pack_winograd(kernel, &w, tile, groups, c_out, c_in)?;
        assert_eq!(whole.len(), groups);
        assert_eq!(streamed.len(), groups);
        for (a, b_packed) in whole.iter().zip(&streamed) {
            let (mut c1, mut c2) = (vec![0.0f32; c_out * n], vec![0.0f32; c_out * n]);
            // SAFETY: B is [c_in, n] and C [c_out, n].
            unsafe {
                dense_product(a, &b, &mut c1, n, &GemmEpilogue::NONE);
                dense_product(b_packed, &b, &mut c2, n, &GemmEpilogue::NONE);
            }
            assert_eq!(
                c1, c2,
                "{kernel:?} F({tile}x{tile}): the two packings differ"
            );
        }
    }
    // A weight too short, or a tile the transforms do not have, is an error.
    let kernel = MicroKernel::Portable;
    assert!(pack_winograd(kernel, &[0.0; 10], 2, 16, 2, 1).is_err());
    assert!(pack_winograd(kernel, &[0.0; 9], 3, 25, 1, 1).is_err());
    Ok(())
}
