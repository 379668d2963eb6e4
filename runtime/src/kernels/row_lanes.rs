//! The vector operations the native depthwise and pooling rows are written
//! in, once for both x86 vector widths: [`Lanes`] is implemented for
//! `__m512` (AVX-512F, sixteen lanes) and `__m256` (AVX2 + FMA, eight).
//!
//! The row kernels (`depthwise_rows.rs`, `pool_rows.rs`) are generic over
//! it, `#[inline(always)]`, and each compiles them into entry points with
//! the lanes' instruction set enabled (as `winograd.rs` does), so the
//! methods below inline into code that may use their instructions.
//!
//! Where the two differ: AVX-512 masks are bit masks that loads and stores
//! take for free, AVX2 masks are vectors (`vmaskmovps`; a masked store is
//! slow on AMD, so whole vectors use a plain store); a stride-2 window is
//! one two-source permute on AVX-512 and a shuffle plus a cross-lane
//! permute on AVX2. Both apply every activation in registers, with the
//! GEMM's vector activations (`gemm::avx512`, `gemm::avx2_act`).

#![allow(unsafe_code)]

use super::gemm::MicroKernel;
#[cfg(target_arch = "x86_64")]
use {super::gemm::Activation, std::cell::RefCell};

/// Whether `kernel` has vector depthwise and pooling rows (the kernels
/// choose the JIT's own four-lane code otherwise).
pub fn has_vector_rows(kernel: MicroKernel) -> bool {
    match kernel {
        MicroKernel::Avx512 | MicroKernel::Avx2Fma => true,
        MicroKernel::Portable => false,
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The padded input rows of one call of the depthwise or pooling rows.
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Floats past the `len` a caller of [`padded_buffer`] asks for, which
/// [`copy_window`] may write: a whole vector's worth.
#[cfg(target_arch = "x86_64")]
const SLACK: usize = 16;

/// This thread's buffer for padded input rows, grown to at least `len`
/// floats (and [`SLACK`] more). The pointer stays valid until the next
/// call on this thread (the row kernels call neither themselves nor each
/// other).
#[cfg(target_arch = "x86_64")]
pub(crate) fn padded_buffer(len: usize) -> *mut f32 {
    PADDED.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.len() < len + SLACK {
            buffer.resize(len + SLACK, 0.0);
        }
        buffer.as_mut_ptr()
    })
}

/// Writes row `row` (`width` floats at `base`) of a padded copy: `pad` in
/// columns `..from` and `to..`, the plane's row `line` in `from..to`
/// (column `c` is `line[c]`). Every store is a whole vector, as masked
/// stores cost several times a plain one on AMD: the stores past `to` or
/// the row's end write into the next row (written after this one) or the
/// buffer's [`SLACK`], and the data's last vector is a masked load (which
/// reads only the row) stored whole, then covered by the padding after.
///
/// # Safety
/// `V`'s instruction set must be available; `line[from..to]` is readable;
/// `base` holds `width` floats and [`SLACK`] more, or rows after this one
/// that are written later.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn write_padded_row<V: Lanes>(
    row: *mut f32,
    width: usize,
    line: *const f32,
    (from, to): (usize, usize),
    fill: V,
) {
    let n = V::N;
    for at in (0..from).step_by(n) {
        fill.store(row.add(at));
    }
    let mut c = from;
    while c + n <= to {
        V::load(line.wrapping_add(c)).store(row.add(c));
        c += n;
    }
    if c < to {
        V::load_live(line.wrapping_add(c), to - c).store(row.add(c));
    }
    for at in (to..width).step_by(n) {
        fill.store(row.add(at));
    }
}

/// Floats per row of the padded copy a row kernel reads for an output
/// `ow` wide: the padding before (`pw`) and the plane's `w` columns, or
/// as far as the last chunk of `V::N` outputs reaches with `kw` taps
/// `dw` apart at stride `sw`, whichever is more.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn padded_width<V: Lanes>(ow: usize, w: usize, [kw, sw, dw, pw]: [usize; 4]) -> usize {
    let last_chunk = ow.saturating_sub(1) / V::N * V::N;
    (pw + w).max(last_chunk * sw + (kw - 1) * dw + V::span(sw))
}

