//! Native code the JIT kernels call: the GEMM behind every `gemm` and
//! `linear` op (and the separable and recurrent kernels), the recurrent
//! cell step, and `local_response_norm`'s exact path.
//!
//! A [`GemmTask`] describes one op's matrix products completely, with its
//! weights laid out at compile time; the JIT kernel loops over its tasks and
//! calls [`nnc_gemm_task`] for each. Task `t` is one block of one product,
//! so tasks write disjoint output and run on any thread.

use super::cell::PackedCell;
use super::gemm::{self, Activation, BSource, GemmEpilogue, MicroKernel, PackedA};
use super::winograd::Transform;
use super::{Base, KernelError};
use crate::limits::try_zeroed;
use crate::pages::{floats_to_huge_page, HUGE_PAGE};
use crate::Phases;
use std::ops::Range;

/// The epilogue of a product: `c = act(acc + bias[row] + residual)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Epilogue {
    /// One value per row of each group's C: `[groups * m]`.
    pub bias: Option<Vec<f32>>,
    /// Laid out like C.
    pub residual: Option<Base>,
    pub activation: Activation,
}

/// `products` independent products `C_p [m, n] = A_g [m, k] · B_p [k, n]`,
/// where product `p = (batch, group)` uses weight group `g = p % groups`,
/// `B_p` starts at `b + p * b_stride` (row stride `ldb`) and `C_p` at
/// `c + p * c_stride` (row stride `ldc`); the residual is laid out like C.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GemmTask {
    /// The weights: one packed `[m, k]` matrix per group (see [`pack`]).
    pub packed: Vec<PackedA>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub groups: usize,
    pub products: usize,
    pub b: Base,
    pub b_stride: usize,
    pub ldb: usize,
    pub c: Base,
    pub c_stride: usize,
    pub ldc: usize,
    pub epilogue: Epilogue,
    /// Rows and columns per task block.
    pub m_block: usize,
    pub n_block: usize,
    /// B is laid out in the micro-kernel's panels (see
    /// [`gemm::gemm_b_panels`]): each product's `n` columns rounded up to
    /// whole panels, `ldb` unused. Column blocks start at whole panels.
    #[serde(default)]
    pub b_panels: bool,
}

impl GemmTask {
    /// Chooses block sizes: a single product splits once per thread (see
    /// [`GemmTask::with_thread_shares`]); several (a batch, groups, the
    /// Winograd products) into a few tasks per thread.
    pub fn with_blocks(mut self, threads: usize) -> GemmTask {
        let threads = threads.max(1);
        if self.products == 1 {
            return self.with_thread_shares(threads);
        }
        // A few tasks per thread balance the load, but every task packs
        // its own copy of B; when B is a few columns wide that packing is
        // a large share of the work (vgg_cifar's 4x4 maps: 16 columns, K =
        // 4608), so those split once per thread.
        let want = if self.n <= 32 { threads } else { 4 * threads };
        let round = |v: usize, to: usize| v.div_ceil(to) * to;
        let unit = self.column_unit();
        self.m_block = self.m.max(1);
        // Columns: the fewest blocks of at most 512, then more until every
        // thread has a few tasks or blocks would drop to 64 columns; blocks
        // are equal, in whole 16-column vectors, so no block is a sliver.
        let mut blocks = self.n.div_ceil(512).max(1);
        loop {
            self.n_block = round(self.n.div_ceil(blocks), unit).min(self.n).max(1);
            if self.tasks() >= want || self.n_block <= 64 {
                break;
            }
            blocks += 1;
        }
        // Then rows, split evenly in whole 14-row tiles of at least 28.
        let mut parts = 1;
        while self.tasks() < want && self.m.div_ceil(parts + 1) >= 28 {
            parts += 1;
            self.m_block = round(self.m.div_ceil(parts), 14);
        }
        self
    }

