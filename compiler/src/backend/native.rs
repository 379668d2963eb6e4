//! Native code the JIT kernels call: the GEMM behind every `gemm` and
//! `linear` op (and the separable and recurrent kernels).
//!
//! A [`GemmTask`] describes one op's matrix products completely, with its
//! weights laid out at compile time; the JIT kernel loops over its tasks and
//! calls [`nnc_gemm_task`] for each. Task `t` is one block of one product,
//! so tasks write disjoint output and run on any thread.

use super::jit::Base;
use crate::ir::Activation;
use std::ops::Range;

/// The epilogue of a product: `c = act(acc + bias[row] + residual)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Epilogue {
    /// One value per row of each group's C: `[groups * m]`.
    pub bias: Option<Vec<f32>>,
    /// Laid out like C.
    pub residual: Option<Base>,
    pub activation: Option<Activation>,
}

/// `products` independent products `C_p [m, n] = A_g [m, k] · B_p [k, n]`,
/// where product `p = (batch, group)` uses weight group `g = p % groups`,
/// `B_p` starts at `b + p * b_stride` (row stride `ldb`) and `C_p` at
/// `c + p * c_stride` (row stride `ldc`); the residual is laid out like C.
#[derive(Debug)]
pub struct GemmTask {
    /// Row-major `[groups * m, k]`.
    pub a: Vec<f32>,
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
}

