//! Native single-precision GEMM for the JIT: `C = epilogue(A · B)` with A
//! (the weights) packed once at compile time and B (activations) packed per
//! call into a reused thread-local buffer.
//!
//! # Kernels
//! [`MicroKernel::detect`] picks the best kernel the CPU has, at run time:
//! - `avx512 14x32`: 28 zmm accumulators, AVX-512F, masked edges;
//! - `avx2+fma 6x16`: 12 ymm accumulators, AVX2 + FMA, masked edges;
//! - `portable 4x8`: plain Rust, any target.
//!
//! All three compute the same sums; they differ only in rounding (FMA or
//! not, the K blocks, the split accumulators of the narrow kernels), and
//! `runtime/tests/gemm.rs` holds each to an f64 reference.
//!
//! # Blocking
//! For each block of `NC` columns of C and each block of at most `KC` steps
//! of K (K split into equal blocks), the `KC x NC` block of B is packed into
//! `NR`-wide panels that stay in L2; then for each `MR`-row panel of A the
//! micro-kernel sweeps the B panels. A tile of C is written once per K
//! block, so K blocks are large (768 for the x86 kernels: one block for
//! most convolutions): bias and residual are added on the first block, the
//! activation on the last (see `epilogue.rs`). Column tails a few columns
//! wide, and whole calls with N below 8 (GEMV: batch-1 linear, LSTM steps,
//! where B is not packed at all), go to a narrow kernel that vectorises
//! along M over A's panels instead. [`BSource::Cache`] skips packing B's
//! whole panels, for a B the caller just wrote (the separable kernel's
//! depthwise tile).
//!
//! The sizes were tuned on AMD Zen 4 (1 MiB L2 per core) with
//! `bench/benches/gemm.rs`: K blocks of 256 lost 10-20% on the convolution
//! shapes to the extra passes over C, and keeping the `MR x KC` A slice in
//! L1 mattered less than that. They hold on the other CPUs measured since:
//! on an Intel Xeon (2 MiB L2) 384-column blocks were no faster than 192,
//! and on AMD Zen 3 (512 KiB L2, AVX2: 91.7 GFLOP/s, 89% of its FMA peak,
//! on 512^3) blocks of (K, N) = (768, 96), (512, 128), (384, 160) and
//! (256, 256) were no faster than (768, 192) on any benchmark shape.
//!
//! # Threads
//! [`gemm`] computes any `(m_range, n_range)` block of C; calls on disjoint
//! blocks may run concurrently (each thread packs B into its own buffer).
//!
//! # Calling from compiled code
//! Compiled kernels reach these products through the descriptors of
//! [`tasks`](super::tasks) (`nnc_gemm_task`, `nnc_gemm_panel`), which own
//! the packed weights and resolve arena offsets per run.

#![allow(unsafe_code)]

pub(crate) mod avx2;
pub(crate) mod avx2_act;
pub(crate) mod avx512;
pub(crate) mod caches;
mod epilogue;
mod pack;
mod packed_b;
mod portable;

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use epilogue::{Tile, TileEpilogue};
pub(crate) use pack::AlignedBuf;
pub use packed_b::{gemm_packed_b, PackedB};

/// A GEMM micro-kernel: an instruction set and a register-tile shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MicroKernel {
    /// AVX-512F, 14x32 tile.
    Avx512,
    /// AVX2 + FMA, 6x16 tile.
    Avx2Fma,
    /// Plain Rust, 4x8 tile; available everywhere.
    Portable,
}

/// Tile and cache-block sizes of one kernel.
#[derive(Clone, Copy)]
struct Geometry {
    /// Rows per A panel.
    mr: usize,
    /// Columns per packed B panel.
    nr: usize,
    /// Most K steps per block (the packed B block is `kc x nc`).
    kc: usize,
    /// Columns per B block.
    nc: usize,
    /// Below this many columns, skip packing and use the narrow kernel.
    narrow_n: usize,
}

/// The widest panel of B any micro-kernel takes (AVX-512's 32 columns):
/// a buffer laid out in panels for whichever kernel runs holds its columns
/// rounded up to this.
pub const MAX_PANEL_WIDTH: usize = 32;

impl MicroKernel {
    /// `self` if this CPU has it, else the portable kernel: what every
    /// native kernel built for `self` runs, so that none selects
    /// instructions the CPU lacks.
    pub fn usable(self) -> MicroKernel {
        if self.is_available() {
            self
        } else {
            MicroKernel::Portable
        }
    }