    /// One block per thread for a single product (the pool gives thread
    /// `t` the `t`-th task; on one thread, the whole product): the rows in
    /// equal shares when A (the weights) is the larger operand, so that
    /// each core reads only its share of it (vgg_cifar's 8x8 maps stream 9.4 MB of weights
    /// for 64 columns: split by columns, both cores read all of it and the
    /// model took 1.84-2.16 ms against 1.73-1.75 at 2 threads), else the
    /// columns in shares of whole 16-column vectors, so that no cache line
    /// of C is written by two cores and each core keeps its half of the map
    /// from one layer to the next, as the separable kernels split theirs.
    ///
    /// More tasks than threads (a few per thread, as for several products)
    /// only balanced a pool that hands tasks out dynamically, and every
    /// task packs its own B; with the static pool they left threads 4-5%
    /// apart (a 28x28 map's 784 columns in nine blocks of 96 were 384
    /// against 400). One task on one thread: MobileNetV2 7.21-7.67 ->
    /// 7.12-7.46 ms.
    fn with_thread_shares(mut self, threads: usize) -> GemmTask {
        let (m, n) = (self.m.max(1), self.n.max(1));
        if m > n {
            (self.m_block, self.n_block) = (m.div_ceil(threads), n);
        } else {
            let unit = self.column_unit();
            (self.m_block, self.n_block) = (m, n.div_ceil(threads).next_multiple_of(unit).min(n));
        }
        self
    }

    /// Blocks for a product whose reader takes C's rows (channels) in
    /// `parts` equal parts, part `q` on thread `q`: one row block per part,
    /// so that each thread writes exactly the rows it will read.
    ///
    /// MobileNetV2's 7x7 expansions (960 rows, 49 columns) at 2 threads:
    /// 0.092-0.093 ms in eight blocks of 126 rows, 0.083-0.087 in two of
    /// 480; the 14x14 ones (384 rows, blocks of 196 before) are unchanged.
    pub fn with_row_parts(mut self, parts: usize) -> GemmTask {
        (self.m_block, self.n_block) = (self.m.div_ceil(parts.max(1)).max(1), self.n.max(1));
        self
    }

    /// Column blocks are multiples of this: 16 (a vector), or whole
    /// panels where B is laid out in them.
    fn column_unit(&self) -> usize {
        match self.packed.first() {
            Some(a) if self.b_panels => a.kernel().panel_width().max(16),
            _ => 16,
        }
    }

    /// Whether B, over all the products, is too large to be in cache (see
    /// [`from_memory`]). Its panels are then packed rather than read in
    /// place.
    fn b_from_memory(&self) -> bool {
        from_memory(4 * self.products * self.k * self.n)
    }

    fn m_blocks(&self) -> usize {
        self.m.div_ceil(self.m_block.max(1))
    }

    fn n_blocks(&self) -> usize {
        self.n.div_ceil(self.n_block.max(1))
    }

    /// How many tasks the product splits into.
    pub fn tasks(&self) -> usize {
        self.products * self.m_blocks() * self.n_blocks()
    }

    /// The product and the row and column ranges of task `t`.
    fn block(&self, t: usize) -> (usize, Range<usize>, Range<usize>) {
        let (mb, nb) = (self.m_blocks(), self.n_blocks());
        let p = t / (mb * nb);
        let (i, j) = (t / nb % mb, t % nb);
        let rows = i * self.m_block..((i + 1) * self.m_block).min(self.m);
        let cols = j * self.n_block..((j + 1) * self.n_block).min(self.n);
        (p, rows, cols)
    }
}

/// Whether an operand of `bytes` written by one kernel and read by the next
/// comes from memory rather than cache: more than a quarter of L3 (the
/// rest holds the other operands and what the other cores keep). With 8
/// MiB of a 32 MiB L3 (AMD EPYC Zen 5, six alternating rounds), packing the
/// Winograd GEMMs' B from there on made a UNet, whose B are 19-75 MB,
/// 0.915 of its time at one thread and 0.935 at two, ResNet-18 and the
/// Model Zoo ResNet-50 0.98-0.99 (0.96 at two threads), and RegNetX,
/// EfficientNet-B0, MobileNetV2, VGG-19 and DenseNet-121 0.99-1.01;
/// packing from 1 MiB (L2) on made DenseNet-121 3% slower (its B of about 3
/// MB is read in place well from L3), and from 32 MiB helped nothing.
pub fn from_memory(bytes: usize) -> bool {
    bytes > gemm::caches::l3_bytes() / 4
}

/// Packs row-major `a` as `groups` matrices `[m, k]` for `kernel`, once, at
/// compile time; an error if it is too short.
pub fn pack(
    kernel: MicroKernel,
    a: &[f32],
    groups: usize,
    m: usize,
    k: usize,
) -> Result<Vec<PackedA>, KernelError> {
    if a.len() < groups * m * k {
        return Err(KernelError::TooShort {
            what: "a GEMM weight",
            len: a.len(),
            need: format!("{groups} x {m} x {k}"),
        });
    }
    Ok(PackedA::pack_groups(kernel, a, groups, m, k))
}