impl GemmTask {
    /// Chooses block sizes so that there are enough tasks to share between
    /// threads while each stays large enough to be efficient.
    pub fn with_blocks(mut self, threads: usize) -> GemmTask {
        let threads = threads.max(1);
        self.m_block = self.m.max(1);
        self.n_block = self.n.clamp(1, 512);
        // Split rows too when the columns alone give too few tasks.
        while self.tasks() < 4 * threads && self.m_block > 16 {
            self.m_block = (self.m_block / 2).div_ceil(8) * 8;
        }
        self
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

/// The address of element `index` of a buffer.
fn ptr(base: Base, arena: *mut f32, index: usize) -> *mut f32 {
    match base {
        Base::Arena(o) => arena.wrapping_add(o + index),
        Base::Const(p) => (p as *mut f32).wrapping_add(index),
    }
}

/// Does task `t` of `task`. Called by JIT code.
///
/// # Safety
/// `task` points to a live [`GemmTask`] whose buffers lie inside `arena`
/// (which has the compiled model's arena size) or its constants, and
/// `t < task.tasks()`.
#[allow(unsafe_code)]
pub unsafe extern "C" fn nnc_gemm_task(task: *const GemmTask, arena: *mut f32, t: usize) {
    // SAFETY: the caller passes a live task (the compiled model owns it).
    let task = unsafe { &*task };
    let (p, rows, cols) = task.block(t);
    let g = p % task.groups.max(1);
    let a = &task.a[g * task.m * task.k..(g + 1) * task.m * task.k];
    let bias = task
        .epilogue
        .bias
        .as_ref()
        .map(|b| &b[g * task.m..(g + 1) * task.m]);
    let b = ptr(task.b, arena, p * task.b_stride);
    let c = ptr(task.c, arena, p * task.c_stride);
    let residual = task
        .epilogue
        .residual
        .map(|r| ptr(r, arena, p * task.c_stride) as *const f32);
    // SAFETY: the planner placed B, C and the residual so that product `p`
    // with these strides lies inside their buffers.
    unsafe { gemm_block(task, a, bias, b, c, residual, rows, cols) }
}

/// `C[rows, cols] = epilogue(A[rows, :] · B[:, cols])`, plainly.
///
/// # Safety
/// `b`, `c` and `residual` address matrices of the task's shape.
#[allow(unsafe_code, clippy::too_many_arguments)]
unsafe fn gemm_block(
    task: &GemmTask,
    a: &[f32],
    bias: Option<&[f32]>,
    b: *const f32,
    c: *mut f32,
    residual: Option<*const f32>,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    let width = cols.len();
    let mut acc = vec![0.0f32; width];
    for i in rows {
        acc.fill(0.0);
        for kk in 0..task.k {
            let w = a[i * task.k + kk];
            // SAFETY: row `kk` of B has at least `cols.end` columns.
            let row =
                unsafe { std::slice::from_raw_parts(b.add(kk * task.ldb + cols.start), width) };
            for (s, &v) in acc.iter_mut().zip(row) {
                *s += w * v;
            }
        }
        let bias = bias.map_or(0.0, |b| b[i]);
        for (j, &s) in acc.iter().enumerate() {
            let col = cols.start + j;
            let mut v = s + bias;
            if let Some(r) = residual {
                // SAFETY: the residual has C's layout.
                v += unsafe { *r.add(i * task.ldc + col) };
            }
            if let Some(act) = task.epilogue.activation {
                v = activate(act, v);
            }
            // SAFETY: C has `m` rows of `ldc` floats.
            unsafe { *c.add(i * task.ldc + col) = v };
        }
    }
}

/// One activation on one value, as the interpreter computes it.
pub fn activate(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Relu => {
            if v < 0.0 {
                0.0
            } else {
                v
            }
        }
        Activation::Relu6 => v.clamp(0.0, 6.0),
        Activation::Clip { min, max } => v.max(min).min(max),
        Activation::LeakyRelu { negative_slope } => {
            if v >= 0.0 {
                v
            } else {
                negative_slope * v
            }
        }
        Activation::Sigmoid => {
            if v >= 0.0 {
                1.0 / (1.0 + (-v).exp())
            } else {
                let e = v.exp();
                e / (1.0 + e)
            }
        }
        Activation::Tanh => v.tanh(),
    }
}

/// One matrix product whose B and C addresses are only known at run time
/// (the separable kernel multiplies a depthwise tile it just computed):
/// `C [m, n] = act(A [m, k] · B [k, n] + bias + residual)` with row strides
/// `ldb` and `ldc` (the residual laid out like C).
#[derive(Debug)]
pub struct PanelGemm {
    /// Row-major `[m, k]`.
    pub a: Vec<f32>,
    pub m: usize,
    pub k: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub bias: Option<Vec<f32>>,
    pub activation: Option<Activation>,
}

/// Computes `n` columns of a [`PanelGemm`]. Called by JIT code.
///
/// # Safety
/// `spec` points to a live [`PanelGemm`]; `b` addresses `k` rows of `ldb`
/// floats, `c` (and `residual` unless null) `m` rows of `ldc` floats, each
/// with at least `n` columns.
#[allow(unsafe_code)]
pub unsafe extern "C" fn nnc_gemm_panel(
    spec: *const PanelGemm,
    b: *const f32,
    c: *mut f32,
    residual: *const f32,
    n: usize,
) {
    // SAFETY: the caller passes a live spec (the compiled model owns it).
    let spec = unsafe { &*spec };
    let task = GemmTask {
        a: Vec::new(),
        m: spec.m,
        k: spec.k,
        n,
        groups: 1,
        products: 1,
        b: Base::Const(b as usize),
        b_stride: 0,
        ldb: spec.ldb,
        c: Base::Const(c as usize),
        c_stride: 0,
        ldc: spec.ldc,
        epilogue: Epilogue {
            bias: None,
            residual: None,
            activation: spec.activation,
        },
        m_block: spec.m,
        n_block: n,
    };
    let residual = (!residual.is_null()).then_some(residual);
    // SAFETY: as documented above.
    unsafe {
        gemm_block(
            &task,
            &spec.a,
            spec.bias.as_deref(),
            b,
            c,
            residual,
            0..spec.m,
            0..n,
        )
    }
}

thread_local! {
    /// Per-thread working memory of kernels that tile (the separable
    /// kernel's depthwise tile); it only grows, so after the first run no
    /// task allocates.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A pointer to at least `len` floats of this thread's scratch memory,
/// valid until the next call on the same thread. Called by JIT code.
pub extern "C" fn nnc_scratch(len: usize) -> *mut f32 {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        s.as_mut_ptr()
    })
}