/// Copies the `height x width` window of the `h x w` plane at `src` whose
/// top-left element is plane position (`top`, `left`) into `base`, with
/// `pad` where the window lies outside the plane.
///
/// # Safety
/// `V`'s instruction set must be available; `src` holds the plane and
/// `base` `height * width` floats and [`SLACK`] more (a
/// [`padded_buffer`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn copy_window<V: Lanes>(
    src: *const f32,
    [h, w]: [usize; 2],
    top: i64,
    left: i64,
    pad: f32,
    base: *mut f32,
    height: usize,
    width: usize,
) {
    let fill = V::splat(pad);
    // The window's columns that lie inside the plane: `c0..c1`.
    let c0 = (-left).clamp(0, width as i64) as usize;
    let c1 = (w as i64 - left).clamp(c0 as i64, width as i64) as usize;
    for j in 0..height {
        let row = base.add(j * width);
        let iy = top + j as i64;
        let inside = if (0..h as i64).contains(&iy) {
            (c0, c1)
        } else {
            (width, width)
        };
        // Column `c` of the window is `line[c]`, read only for `c` in
        // `c0..c1` of a row inside the plane.
        let line = src
            .wrapping_offset(iy as isize * w as isize)
            .wrapping_offset(left as isize);
        write_padded_row(row, width, line, inside, fill);
    }
}

/// One vector of `N` floats and what the row kernels do with it.
///
/// # Safety
/// The methods need their instruction set: call them only from code
/// compiled with it, which has checked that the CPU has it (the
/// `MicroKernel` dispatch). Methods that take pointers need them valid for
/// what their docs say.
#[cfg(target_arch = "x86_64")]
pub(crate) trait Lanes: Copy {
    /// Lanes per vector.
    const N: usize;
    /// Which lanes a masked load reads.
    type Mask: Copy;
    /// An activation with its parameters splatted.
    type Act: Copy;
    /// Lanes seen to be NaN (max pooling).
    type NanLanes: Copy;

    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    /// `a * b + c`, fused.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;

    /// `N` floats from `p`.
    unsafe fn load(p: *const f32) -> Self;
    /// The first `live` floats from `p` (all `N` when `live >= N`), zero
    /// past them; the others are not read.
    unsafe fn load_live(p: *const f32, live: usize) -> Self;
    /// `N` floats to `p`.
    unsafe fn store(self, p: *mut f32);
    /// The first `live` lanes to `p` (all `N` when `live >= N`); the
    /// others are not written.
    unsafe fn store_live(self, p: *mut f32, live: usize);

    /// The mask of the lanes whose bits are set in `bits` (lane `l` is
    /// bit `l`).
    unsafe fn mask(bits: u16) -> Self::Mask;
    /// The lanes of `mask` from `p`, zero elsewhere; the others are not
    /// read.
    unsafe fn load_masked(p: *const f32, mask: Self::Mask) -> Self;
    /// The lanes of `mask` from `p`, `fill`'s elsewhere; the others are
    /// not read (so `p` may point before or past the buffer they lie in).
    unsafe fn load_masked_or(p: *const f32, mask: Self::Mask, fill: Self) -> Self;

    /// Columns `at[l * stride]` for the `N` lanes `l`, every one readable:
    /// `at[0 .. span(stride)]`.
    unsafe fn window(at: *const f32, stride: usize) -> Self;
    /// Columns one [`Lanes::window`] reads from its first.
    fn span(stride: usize) -> usize;

    /// The mask [`Lanes::stride2_windows`] takes for column `2N`:
    /// whether it lies inside the row.
    unsafe fn last_mask(inside: bool) -> Self::Mask;
    /// The three windows of a 3-wide tap row at stride 2 from `at`:
    /// columns `2l`, `2l + 1` and `2l + 2` for lane `l`, that is the
    /// `2N + 1` columns from `at`. `low` and `high` say which of columns
    /// `0..N` and `N..2N` lie inside the row, `last` (from
    /// [`Lanes::last_mask`]) whether column `2N` does; the others are
    /// zero, and not read.
    unsafe fn stride2_windows(
        at: *const f32,
        low: Self::Mask,
        high: Self::Mask,
        last: Self::Mask,
    ) -> [Self; 3];