    /// The columns per panel of B of the kernel a product packed for
    /// `self` runs (the portable kernel's where this CPU lacks `self`).
    pub fn panel_width(self) -> usize {
        self.usable().geometry().nr
    }

    /// Every kernel, best first.
    pub const ALL: [MicroKernel; 3] = [
        MicroKernel::Avx512,
        MicroKernel::Avx2Fma,
        MicroKernel::Portable,
    ];

    /// The best kernel this CPU can run.
    pub fn detect() -> MicroKernel {
        MicroKernel::ALL
            .into_iter()
            .find(|k| k.is_available())
            .unwrap_or(MicroKernel::Portable)
    }

    /// A short description for `nnc compile`, e.g. `"avx512 14x32"`.
    pub fn name(self) -> &'static str {
        match self {
            MicroKernel::Avx512 => "avx512 14x32",
            MicroKernel::Avx2Fma => "avx2+fma 6x16",
            MicroKernel::Portable => "portable 4x8",
        }
    }

    /// Whether this CPU has the instructions the kernel needs.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx2Fma => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            MicroKernel::Avx512 | MicroKernel::Avx2Fma => false,
            MicroKernel::Portable => true,
        }
    }

    fn geometry(self) -> Geometry {
        match self {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => Geometry {
                mr: avx512::MR,
                nr: avx512::NR,
                kc: 768,
                nc: 192,
                narrow_n: 8,
            },
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx2Fma => Geometry {
                mr: avx2::MR,
                nr: avx2::NR,
                kc: 768,
                nc: 192,
                narrow_n: 8,
            },
            #[cfg(not(target_arch = "x86_64"))]
            MicroKernel::Avx512 | MicroKernel::Avx2Fma => MicroKernel::Portable.geometry(),
            MicroKernel::Portable => Geometry {
                mr: portable::MR,
                nr: portable::NR,
                kc: 256,
                nc: 256,
                narrow_n: portable::NR,
            },
        }
    }
}

/// The activation applied last in the epilogue.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    None,
    Relu,
    /// `min(max(x, min), max)`; relu6 is `Clip { min: 0, max: 6 }`.
    Clip {
        min: f32,
        max: f32,
    },
    LeakyRelu {
        negative_slope: f32,
    },
    Sigmoid,
    Tanh,
    /// `x` if `x > 0`, else `alpha * (exp(x) - 1)`, times `scale` (SELU is
    /// `Elu` with its own alpha and scale; ELU has scale 1).
    Elu {
        alpha: f32,
        scale: f32,
    },
    /// `max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`.
    Celu {
        alpha: f32,
    },
    /// `ln(1 + exp(x))`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `max(0, min(1, alpha * x + beta))`.
    Hardsigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    Hardswish,
    /// `x * sigmoid(x)`.
    Silu,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `x/2 * (1 + erf(x / sqrt 2))`.
    Gelu,
    /// `x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`.
    GeluTanh,
}

/// A row-major `[m, k]` matrix (weights) packed into the panel layout of
/// one micro-kernel, in 64-byte aligned memory; immutable once built. The
/// groups of a grouped GEMM share one buffer (see [`PackedA::pack_groups`]).
pub struct PackedA {
    kernel: MicroKernel,
    m: usize,
    k: usize,
    data: Arc<AlignedBuf>,
    /// Where this matrix's panels start in `data` (a multiple of 16
    /// floats, so panels stay 64-byte aligned).
    offset: usize,
}

impl PackedA {
    /// Packs row-major `a [m, k]` for `kernel`. If `kernel` is not
    /// available on this CPU, packs for [`MicroKernel::Portable`] instead
    /// (check [`PackedA::kernel`]), so a `PackedA` never selects
    /// instructions the CPU lacks.
    ///
    /// # Panics
    /// If `a.len() < m * k`.
    pub fn pack(kernel: MicroKernel, a: &[f32], m: usize, k: usize) -> PackedA {
        let (kernel, data, _) = Self::pack_into_one(kernel, 1, m, k, |r, row| {
            row.copy_from_slice(&a[r * k..][..k]);
        });
        PackedA {
            kernel,
            m,
            k,
            data,
            offset: 0,
        }
    }

