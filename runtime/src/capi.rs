//! The C API of a compiled model (`nnc.h`): the functions every
//! `nnc_model *` answers to, whether it came from an ahead-of-time bundle's
//! `nnc_model_open` or from libnnc's `nnc_compile`.
//!
//! A handle owns its executable, its thread pool and one arena, so runs on
//! one handle take turns (the C caller's duty: one `nnc_model_run` at a
//! time per handle); separate handles run concurrently, and the read-only
//! functions may be called from any thread. Errors are reported like
//! `errno`: a failing call returns its error value (-1, 0 or NULL) and
//! `nnc_model_error` gives this thread's last message. No function lets a
//! Rust panic cross into C: each body runs under `catch_unwind` and turns
//! one into an error. A NULL handle or array gives an error code and a
//! message, never a crash; what C cannot say (how long the buffers behind
//! the pointers are) is the caller's promise, as with `memcpy`.

#![allow(unsafe_code)] // The C ABI: raw pointers from C callers.

use crate::{Executable, Pool};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `nnc.h`, the header of the C API.
pub const HEADER: &str = include_str!("../include/nnc.h");

/// What an `nnc_model *` points to.
pub struct Model {
    executable: Executable,
    pool: Pool,
    arena: Vec<f32>,
    input_shapes: Vec<Vec<i64>>,
    output_shapes: Vec<Vec<i64>>,
}

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// `message` as a C string (interior NULs, which C cannot show, replaced).
fn c_string(message: &str) -> CString {
    CString::new(message.replace('\0', " ")).unwrap_or_default()
}

/// Records `message` as this thread's last error.
pub fn set_last_error(message: &str) {
    LAST_ERROR.with(|e| *e.borrow_mut() = c_string(message));
}

fn shapes_of(bindings: &[crate::Binding]) -> Vec<Vec<i64>> {
    bindings
        .iter()
        .map(|b| b.shape.iter().map(|&d| d as i64).collect())
        .collect()
}

impl Model {
    /// A handle running `executable` on `threads` threads (0: one per
    /// core).
    pub fn new(executable: Executable, threads: usize) -> Result<Model, String> {
        let pool = Pool::new(threads).map_err(|e| e.to_string())?;
        Ok(Model {
            input_shapes: shapes_of(executable.inputs()),
            output_shapes: shapes_of(executable.outputs()),
            executable,
            pool,
            arena: Vec::new(),
        })
    }

    /// The handle C receives; [`nnc_model_close`] frees it.
    pub fn into_raw(self) -> *mut Model {
        Box::into_raw(Box::new(self))
    }

    fn run(&mut self, inputs: *const *const f32, outputs: *const *mut f32) -> Result<(), String> {
        let (n_in, n_out) = (self.input_shapes.len(), self.output_shapes.len());
        if (inputs.is_null() && n_in > 0) || (outputs.is_null() && n_out > 0) {
            return Err("the input or output array is NULL".into());
        }
        // A slice needs a non-NULL, aligned pointer.
        let checked = |i: usize, p: *const f32, what: &str| {
            if p.is_null() {
                Err(format!("{what} {i} is NULL"))
            } else if !p.is_aligned() {
                Err(format!("{what} {i} is not aligned to a float"))
            } else {
                Ok(p)
            }
        };
        let mut ins = Vec::with_capacity(n_in);
        for (i, b) in self.executable.inputs().iter().enumerate() {
            // SAFETY: `inputs` is not NULL and has one pointer per model
            // input (the caller's promise).
            let p = checked(i, unsafe { *inputs.add(i) }, "input")?;
            // SAFETY: input `i` points to `nnc_model_input_len(m, i)`
            // floats (the caller's promise).
            ins.push(unsafe { std::slice::from_raw_parts(p, b.len()) });
        }
        let mut outs = Vec::with_capacity(n_out);
        for (i, b) in self.executable.outputs().iter().enumerate() {
            // SAFETY: as for the inputs.
            let p = checked(i, unsafe { *outputs.add(i) }, "output")?;
            // SAFETY: output `i` points to `nnc_model_output_len(m, i)`
            // writable floats that no input overlaps (the caller's
            // promise).
            outs.push(unsafe { std::slice::from_raw_parts_mut(p.cast_mut(), b.len()) });
        }
        self.executable
            .run_slices(&mut self.arena, &ins, &mut outs, &self.pool)
            .map_err(|e| e.to_string())
    }
}

/// `f()`, or `failed` with the error (a panic too) recorded as this
/// thread's last.
fn guarded<T>(failed: T, f: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(message)) => {
            set_last_error(&message);
            failed
        }
        Err(_) => {
            set_last_error("internal error: nnc panicked (please report this)");
            failed
        }
    }
}

/// `f` on the open handle `m` (NULL: an error).
fn with_model<T>(m: *const Model, failed: T, f: impl FnOnce(&Model) -> Result<T, String>) -> T {
    guarded(failed, || {
        // SAFETY: a non-NULL handle came from `Model::into_raw` and has not
        // been closed (the caller's promise); these calls only read it.
        match unsafe { m.as_ref() } {
            Some(model) => f(model),
            None => Err("the model handle is NULL".into()),
        }
    })
}

