//! Operand packing: 64-byte aligned buffers, weights (A) packed once into
//! row panels, and blocks of B packed per call into column panels.
//!
//! Layouts (MR rows per A panel, NR columns per B panel, both set by the
//! micro-kernel):
//! - packed A: panel `p` holds rows `p*MR .. p*MR + MR` for the whole K
//!   extent, k-major: element `(r, kk)` of the panel is at
//!   `p*MR*K + kk*MR + r`. Rows past `m` are zero.
//! - packed B block (`kc` rows, `nc` columns): panel `j` holds columns
//!   `j*NR .. j*NR + NR`, k-major: element `(kk, c)` is at
//!   `j*NR*kc + kk*NR + c`. Columns past `nc` are zero.

/// One cache line of floats; a `Vec` of these is 64-byte aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

const LINE: usize = 16;

/// A zero-initialised, 64-byte aligned buffer of `f32` that only grows:
/// owned, or the read-only weights of an ahead-of-time bundle's image,
/// borrowed in place (copied on the first write, which packed weights
/// never see).
pub(crate) struct AlignedBuf {
    lines: Lines,
}

enum Lines {
    Owned(Vec<Line>),
    /// Static data of the program (a bundle's image).
    Static(&'static [Line]),
    /// Fresh anonymous pages, zero from the kernel (see
    /// [`AlignedBuf::zeroed`]).
    Mapped(Mapped),
}

/// `lines` lines of an anonymous mapping from `offset` bytes on, a 2 MiB
/// boundary.
struct Mapped {
    map: memmap2::MmapMut,
    offset: usize,
    lines: usize,
}

impl Mapped {
    /// Below this, a buffer is an ordinary allocation: it would hold no
    /// whole huge page, and a mapping per packed bias costs a system call.
    const MIN_BYTES: usize = crate::pages::HUGE_PAGE;

    /// `lines` zero lines on huge pages where the kernel has them, or
    /// `None` if the mapping fails. The mapping is a huge page longer than
    /// the lines, so that they can start on a 2 MiB boundary (the untouched
    /// slack costs no memory).
    fn new(lines: usize) -> Option<Mapped> {
        let bytes = lines.checked_mul(std::mem::size_of::<Line>())?;
        let huge = crate::pages::HUGE_PAGE;
        let map = memmap2::MmapOptions::new()
            .len(bytes.checked_add(huge)?)
            .map_anon()
            .ok()?;
        let offset = crate::pages::floats_to_huge_page(map.as_ptr().cast()) * 4;
        // A hint: the pages are zero either way.
        #[cfg(target_os = "linux")]
        let _ = map.advise_range(memmap2::Advice::HugePage, offset, bytes);
        Some(Mapped { map, offset, lines })
    }

    fn lines(&self) -> &[Line] {
        let bytes = &self.map[self.offset..][..self.lines * std::mem::size_of::<Line>()];
        // SAFETY: the bytes start on a 2 MiB boundary (so aligned for
        // `Line`), hold `lines` lines, and any bits are a valid `Line`.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), self.lines) }
    }

    fn lines_mut(&mut self) -> &mut [Line] {
        let bytes = &mut self.map[self.offset..][..self.lines * std::mem::size_of::<Line>()];
        // SAFETY: as for `lines`, borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast(), self.lines) }
    }
}

impl AlignedBuf {
    /// An empty buffer (no allocation).
    pub(crate) const fn new() -> AlignedBuf {
        AlignedBuf {
            lines: Lines::Owned(Vec::new()),
        }
    }