    /// Packs `groups` consecutive row-major `[m, k]` matrices of `a` for
    /// `kernel` (or the portable kernel, as [`PackedA::pack`]) into one
    /// buffer. One allocation instead of one per group lets the kernel back
    /// a Winograd GEMM's 16 or 36 groups with huge pages, where each group
    /// alone is under 2 MiB (ResNet-18's layer4 groups are 1 MiB each).
    ///
    /// # Panics
    /// If `a.len() < groups * m * k`.
    pub fn pack_groups(
        kernel: MicroKernel,
        a: &[f32],
        groups: usize,
        m: usize,
        k: usize,
    ) -> Vec<PackedA> {
        let (kernel, data, stride) = Self::pack_into_one(kernel, groups, m, k, |r, rows| {
            for (g, row) in rows.chunks_exact_mut(k.max(1)).enumerate() {
                row.copy_from_slice(&a[(g * m + r) * k..][..k]);
            }
        });
        Self::groups_of(kernel, data, stride, groups, m, k)
    }

    /// [`PackedA::pack_groups`] for matrices made a panel at a time, in
    /// the micro-kernel's layout, so that they never exist unpacked (a
    /// Winograd conv's transformed filters, see `native::pack_winograd`)
    /// and every packed line is written once, in order. `fill(r0, rows,
    /// mr, dst, stride)` writes rows `r0..r0 + rows` (`r0` a multiple of
    /// `mr`, `rows <= mr`) of every group `g` as the `[k][mr]` block at
    /// `dst[g * stride + r0 * k..]`, zero in the `mr - rows` rows past the
    /// matrix.
    pub fn pack_groups_by_panel(
        kernel: MicroKernel,
        groups: usize,
        m: usize,
        k: usize,
        mut fill: impl FnMut(usize, usize, usize, &mut [f32], usize),
    ) -> Vec<PackedA> {
        let kernel = kernel.usable();
        let mr = kernel.geometry().mr;
        let stride = pack::packed_a_len(m, k, mr).next_multiple_of(16);
        let mut data = AlignedBuf::zeroed(groups * stride);
        let dst = data.as_mut_slice();
        for r0 in (0..m).step_by(mr) {
            fill(r0, mr.min(m - r0), mr, dst, stride);
        }
        Self::groups_of(kernel, Arc::new(data), stride, groups, m, k)
    }

    /// The `groups` matrices packed `stride` floats apart in `data`.
    fn groups_of(
        kernel: MicroKernel,
        data: Arc<AlignedBuf>,
        stride: usize,
        groups: usize,
        m: usize,
        k: usize,
    ) -> Vec<PackedA> {
        (0..groups)
            .map(|g| PackedA {
                kernel,
                m,
                k,
                data: Arc::clone(&data),
                offset: g * stride,
            })
            .collect()
    }

    /// Packs the rows `fill` makes: `fill(r, rows)` writes row `r` of every
    /// group into `rows` (`groups` rows of `k`). Returns the kernel packed
    /// for, the buffer, and the floats between groups.
    fn pack_into_one(
        kernel: MicroKernel,
        groups: usize,
        m: usize,
        k: usize,
        mut fill: impl FnMut(usize, &mut [f32]),
    ) -> (MicroKernel, Arc<AlignedBuf>, usize) {
        let kernel = kernel.usable();
        let mr = kernel.geometry().mr;
        let stride = pack::packed_a_len(m, k, mr).next_multiple_of(16);
        let mut data = AlignedBuf::zeroed(groups * stride);
        let dst = data.as_mut_slice();
        let mut rows = vec![0.0f32; groups * k];
        for r in 0..m {
            fill(r, &mut rows);
            for (g, row) in rows.chunks_exact(k.max(1)).enumerate().take(groups) {
                pack::pack_a_row(row, r, k, mr, &mut dst[g * stride..][..stride]);
            }
        }
        (kernel, Arc::new(data), stride)
    }

    /// Rows of A (and of C).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Columns of A (rows of B).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The kernel this matrix was packed for, which [`gemm`] will use.
    pub fn kernel(&self) -> MicroKernel {
        self.kernel
    }

    /// Where the packed panels start.
    pub fn as_ptr(&self) -> *const f32 {
        self.data.as_ptr().wrapping_add(self.offset)
    }
}

