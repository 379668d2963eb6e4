#![allow(unsafe_code, clippy::unwrap_used)]
use nnc_compiler::backend::gemm::{gemm, GemmEpilogue, MicroKernel, PackedA};
use std::time::Instant;
fn main() {
    let shapes = [
        (960usize, 49usize, 160usize),
        (160, 49, 960),
        (1280, 49, 320),
        (576, 196, 96),
    ];
    let mut junk = vec![0u8; 64 << 20];
    for (m, n, k) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let packed = PackedA::pack(MicroKernel::Avx512, &a, m, k);
        for cold in [false, true] {
            let mut ts = vec![];
            for it in 0..400 {
                if cold {
                    for x in junk.iter_mut().step_by(64) {
                        *x = x.wrapping_add(it as u8);
                    }
                    let s: f32 = b.iter().sum::<f32>() + c.iter().sum::<f32>();
                    std::hint::black_box(s);
                }
                let t = Instant::now();
                unsafe {
                    gemm(
                        &packed,
                        b.as_ptr(),
                        n,
                        c.as_mut_ptr(),
                        n,
                        0..m,
                        0..n,
                        &GemmEpilogue::NONE,
                    )
                };
                ts.push(t.elapsed().as_secs_f64());
            }
            ts.sort_by(f64::total_cmp);
            let med = ts[ts.len() / 2];
            println!("{m}x{n}x{k} cold={cold} median {:.1} us", med * 1e6);
        }
    }
}
