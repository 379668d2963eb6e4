//! Opening an ahead-of-time bundle: the run-time half of
//! `nnc compile --emit=bundle`.
//!
//! A bundle's object file holds the model's kernels (compiled by the same
//! code generator as the JIT's), a table of function pointers to them, a
//! table of constants' addresses its kernels load from (zero until
//! opened), and an image: a [`Header`] (the steps, the arena plan, the CPU
//! features the code needs) and the constants the kernels use, each with
//! its slot in the table. Its `nnc_model_open` calls [`nnc_bundle_open`],
//! which checks the CPU, loads the constants, fills the table and returns
//! the same handle as libnnc's `nnc_compile`.
//!
//! The table is the bundle's own static data, so every handle of one
//! bundle shares one set of loaded constants: the first open loads them,
//! later ones (while any handle is open) reuse them, and the last close
//! frees them.

#![allow(unsafe_code)] // The C ABI and the bundle's code and tables.

use crate::capi::{self, Model};
use crate::kernels::constants::{self, Constant, Constants};
use crate::kernels::gemm::MicroKernel;
use crate::{Binding, Executable, KernelFn, Step};
use serde::{Deserialize, Serialize};
use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Weak};

/// Which runtime a bundle was made for: its image is only read by the same
/// version (the descriptors' layout is not a stable format).
pub const FORMAT: &str = concat!("nnc-bundle ", env!("CARGO_PKG_VERSION"), " 1");

/// One kernel call of a bundle's model, as [`Step`] without the code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedStep {
    pub name: String,
    pub tasks: usize,
    pub parallel: bool,
}

/// What a bundle's image says about its model, before the constants.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT`] of the runtime that made it.
    pub format: String,
    /// CPU features the compiled code uses (Cranelift's names, such as
    /// `avx2` or `sse41`).
    pub features: Vec<String>,
    /// The native kernels' instruction set.
    pub micro_kernel: MicroKernel,
    pub steps: Vec<SavedStep>,
    pub arena_len: usize,
    pub inputs: Vec<Binding>,
    pub outputs: Vec<Binding>,
    /// Slots of the constants table.
    pub slots: usize,
}

/// The image of a bundle: the header and the constants as
/// `(slot, constant)`, floats before the descriptors that point into them.
/// Saved by the compiler with [`constants::saving`] in effect, so that the
/// addresses inside descriptors become slots.
///
/// Layout: the header's length (8 bytes), the header, the constants'
/// length, the constants, then from the next multiple of 64 bytes the blob
/// of their large arrays ([`constants::blob`]), which opening the bundle
/// borrows in place (the object file aligns the image to 64 bytes).
pub fn encode(header: &Header, constants: &[(u32, &Constant)]) -> Result<Vec<u8>, String> {
    let head = postcard::to_allocvec(header).map_err(|e| e.to_string())?;
    let (body, blob) = constants::blob::collect(|| postcard::to_allocvec(constants));
    let body = body.map_err(|e| e.to_string())?;
    let mut image = Vec::with_capacity(16 + head.len() + body.len() + 64 + blob.len());
    for part in [&head, &body] {
        image.extend_from_slice(&(part.len() as u64).to_le_bytes());
        image.extend_from_slice(part);
    }
    image.resize(image.len().next_multiple_of(constants::blob::ALIGN), 0);
    image.extend_from_slice(&blob);
    Ok(image)
}