/// What an ahead-of-time bundle's image holds of a [`PackedA`]: its own
/// panels only (the groups of one packing share a buffer; each is saved
/// and loaded on its own).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedPackedA {
    kernel: MicroKernel,
    m: usize,
    k: usize,
    data: AlignedBuf,
}

impl serde::Serialize for PackedA {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = pack::packed_a_len(self.m, self.k, self.kernel.geometry().mr);
        let mut data = AlignedBuf::zeroed(len);
        // SAFETY: the packing's buffer holds this matrix's `len` floats
        // from `offset` (`pack_into_one`'s stride is at least that).
        let mine = unsafe { std::slice::from_raw_parts(self.data.as_ptr().add(self.offset), len) };
        data.as_mut_slice()[..len].copy_from_slice(mine);
        SavedPackedA {
            kernel: self.kernel,
            m: self.m,
            k: self.k,
            data,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for PackedA {
    /// Refuses a matrix packed for a micro-kernel this CPU lacks (its GEMM
    /// would run instructions the CPU does not have) or too short for its
    /// shape.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PackedA, D::Error> {
        use serde::de::Error;
        let saved = SavedPackedA::deserialize(d)?;
        if !saved.kernel.is_available() {
            return Err(D::Error::custom(format!(
                "weights packed for the {} micro-kernel, which this CPU lacks",
                saved.kernel.name()
            )));
        }
        let need = saved
            .m
            .checked_mul(saved.k)
            .map(|_| pack::packed_a_len(saved.m, saved.k, saved.kernel.geometry().mr));
        if need.is_none_or(|need| saved.data.len() < need) {
            return Err(D::Error::custom("packed weights shorter than their shape"));
        }
        Ok(PackedA {
            kernel: saved.kernel,
            m: saved.m,
            k: saved.k,
            data: Arc::new(saved.data),
            offset: 0,
        })
    }
}

/// The fused epilogue, applied to each tile of C before it is stored (no
/// second pass over C): `c = act(acc + bias[row] + residual[row*ldr + col])`
/// with rows and columns in C's coordinates.
///
/// The residual may be C itself (`residual == c`, `ldr == ldc`: an
/// in-place residual add); any other overlap with C is not allowed.
#[derive(Clone, Copy, Debug)]
pub struct GemmEpilogue {
    /// One value per row of C, or null.
    pub bias: *const f32,
    /// Row-major like C with row stride `ldr`, or null.
    pub residual: *const f32,
    pub ldr: usize,
    pub activation: Activation,
}

impl GemmEpilogue {
    /// No bias, no residual, no activation: `C = A · B`.
    pub const NONE: GemmEpilogue = GemmEpilogue {
        bias: std::ptr::null(),
        residual: std::ptr::null(),
        ldr: 0,
        activation: Activation::None,
    };
}

/// The most rows of C for which [`gemm`] reads B's panels in place when
/// its column block does not fit in L1 (see [`reads_in_place`]).
const IN_PLACE_MAX_ROWS: usize = 128;

/// Where a product's B is read from, which decides whether [`gemm`]
/// packs its panels or reads them in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BSource {
    /// Not known: [`gemm`] reads the panels in place where its shapes and
    /// the CPU's L1 make that pay (see there), else packs them.
    Any,
    /// Just written, in cache (the separable kernel's depthwise tile): its
    /// whole column panels are read in place instead of packed first; only
    /// a partial last panel is packed. For small M the packing is a large
    /// share of the work: 16x96 by 448 columns took 14.0 us against 17.7
    /// packed, 96x576 by 196 took 193 against 203.
    Cache,
    /// From memory (see `tasks::GemmTask::b_from_memory`): always packed.
    /// A panel read in place is `K` rows far apart, as many streams as its
    /// rows, which the prefetchers do not follow from memory; packing reads
    /// whole rows of a block.
    Memory,
}