    /// Column `2N` of the row at `at` in the lane where
    /// [`Lanes::split_stride2`] takes it; reads no column past `2N`.
    unsafe fn load_column_2n(at: *const f32) -> Self;
    /// [`Lanes::load_column_2n`] when `inside`, else `fill`; reads no
    /// column but `2N`, and that one only when `inside`.
    unsafe fn load_column_2n_or(at: *const f32, inside: bool, fill: Self) -> Self;
    /// [`Lanes::stride2_windows`] of columns already loaded: `lo` holds
    /// columns `0..N`, `hi` `N..2N`, and `next` column `2N` as
    /// [`Lanes::load_column_2n`] loads it (or any lane-wise function of
    /// such vectors, such as the maximum over rows).
    unsafe fn split_stride2(lo: Self, hi: Self, next: Self) -> [Self; 3];

    /// `v > acc ? v : acc`, so `acc` when `v` is NaN (`maxps` order).
    unsafe fn max(v: Self, acc: Self) -> Self;
    unsafe fn no_nan() -> Self::NanLanes;
    /// `nan` and the lanes where `v` is NaN.
    unsafe fn note_nan(nan: Self::NanLanes, v: Self) -> Self::NanLanes;
    /// NaN in the lanes of `nan`, `self` elsewhere.
    unsafe fn set_nan(self, nan: Self::NanLanes) -> Self;
    /// Whether any lane of `nan` is set.
    unsafe fn any_nan(nan: Self::NanLanes) -> bool;

