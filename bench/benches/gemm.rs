//! The native GEMM path, single-threaded: measures the core's FMA peak with
//! a loop of independent FMAs, then times nnc's `gemm` on 512³ and three
//! im2col convolution shapes and prints GFLOP/s and % of peak next to the
//! `gemm` and `matrixmultiply` crates on the same shapes (and, for shapes
//! with one column, the in-place `gemv` of large `linear`s); finally hands the
//! same work to criterion for its statistics.
//!
//! `cargo bench -p nnc-bench --bench gemm` (see `bench/README.md`).

#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use nnc_runtime::kernels::gemm::{gemm, Activation, BSource, GemmEpilogue, MicroKernel, PackedA};
use nnc_runtime::kernels::gemv::Gemv;

/// `(M, N, K)`: 512³, then conv layers as im2col GEMMs (ResNet-ish:
/// 56x56x64 3x3, 28x28x128 3x3, 7x7x512 3x3), then the GEMVs of an LSTM
/// step (4 gates x hidden 256 over input + hidden 512) and of a batch-1
/// linear layer (1000 x 512), which the narrow kernel handles.
const SHAPES: [(usize, usize, usize); 6] = [
    (512, 512, 512),
    (64, 3136, 576),
    (128, 784, 1152),
    (512, 49, 4608),
    (1024, 1, 512),
    (1000, 1, 512),
];

/// The shapes to time: [`SHAPES`], or those of `NNC_BENCH_SHAPES`
/// (`MxNxK`, comma-separated: `384x49x384,160x196x160` for a layer's
/// GEMM that `nnc profile` shows as slow).
fn shapes() -> Vec<(usize, usize, usize)> {
    let Ok(list) = std::env::var("NNC_BENCH_SHAPES") else {
        return SHAPES.to_vec();
    };
    list.split(',')
        .map(|shape| {
            let dims: Vec<usize> = shape
                .trim()
                .split('x')
                .map(|d| d.parse().unwrap_or(0))
                .collect();
            match dims[..] {
                [m, n, k] if m > 0 && n > 0 && k > 0 => (m, n, k),
                _ => {
                    eprintln!("NNC_BENCH_SHAPES: `{shape}` is not MxNxK (three positive sizes)");
                    std::process::exit(2)
                }
            }
        })
        .collect()
}

/// Bytes written between calls with `NNC_BENCH_COLD=1`: more than the
/// L3, so every call starts with its operands in memory, as a model's
/// weights are (each is read once per run).
const COLD_BYTES: usize = 64 << 20;

