//! The Cranelift JIT: one module per compiled model, one function per
//! kernel, and [`Emit`], the small set of helpers kernels are written with
//! (counted loops, loads and stores at arena offsets, `f32`/`f32x4`
//! arithmetic, `exp` and the activations, calls into native code).
//!
//! Every kernel has the signature of `nnc_runtime::KernelFn`:
//! `(arena: *mut f32, begin: usize, end: usize)`. Shapes, strides and
//! offsets are immediates, and constants (weights) are absolute addresses
//! of data the compiled model keeps alive. Calls into the runtime's native
//! kernels name the function by its symbol
//! (`nnc_runtime::kernels::entry`); the module declares every entry point
//! first, so entry point `i` is function `i` of every module.

pub(crate) mod math;

use super::BackendError;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::immediates::Imm64;
use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, Endianness, ExtFuncData, ExternalName, GlobalValue, GlobalValueData,
    InstBuilder, MemFlagsData, Signature, Type, UserExternalName, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa, TargetFrontendConfig};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, DataId, FuncId, Linkage, Module, ModuleReloc};
use cranelift_object::{ObjectBuilder, ObjectModule};
use nnc_runtime::kernels::constants::{ConstMap, Constant};
use nnc_runtime::kernels::entry::{Abi, EntryPoint, ENTRY_POINTS};
use nnc_runtime::kernels::Base;
use nnc_runtime::KernelFn;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `f32` lanes per vector: Cranelift's x86-64 backend lowers 128-bit
/// vectors.
pub const LANES: usize = 4;

/// The vector type kernels compute in.
pub const F32X4: Type = types::F32X4;

/// The emitter of one kernel body.
pub type Body = Box<dyn FnOnce(&mut Emit) -> Result<(), BackendError> + Send>;

/// The code generator of one compiled model: into a JIT module (the
/// default, [`Codegen::jit`]), or into an object file for an ahead-of-time
/// bundle ([`Codegen::object`], used by `bundle.rs`).
pub struct Codegen<M: Module = JITModule> {
    pub(super) module: M,
    defined: usize,
    /// The same target without Cranelift's optimiser, for kernels that only
    /// move data, where it buys little and costs compile time.
    unoptimized: OwnedTargetIsa,
    /// How kernels reach constants when they cannot hold their addresses
    /// (a bundle's), or where JIT code marks which it uses.
    table: Option<ConstTable>,
}

/// Which constants the kernels use and, in a bundle, how they reach them:
/// each constant's address is slot [`ConstMap::locate`] of a table (a data
/// object of the bundle) that the runtime fills when the bundle is opened.
/// JIT code holds addresses as immediates (no data object) and uses the
/// table only to learn which constants it reads, so that the compiled
/// model keeps those and frees the rest (weights whose packed copies the
/// kernels read instead).
pub struct ConstTable {
    pub map: Arc<ConstMap>,
    /// The bundle's table of addresses; `None` for JIT code.
    pub data: Option<DataId>,
    /// The slots some kernel loads, marked while kernels are compiled.
    used: Vec<AtomicBool>,
}