    unsafe fn act(act: Activation) -> Self::Act;
    unsafe fn apply(act: &Self::Act, x: Self) -> Self;
    /// [`Lanes::apply`] to every vector of `xs`; AVX2 makes one call of
    /// its transcendental activations for all of them (see
    /// `avx2_act::apply_act_all`).
    #[inline(always)]
    unsafe fn apply_all(act: &Self::Act, xs: &mut [Self]) {
        for x in xs {
            *x = Self::apply(act, *x);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Lanes;
    use crate::kernels::gemm::avx512::{apply_act, lane_mask, span, vec_act, window, VecAct};
    use crate::kernels::gemm::Activation;
    use std::arch::x86_64::*;

    // SAFETY (every method): the contract is [`Lanes`]'s: AVX-512F is
    // available, and the pointer methods access only the lanes their docs
    // name (masked loads and stores leave the others alone).
    impl Lanes for __m512 {
        const N: usize = 16;
        type Mask = __mmask16;
        type Act = VecAct;
        type NanLanes = __mmask16;

        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn mul_add(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(self, b: __m512) -> __m512 {
            _mm512_add_ps(self, b)
        }
        #[inline(always)]
        unsafe fn mul(self, b: __m512) -> __m512 {
            _mm512_mul_ps(self, b)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_live(p: *const f32, live: usize) -> __m512 {
            _mm512_maskz_loadu_ps(lane_mask(live), p)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self)
        }
        #[inline(always)]
        unsafe fn store_live(self, p: *mut f32, live: usize) {
            _mm512_mask_storeu_ps(p, lane_mask(live), self)
        }
        #[inline(always)]
        unsafe fn mask(bits: u16) -> __mmask16 {
            bits
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, mask: __mmask16) -> __m512 {
            _mm512_maskz_loadu_ps(mask, p)
        }
        #[inline(always)]
        unsafe fn load_masked_or(p: *const f32, mask: __mmask16, fill: __m512) -> __m512 {
            _mm512_mask_loadu_ps(fill, mask, p)
        }
        #[inline(always)]
        unsafe fn window(at: *const f32, stride: usize) -> __m512 {
            window(at, stride)
        }
        #[inline(always)]
        fn span(stride: usize) -> usize {
            span(stride)
        }
        #[inline(always)]
        unsafe fn last_mask(inside: bool) -> __mmask16 {
            inside.into()
        }
        #[inline(always)]
        unsafe fn stride2_windows(
            at: *const f32,
            low: __mmask16,
            high: __mmask16,
            last: __mmask16,
        ) -> [__m512; 3] {
            // The three windows are the even lanes, the odd lanes and the
            // even lanes one further of the same 33 columns: two loads, two
            // permutes, and an align with the 33rd.
            let (lo, hi) = (
                _mm512_maskz_loadu_ps(low, at),
                _mm512_maskz_loadu_ps(high, at.wrapping_add(16)),
            );
            let next = _mm512_maskz_loadu_ps(last, at.wrapping_add(32));
            Self::split_stride2(lo, hi, next)
        }
        #[inline(always)]
        unsafe fn load_column_2n(at: *const f32) -> __m512 {
            // Lane 0.
            _mm512_maskz_loadu_ps(1, at.wrapping_add(32))
        }
        #[inline(always)]
        unsafe fn load_column_2n_or(at: *const f32, inside: bool, fill: __m512) -> __m512 {
            _mm512_mask_loadu_ps(fill, u16::from(inside), at.wrapping_add(32))
        }
        #[inline(always)]
        unsafe fn split_stride2(lo: __m512, hi: __m512, next: __m512) -> [__m512; 3] {
            let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
            let even_lanes = _mm512_permutex2var_ps(lo, even, hi);
            let odd_lanes = _mm512_permutex2var_ps(lo, odd, hi);
            let shifted = _mm512_alignr_epi32::<1>(
                _mm512_castps_si512(next),
                _mm512_castps_si512(even_lanes),
            );
            [even_lanes, odd_lanes, _mm512_castsi512_ps(shifted)]
        }
        #[inline(always)]
        unsafe fn max(v: __m512, acc: __m512) -> __m512 {
            _mm512_max_ps(v, acc)
        }
        #[inline(always)]
        unsafe fn no_nan() -> __mmask16 {
            0
        }
        #[inline(always)]
        unsafe fn note_nan(nan: __mmask16, v: __m512) -> __mmask16 {
            nan | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v)
        }
        #[inline(always)]
        unsafe fn set_nan(self, nan: __mmask16) -> __m512 {
            _mm512_mask_mov_ps(self, nan, _mm512_set1_ps(f32::NAN))
        }
        #[inline(always)]
        unsafe fn any_nan(nan: __mmask16) -> bool {
            nan != 0
        }
        #[inline(always)]
        unsafe fn act(act: Activation) -> VecAct {
            vec_act(act)
        }
        #[inline(always)]
        unsafe fn apply(act: &VecAct, x: __m512) -> __m512 {
            // SAFETY: the caller's (AVX-512F).
            unsafe { apply_act(act, x) }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Lanes;
    use crate::kernels::gemm::avx2_act::{apply_act, apply_act_all, vec_act, VecAct};
    use crate::kernels::gemm::Activation;
    use std::arch::x86_64::*;

    /// All ones in the first `live` lanes.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    unsafe fn lane_mask(live: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(live.min(8) as i32), lanes)
    }

    /// Columns one 8-lane window reads from its first.
    fn span(stride: usize) -> usize {
        match stride {
            1 => 8,
            2 => 16,
            s => 7 * s + 1,
        }
    }

    /// The even lanes (`EVEN`) or the odd lanes of the 16 floats `lo, hi`:
    /// a shuffle within each 128-bit half, then the 64-bit pairs in order.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    unsafe fn deinterleave<const EVEN: bool>(lo: __m256, hi: __m256) -> __m256 {
        let pairs = if EVEN {
            _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi)
        } else {
            _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi)
        };
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
            pairs,
        )))
    }

    // SAFETY (every method): the contract is [`Lanes`]'s: AVX2 and FMA are
    // available, and the pointer methods access only the lanes their docs
    // name (`vmaskmovps` neither reads nor writes the lanes it masks off).
    impl Lanes for __m256 {
        const N: usize = 8;
        type Mask = __m256i;
        type Act = VecAct;
        type NanLanes = __m256;

        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            _mm256_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn mul_add(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(self, b: __m256) -> __m256 {
            _mm256_add_ps(self, b)
        }
        #[inline(always)]
        unsafe fn mul(self, b: __m256) -> __m256 {
            _mm256_mul_ps(self, b)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_live(p: *const f32, live: usize) -> __m256 {
            if live >= 8 {
                _mm256_loadu_ps(p)
            } else {
                _mm256_maskload_ps(p, lane_mask(live))
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self)
        }
        #[inline(always)]
        unsafe fn store_live(self, p: *mut f32, live: usize) {
            // A masked store costs several times a plain one on AMD.
            if live >= 8 {
                _mm256_storeu_ps(p, self)
            } else {
                _mm256_maskstore_ps(p, lane_mask(live), self)
            }
        }
        #[inline(always)]
        unsafe fn mask(bits: u16) -> __m256i {
            let lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            let set = _mm256_and_si256(_mm256_set1_epi32(i32::from(bits)), lanes);
            _mm256_cmpeq_epi32(set, lanes)
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, mask: __m256i) -> __m256 {
            _mm256_maskload_ps(p, mask)
        }
        #[inline(always)]
        unsafe fn load_masked_or(p: *const f32, mask: __m256i, fill: __m256) -> __m256 {
            let loaded = _mm256_maskload_ps(p, mask);
            _mm256_blendv_ps(fill, loaded, _mm256_castsi256_ps(mask))
        }
        #[inline(always)]
        unsafe fn window(at: *const f32, stride: usize) -> __m256 {
            match stride {
                1 => _mm256_loadu_ps(at),
                2 => deinterleave::<true>(_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8))),
                _ => {
                    let index = _mm256_mullo_epi32(
                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                        _mm256_set1_epi32(stride as i32),
                    );
                    _mm256_i32gather_ps::<4>(at, index)
                }
            }
        }
        #[inline(always)]
        fn span(stride: usize) -> usize {
            span(stride)
        }
        #[inline(always)]
        unsafe fn last_mask(inside: bool) -> __m256i {
            // Lane 7 only: `stride2_windows` loads column 16 into lane 7.
            _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 0, -i32::from(inside))
        }
        #[inline(always)]
        unsafe fn stride2_windows(
            at: *const f32,
            low: __m256i,
            high: __m256i,
            last: __m256i,
        ) -> [__m256; 3] {
            // The even lanes, the odd lanes, and the even lanes moved down
            // one with column 16 (loaded into lane 7) blended in last.
            let (lo, hi) = (
                _mm256_maskload_ps(at, low),
                _mm256_maskload_ps(at.wrapping_add(8), high),
            );
            let next = _mm256_maskload_ps(at.wrapping_add(9), last);
            Self::split_stride2(lo, hi, next)
        }
        #[inline(always)]
        unsafe fn load_column_2n(at: *const f32) -> __m256 {
            // Columns 9..=16: column 16 in lane 7.
            _mm256_loadu_ps(at.wrapping_add(9))
        }
        #[inline(always)]
        unsafe fn load_column_2n_or(at: *const f32, inside: bool, fill: __m256) -> __m256 {
            // Lane 7 alone, which `split_stride2` takes.
            let lane = if inside { 0x80 } else { 0 };
            Self::load_masked_or(at.wrapping_add(9), Self::mask(lane), fill)
        }
        #[inline(always)]
        unsafe fn split_stride2(lo: __m256, hi: __m256, next: __m256) -> [__m256; 3] {
            let even = deinterleave::<true>(lo, hi);
            let odd = deinterleave::<false>(lo, hi);
            let down = _mm256_permutevar8x32_ps(even, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7));
            [even, odd, _mm256_blend_ps::<0b1000_0000>(down, next)]
        }
        #[inline(always)]
        unsafe fn max(v: __m256, acc: __m256) -> __m256 {
            _mm256_max_ps(v, acc)
        }
        #[inline(always)]
        unsafe fn no_nan() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn note_nan(nan: __m256, v: __m256) -> __m256 {
            _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v))
        }
        #[inline(always)]
        unsafe fn set_nan(self, nan: __m256) -> __m256 {
            _mm256_blendv_ps(self, _mm256_set1_ps(f32::NAN), nan)
        }
        #[inline(always)]
        unsafe fn any_nan(nan: __m256) -> bool {
            _mm256_movemask_ps(nan) != 0
        }
        #[inline(always)]
        unsafe fn act(act: Activation) -> VecAct {
            vec_act(act)
        }
        #[inline(always)]
        unsafe fn apply(act: &VecAct, x: __m256) -> __m256 {
            apply_act(act, x)
        }
        #[inline(always)]
        unsafe fn apply_all(act: &VecAct, xs: &mut [__m256]) {
            apply_act_all(act, xs)
        }
    }
}
