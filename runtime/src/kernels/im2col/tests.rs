#![allow(clippy::unwrap_used)]

use super::*;

/// The column matrix by its definition: row `(p, ky, kx)`, position `(oy,
/// ox)` holds plane `p`'s input under the tap, or zero in the padding.
fn reference(s: &Im2Col, x: &[f32]) -> Vec<f32> {
    let [kh, kw] = s.kernel;
    let mut out = vec![0.0; s.planes * kh * kw * s.oh * s.ow];
    for p in 0..s.planes {
        for ky in 0..kh {
            for kx in 0..kw {
                for oy in 0..s.oh {
                    for ox in 0..s.ow {
                        let iy = (oy * s.stride[0] + ky * s.dilation[0]).checked_sub(s.padding[0]);
                        let ix = (ox * s.stride[1] + kx * s.dilation[1]).checked_sub(s.padding[1]);
                        let v = match (iy, ix) {
                            (Some(iy), Some(ix)) if iy < s.h && ix < s.w => {
                                x[(p * s.h + iy) * s.w + ix]
                            }
                            _ => 0.0,
                        };
                        out[(((p * kh + ky) * kw + kx) * s.oh + oy) * s.ow + ox] = v;
                    }
                }
            }
        }
    }
    out
}

/// Floats that end where an unreadable page starts, so that a kernel
/// reading past them faults instead of reading whatever follows.
struct Guarded {
    map: memmap2::MmapMut,
    start: usize,
    len: usize,
}

impl Guarded {
    fn new(values: &[f32]) -> Guarded {
        const PAGE: usize = 4096;
        let bytes = 4 * values.len();
        let pages = bytes.div_ceil(PAGE) + 1;
        let mut map = memmap2::MmapMut::map_anon(pages * PAGE).unwrap();
        let start = (pages - 1) * PAGE - bytes;
        for (chunk, v) in map[start..start + bytes].chunks_exact_mut(4).zip(values) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        // SAFETY: the last page of the mapping, which nothing references.
        let guard = unsafe {
            libc::mprotect(
                map.as_mut_ptr().add((pages - 1) * PAGE).cast(),
                PAGE,
                libc::PROT_NONE,
            )
        };
        assert_eq!(guard, 0, "mprotect");
        Guarded {
            map,
            start,
            len: values.len(),
        }
    }

    fn floats(&self) -> &[f32] {
        // SAFETY: `start` is a multiple of 4 bytes into a page-aligned
        // mapping, and the `len` floats there were written in `new`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(self.start).cast(), self.len) }
    }
}

/// The kernels this CPU can run.
fn kernels() -> Vec<MicroKernel> {
    [
        MicroKernel::Avx512,
        MicroKernel::Avx2Fma,
        MicroKernel::Portable,
    ]
    .into_iter()
    .filter(|k| k.is_available())
    .collect()
}

/// `(h, w, kernel, stride, dilation, padding before, padding after)`.
type Case = (usize, usize, usize, usize, usize, usize, usize);

/// Every position written (the output starts as NaN) with the reference's
/// bits, for each kernel, with the tasks run last to first.
fn check(planes: usize, (h, w, k, s, d, before, after): Case) {
    let span = d * (k - 1) + 1;
    let (oh, ow) = (
        (h + before + after - span) / s + 1,
        (w + before + after - span) / s + 1,
    );
    let values: Vec<f32> = (0..planes * h * w)
        .map(|i| (i % 251) as f32 - 125.0)
        .collect();
    let guarded = Guarded::new(&values);
    let x = guarded.floats();
    for kernel_impl in kernels() {
        let spec = Im2Col::new(
            planes,
            [h, w],
            [oh, ow],
            [[k, k], [s, s], [d, d], [before, before]],
            kernel_impl,
        );
        let expected = reference(&spec, x);
        let mut out = vec![f32::NAN; expected.len()];
        for task in (0..spec.tasks()).rev() {
            // SAFETY: `x` and `out` have the sizes `run` asks for.
            unsafe { spec.run(x.as_ptr(), out.as_mut_ptr(), task) };
        }
        for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
            assert!(
                a.to_bits() == b.to_bits(),
                "{kernel_impl:?} {planes} planes {h}x{w}, kernel {k}, stride {s}, dilation {d}, \
                 padding {before}/{after}: element {i} is {a}, expected {b}"
            );
        }
    }
}

#[test]
fn matches_the_definition_at_every_stride() {
    for case in [
        (9, 9, 3, 1, 1, 1, 1),
        (16, 16, 3, 1, 1, 1, 1),
        (40, 37, 3, 1, 1, 1, 1),
        (7, 7, 1, 1, 1, 0, 0),
        (56, 56, 1, 2, 1, 0, 0),
        (57, 57, 3, 2, 1, 1, 1),
        (112, 112, 3, 2, 1, 1, 1),
        (35, 70, 7, 2, 1, 3, 3),
        (33, 33, 5, 2, 2, 4, 4),
        (55, 63, 11, 4, 1, 2, 2),
        (20, 20, 3, 3, 1, 0, 2),
        (6, 5, 5, 1, 1, 4, 4),
        (3, 3, 3, 1, 3, 3, 3),
    ] {
        check(3, case);
    }
}

/// Maps of at most 16 positions, whose taps are gathers (AVX-512).
#[test]
fn small_maps_match_the_definition() {
    for case in [
        (4, 4, 3, 1, 1, 1, 1),
        (2, 2, 3, 1, 1, 1, 1),
        (8, 8, 3, 2, 1, 1, 1),
        (4, 4, 1, 1, 1, 0, 0),
        (1, 1, 3, 1, 1, 1, 1),
        (5, 3, 3, 1, 2, 2, 2),
    ] {
        check(2, case);
    }
}

/// The last plane's last rows, where a stride-2 or gathered window from
/// the row's start would read past the input: the row ends one float at a
/// time instead (an input exactly as long as the taps need).
#[test]
fn the_input_s_last_rows_read_nothing_past_it() {
    for (h, w) in [(17, 17), (16, 34), (9, 65), (5, 40)] {
        check(1, (h, w, 3, 2, 1, 0, 0));
        check(2, (h, w, 1, 2, 1, 0, 0));
        check(1, (h, w, 3, 3, 1, 0, 0));
    }
}