/// `C[m_range, n_range] = epilogue(A[m_range, :] · B[:, n_range])`, with B
/// row-major `[k, n]` at row stride `ldb`, read from `source`, and C
/// row-major at row stride `ldc`. `m_range` is clamped to `0..a.m()`;
/// empty ranges do nothing.
///
/// Safe to call concurrently from several threads on disjoint
/// `(m_range, n_range)` blocks of C.
///
/// # Safety
/// `b` must be valid for reads of `a.k()` rows of columns `n_range`;
/// `c` for reads and writes of rows `m_range`, columns `n_range`; the
/// epilogue's bias for rows `m_range` and its residual for the same block
/// as C (at row stride `ldr`). B and bias must not overlap C; the residual
/// may only coincide with C exactly.
#[allow(clippy::too_many_arguments)] // The BLAS-style signature the JIT targets.
pub unsafe fn gemm(
    a: &PackedA,
    b: *const f32,
    ldb: usize,
    source: BSource,
    c: *mut f32,
    ldc: usize,
    m_range: Range<usize>,
    n_range: Range<usize>,
    epi: &GemmEpilogue,
) {
    let in_place = match source {
        BSource::Any => reads_in_place(a, m_range.len()),
        BSource::Cache => true,
        BSource::Memory => false,
    };
    // SAFETY: forwarded.
    unsafe {
        gemm_with(
            (a.into(), a.m),
            b,
            ldb,
            BLayout::Rows { in_place },
            c,
            ldc,
            m_range,
            n_range,
            epi,
        )
    }
}

/// Whether [`gemm`] reads the panels of a B of unknown source in place for
/// `rows` rows of C.
///
/// A panel of B that fits in L1 is read in place: every A panel's tiles
/// re-read it from L1 as they would a packed copy, and the copy is saved.
/// With K up to 256 that was 1-3% faster on whole models (RegNetX-400MF,
/// MobileNetV2, ResNet-50, SqueezeNet, DenseNet-121; AMD EPYC Zen 5, 48
/// KiB L1d, one thread) and 4-11% on their small-K GEMMs in cache; with K
/// of 576 and more, no faster. But unless the whole column block fits in
/// L1 too, its panels, K rows far apart, are re-read from L2 by every A
/// panel, scattered, which a packed copy is not: once the copy was made of
/// vector moves, more than 128 rows (10 A panels) repaid it (GEMM bench,
/// AMD EPYC Zen 4, 32 KiB L1d: 256x3136x128 and 256x3136x256 65-69% of the
/// FMA peak in place, 76-86% packed; at 128 rows a tie; 64x3136x64 82% in
/// place, 70-79% packed; 144x3136x24, whose block fits, 66-70% in place,
/// 59-65% packed).
fn reads_in_place(a: &PackedA, rows: usize) -> bool {
    let (l1, g) = (caches::l1d_bytes(), a.kernel.geometry());
    let panel_fits_l1 = a.k * g.nr * 4 <= l1;
    let block_fits_l1 = a.k * g.nc * 4 <= l1;
    panel_fits_l1 && (block_fits_l1 || rows <= IN_PLACE_MAX_ROWS)
}

/// [`gemm`] with B laid out in the micro-kernel's panels over the whole of
/// K, as a [`PackedB`] holds them (`b` its first panel, `a.k()` rows of
/// [`MicroKernel::panel_width`] columns each, zero or any finite value
/// past the matrix's columns): no packing per call. A Winograd GEMM's
/// transformed input is written so by its transform.
///
/// # Safety
/// As [`gemm`], with `b` valid for reads of every panel holding a column
/// of `n_range`, and `n_range.start` a multiple of the panel width.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_b_panels(
    a: &PackedA,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    m_range: Range<usize>,
    n_range: Range<usize>,
    epi: &GemmEpilogue,
) {
    debug_assert_eq!(
        n_range.start % a.kernel.geometry().nr,
        0,
        "columns from a panel's start"
    );
    // SAFETY: forwarded.
    unsafe {
        gemm_with(
            (a.into(), a.m),
            b,
            0,
            BLayout::Panels,
            c,
            ldc,
            m_range,
            n_range,
            epi,
        )
    }
}

/// The product of A's panels (`m` rows, packed ahead of time or per call)
/// and B as `b_layout` says, over the ranges clamped to the matrices.
///
/// # Safety
/// As [`gemm`] (or [`gemm_b_panels`], for B in panels), with `a` holding
/// `m` rows.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with(
    (a, m): (APanels, usize),
    b: *const f32,
    ldb: usize,
    b_layout: BLayout,
    c: *mut f32,
    ldc: usize,
    m_range: Range<usize>,
    n_range: Range<usize>,
    epi: &GemmEpilogue,
) {
    let m1 = m_range.end.min(m);
    let m0 = m_range.start.min(m1);
    let (n0, n1) = (n_range.start, n_range.end.max(n_range.start));
    if m0 == m1 || n0 == n1 {
        return;
    }
    let g = a.kernel.geometry();
    let job = Job {
        a,
        g,
        b,
        ldb,
        b_layout,
        c,
        ldc,
        m0,
        m1,
        epi,
    };
    // SAFETY: the caller's contract covers every block the job touches.
    unsafe {
        if n1 - n0 < g.narrow_n && b_layout != BLayout::Panels {
            job.narrow(n0, n1);
        } else {
            with_pack_buffer(|buf| job.blocked(n0, n1, buf));
        }
    }
}