/// Packs the Winograd F(tile x tile, 3x3) transform of the 3x3 conv weight
/// `w [m, k, 3, 3]` as `groups` (`a*a`) matrices `[m, k]`, group `e` holding
/// element `e` of every filter's `G g G^T` (see `GemmAttrs::winograd`).
/// A panel of output channels' filters is transformed straight into the
/// packed layout, so the transformed weights never exist whole (ResNet-18's
/// are 72 MB) and each packed line is written once; an error if `w` is too short or `tile` is not
/// a transform [`Transform::of`] has.
pub fn pack_winograd(
    kernel: MicroKernel,
    w: &[f32],
    tile: usize,
    groups: usize,
    m: usize,
    k: usize,
) -> Result<Vec<PackedA>, KernelError> {
    let transform = Transform::of(tile)
        .filter(|t| t.a() * t.a() == groups)
        .ok_or_else(|| {
            KernelError::Unsupported(format!(
                "no Winograd F({tile}x{tile}, 3x3) in {groups} groups"
            ))
        })?;
    if w.len() < m * k * 9 {
        return Err(KernelError::TooShort {
            what: "a Winograd GEMM weight",
            len: w.len(),
            need: format!("{m} x {k} x 3 x 3"),
        });
    }
    let filters = transform.filter_transform(k);
    Ok(PackedA::pack_groups_by_panel(
        kernel,
        groups,
        m,
        k,
        |r0, rows, mr, dst, stride| {
            filters.panel(&w[r0 * k * 9..][..rows * k * 9], rows, mr, dst, |e| {
                e * stride + r0 * k
            })
        },
    ))
}

/// Does task `t` of `task`. Called by compiled code.
///
/// # Safety
/// `task` points to a live [`GemmTask`] whose buffers lie inside
/// `arena` (which has the compiled model's arena size) or its constants,
/// and `t < task.tasks()`.
#[allow(unsafe_code)]
#[no_mangle]
pub unsafe extern "C" fn nnc_gemm_task(task: *const GemmTask, arena: *mut f32, t: usize) {
    // SAFETY: the caller passes a live task (the compiled model owns it).
    let task = unsafe { &*task };
    debug_assert!(t < task.tasks(), "task {t} of {}", task.tasks());
    let (p, rows, cols) = task.block(t);
    let g = p % task.groups.max(1);
    let Some(a) = task.packed.get(g) else {
        return;
    };
    let bias = task
        .epilogue
        .bias
        .as_ref()
        .map_or(std::ptr::null(), |b| b[g * task.m..].as_ptr());
    let residual = task.epilogue.residual.map_or(std::ptr::null(), |r| {
        r.address(arena, p * task.c_stride) as *const f32
    });
    let epi = GemmEpilogue {
        bias,
        residual,
        ldr: task.ldc,
        activation: task.epilogue.activation,
    };
    let b = task.b.address(arena, p * task.b_stride);
    let c = task.c.address(arena, p * task.c_stride);
    if task.b_panels {
        // SAFETY: as below; the column blocks start at whole panels.
        unsafe { gemm::gemm_b_panels(a, b, c, task.ldc, rows, cols, &epi) };
        return;
    }
    let source = if task.b_from_memory() {
        BSource::Memory
    } else {
        BSource::Any
    };
    // SAFETY: the planner placed B, C and the residual so that product `p`
    // with these strides lies inside their buffers; the bias has `m` rows
    // per group.
    unsafe { gemm::gemm(a, b, task.ldb, source, c, task.ldc, rows, cols, &epi) }
}

/// One matrix product whose B and C addresses are only known at run time
/// (the separable kernel multiplies a depthwise tile it just computed):
/// `C [m, n] = act(A [m, k] · B [k, n] + bias + residual)` with row strides
/// `ldb` and `ldc` (the residual laid out like C).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PanelGemm {
    pub a: PackedA,
    pub ldb: usize,
    pub ldc: usize,
    pub bias: Option<Vec<f32>>,
    pub activation: Activation,
}