impl ConstTable {
    /// A table of `slots` slots, located by `map`, in data object `data`.
    pub fn new(map: Arc<ConstMap>, data: Option<DataId>, slots: usize) -> ConstTable {
        ConstTable {
            map,
            data,
            used: (0..slots).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Whether some kernel loads slot `slot`.
    pub fn is_used(&self, slot: usize) -> bool {
        self.used
            .get(slot)
            .is_some_and(|u| u.load(Ordering::Relaxed))
    }

    /// Every slot that the code needs: those some kernel loads and, through
    /// them, those their descriptors point into (`references(slot)` lists
    /// the addresses slot `slot`'s constant holds), to any depth.
    pub fn needed(
        &self,
        references: impl Fn(usize) -> Vec<usize>,
    ) -> Result<Vec<bool>, BackendError> {
        let mut needed: Vec<bool> = (0..self.used.len()).map(|s| self.is_used(s)).collect();
        let mut work: Vec<usize> = (0..needed.len()).filter(|&s| needed[s]).collect();
        while let Some(slot) = work.pop() {
            for address in references(slot) {
                let (s, _) = self.map.locate(address).ok_or_else(|| {
                    BackendError::Codegen(format!(
                        "a descriptor points at {address:#x}, outside the constants"
                    ))
                })?;
                if !std::mem::replace(&mut needed[s as usize], true) {
                    work.push(s as usize);
                }
            }
        }
        Ok(needed)
    }
}

/// One function's machine code, compiled off the main thread.
struct Compiled {
    bytes: Vec<u8>,
    align: u64,
    relocs: Vec<ModuleReloc>,
}

/// Builds a kernel's IR into `ctx.func` (whose signature is set).
fn build(
    ctx: &mut Context,
    fctx: &mut FunctionBuilderContext,
    config: TargetFrontendConfig,
    body: Body,
    table: Option<&ConstTable>,
) -> Result<(), BackendError> {
    let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let mut e = Emit {
        b,
        arena: params[0],
        begin: params[1],
        end: params[2],
        table,
        table_base: None,
        error: None,
    };
    body(&mut e)?;
    if let Some(error) = e.error {
        return Err(error);
    }
    e.b.ins().return_(&[]);
    e.b.seal_all_blocks();
    e.b.finalize(config);
    Ok(())
}

/// The finalized code of a model; kernels point into it, so it lives as
/// long as the executable.
pub struct JitCode {
    module: Option<JITModule>,
}

// SAFETY: after `finalize_definitions` the module is only kept so that its
// code memory stays mapped; nothing reads or writes it through `JitCode`
// until `Drop`, which has `&mut self`.
#[allow(unsafe_code)]
unsafe impl Send for JitCode {}
// SAFETY: as for `Send`: no method reads or writes the module through
// `&JitCode`, so sharing it between threads shares nothing mutable.
#[allow(unsafe_code)]
unsafe impl Sync for JitCode {}

impl Drop for JitCode {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: the kernels are only called through the executable
            // that owns this `JitCode`, which is being dropped.
            unsafe { module.free_memory() };
        }
    }
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Codegen(e.to_string())
}

/// The host ISA with Cranelift's optimiser at `opt_level` (`speed` or
/// `none`), position-independent for an object file (`pic`). Cranelift's
/// IR verifier runs in debug builds (and so in tests); release builds skip
/// it, which saves a fifth of the compile time.
fn host_isa(opt_level: &str, pic: bool) -> Result<OwnedTargetIsa, BackendError> {
    let mut flags = settings::builder();
    flags.set("opt_level", opt_level).map_err(err)?;
    flags
        .set(
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )
        .map_err(err)?;
    flags
        .set("is_pic", if pic { "true" } else { "false" })
        .map_err(err)?;
    flags.set("use_colocated_libcalls", "false").map_err(err)?;
    cranelift_native::builder()
        .map_err(err)?
        .finish(settings::Flags::new(flags))
        .map_err(err)
}

/// The Cranelift signature of a native entry point.
pub(super) fn entry_signature(entry: &EntryPoint, call_conv: CallConv) -> Signature {
    let ty = |abi: Abi| match abi {
        Abi::Ptr | Abi::Usize => types::I64,
        Abi::F32 => types::F32,
        Abi::I32 => types::I32,
    };
    let mut sig = Signature::new(call_conv);
    sig.params
        .extend(entry.params.iter().map(|&a| AbiParam::new(ty(a))));
    sig.returns
        .extend(entry.result.map(|a| AbiParam::new(ty(a))));
    sig
}

