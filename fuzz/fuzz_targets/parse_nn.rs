//! `.nn` text -> parse, lower, verify (`compile_source`), then what `nnc
//! check` does with a model that compiles: lints, statistics and the IR
//! printer. Errors are expected and ignored once they render; a panic, or a
//! verifier failure (an "internal compiler error", a bug by definition),
//! is a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_fuzz::check_source;

fuzz_target!(|data: &[u8]| {
    // Non-UTF-8 input is read lossily, as the lexer's own tests do, so the
    // byte-level mutations still reach the parser.
    check_source("fuzz.nn", &String::from_utf8_lossy(data));
});