/// A packed A as the loops read it: the panels of a [`PackedA`], or of a
/// matrix packed at run time (`packed_b.rs`).
#[derive(Clone, Copy)]
struct APanels {
    kernel: MicroKernel,
    k: usize,
    /// Panel 0 at `k = 0`.
    data: *const f32,
}

impl From<&PackedA> for APanels {
    fn from(a: &PackedA) -> APanels {
        APanels {
            kernel: a.kernel,
            k: a.k,
            data: a.as_ptr(),
        }
    }
}

/// How a job's B is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BLayout {
    /// Row-major at row stride `ldb`; whole panels read in place if
    /// `in_place` (see [`BSource`]), else packed per block.
    Rows { in_place: bool },
    /// Packed ahead of time in the micro-kernel's panels over the whole
    /// of K (a [`PackedB`]): column block `jc` starts a panel.
    Panels,
}

/// One `gemm` call's operands, shared by its loops.
struct Job<'a> {
    a: APanels,
    g: Geometry,
    b: *const f32,
    ldb: usize,
    b_layout: BLayout,
    c: *mut f32,
    ldc: usize,
    m0: usize,
    m1: usize,
    epi: &'a GemmEpilogue,
}

/// A run of rows of C inside one A panel.
struct RowSegment {
    /// First row of C.
    row: usize,
    rows: usize,
    /// Packed A at this row and k = 0.
    a: *const f32,
}