/// Declares every entry point as an imported function, in
/// [`ENTRY_POINTS`] order, before anything else: entry point `i` is then
/// function `i` of the module, which is how kernels built on other threads
/// (without the module) name it.
fn declare_entry_points(module: &mut impl Module) -> Result<(), BackendError> {
    let call_conv = module.isa().default_call_conv();
    for (i, entry) in ENTRY_POINTS.iter().enumerate() {
        let sig = entry_signature(entry, call_conv);
        let id = module
            .declare_function(entry.symbol, Linkage::Import, &sig)
            .map_err(err)?;
        if id.as_u32() as usize != i {
            return Err(BackendError::Codegen(format!(
                "entry point `{}` was declared as function {} of the module, not {i}",
                entry.symbol,
                id.as_u32()
            )));
        }
    }
    Ok(())
}

impl Codegen {
    /// A JIT for the host CPU.
    pub fn jit() -> Result<Codegen, BackendError> {
        let mut builder = JITBuilder::with_isa(host_isa("speed", false)?, default_libcall_names());
        for entry in ENTRY_POINTS {
            builder.symbol(entry.symbol, entry.address() as *const u8);
        }
        let mut module = JITModule::new(builder);
        declare_entry_points(&mut module)?;
        Ok(Codegen {
            module,
            defined: 0,
            unoptimized: host_isa("none", false)?,
            table: None,
        })
    }
}

impl Codegen<ObjectModule> {
    /// An object file named `name` for the host CPU (its instruction set,
    /// as the JIT's), with position-independent code so that it links
    /// into any executable.
    pub fn object(name: &str) -> Result<Codegen<ObjectModule>, BackendError> {
        let builder = ObjectBuilder::new(host_isa("speed", true)?, name, default_libcall_names())
            .map_err(err)?;
        let mut module = ObjectModule::new(builder);
        declare_entry_points(&mut module)?;
        Ok(Codegen {
            module,
            defined: 0,
            unoptimized: host_isa("none", true)?,
            table: None,
        })
    }

    /// The object file's bytes.
    pub fn emit(self) -> Result<Vec<u8>, BackendError> {
        self.module.finish().emit().map_err(err)
    }
}

/// Kernels compiled over a constant table, by [`Codegen::kernels_over`].
pub struct TableKernels {
    pub ids: Vec<FuncId>,
    /// The table's slots: the constants, then the weights.
    pub map: Arc<ConstMap>,
    /// Per slot, whether some kernel reads it.
    pub needed: Vec<bool>,
}

impl<M: Module> Codegen<M> {
    /// Compiles kernels as [`Codegen::kernels`] does, reaching constants
    /// through a [`ConstTable`] whose slots are `constants`, then
    /// `weights`: with `data` (a bundle's table object) each address is
    /// loaded from the table; without (JIT code) addresses stay immediates
    /// and the table only records which slots the code uses. Returns the
    /// functions, the map of slots, and which slots the code needs: those
    /// a kernel loads and, through them, those their descriptors point
    /// into.
    pub fn kernels_over(
        &mut self,
        bodies: Vec<(Body, bool)>,
        constants: &[&Constant],
        weights: &[&[f32]],
        data: Option<DataId>,
    ) -> Result<TableKernels, BackendError> {
        let spans = constants
            .iter()
            .map(|c| c.span())
            .chain(weights.iter().map(|w| (w.as_ptr() as usize, 4 * w.len())));
        let map = Arc::new(ConstMap::new(spans));
        let slots = constants.len() + weights.len();
        self.table = Some(ConstTable::new(map.clone(), data, slots));
        let ids = self.kernels(bodies)?;
        let table = self
            .table
            .as_ref()
            .ok_or_else(|| BackendError::Codegen("no table".into()))?;
        let references = |slot: usize| {
            constants
                .get(slot)
                .map_or_else(Vec::new, |c| c.references())
        };
        let needed = table.needed(references)?;
        Ok(TableKernels { ids, map, needed })
    }

