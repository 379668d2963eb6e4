//! libnnc: the C API of `nnc.h` (`runtime/include/nnc.h`) with the JIT
//! behind it. [`nnc_compile`] compiles a model at run time and returns the
//! same `nnc_model *` handle an ahead-of-time bundle's `nnc_model_open`
//! does; every other function of the header is the runtime's
//! (`nnc_runtime::capi`), exported from this library too.

#![allow(unsafe_code)] // The C ABI.

use nnc_compiler::backend::{self, Options};
use nnc_compiler::{driver, weights};
use nnc_runtime::capi::{self, Model};
use nnc_runtime::{MemoryLimit, DEFAULT_SEED};
use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

pub use nnc_runtime::capi::{
    nnc_model_close, nnc_model_error, nnc_model_input_len, nnc_model_input_shape,
    nnc_model_num_inputs, nnc_model_num_outputs, nnc_model_output_len, nnc_model_output_shape,
    nnc_model_run,
};

/// Loads, compiles and wraps the model, as `nnc run` does: the weights
/// from `weights` (safetensors), else the ONNX file's own, else seeded.
fn compile(model: &str, weights: Option<&str>, threads: c_int) -> Result<Model, String> {
    let threads = usize::try_from(threads)
        .map_err(|_| format!("threads must be 0 (one per core) or more, not {threads}"))?;
    let limit = MemoryLimit::available();
    let options = nnc_frontend::onnx::Options {
        max_memory: limit,
        ..Default::default()
    };
    let loaded = driver::load_any_with(Path::new(model), &options).map_err(|e| match e {
        driver::LoadError::Diagnostics {
            source_file,
            diagnostics,
        } => nnc_frontend::diagnostic::render_all(&diagnostics, &source_file),
        e => e.to_string(),
    })?;
    let graph = loaded.model.graph;
    let weights = match (weights, loaded.weights) {
        (Some(path), _) => weights::load_weights(&graph, Path::new(path), limit)
            .map_err(|errors| weights::describe_load_errors(Path::new(path), &errors))?,
        (None, Some(imported)) => imported,
        (None, None) => weights::seeded_weights(&graph, DEFAULT_SEED).map_err(|e| e.to_string())?,
    };
    let compiled = backend::compile(
        graph,
        weights,
        &Options {
            threads,
            max_memory: limit,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    Model::new(compiled.executable, threads)
}

/// Compiles the model at `model_path` (`.nn` or `.onnx`) for this CPU;
/// `weights_path` is a `.safetensors` file or NULL (the ONNX file's own
/// weights, or seeded ones as `nnc run` uses). 0 threads: one per core.
/// NULL on failure, with the reason in `nnc_model_error(NULL)`.
///
/// # Safety
/// `model_path` and `weights_path` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn nnc_compile(
    model_path: *const c_char,
    weights_path: *const c_char,
    threads: c_int,
) -> *mut Model {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: both are NULL or NUL-terminated (the caller's promise).
        let model = unsafe { capi::str_arg(model_path, "model path") }?
            .ok_or_else(|| "the model path is NULL".to_string())?;
        // SAFETY: as above.
        let weights = unsafe { capi::str_arg(weights_path, "weights path") }?;
        compile(model, weights, threads)
    }));
    match result {
        Ok(Ok(model)) => model.into_raw(),
        Ok(Err(message)) => {
            capi::set_last_error(&message);
            std::ptr::null_mut()
        }
        Err(_) => {
            capi::set_last_error(
                "internal error: nnc panicked while compiling (please report this)",
            );
            std::ptr::null_mut()
        }
    }
}