impl PanelGemm {
    /// Packs row-major `a [m, k]` for `kernel`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kernel: MicroKernel,
        a: &[f32],
        m: usize,
        k: usize,
        ldb: usize,
        ldc: usize,
        bias: Option<Vec<f32>>,
        activation: Activation,
    ) -> Result<PanelGemm, KernelError> {
        let mut packed = pack(kernel, a, 1, m, k)?;
        let a = packed
            .pop()
            .ok_or_else(|| KernelError::Unsupported("an empty GEMM".into()))?;
        Ok(PanelGemm {
            a,
            ldb,
            ldc,
            bias,
            activation,
        })
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        4 * self.a.m() * self.a.k()
    }
}

/// Computes rows `m0..m1` (clamped to `m`), columns `0..n` of a
/// [`PanelGemm`]. Called by compiled code.
///
/// # Safety
/// `spec` points to a live [`PanelGemm`]; `b` addresses `k` rows of `ldb`
/// floats, `c` (and `residual` unless null) `m` rows of `ldc` floats, each
/// with at least `n` columns; the residual is C or does not overlap it.
#[allow(unsafe_code)]
#[no_mangle]
pub unsafe extern "C" fn nnc_gemm_panel(
    spec: *const PanelGemm,
    b: *const f32,
    c: *mut f32,
    residual: *const f32,
    n: usize,
    m0: usize,
    m1: usize,
) {
    // SAFETY: the caller passes a live spec (the compiled model owns it).
    let spec = unsafe { &*spec };
    let epi = GemmEpilogue {
        bias: spec.bias.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()),
        residual,
        ldr: spec.ldc,
        activation: spec.activation,
    };
    // SAFETY: as documented above; `gemm` clamps the rows to `m`.
    // The tile was just written by the depthwise rows: B is in cache.
    unsafe {
        gemm::gemm(
            &spec.a,
            b,
            spec.ldb,
            BSource::Cache,
            c,
            spec.ldc,
            m0..m1,
            0..n,
            &epi,
        )
    }
}

/// A `linear` over `rows > 1` rows of `x [rows, k]` as one matrix product,
/// `out [rows, m] = x · W^T`, the weight packed as B ahead of time (see
/// [`gemm::gemm_packed_b`]), so that each weight is read once per call
/// instead of once per row (a language model's 10000x512 decoder over 35
/// steps streamed its 20 MB of weights 35 times: 99 ms, against ~5 ms
/// once). Task `t` computes a block of whole panels of output features.
///
/// With the weight as A instead (`W · x^T`, the rows as B's columns), both
/// operands were transposed per call and a few rows wasted most of a
/// panel: the language model's decoder (35 rows) took 3.94 ms, CRNN's
/// last `linear` (29 outputs of 200 rows) 0.148 against ONNX Runtime's
/// 0.070 (AMD EPYC Zen 4).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SavedLinearRows")]
pub struct LinearRows {
    weight: gemm::PackedB,
    /// Per output feature, added as a residual of row stride 0 (the
    /// epilogue's bias is per row of C); empty without a bias.
    bias: Vec<f32>,
    activation: Activation,
    /// Output features per task, whole panels.
    block: usize,
    m: usize,
    k: usize,
    rows: usize,
}

impl LinearRows {
    /// Packs `w [m, k]` (with `bias [m]`) as B, in at least one block of
    /// output features per thread.
    pub fn new(
        kernel: MicroKernel,
        w: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
        (m, k, rows): (usize, usize, usize),
        threads: usize,
    ) -> Result<LinearRows, KernelError> {
        if w.len() < m * k {
            return Err(KernelError::TooShort {
                what: "a linear weight",
                len: w.len(),
                need: format!("{m} x {k}"),
            });
        }
        if bias.is_some_and(|b| b.len() < m) {
            return Err(KernelError::TooShort {
                what: "a linear bias",
                len: bias.map_or(0, <[f32]>::len),
                need: format!("{m}"),
            });
        }
        let weight = gemm::PackedB::pack_transposed(kernel, w, m, k);
        let nr = weight.panel_width();
        let tasks = threads.clamp(1, m.div_ceil(nr).max(1));
        let block = m.div_ceil(tasks).next_multiple_of(nr).max(nr);
        Ok(LinearRows {
            weight,
            bias: bias.map_or(Vec::new(), |b| b[..m].to_vec()),
            activation,
            block,
            m,
            k,
            rows,
        })
    }

    /// Tasks: one per block.
    pub fn tasks(&self) -> usize {
        self.m.div_ceil(self.block).max(1)
    }