/// One length-prefixed part of an image, and the rest.
fn part(image: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = image.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// Splits an image into its header, its constants' bytes and its blob.
fn decode_header(image: &'static [u8]) -> Result<(Header, &'static [u8], &'static [u8]), String> {
    let corrupt = || "the bundle's image is corrupt".to_string();
    let (head, rest) = part(image).ok_or_else(corrupt)?;
    let (body, _) = part(rest).ok_or_else(corrupt)?;
    let blob_start = (16 + head.len() + body.len()).next_multiple_of(constants::blob::ALIGN);
    let blob = image.get(blob_start..).unwrap_or_default();
    let header: Header = postcard::from_bytes(head).map_err(|_| corrupt())?;
    Ok((header, body, blob))
}

/// The constants `(slot, constant)` of an image, in order, each slot's
/// address known (for the descriptors after it) as soon as it is loaded.
struct Loading(Vec<(u32, Box<Constant>)>);

impl<'de> Deserialize<'de> for Loading {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Loading, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Loading;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a bundle's constants")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Loading, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some((slot, c)) = seq.next_element::<(u32, Constant)>()? {
                    // Boxed before its address is taken: it stays put.
                    let c = Box::new(c);
                    constants::loaded(slot, c.address());
                    items.push((slot, c));
                }
                Ok(Loading(items))
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// Whether this CPU has the feature Cranelift calls `name` (its ISA flag
/// `has_<name>`); an error for a feature this runtime does not know how to
/// check. The compiler's tests hold this list to Cranelift's.
pub fn has_feature(name: &str) -> Result<bool, String> {
    #[cfg(target_arch = "x86_64")]
    {
        Ok(match name {
            "sse3" => is_x86_feature_detected!("sse3"),
            "ssse3" => is_x86_feature_detected!("ssse3"),
            "sse41" => is_x86_feature_detected!("sse4.1"),
            "sse42" => is_x86_feature_detected!("sse4.2"),
            "popcnt" => is_x86_feature_detected!("popcnt"),
            "avx" => is_x86_feature_detected!("avx"),
            "avx2" => is_x86_feature_detected!("avx2"),
            "fma" => is_x86_feature_detected!("fma"),
            "bmi1" => is_x86_feature_detected!("bmi1"),
            "bmi2" => is_x86_feature_detected!("bmi2"),
            "lzcnt" => is_x86_feature_detected!("lzcnt"),
            "f16c" => is_x86_feature_detected!("f16c"),
            "cmpxchg16b" => is_x86_feature_detected!("cmpxchg16b"),
            "avx512f" => is_x86_feature_detected!("avx512f"),
            "avx512dq" => is_x86_feature_detected!("avx512dq"),
            "avx512vl" => is_x86_feature_detected!("avx512vl"),
            "avx512bitalg" => is_x86_feature_detected!("avx512bitalg"),
            "avx512vbmi" => is_x86_feature_detected!("avx512vbmi"),
            "avx512vnni" => is_x86_feature_detected!("avx512vnni"),
            "avx_vnni" => is_x86_feature_detected!("avxvnni"),
            other => {
                return Err(format!(
                    "the bundle needs the CPU feature `{other}`, which this runtime cannot check"
                ))
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Err(format!("the bundle needs the x86-64 CPU feature `{name}`"))
}

/// Checks that this CPU can run code compiled for `header`.
fn check_cpu(header: &Header) -> Result<(), String> {
    let missing: Vec<&str> = header
        .features
        .iter()
        .map(|f| has_feature(f).map(|has| (!has).then_some(f.as_str())))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "this bundle was compiled for a CPU with {}, which this one lacks; compile it on (or for) this machine",
            missing.join(", ")
        ));
    }
    if !header.micro_kernel.is_available() {
        return Err(format!(
            "this bundle's kernels use {}, which this CPU lacks",
            header.micro_kernel.name()
        ));
    }
    Ok(())
}

/// The loaded constants of the bundles open in this process, by the
/// address of their table.
static OPEN: Mutex<Vec<(usize, Weak<Constants>)>> = Mutex::new(Vec::new());

/// The loaded constants of the bundle whose table is at `table`: those
/// of an open handle, or `body` (with its arrays in `blob`) loaded now,
/// with the table filled.
///
/// # Safety
/// `table` holds `slots` writable `usize`s that only bundle kernels read.
unsafe fn constants_for(
    table: *mut usize,
    slots: usize,
    body: &[u8],
    blob: &'static [u8],
) -> Result<Arc<Constants>, String> {
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    open.retain(|(_, w)| w.strong_count() > 0);
    if let Some(c) = open
        .iter()
        .find(|(t, _)| *t == table as usize)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(c);
    }
    let loaded = constants::blob::loading(blob, || postcard::from_bytes::<Loading>(body));
    constants::done_loading();
    let Loading(items) = loaded.map_err(|e| format!("the bundle's constants are corrupt: {e}"))?;
    let mut filled = Vec::with_capacity(items.len());
    for (slot, c) in &items {
        let slot = *slot as usize;
        if slot >= slots {
            return Err("the bundle's image names a constant beyond its table".into());
        }
        filled.push((slot, c.address()));
    }
    for (slot, address) in filled {
        // SAFETY: `slot < slots` (checked above); the table is ours to
        // write (the caller's promise), under the lock.
        unsafe { *table.add(slot) = address };
    }
    let constants = Arc::new(Constants::from_boxed(
        items.into_iter().map(|(_, c)| c).collect(),
    ));
    open.push((table as usize, Arc::downgrade(&constants)));
    Ok(constants)
}

/// Opens a bundle: called by the `nnc_model_open` of a bundle's object
/// file with its image, kernels and constants table. NULL on failure,
/// with the reason in `nnc_model_error(NULL)`.
///
/// # Safety
/// The arguments are a bundle's, made by `nnc compile --emit=bundle` with
/// this runtime's [`FORMAT`]: `image` holds `image_len` bytes, `kernels`
/// `n_kernels` kernel functions compiled for the image's arena plan,
/// whose constants they load from `table` (`slots` slots).
#[no_mangle]
pub unsafe extern "C" fn nnc_bundle_open(
    image: *const u8,
    image_len: usize,
    kernels: *const KernelFn,
    n_kernels: usize,
    table: *mut usize,
    slots: usize,
    threads: c_int,
) -> *mut Model {
    let opened = catch_unwind(AssertUnwindSafe(|| -> Result<Model, String> {
        if image.is_null() || kernels.is_null() || table.is_null() {
            return Err("the bundle's tables are NULL".into());
        }
        let threads = usize::try_from(threads)
            .map_err(|_| format!("threads must be 0 (one per core) or more, not {threads}"))?;
        // SAFETY: the image is the bundle's, `image_len` bytes of its
        // read-only data, which live as long as the program (bundles are
        // linked statically).
        let image: &'static [u8] = unsafe { std::slice::from_raw_parts(image, image_len) };
        let (header, body, blob) = decode_header(image)?;
        if header.format != FORMAT {
            return Err(format!(
                "the bundle was made by {}, but this runtime is {FORMAT}; link the libnnc_runtime.a made with it",
                header.format
            ));
        }
        if header.steps.len() != n_kernels || header.slots != slots {
            return Err("the bundle's image does not match its code".into());
        }
        check_cpu(&header)?;
        // SAFETY: `table` is the bundle's (the caller's promise).
        let constants = unsafe { constants_for(table, slots, body, blob) }?;
        // SAFETY: `kernels` holds `n_kernels` functions (the caller's
        // promise).
        let kernels = unsafe { std::slice::from_raw_parts(kernels, n_kernels) };
        let steps = header
            .steps
            .into_iter()
            .zip(kernels)
            .map(|(s, &kernel)| Step {
                name: s.name,
                kernel,
                tasks: s.tasks,
                parallel: s.parallel,
            })
            .collect();
        let in_arena = |b: &Binding| {
            b.offset
                .checked_add(b.len())
                .is_some_and(|end| end <= header.arena_len)
        };
        if !header.inputs.iter().chain(&header.outputs).all(in_arena) {
            return Err("the bundle's image places an input or output outside its arena".into());
        }
        // SAFETY: the kernels were compiled for exactly this arena plan
        // and these constants (the same compilation made the image), the
        // table they load from is filled, and the CPU has every feature
        // they use (checked above); the executable keeps the constants.
        let executable = unsafe {
            Executable::new(
                steps,
                header.arena_len,
                header.inputs,
                header.outputs,
                Box::new(constants),
            )
        };
        Model::new(executable, threads)
    }));
    match opened {
        Ok(Ok(model)) => model.into_raw(),
        Ok(Err(message)) => {
            capi::set_last_error(&message);
            std::ptr::null_mut()
        }
        Err(_) => {
            capi::set_last_error(
                "internal error: nnc panicked opening the bundle (please report this)",
            );
            std::ptr::null_mut()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::constants::ConstMap;
    use crate::kernels::gemm::{Activation, PackedA};
    use crate::kernels::tasks::{Epilogue, GemmTask};
    use crate::kernels::Base;

    /// A product whose weights (`m x k`, values `i`) are packed, reading
    /// its B from a floats constant.
    fn model(m: usize, k: usize) -> (Constant, Constant) {
        let b = Constant::Floats(vec![0.5; k * 4]);
        let weights: Vec<f32> = (0..m * k).map(|i| i as f32).collect();
        let gemm = Constant::Gemm(GemmTask {
            packed: vec![PackedA::pack(MicroKernel::detect(), &weights, m, k)],
            m,
            k,
            n: 4,
            groups: 1,
            products: 1,
            b: Base::Const(b.address()),
            b_stride: 0,
            ldb: 4,
            c: Base::Arena(0),
            c_stride: 0,
            ldc: 4,
            epilogue: Epilogue {
                bias: None,
                residual: None,
                activation: Activation::None,
            },
            m_block: m,
            n_block: 4,
            b_panels: false,
        });
        (b, gemm)
    }

    fn header(features: &[&str]) -> Header {
        Header {
            format: FORMAT.into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            micro_kernel: MicroKernel::detect(),
            steps: Vec::new(),
            arena_len: 16,
            inputs: Vec::new(),
            outputs: Vec::new(),
            slots: 2,
        }
    }

    #[test]
    fn a_bundle_for_a_cpu_feature_this_one_lacks_is_refused_naming_it() {
        // One this runtime cannot check at all.
        let err = check_cpu(&header(&["warp_drive"]))
            .err()
            .unwrap_or_default();
        assert!(err.contains("warp_drive"), "{err}");
        // Every known feature this CPU lacks.
        let known = [
            "avx2",
            "fma",
            "avx512f",
            "avx512vl",
            "avx512vbmi",
            "avx512bitalg",
            "avx_vnni",
            "avx512vnni",
        ];
        for f in known {
            match has_feature(f) {
                Ok(false) => {
                    let err = check_cpu(&header(&["sse42", f])).err().unwrap_or_default();
                    assert!(err.contains(f) && !err.contains("sse42"), "{err}");
                }
                Ok(true) => assert_eq!(check_cpu(&header(&[f])), Ok(())),
                Err(e) => assert!(e.is_empty(), "`{f}` cannot be checked: {e}"),
            }
        }
    }

    #[test]
    fn packed_weights_load_in_place_and_addresses_become_the_loaded_ones() -> Result<(), String> {
        let (b, gemm) = model(37, 29);
        let map = Arc::new(ConstMap::new([b.span(), gemm.span()]));
        let header = header(&[]);
        let image = constants::saving(map, || encode(&header, &[(0, &b), (1, &gemm)]))?;
        // The image in static, 64-byte aligned memory, as in an object file.
        #[repr(C, align(64))]
        #[derive(Clone, Copy)]
        struct Line([u8; 64]);
        let lines = image.len().div_ceil(64);
        let storage: &'static mut [Line] = Vec::leak(vec![Line([0; 64]); lines]);
        // SAFETY: `lines * 64` bytes, written once here.
        let bytes: &'static mut [u8] = unsafe {
            std::slice::from_raw_parts_mut(storage.as_mut_ptr().cast::<u8>(), lines * 64)
        };
        bytes[..image.len()].copy_from_slice(&image);
        let (decoded, body, blob) = decode_header(&bytes[..image.len()])?;
        assert_eq!(decoded.slots, 2);
        let loaded = constants::blob::loading(blob, || postcard::from_bytes::<Loading>(body));
        constants::done_loading();
        let Loading(items) = loaded.map_err(|e| e.to_string())?;
        let [(0, b), (1, gemm)] = items.as_slice() else {
            return Err(format!("two constants in order, not {}", items.len()));
        };
        let (Constant::Floats(floats), Constant::Gemm(task)) = (&**b, &**gemm) else {
            return Err("the constants' kinds changed".into());
        };
        // B's address is the loaded floats', not the saved ones'.
        assert_eq!(task.b, Base::Const(floats.as_ptr() as usize));
        // The packed weights are read where they lie in the image.
        let image_range = bytes.as_ptr_range();
        let packed = task.packed[0].as_ptr().cast::<u8>();
        assert!(
            image_range.contains(&packed),
            "the packed weights were copied"
        );
        assert_eq!((task.packed[0].m(), task.packed[0].k()), (37, 29));
        Ok(())
    }
}