impl Job<'_> {
    /// Splits `m0..m1` at panel boundaries.
    fn segments(&self) -> impl Iterator<Item = RowSegment> + '_ {
        let (mr, k) = (self.g.mr, self.a.k);
        let mut row = self.m0;
        std::iter::from_fn(move || {
            if row >= self.m1 {
                return None;
            }
            let panel = row / mr;
            let offset = row - panel * mr;
            let rows = (mr - offset).min(self.m1 - row);
            let seg = RowSegment {
                row,
                rows,
                a: self.a.data.wrapping_add(panel * mr * k + offset),
            };
            row += rows;
            Some(seg)
        })
    }

    /// The tile of C at `(row, col)`, `rows x cols`, for one K block.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        a: *const f32,
        b: *const f32,
        b_stride: usize,
        kc: usize,
        (row, rows): (usize, usize),
        (col, cols): (usize, usize),
        (first, last): (bool, bool),
    ) -> Tile {
        let epi = self.epi;
        Tile {
            kc,
            a,
            b,
            b_stride,
            c: self.c.wrapping_add(row * self.ldc + col),
            ldc: self.ldc,
            rows,
            cols,
            first,
            last,
            epi: TileEpilogue {
                bias: if epi.bias.is_null() {
                    epi.bias
                } else {
                    epi.bias.wrapping_add(row)
                },
                residual: if epi.residual.is_null() {
                    epi.residual
                } else {
                    epi.residual.wrapping_add(row * epi.ldr + col)
                },
                ldr: epi.ldr,
                activation: epi.activation,
            },
        }
    }

    /// Small N: the narrow kernel over unpacked B and the whole K.
    ///
    /// # Safety
    /// The job's pointers satisfy [`gemm`]'s contract for columns `n0..n1`.
    unsafe fn narrow(&self, n0: usize, n1: usize) {
        for seg in self.segments() {
            let t = self.tile(
                seg.a,
                self.b.wrapping_add(n0),
                self.ldb,
                self.a.k,
                (seg.row, seg.rows),
                (n0, n1 - n0),
                (true, true),
            );
            // SAFETY: the tile lies inside the caller's block.
            unsafe { run_narrow(self.a.kernel, &t) };
        }
    }

    /// The blocked path: pack `KC x NC` blocks of B (or, with
    /// `b_in_place`, only their partial last panel), sweep the A panels.
    ///
    /// # Safety
    /// The job's pointers satisfy [`gemm`]'s contract for columns `n0..n1`.
    unsafe fn blocked(&self, n0: usize, n1: usize, buf: &mut AlignedBuf) {
        let Geometry { mr, nr, .. } = self.g;
        let blocks = Blocks::new(self.g, self.a.k, n0, n1);
        for block in blocks {
            let Block { pc, kc, jc, nc } = block;
            let (first, last) = (pc == 0, pc + kc >= self.a.k);
            let panels = nc.div_ceil(nr);
            if self.b_layout == BLayout::Panels {
                // SAFETY: forwarded.
                unsafe { self.packed_panels(block, (first, last)) };
                continue;
            }
            // Panels read in place are whole, so the kernel's full-width
            // loads stay inside B; the packed rest is zero-padded.
            let in_place = match self.b_layout {
                BLayout::Rows { in_place: true } => nc / nr,
                _ => 0,
            };
            let packed = nc - in_place * nr;
            let b = self.b.wrapping_add(pc * self.ldb + jc);
            if packed > 0 {
                buf.reserve_floats(packed.div_ceil(nr) * nr * kc);
                // SAFETY: rows `pc .. pc + kc`, columns `jc .. jc + nc` of
                // B are inside the caller's block; the buffer was sized
                // above.
                unsafe {
                    pack::pack_b(
                        b.add(in_place * nr),
                        self.ldb,
                        kc,
                        packed,
                        nr,
                        buf.as_mut_slice(),
                    );
                }
            }
            let bp = buf.as_ptr();
            // Runs of whole panels read the same way (in place, then
            // packed), and the last panel if partial.
            let whole = nc / nr;
            let runs = [
                (0, in_place.min(whole)),
                (in_place.min(whole), whole),
                (whole, panels),
            ];
            for seg in self.segments() {
                let a = seg.a.wrapping_add(pc * mr);
                for (p0, p1) in runs {
                    if p0 >= p1 {
                        continue;
                    }
                    let j = p0 * nr;
                    let (b, b_stride, b_step) = if p0 < in_place {
                        (b.wrapping_add(j), self.ldb, nr)
                    } else {
                        (bp.wrapping_add((p0 - in_place) * nr * kc), nr, nr * kc)
                    };
                    let t = self.tile(
                        a,
                        b,
                        b_stride,
                        kc,
                        (seg.row, seg.rows),
                        (jc + j, nr.min(nc - j)),
                        (first, last),
                    );
                    // SAFETY: the tiles lie inside the caller's block;
                    // each B is a whole panel in place or a packed one,
                    // `nr` wide and zero-padded.
                    unsafe { run_tiles(self.a.kernel, &t, p1 - p0, b_step) };
                }
            }
        }
    }
}

impl Job<'_> {
    /// One block of a B packed ahead of time: its panels where they are,
    /// whole ones, then a partial last one (zero-padded when packed).
    ///
    /// # Safety
    /// As [`Job::blocked`], with `b` the first panel of a [`PackedB`] of
    /// `a.k` rows holding the block's columns, `jc` a multiple of `nr`.
    unsafe fn packed_panels(&self, block: Block, edges: (bool, bool)) {
        let Block { pc, kc, jc, nc } = block;
        let (mr, nr, k) = (self.g.mr, self.g.nr, self.a.k);
        let panel = nr * k;
        let b = self.b.wrapping_add(jc / nr * panel + pc * nr);
        let whole = nc / nr;
        for seg in self.segments() {
            let a = seg.a.wrapping_add(pc * mr);
            for (p0, p1) in [(0, whole), (whole, nc.div_ceil(nr))] {
                if p0 >= p1 {
                    continue;
                }
                let j = p0 * nr;
                let t = self.tile(
                    a,
                    b.wrapping_add(p0 * panel),
                    nr,
                    kc,
                    (seg.row, seg.rows),
                    (jc + j, nr.min(nc - j)),
                    edges,
                );
                // SAFETY: the tiles lie inside the caller's block; each B
                // is a whole packed panel, `nr` wide and zero-padded.
                unsafe { run_tiles(self.a.kernel, &t, p1 - p0, panel) };
            }
        }
    }
}

/// One `kc x nc` block of B: rows `pc ..`, columns `jc ..`.
#[derive(Clone, Copy, Debug)]
struct Block {
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
}