    /// Bytes of packed weights and bias.
    pub fn bytes(&self) -> usize {
        self.weight.bytes() + 4 * self.bias.len()
    }
}

/// A [`LinearRows`] as a bundle's image holds it, checked when loaded:
/// the weight, bias and blocks must agree on the shape the kernel reads.
#[derive(serde::Deserialize)]
struct SavedLinearRows {
    weight: gemm::PackedB,
    bias: Vec<f32>,
    activation: Activation,
    block: usize,
    m: usize,
    k: usize,
    rows: usize,
}

impl TryFrom<SavedLinearRows> for LinearRows {
    type Error = String;

    fn try_from(s: SavedLinearRows) -> Result<LinearRows, String> {
        let shape_agrees = s.weight.n() == s.m
            && s.weight.k() == s.k
            && (s.bias.is_empty() || s.bias.len() == s.m)
            && s.block > 0
            && s.block.is_multiple_of(s.weight.panel_width());
        if !shape_agrees {
            return Err("a linear's packed weight, bias and blocks disagree".into());
        }
        Ok(LinearRows {
            weight: s.weight,
            bias: s.bias,
            activation: s.activation,
            block: s.block,
            m: s.m,
            k: s.k,
            rows: s.rows,
        })
    }
}

/// Does task `t` of a [`LinearRows`]. Called by compiled code.
///
/// # Safety
/// `spec` points to a live [`LinearRows`], `x` holds `rows * k` floats,
/// `out` `rows * m`, and `t < spec.tasks()`.
#[allow(unsafe_code)]
#[no_mangle]
pub unsafe extern "C" fn nnc_linear_rows(
    spec: *const LinearRows,
    x: *const f32,
    out: *mut f32,
    t: usize,
) {
    // SAFETY: the caller passes a live spec (the compiled model owns it).
    let s = unsafe { &*spec };
    let n0 = t * s.block;
    let epi = GemmEpilogue {
        bias: std::ptr::null(),
        residual: if s.bias.is_empty() {
            std::ptr::null()
        } else {
            s.bias.as_ptr()
        },
        ldr: 0,
        activation: s.activation,
    };
    // SAFETY: as documented above; the block starts a panel (`block` is
    // whole panels), and the bias, as a residual of row stride 0, covers
    // every row of the output's `m` columns.
    unsafe {
        gemm::gemm_packed_b(x, s.k, s.rows, &s.weight, out, s.m, n0..n0 + s.block, &epi);
    }
}

/// Step `i` of a batch-1 `rnn`, `lstm` or `gru` layer and direction (see
/// [`PackedCell::step`]). Called by compiled code.
///
/// # Safety
/// `cell` points to a live [`PackedCell`] and the other arguments satisfy
/// [`PackedCell::step`].
#[allow(unsafe_code, clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn nnc_cell_step(
    cell: *const PackedCell,
    i: usize,
    x: *const f32,
    p: *mut f32,
    h: *mut f32,
    c: *mut f32,
    previous: *mut f32,
    out: *mut f32,
) {
    // SAFETY: as documented above; the compiled model owns the cell.
    unsafe { (*cell).step(i, x, p, h, c, previous, out) }
}

/// Part `part` of a batch-1 layer and direction whose steps are split
/// across the kernel's `parts` tasks (see [`PackedCell::run_part`]); the
/// phases' state is the `Phases::words(parts)` floats at `sync`, zeroed by
/// the step before. Called by compiled code, once per task.
///
/// # Safety
/// `cell` points to a live [`PackedCell`]; `sync` to that state, 4-byte
/// aligned, shared by exactly the `parts` tasks of this kernel in this
/// run; the other arguments satisfy [`PackedCell::run_part`].
#[allow(unsafe_code, clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn nnc_cell_part(
    cell: *const PackedCell,
    sync: *mut f32,
    part: usize,
    parts: usize,
    x: *const f32,
    p: *mut f32,
    h0: *mut f32,
    h1: *mut f32,
    c: *mut f32,
    out: *mut f32,
    out_stride: usize,
) {
    // SAFETY: as documented above; the compiled model owns the cell and
    // the run owns the arena the state lives in.
    unsafe {
        let phases = Phases::from_ptr(sync.cast::<u32>(), parts);
        (*cell).run_part(&phases, part, x, p, [h0, h1], c, out, out_stride)
    }
}

