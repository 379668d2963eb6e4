//! Denormal floats flushed to zero while compiled code runs.
//!
//! An FMA or multiply with a denormal operand or result takes a microcode
//! assist on Intel cores, about a hundred times slower than the ordinary
//! instruction. A squeeze-excite gate `x * sigmoid(s)` with a very
//! negative `s` makes such values: EfficientNet-B0's last projection conv
//! (36 MFLOP) took 4.3 ms instead of 0.27, and the whole model 19 ms
//! instead of 12 (Intel Xeon, one thread). As oneDNN and TensorFlow do,
//! nnc's threads run with FTZ (denormal results become 0) and DAZ
//! (denormal operands read as 0) set; the largest value this changes is
//! below 1.2e-38, far inside every tolerance nnc is tested to. The
//! reference interpreter keeps IEEE arithmetic.

/// Sets FTZ and DAZ for the current thread until dropped, then restores
/// the thread's previous setting (the caller's thread is the user's).
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

/// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) flags.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

impl FlushDenormals {
    /// Flushes denormals on this thread.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code, deprecated)]
    pub fn on() -> FlushDenormals {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        // SAFETY: every x86-64 CPU has SSE and MXCSR; setting FTZ and DAZ
        // changes only how denormal floats round, not memory safety (the
        // intrinsics are deprecated in favour of inline assembly, which
        // would do the same).
        let saved = unsafe { _mm_getcsr() };
        // SAFETY: as above.
        unsafe { _mm_setcsr(saved | FTZ_DAZ) };
        FlushDenormals { saved }
    }

    /// Other targets keep IEEE denormals.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn on() -> FlushDenormals {
        FlushDenormals {}
    }
}

impl Drop for FlushDenormals {
    #[allow(unsafe_code, deprecated)]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the value read in `on`.
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::FlushDenormals;
    use std::hint::black_box;

    #[test]
    fn denormals_flush_inside_and_not_after() {
        let tiny = black_box(f32::MIN_POSITIVE);
        let half = black_box(0.5f32);
        assert!(tiny * half > 0.0, "IEEE: a denormal result");
        {
            let _flush = FlushDenormals::on();
            if cfg!(target_arch = "x86_64") {
                assert_eq!(black_box(tiny) * black_box(half), 0.0, "flushed");
            }
        }
        assert!(black_box(tiny) * black_box(half) > 0.0, "restored");
    }
}