    /// The kernel signature `(arena, begin, end)`.
    fn kernel_signature(&self) -> Signature {
        let mut sig = self.module.make_signature();
        for _ in 0..3 {
            sig.params.push(AbiParam::new(types::I64));
        }
        sig
    }

    /// Compiles kernels on all cores (each function is built and compiled
    /// on its own; only linking is serial) and returns their ids in order.
    /// Each body comes with whether to run Cranelift's optimiser on it.
    pub fn kernels(&mut self, bodies: Vec<(Body, bool)>) -> Result<Vec<FuncId>, BackendError> {
        let sig = self.kernel_signature();
        let mut ids = Vec::with_capacity(bodies.len());
        for _ in &bodies {
            let name = format!("kernel{}", self.defined);
            self.defined += 1;
            ids.push(
                self.module
                    .declare_function(&name, Linkage::Local, &sig)
                    .map_err(err)?,
            );
        }
        let isa = self.module.isa();
        let unoptimized = &*self.unoptimized;
        let table = self.table.as_ref();
        let config = self.module.target_config();
        let min_align = (isa.function_alignment().minimum as u64).max(isa.symbol_alignment());
        let compiled: Vec<Result<Compiled, BackendError>> = bodies
            .into_par_iter()
            .zip(ids.par_iter())
            .map(|((body, optimize), &id)| {
                let isa = if optimize { isa } else { unoptimized };
                let mut ctx = Context::new();
                ctx.func.signature = sig.clone();
                ctx.func.name = UserFuncName::user(0, id.as_u32());
                let mut fctx = FunctionBuilderContext::new();
                build(&mut ctx, &mut fctx, config, body, table)?;
                let alignment = ctx
                    .compile(isa, &mut ControlPlane::default())
                    .map_err(|e| BackendError::Codegen(format!("{:?}", e.inner)))?
                    .buffer
                    .alignment;
                let code = ctx
                    .compiled_code()
                    .ok_or_else(|| BackendError::Codegen("no code was produced".into()))?;
                let align = (alignment as u64).max(min_align);
                let bytes = code.code_buffer().to_vec();
                let relocs = code
                    .buffer
                    .relocs()
                    .iter()
                    .map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, id))
                    .collect();
                Ok(Compiled {
                    bytes,
                    align,
                    relocs,
                })
            })
            .collect();
        for (c, &id) in compiled.into_iter().zip(&ids) {
            let c = c?;
            self.module
                .define_function_bytes(id, c.align, &c.bytes, &c.relocs)
                .map_err(err)?;
        }
        Ok(ids)
    }
}

impl Codegen {
    /// Links every kernel; returns the code and each kernel's entry point.
    #[allow(unsafe_code)]
    pub fn finish(mut self, ids: &[FuncId]) -> Result<(JitCode, Vec<KernelFn>), BackendError> {
        self.module.finalize_definitions().map_err(err)?;
        let kernels = ids
            .iter()
            .map(|&id| {
                let ptr = self.module.get_finalized_function(id);
                // SAFETY: every function of this module was built by
                // `Codegen::kernels` with the `KernelFn` signature under the
                // platform's default calling convention.
                unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) }
            })
            .collect();
        Ok((
            JitCode {
                module: Some(self.module),
            },
            kernels,
        ))
    }
}

/// A kernel being built: the function builder and the kernel's parameters.
pub struct Emit<'a> {
    pub b: FunctionBuilder<'a>,
    /// `*mut f32`: the arena.
    pub arena: Value,
    /// The first task to do.
    pub begin: Value,
    /// One past the last task to do.
    pub end: Value,
    /// A bundle's table of constants' addresses, if this is a bundle's
    /// kernel (see [`ConstTable`]).
    table: Option<&'a ConstTable>,
    /// The table's address, once loaded in this function.
    table_base: Option<GlobalValue>,
    /// The first constant that could not be located (a compiler bug),
    /// reported when the body is done.
    error: Option<BackendError>,
}