    /// A buffer of at least `len` zeroed floats. A large one (packed
    /// weights are the bulk of a model's memory) is fresh pages mapped for
    /// it, which the kernel zeroes as they are first written and may back
    /// with huge pages: faulting resnet18's 78 MB of packed weights in 4 KiB
    /// at a time was a large part of its compile time, and zeroing them
    /// with a `memset` first wrote each byte twice (the first write from
    /// DRAM, before the packing's).
    pub(crate) fn zeroed(len: usize) -> AlignedBuf {
        let lines = len.div_ceil(LINE);
        if lines.saturating_mul(std::mem::size_of::<Line>()) >= Mapped::MIN_BYTES {
            if let Some(mapped) = Mapped::new(lines) {
                return AlignedBuf {
                    lines: Lines::Mapped(mapped),
                };
            }
        }
        AlignedBuf {
            lines: Lines::Owned(vec![Line([0.0; LINE]); lines]),
        }
    }

    /// The buffer's lines, owned from now on (a borrowed or mapped buffer
    /// is copied: growing it).
    fn owned(&mut self) -> &mut Vec<Line> {
        if !matches!(self.lines, Lines::Owned(_)) {
            self.lines = Lines::Owned(self.lines().to_vec());
        }
        match &mut self.lines {
            Lines::Owned(lines) => lines,
            Lines::Static(_) | Lines::Mapped(_) => unreachable!("made owned above"),
        }
    }

    fn lines(&self) -> &[Line] {
        match &self.lines {
            Lines::Owned(lines) => lines,
            Lines::Static(lines) => lines,
            Lines::Mapped(mapped) => mapped.lines(),
        }
    }

    /// The lines, writable: a bundle's are copied first, a mapping's are
    /// written where they are.
    fn lines_mut(&mut self) -> &mut [Line] {
        if let Lines::Static(_) = self.lines {
            self.owned();
        }
        match &mut self.lines {
            Lines::Owned(lines) => lines,
            Lines::Mapped(mapped) => mapped.lines_mut(),
            Lines::Static(_) => unreachable!("made owned above"),
        }
    }

    /// Grows the buffer to hold at least `len` floats; never shrinks, so a
    /// reused buffer stops allocating once it has seen the largest block.
    pub(crate) fn reserve_floats(&mut self, len: usize) {
        let lines = len.div_ceil(LINE);
        if self.lines().len() < lines {
            self.owned().resize(lines, Line([0.0; LINE]));
        }
    }

    /// Number of floats the buffer holds.
    pub(crate) fn len(&self) -> usize {
        self.lines().len() * LINE
    }

