//! `.npy` bytes -> a tensor, as `nnc run --input` reads them. Errors
//! (not npy, unsupported dtype, Fortran order, truncated data) are
//! expected; a panic is a crash, and so is a tensor whose shape and data
//! disagree or that does not survive a write and read back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_runtime::npy::read_npy_bytes;
use nnc_runtime::{checked_numel, write_npy};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(tensor) = read_npy_bytes(data, Path::new("fuzz.npy")) else {
        return;
    };
    assert_eq!(checked_numel(tensor.shape()), Some(tensor.len()));
    // Small tensors also go through a file and back; writing each large
    // one would slow the fuzzer without finding anything new.
    if tensor.len() <= 64 {
        let file = std::env::temp_dir().join(format!("nnc-fuzz-{}.npy", std::process::id()));
        write_npy(&file, &tensor).unwrap_or_else(|e| panic!("a read tensor does not write: {e}"));
        let back = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
        let again = read_npy_bytes(&back, &file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tensor.shape(), again.shape());
        let same = tensor
            .data()
            .iter()
            .zip(again.data())
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "values changed in a write and read back");
    }
});