/// Sorted seconds of `runs` calls of `f` after one warm-up call; with
/// `NNC_BENCH_COLD` set (to anything but empty or `0`), the caches
/// flushed (untimed) before each call.
fn times(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    let cold = std::env::var("NNC_BENCH_COLD").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut flush = cold.then(|| vec![0u8; COLD_BYTES]);
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|i| {
            if let Some(buffer) = flush.as_mut() {
                for byte in buffer.iter_mut().step_by(64) {
                    *byte = byte.wrapping_add(i as u8);
                }
                std::hint::black_box(&buffer);
            }
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// Median seconds of `runs` calls of `f` after one warm-up call.
fn median_secs(runs: usize, f: impl FnMut()) -> f64 {
    let t = times(runs, f);
    t[t.len() / 2]
}

/// Measured peak GFLOP/s for 512-bit and 256-bit FMAs (0 if unavailable),
/// best of 30 runs, with the loop `nnc profile` uses for its roofline.
fn fma_peaks() -> (f64, f64) {
    nnc_compiler::backend::roofline::fma_peaks(30)
}

struct Operands {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

fn operands(m: usize, n: usize, k: usize) -> Operands {
    let mut s = 0x1234_5678u32;
    let mut next = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (s >> 8) as f32 / (1 << 24) as f32 - 0.5
    };
    Operands {
        a: (0..m * k).map(|_| next()).collect(),
        b: (0..k * n).map(|_| next()).collect(),
        c: vec![0.0; m * n],
    }
}

fn nnc(packed: &PackedA, o: &mut Operands, n: usize) {
    let m = packed.m();
    // SAFETY: B is `k x n`, C is `m x n`, both row-major and dense.
    unsafe {
        gemm(
            packed,
            o.b.as_ptr(),
            n,
            BSource::Any,
            o.c.as_mut_ptr(),
            n,
            0..m,
            0..n,
            &GemmEpilogue::NONE,
        );
    }
}

fn gemv(spec: &Gemv, o: &mut Operands) {
    // SAFETY: A is `m x k`, B (x) `k` floats and C `m`; no residual.
    unsafe {
        spec.run(
            o.a.as_ptr(),
            o.b.as_ptr(),
            o.c.as_mut_ptr(),
            std::ptr::null(),
            0,
        )
    };
}

fn matrixmultiply(o: &mut Operands, (m, n, k): (usize, usize, usize)) {
    // SAFETY: dense row-major operands of the stated shapes.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            o.a.as_ptr(),
            k as isize,
            1,
            o.b.as_ptr(),
            n as isize,
            1,
            0.0,
            o.c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

fn gemm_crate(o: &mut Operands, (m, n, k): (usize, usize, usize)) {
    // SAFETY: dense row-major operands of the stated shapes (column stride
    // 1, row stride = width).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            o.c.as_mut_ptr(),
            1,
            n as isize,
            false,
            o.a.as_ptr(),
            1,
            k as isize,
            o.b.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Runs enough calls to fill about 1.5 s, returns the median and the best
/// GFLOP/s (the machine is shared: the best run shows what the code can
/// do, the median what it did).
fn gflops(flops: f64, mut f: impl FnMut()) -> (f64, f64) {
    let once = median_secs(3, &mut f);
    let runs = ((1.5 / once) as usize).clamp(5, 400);
    let t = times(runs, f);
    (flops / t[t.len() / 2] / 1e9, flops / t[0] / 1e9)
}

fn summary(zmm_peak: f64, ymm_peak: f64) {
    println!("FMA peak, one core: 512-bit {zmm_peak:.1} GFLOP/s, 256-bit {ymm_peak:.1} GFLOP/s");
    println!(
        "{:<14} {:<16} {:>8} {:>7} {:>7} {:>8} {:>7}",
        "shape (M,N,K)", "implementation", "median", "%zmm", "%ymm", "best", "%zmm"
    );
    let pct = |g: f64, p: f64| if p > 0.0 { 100.0 * g / p } else { 0.0 };
    for shape @ (m, n, k) in shapes() {
        let flops = 2.0 * (m * n * k) as f64;
        let mut o = operands(m, n, k);
        let mut rows: Vec<(String, (f64, f64))> = Vec::new();
        let only = std::env::var("NNC_BENCH_ONLY").unwrap_or_default();
        for kernel in MicroKernel::ALL.into_iter().filter(|k| k.is_available()) {
            if !only.is_empty() && !kernel.name().contains(&only) {
                continue;
            }
            let packed = PackedA::pack(kernel, &o.a, m, k);
            rows.push((
                format!("nnc {}", kernel.name()),
                gflops(flops, || nnc(&packed, &mut o, n)),
            ));
            // A batch-1 `linear`'s own kernel, reading A in place (it
            // refuses only a short bias; there is none).
            let gemv_spec = Gemv::new(kernel, (m, k, 1), None, Activation::None, 1);
            if let (1, Ok(spec)) = (n, gemv_spec) {
                rows.push((
                    format!("gemv {}", kernel.name()),
                    gflops(flops, || gemv(&spec, &mut o)),
                ));
            }
        }
        rows.push((
            "gemm crate".into(),
            gflops(flops, || gemm_crate(&mut o, shape)),
        ));
        rows.push((
            "matrixmultiply".into(),
            gflops(flops, || matrixmultiply(&mut o, shape)),
        ));
        for (name, (median, best)) in rows {
            println!(
                "{:<14} {:<16} {:>8.1} {:>6.1}% {:>6.1}% {:>8.1} {:>6.1}%",
                format!("{m}x{n}x{k}"),
                name,
                median,
                pct(median, zmm_peak),
                pct(median, ymm_peak),
                best,
                pct(best, zmm_peak),
            );
        }
    }
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for shape @ (m, n, k) in shapes() {
        let mut o = operands(m, n, k);
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        let kernel = MicroKernel::detect();
        let packed = PackedA::pack(kernel, &o.a, m, k);
        let id = format!("{m}x{n}x{k}");
        group.bench_function(format!("nnc {}/{id}", kernel.name()), |bch| {
            bch.iter(|| nnc(&packed, &mut o, n))
        });
        group.bench_function(format!("gemm crate/{id}"), |bch| {
            bch.iter(|| gemm_crate(&mut o, shape))
        });
        group.bench_function(format!("matrixmultiply/{id}"), |bch| {
            bch.iter(|| matrixmultiply(&mut o, shape))
        });
    }
    group.finish();
}

fn main() {
    let (zmm, ymm) = fma_peaks();
    summary(zmm, ymm);
    // `NNC_BENCH_SUMMARY_ONLY=1` skips criterion's (slower) statistics.
    if std::env::var_os("NNC_BENCH_SUMMARY_ONLY").is_none() {
        let mut c = Criterion::default().configure_from_args();
        criterion_benches(&mut c);
        c.final_summary();
    }
}