    pub(crate) fn as_ptr(&self) -> *const f32 {
        self.lines().as_ptr().cast()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut f32 {
        self.lines_mut().as_mut_ptr().cast()
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        let len = self.len();
        // SAFETY: `Line` is `repr(C)` around `[f32; 16]`, so the vector's
        // storage is `len` contiguous, initialised floats that we borrow
        // mutably for the lifetime of `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), len) }
    }

    /// The floats, read-only.
    pub(crate) fn as_slice(&self) -> &[f32] {
        // SAFETY: as for `as_mut_slice`, shared.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }
}

/// Packs row `r` of A (`row`, `k` floats) into `dst`, the matrix's `MR`-row
/// panels (see the module docs), which holds [`packed_a_len`] zeroed floats:
/// rows past `m` stay zero.
pub(crate) fn pack_a_row(row: &[f32], r: usize, k: usize, mr: usize, dst: &mut [f32]) {
    let base = r / mr * mr * k + r % mr;
    for (kk, &v) in row.iter().enumerate().take(k) {
        dst[base + kk * mr] = v;
    }
}

/// Floats of an `[m, k]` matrix packed in whole panels of `mr` rows.
pub(crate) fn packed_a_len(m: usize, k: usize, mr: usize) -> usize {
    m.div_ceil(mr) * mr * k
}

/// How many rows ahead of the copy `pack_b` prefetches B.
const PACK_PREFETCH_ROWS: usize = 4;

/// Packs the `kc x nc` block of B starting at `b` (row stride `ldb`) into
/// `nr`-column panels in `dst` (see the module docs), zero-padding the last
/// panel. `dst` must hold `nc.div_ceil(nr) * nr * kc` floats.
///
/// # Safety
/// `b` must be valid for reads of rows `0..kc`, columns `0..nc` at row
/// stride `ldb`.
pub(crate) unsafe fn pack_b(
    b: *const f32,
    ldb: usize,
    kc: usize,
    nc: usize,
    nr: usize,
    dst: &mut [f32],
) {
    // The micro-kernels' panel widths as constants, so that each panel
    // row's copy is a few vector moves rather than a call to `memmove`:
    // the calls were a sixth of 64x3136x576's time (AMD EPYC Zen 4).
    // SAFETY: forwarded.
    unsafe {
        match nr {
            #[cfg(target_arch = "x86_64")]
            32 if is_x86_feature_detected!("avx512f") => pack_b_zmm(b, ldb, kc, nc, dst),
            #[cfg(target_arch = "x86_64")]
            16 if is_x86_feature_detected!("avx2") => pack_b_ymm(b, ldb, kc, nc, dst),
            _ => pack_b_any(b, ldb, kc, nc, nr, dst),
        }
    }
}

/// [`pack_b`] for the AVX-512 kernel's panels, 32 floats (two zmm) wide:
/// as [`pack_b_any`], with the partial last panel's rows copied and
/// zero-padded by masked loads (a `memset` and a `memmove` call per row
/// were 3% of MobileNetV2's time, whose maps are 196 and 49 wide).
///
/// # Safety
/// As for [`pack_b`]; AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_zmm(b: *const f32, ldb: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    use super::avx512::lane_mask;
    use std::arch::x86_64::*;
    const NR: usize = 32;
    let panel_len = kc * NR;
    let full = nc / NR;
    let tail = nc - full * NR;
    assert!(
        dst.len() >= nc.div_ceil(NR) * panel_len,
        "pack_b: {} floats for {kc} x {nc}",
        dst.len()
    );
    let (low, high) = (lane_mask(tail.min(16)), lane_mask(tail.saturating_sub(16)));
    let dst = dst.as_mut_ptr();
    for kk in 0..kc {
        if kk + PACK_PREFETCH_ROWS < kc {
            prefetch(b.wrapping_add((kk + PACK_PREFETCH_ROWS) * ldb), nc);
        }
        // SAFETY: row `kk < kc`, columns `0..nc` of B are inside the block
        // the caller vouched for (the tail's masked-off lanes are not
        // read); each panel row written is inside `dst`, checked above.
        unsafe {
            let src = b.add(kk * ldb);
            for j in 0..full {
                let (from, to) = (src.add(j * NR), dst.add(j * panel_len + kk * NR));
                _mm512_storeu_ps(to, _mm512_loadu_ps(from));
                _mm512_storeu_ps(to.add(16), _mm512_loadu_ps(from.add(16)));
            }
            if tail > 0 {
                let (from, to) = (src.add(full * NR), dst.add(full * panel_len + kk * NR));
                _mm512_storeu_ps(to, _mm512_maskz_loadu_ps(low, from));
                _mm512_storeu_ps(to.add(16), _mm512_maskz_loadu_ps(high, from.add(16)));
            }
        }
    }
}

/// [`pack_b`] for the AVX2 kernel's panels, 16 floats (two ymm) wide.
///
/// # Safety
/// As for [`pack_b`]; AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_b_ymm(b: *const f32, ldb: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    // SAFETY: forwarded.
    unsafe { pack_b_any(b, ldb, kc, nc, 16, dst) }
}

/// [`pack_b`] for any panel width; inlined where `nr` is a constant.
///
/// # Safety
/// As for [`pack_b`].
#[inline(always)]
unsafe fn pack_b_any(b: *const f32, ldb: usize, kc: usize, nc: usize, nr: usize, dst: &mut [f32]) {
    // Row by row: each row of B is read sequentially, and the scattered
    // writes land in the buffer, which is already in cache. A block's rows
    // are short (`nc` floats) and far apart, too short for the hardware
    // prefetcher to pick up each one, so rows a few ahead are prefetched
    // (worth ~10% on a 64x3136x576 convolution, whose B comes from L3).
    let panel_len = kc * nr;
    let full = nc / nr;
    let tail = nc - full * nr;
    for kk in 0..kc {
        if kk + PACK_PREFETCH_ROWS < kc {
            prefetch(b.wrapping_add((kk + PACK_PREFETCH_ROWS) * ldb), nc);
        }
        // SAFETY: row `kk < kc`, columns `0..nc` are inside the block the
        // caller vouched for.
        let src = unsafe { std::slice::from_raw_parts(b.add(kk * ldb), nc) };
        for (j, chunk) in src.chunks_exact(nr).enumerate() {
            let at = j * panel_len + kk * nr;
            dst[at..at + nr].copy_from_slice(chunk);
        }
        if tail > 0 {
            let at = full * panel_len + kk * nr;
            dst[at..at + tail].copy_from_slice(&src[full * nr..]);
            dst[at + tail..at + nr].fill(0.0);
        }
    }
}

/// Asks for the `len` floats at `p` to be brought into cache (a hint: never
/// faults, does nothing off x86-64).
#[inline]
pub(crate) fn prefetch(p: *const f32, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = len * 4;
        let p = p.cast::<i8>();
        for offset in (0..bytes + 63).step_by(64) {
            // SAFETY: prefetching is a hint that never faults, whatever the
            // address; SSE is part of the x86-64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(offset.min(bytes - 1))) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Saved in an ahead-of-time bundle's image as a place in its blob of
/// aligned floats (see `constants::blob`), so that loading borrows it.
impl serde::Serialize for AlignedBuf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::kernels::constants::blob::save(self.as_slice(), s)
    }
}

impl<'de> serde::Deserialize<'de> for AlignedBuf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AlignedBuf, D::Error> {
        use crate::kernels::constants::blob::{load, Loaded};
        let copy = |floats: &[f32]| {
            let mut buf = AlignedBuf::zeroed(floats.len());
            buf.as_mut_slice()[..floats.len()].copy_from_slice(floats);
            buf
        };
        Ok(match load(d)? {
            Loaded::InPlace(floats) if floats.len() % LINE == 0 => {
                // SAFETY: `Line` is `repr(C, align(64))` around 16 floats;
                // the floats are static, 64-byte aligned and a whole number
                // of lines.
                let lines = unsafe {
                    std::slice::from_raw_parts(floats.as_ptr().cast::<Line>(), floats.len() / LINE)
                };
                AlignedBuf {
                    lines: Lines::Static(lines),
                }
            }
            Loaded::InPlace(floats) => copy(floats),
            Loaded::Copied(floats) => copy(&floats),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small and mapped buffers alike start zero, aligned, at least as
    /// long as asked; they keep what is written, also when they grow (a
    /// mapped one becomes owned then).
    #[test]
    fn zeroed_buffers_are_zero_aligned_and_keep_their_writes() {
        for len in [0, 5, 1000, (2 << 20) / 4, (5 << 20) / 4 + 3] {
            let mut buf = AlignedBuf::zeroed(len);
            assert!(buf.len() >= len, "{len}: {} floats", buf.len());
            assert_eq!(buf.as_ptr() as usize % 64, 0, "{len}");
            assert!(buf.as_slice().iter().all(|&x| x == 0.0), "{len}");
            let mapped = matches!(buf.lines, Lines::Mapped(_));
            assert_eq!(mapped, 4 * len >= crate::pages::HUGE_PAGE, "{len}");
            for (i, x) in buf.as_mut_slice().iter_mut().enumerate() {
                *x = i as f32;
            }
            buf.reserve_floats(buf.len() + 100);
            let data = buf.as_slice();
            assert!(data.len() >= len + 100);
            assert!(
                data[..len].iter().enumerate().all(|(i, &x)| x == i as f32),
                "{len}"
            );
            assert!(data[len.next_multiple_of(LINE)..].iter().all(|&x| x == 0.0));
        }
    }
}