/// The blocks of B in the order they are computed: K blocks inside column
/// blocks. K is split into equal blocks of at most `KC` steps (576 is two
/// blocks of 288, not 512 + 64, whose short tail would pay a full pass over
/// C for little work); there is always at least one K block, so that
/// `k = 0` still writes the epilogue.
struct Blocks {
    kc: usize,
    k: usize,
    nc: usize,
    n1: usize,
    pc: usize,
    jc: usize,
}

impl Blocks {
    fn new(g: Geometry, k: usize, n0: usize, n1: usize) -> Blocks {
        let kc = k.div_ceil(k.div_ceil(g.kc).max(1)).max(1);
        Blocks {
            kc,
            k,
            nc: g.nc,
            n1,
            pc: 0,
            jc: n0,
        }
    }
}

impl Iterator for Blocks {
    type Item = Block;

    fn next(&mut self) -> Option<Block> {
        if self.jc >= self.n1 {
            return None;
        }
        let block = Block {
            pc: self.pc,
            kc: self.kc.min(self.k - self.pc),
            jc: self.jc,
            nc: self.nc.min(self.n1 - self.jc),
        };
        self.pc += block.kc;
        if self.pc >= self.k {
            self.pc = 0;
            self.jc += block.nc;
        }
        Some(block)
    }
}

/// Runs the register-tile kernel for `kernel` on `t` (B packed).
///
/// # Safety
/// `kernel` must be available (a `PackedA` only holds available kernels)
/// and the tile valid.
unsafe fn run_tile(kernel: MicroKernel, t: &Tile) {
    // SAFETY: availability was checked when A was packed.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => avx512::tile(t),
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx2Fma => avx2::tile(t),
            #[cfg(not(target_arch = "x86_64"))]
            MicroKernel::Avx512 | MicroKernel::Avx2Fma => portable::tile(t),
            MicroKernel::Portable => portable::tile(t),
        }
    }
}

/// Runs `panels` tiles side by side for `kernel`: `t`, then each next one
/// `nr` columns further right with its B `b_step` floats further on.
///
/// # Safety
/// As for [`run_tile`], for every tile.
unsafe fn run_tiles(kernel: MicroKernel, t: &Tile, panels: usize, b_step: usize) {
    // SAFETY: forwarded.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 if t.cols == avx512::NR => avx512::tiles::<2>(t, panels, b_step),
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx2Fma if t.cols == avx2::NR => avx2::tiles(t, panels, b_step),
            _ => {
                let mut t = *t;
                let nr = t.cols;
                for _ in 0..panels {
                    run_tile(kernel, &t);
                    t = t.columns(nr, nr);
                    t.b = t.b.wrapping_sub(nr).wrapping_add(b_step);
                }
            }
        }
    }
}

/// Runs the narrow kernel for `kernel` on `t` (B unpacked, few columns).
///
/// # Safety
/// As for [`run_tile`].
unsafe fn run_narrow(kernel: MicroKernel, t: &Tile) {
    // SAFETY: availability was checked when A was packed.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => avx512::narrow(t),
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx2Fma => avx2::narrow(t),
            #[cfg(not(target_arch = "x86_64"))]
            MicroKernel::Avx512 | MicroKernel::Avx2Fma => portable::tile(t),
            MicroKernel::Portable => portable::tile(t),
        }
    }
}

thread_local! {
    /// Each thread's packed-B buffer, kept across calls so the hot path
    /// stops allocating once it has seen its largest block.
    static PACK_B: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
}

/// Runs `f` with this thread's packing buffer for B.
fn with_pack_buffer(f: impl FnOnce(&mut AlignedBuf)) {
    with_thread_buffer(&PACK_B, f)
}

/// Runs `f` with this thread's buffer `key` (or a fresh one if it is
/// already in use or gone, which only happens during thread teardown).
fn with_thread_buffer(
    key: &'static std::thread::LocalKey<RefCell<AlignedBuf>>,
    f: impl FnOnce(&mut AlignedBuf),
) {
    let mut f = Some(f);
    let _ = key.try_with(|cell| {
        if let (Ok(mut buf), Some(f)) = (cell.try_borrow_mut(), f.take()) {
            f(&mut buf);
        }
    });
    if let Some(f) = f {
        f(&mut AlignedBuf::new());
    }
}