/// The address of a constant a kernel passes to native code: a
/// descriptor or a table (from `kernels::Consts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConstPtr(pub usize);

/// Memory accesses of kernels: never trapping (the planner sized every
/// buffer) but only 4-byte aligned, so vectors load unaligned.
fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl Emit<'_> {
    /// An `i64` constant.
    pub fn i(&mut self, v: usize) -> Value {
        self.b.ins().iconst(types::I64, v as i64)
    }

    /// `a + b` on `i64`.
    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().iadd(a, b)
    }

    /// `a + k` on `i64`.
    pub fn add_imm(&mut self, a: Value, k: usize) -> Value {
        self.b.ins().iadd_imm_s(a, k as i64)
    }

    /// `a - k` on `i64`.
    pub fn sub_imm(&mut self, a: Value, k: usize) -> Value {
        self.b.ins().iadd_imm_s(a, -(k as i64))
    }

    /// `a * k` on `i64`.
    pub fn mul_imm(&mut self, a: Value, k: usize) -> Value {
        self.b.ins().imul_imm_s(a, k as i64)
    }

    /// `a / k` on unsigned `i64`.
    pub fn div_imm(&mut self, a: Value, k: usize) -> Value {
        self.b.ins().udiv_imm_u(a, k as i64)
    }

    /// `a % k` on unsigned `i64`.
    pub fn rem_imm(&mut self, a: Value, k: usize) -> Value {
        self.b.ins().urem_imm_u(a, k as i64)
    }

    /// An `f32` constant as a scalar or splatted to `ty`.
    pub fn f(&mut self, ty: Type, v: f32) -> Value {
        let s = self.b.ins().f32const(v);
        if ty == types::F32 {
            s
        } else {
            self.b.ins().splat(ty, s)
        }
    }

    /// The address of element 0 of a buffer.
    pub fn base(&mut self, base: Base) -> Value {
        match base {
            Base::Arena(o) => self.b.ins().iadd_imm_s(self.arena, 4 * o as i64),
            Base::Const(p) => self.constant(p),
        }
    }

    /// The address of the constant `p` as an `i64`.
    pub fn ptr(&mut self, p: ConstPtr) -> Value {
        self.constant(p.0)
    }

    /// The address `address` of (or inside) a constant: an immediate in
    /// JIT code; in a bundle's, loaded from the constant's slot of the
    /// table plus the offset.
    fn constant(&mut self, address: usize) -> Value {
        let Some(table) = self.table else {
            return self.b.ins().iconst(types::I64, address as i64);
        };
        let located = table.map.locate(address);
        if let Some(used) = located.and_then(|(slot, _)| table.used.get(slot as usize)) {
            used.store(true, Ordering::Relaxed);
        }
        let Some(data) = table.data else {
            return self.b.ins().iconst(types::I64, address as i64);
        };
        let Some((slot, offset)) = located else {
            self.error.get_or_insert(BackendError::Codegen(format!(
                "a kernel uses the address {address:#x}, which is not one of the model's constants"
            )));
            return self.b.ins().iconst(types::I64, 0);
        };
        let gv = match self.table_base {
            Some(gv) => gv,
            None => {
                let name = self
                    .b
                    .func
                    .declare_imported_user_function(UserExternalName::new(1, data.as_u32()));
                let gv = self.b.create_global_value(GlobalValueData::Symbol {
                    name: ExternalName::user(name),
                    offset: Imm64::new(0),
                    colocated: true,
                    tls: false,
                });
                self.table_base = Some(gv);
                gv
            }
        };
        let slots = self.b.ins().symbol_value(types::I64, gv);
        // Filled before any kernel runs and never written while one does:
        // a pure load, which Cranelift may merge with others of the slot
        // and hoist out of loops.
        let flags = MemFlagsData::trusted().with_readonly().with_can_move();
        let start = self
            .b
            .ins()
            .load(types::I64, flags, slots, (8 * slot) as i32);
        self.b.ins().iadd_imm_s(start, offset as i64)
    }

    /// The address of element `index` (an `i64` value) of a buffer.
    pub fn addr(&mut self, base: Base, index: Value) -> Value {
        let start = self.base(base);
        let bytes = self.b.ins().imul_imm_s(index, 4);
        self.b.ins().iadd(start, bytes)
    }

    /// The address `ptr + 4 * index` (an `i64` element index).
    pub fn addr_of(&mut self, ptr: Value, index: Value) -> Value {
        let bytes = self.b.ins().imul_imm_s(index, 4);
        self.b.ins().iadd(ptr, bytes)
    }

    /// Loads a `ty` (f32 or f32x4) at `ptr + 4 * elems`.
    pub fn load(&mut self, ty: Type, ptr: Value, elems: usize) -> Value {
        self.b.ins().load(ty, flags(), ptr, (4 * elems) as i32)
    }

    /// Loads entry `index` (an `i64` value) of a table of `i64`s at the
    /// absolute address `table`: element offsets that no formula gives,
    /// such as an `index_select`'s.
    pub fn load_i64(&mut self, table: ConstPtr, index: Value) -> Value {
        let start = self.ptr(table);
        let bytes = self.b.ins().imul_imm_s(index, 8);
        let ptr = self.b.ins().iadd(start, bytes);
        self.b.ins().load(types::I64, flags(), ptr, 0)
    }

    /// Stores `v` at `ptr + 4 * elems`.
    pub fn store(&mut self, v: Value, ptr: Value, elems: usize) {
        self.b.ins().store(flags(), v, ptr, (4 * elems) as i32);
    }

    /// `for i in (lo..hi).step_by(step) { body(i) }` with `i64` bounds.
    pub fn for_range(
        &mut self,
        lo: Value,
        hi: Value,
        step: usize,
        mut body: impl FnMut(&mut Self, Value) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let header = self.b.create_block();
        let i = self.b.append_block_param(header, types::I64);
        let inner = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[BlockArg::Value(lo)]);
        self.b.switch_to_block(header);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, hi);
        self.b.ins().brif(more, inner, &[], exit, &[]);
        self.b.switch_to_block(inner);
        body(self, i)?;
        let next = self.b.ins().iadd_imm_s(i, step as i64);
        self.b.ins().jump(header, &[BlockArg::Value(next)]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// [`Emit::for_range`] with constant bounds.
    pub fn for_n(
        &mut self,
        lo: usize,
        hi: usize,
        step: usize,
        body: impl FnMut(&mut Self, Value) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let (lo, hi) = (self.i(lo), self.i(hi));
        self.for_range(lo, hi, step, body)
    }

    /// The tasks `begin..end` of this call.
    pub fn for_tasks(
        &mut self,
        body: impl FnMut(&mut Self, Value) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let (begin, end) = (self.begin, self.end);
        self.for_range(begin, end, 1, body)
    }

    /// Calls the native entry point `entry` with `args` and returns its
    /// result, if it has one. The arguments must match the declared
    /// parameters in number and class (integer or pointer, or `f32`): a
    /// mismatch is a compiler bug, reported instead of compiled.
    pub fn call(
        &mut self,
        entry: &EntryPoint,
        args: &[Value],
    ) -> Result<Option<Value>, BackendError> {
        let sig = entry_signature(entry, self.b.func.signature.call_conv);
        let given: Vec<Type> = args
            .iter()
            .map(|&a| self.b.func.dfg.value_type(a))
            .collect();
        let wanted: Vec<Type> = sig.params.iter().map(|p| p.value_type).collect();
        if given != wanted {
            return Err(BackendError::Codegen(format!(
                "a call of `{}` passes {given:?}; it takes {wanted:?}",
                entry.symbol
            )));
        }
        let index = u32::try_from(entry.index()).map_err(err)?;
        let name = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(0, index));
        let signature = self.b.import_signature(sig);
        let callee = self.b.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature,
            colocated: false,
            patchable: false,
        });
        let call = self.b.ins().call(callee, args);
        Ok(self.b.inst_results(call).first().copied())
    }

    /// [`Emit::call`] of an entry point that returns a value.
    pub fn call_ret(&mut self, entry: &EntryPoint, args: &[Value]) -> Result<Value, BackendError> {
        self.call(entry, args)?
            .ok_or_else(|| BackendError::Codegen(format!("`{}` returns nothing", entry.symbol)))
    }

    /// `if cond { body }`, where `cond` is an `icmp` result.
    pub fn if_then(
        &mut self,
        cond: Value,
        body: impl FnOnce(&mut Self) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let then = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().brif(cond, then, &[], done, &[]);
        self.b.switch_to_block(then);
        body(self)?;
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
        Ok(())
    }

    /// Four floats `ptr[0], ptr[stride], ptr[2*stride], ptr[3*stride]` for
    /// a stride of 1 (one load) or 2 (two loads of 4 and a shuffle of the
    /// even lanes; reads `ptr[0..8]`).
    pub fn load_strided4(&mut self, ptr: Value, stride: usize) -> Value {
        if stride == 1 {
            return self.load(F32X4, ptr, 0);
        }
        let lo = self.load(F32X4, ptr, 0);
        let hi = self.load(F32X4, ptr, 4);
        self.shuffle_lanes(lo, hi, [0, 2, 4, 6])
    }

    /// Four lanes picked from `a` (lanes 0..4) and `b` (lanes 4..8).
    pub fn shuffle_lanes(&mut self, a: Value, b: Value, lanes: [u8; 4]) -> Value {
        let flags = MemFlagsData::new().with_endianness(Endianness::Little);
        let a = self.b.ins().bitcast(types::I8X16, flags, a);
        let b = self.b.ins().bitcast(types::I8X16, flags, b);
        let bytes: Vec<u8> = lanes
            .iter()
            .flat_map(|&l| (0..4).map(move |k| 4 * l + k))
            .collect();
        let mask = self.b.func.dfg.immediates.push(bytes.into());
        let v = self.b.ins().shuffle(a, b, mask);
        self.b.ins().bitcast(F32X4, flags, v)
    }

    /// The lanes of `a` and `b` alternated: `([a0, b0, a1, b1], [a2, b2,
    /// a3, b3])`.
    pub fn interleave(&mut self, a: Value, b: Value) -> (Value, Value) {
        (
            self.shuffle_lanes(a, b, [0, 4, 1, 5]),
            self.shuffle_lanes(a, b, [2, 6, 3, 7]),
        )
    }

    /// The 4x4 transpose of rows `v`: lane `j` of result `i` is lane `i`
    /// of `v[j]`.
    pub fn transpose4(&mut self, v: [Value; 4]) -> [Value; 4] {
        let (a, b) = self.interleave(v[0], v[1]);
        let (c, d) = self.interleave(v[2], v[3]);
        [
            self.shuffle_lanes(a, c, [0, 1, 4, 5]),
            self.shuffle_lanes(a, c, [2, 3, 6, 7]),
            self.shuffle_lanes(b, d, [0, 1, 4, 5]),
            self.shuffle_lanes(b, d, [2, 3, 6, 7]),
        ]
    }

    /// Applies `f` to `n` contiguous elements at `ptr..`, four at a time
    /// with a scalar tail: `f(emit, ty, index)` gets the lane type and the
    /// element index of the first lane.
    pub fn vectorized(
        &mut self,
        n: usize,
        mut f: impl FnMut(&mut Self, Type, Value) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let body = n / LANES * LANES;
        if body > 0 {
            self.for_n(0, body, LANES, |e, i| f(e, F32X4, i))?;
        }
        if body < n {
            self.for_n(body, n, 1, |e, i| f(e, types::F32, i))?;
        }
        Ok(())
    }
}