/// Scratch of at least this many floats (256 KiB) starts on a huge page.
const SCRATCH_HUGE_FLOATS: usize = 1 << 16;

thread_local! {
    /// Per-thread working memory of kernels that tile (the separable
    /// kernel's depthwise tile); it only grows, so after the first run no
    /// task allocates.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A pointer to at least `len` floats of this thread's scratch memory,
/// valid until the next call on the same thread. Called by compiled code.
#[allow(unsafe_code)] // `no_mangle`: bundles link it by name.
#[no_mangle]
pub extern "C" fn nnc_scratch(len: usize) -> *mut f32 {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if len < SCRATCH_HUGE_FLOATS {
            if s.len() < len {
                s.resize(len, 0.0);
            }
            return s.as_mut_ptr();
        }
        // From the buffer's first 2 MiB boundary, with room for that, so
        // that all of it is on huge pages (see `Executable::arena_start`):
        // placed by `malloc`, the separable kernels' tiles lay on 4 KiB
        // pages: MobileNetV2's features.1 0.375 -> 0.328 ms from a boundary,
        // its kernels 7.57 -> 7.45 ms (nnc profile, four alternating runs,
        // AMD EPYC Zen 4).
        if s.len() < floats_to_huge_page(s.as_ptr()) + len {
            // Advised onto huge pages, then zeroed, as the arena is. Out
            // of memory ends the process as growing the `Vec` did (compiled
            // code, the caller, cannot take an error).
            let room = len + HUGE_PAGE / 4;
            *s = match try_zeroed(room, String::new) {
                Ok(v) => v,
                Err(_) => std::alloc::handle_alloc_error(
                    std::alloc::Layout::array::<f32>(room)
                        .unwrap_or(std::alloc::Layout::new::<f32>()),
                ),
            };
        }
        let at = floats_to_huge_page(s.as_ptr());
        s[at..].as_mut_ptr()
    })
}

/// One output of `local_response_norm`, `v / (k + alpha/size * sum)^beta`
/// for the window's sum of squares `sum`, in f64: the reference
/// interpreter's, and the compiled kernel's where its f32 sum overflows.
pub fn lrn_normalise(v: f32, sum: f64, size: usize, alpha: f32, beta: f32, k: f32) -> f32 {
    let scale = f64::from(alpha) / size as f64;
    let divisor = (f64::from(k) + scale * sum).powf(f64::from(beta));
    (f64::from(v) / divisor) as f32
}

/// One output of `local_response_norm` as the interpreter computes it, in
/// f64 ([`lrn_normalise`]): the compiled kernel's path for a column whose
/// f32 sum of squares overflowed.
///
/// # Safety
/// `x` points at an element of channel `ch` of `channels`, whose channel
/// `i` is `(i - ch) * plane` floats away; `before < size`.
#[allow(unsafe_code, clippy::too_many_arguments)] // A scalar C signature.
#[no_mangle]
pub unsafe extern "C" fn nnc_lrn_exact(
    x: *const f32,
    ch: usize,
    plane: usize,
    channels: usize,
    size: usize,
    before: usize,
    alpha: f32,
    beta: f32,
    k: f32,
) -> f32 {
    let first = ch.saturating_sub(before);
    let last = (ch + size - 1 - before).min(channels - 1);
    // SAFETY: channels `first..=last` exist; each is `(i - ch) * plane`
    // floats from `x` (the caller's contract).
    let at = |i: usize| unsafe { *x.wrapping_sub(ch * plane).add(i * plane) };
    let sum: f64 = (first..=last).map(|i| f64::from(at(i)).powi(2)).sum();
    lrn_normalise(at(ch), sum, size, alpha, beta, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn large_scratch_starts_on_a_huge_page_and_holds_what_was_asked() {
        let len = 3 * SCRATCH_HUGE_FLOATS + 5;
        let p = nnc_scratch(len);
        assert_eq!(p as usize % HUGE_PAGE, 0, "{p:?}");
        // SAFETY: the scratch holds at least `len` floats from `p` until
        // the next call on this thread.
        let scratch = unsafe { std::slice::from_raw_parts_mut(p, len) };
        scratch.fill(2.5);
        assert!(scratch.iter().all(|&v| v == 2.5));
        // A smaller large request reuses the buffer from the same boundary.
        assert_eq!(nnc_scratch(len / 2), p);
        let small = nnc_scratch(16);
        assert!(!small.is_null());
    }
}