/// The shape of binding `i` in `shapes`, or an error naming the range.
fn shape_at<'a>(shapes: &'a [Vec<i64>], i: c_int, what: &str) -> Result<&'a [i64], String> {
    usize::try_from(i)
        .ok()
        .and_then(|i| shapes.get(i))
        .map(Vec::as_slice)
        .ok_or_else(|| format!("no {what} {i}: the model has {}", shapes.len()))
}

fn len_of(shape: &[i64]) -> usize {
    shape.iter().map(|&d| d as usize).product()
}

/// The number of model inputs (-1 for a NULL handle).
#[no_mangle]
pub extern "C" fn nnc_model_num_inputs(m: *const Model) -> c_int {
    with_model(m, -1, |m| {
        Ok(m.input_shapes.len().try_into().unwrap_or(c_int::MAX))
    })
}

/// The number of model outputs (-1 for a NULL handle).
#[no_mangle]
pub extern "C" fn nnc_model_num_outputs(m: *const Model) -> c_int {
    with_model(m, -1, |m| {
        Ok(m.output_shapes.len().try_into().unwrap_or(c_int::MAX))
    })
}

/// The element count (f32) of input `i` (0 if there is no such input).
#[no_mangle]
pub extern "C" fn nnc_model_input_len(m: *const Model, i: c_int) -> usize {
    with_model(m, 0, |m| shape_at(&m.input_shapes, i, "input").map(len_of))
}

/// The element count (f32) of output `i` (0 if there is no such output).
#[no_mangle]
pub extern "C" fn nnc_model_output_len(m: *const Model, i: c_int) -> usize {
    with_model(m, 0, |m| {
        shape_at(&m.output_shapes, i, "output").map(len_of)
    })
}

/// Writes the rank of `shapes[i]` to `rank` (unless NULL) and returns its
/// dimensions, valid while the handle is open; NULL (rank 0) if there is
/// no such binding.
fn shape_out(
    shapes: &[Vec<i64>],
    i: c_int,
    rank: *mut c_int,
    what: &str,
) -> Result<*const i64, String> {
    let set_rank = |r: c_int| {
        if !rank.is_null() {
            // SAFETY: a non-NULL `rank` points to an `int` (the caller's
            // promise).
            unsafe { *rank = r };
        }
    };
    set_rank(0);
    let shape = shape_at(shapes, i, what)?;
    set_rank(shape.len().try_into().unwrap_or(c_int::MAX));
    Ok(shape.as_ptr())
}

/// The shape of input `i` (see `nnc.h`).
#[no_mangle]
pub extern "C" fn nnc_model_input_shape(m: *const Model, i: c_int, rank: *mut c_int) -> *const i64 {
    with_model(m, std::ptr::null(), |m| {
        shape_out(&m.input_shapes, i, rank, "input")
    })
}

/// The shape of output `i` (see `nnc.h`).
#[no_mangle]
pub extern "C" fn nnc_model_output_shape(
    m: *const Model,
    i: c_int,
    rank: *mut c_int,
) -> *const i64 {
    with_model(m, std::ptr::null(), |m| {
        shape_out(&m.output_shapes, i, rank, "output")
    })
}

/// Runs the model: `inputs[i]` holds `nnc_model_input_len(m, i)` floats,
/// `outputs[i]` has room for `nnc_model_output_len(m, i)`. 0 on success,
/// -1 on an error (see [`nnc_model_error`]). Validates everything it can
/// see before any kernel runs: the handle, the arrays and every pointer
/// in them.
///
/// # Safety
/// `m` is NULL or an open handle not in use by another call; `inputs` and
/// `outputs` are NULL or hold one pointer per input and output, each
/// NULL or pointing to a buffer of the stated length.
#[no_mangle]
pub unsafe extern "C" fn nnc_model_run(
    m: *mut Model,
    inputs: *const *const f32,
    outputs: *const *mut f32,
) -> c_int {
    guarded(-1, || {
        // SAFETY: a non-NULL handle came from `Model::into_raw`, is open
        // and no other call is using it (the caller's promise).
        match unsafe { m.as_mut() } {
            Some(model) => model.run(inputs, outputs).map(|()| 0),
            None => Err("the model handle is NULL".into()),
        }
    })
}

/// The message of this thread's last failed nnc call (`m` may be NULL:
/// a failed open or compile has no handle), "" if none failed yet. Valid
/// until this thread's next failing call.
#[no_mangle]
pub extern "C" fn nnc_model_error(m: *const Model) -> *const c_char {
    let _ = m;
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Frees a handle (NULL is ignored).
///
/// # Safety
/// `m` is NULL or an open handle no other call is using; it is invalid
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn nnc_model_close(m: *mut Model) {
    if !m.is_null() {
        // SAFETY: `m` came from `Model::into_raw` and is closed once.
        let model = unsafe { Box::from_raw(m) };
        // Dropping joins the pool's threads; a panic there must not reach C.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(model)));
    }
}

/// A C string argument as UTF-8, or an error naming it.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
pub unsafe fn str_arg<'a>(s: *const c_char, what: &str) -> Result<Option<&'a str>, String> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: a non-NULL `s` is NUL-terminated (the caller's promise).
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str()
        .map(Some)
        .map_err(|_| format!("the {what} is not valid UTF-8"))
}
