//! How much memory a model may take, and allocation that fails with an
//! error instead of aborting the process.
//!
//! Every size nnc allocates from comes from a file: a shape in a `.nn`
//! model, an ONNX initializer's dims, a safetensors header. Each such size
//! is checked against a [`MemoryLimit`] before the memory is allocated, and
//! the large buffers (the arena, weights) are allocated with
//! [`try_zeroed`], so that no input makes nnc abort on allocation failure.
//!
//! The default limit is the memory the machine has available: on Linux,
//! `MemAvailable` in `/proc/meminfo`, lowered to what the process's cgroup
//! still allows (`memory.max` minus `memory.current`, or cgroup v1's
//! `memory.limit_in_bytes`). Elsewhere there is no portable figure, so the
//! default is the largest allocation Rust allows (`isize::MAX` bytes); a
//! failed allocation is still an error, not an abort.

use std::fmt;
use std::str::FromStr;

/// The most memory a model may take: its arena, its weights, or any one
/// tensor. Parse one from text such as `512M`, `2G`, `1.5GiB` or `1048576`
/// with [`MemoryLimit::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemoryLimit {
    bytes: u64,
}

/// Why a size is refused or an allocation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    /// Something the model needs is larger than the memory limit.
    #[error(
        "{what} needs {}, more than the memory limit of {}; raise it with `--max-memory`",
        format_bytes(*.bytes),
        format_bytes(*.limit)
    )]
    Exceeded {
        /// What needs the memory: "tensor `conv1` of shape f32[1, 64, 112, 112]",
        /// "the arena", "the weights".
        what: String,
        bytes: u64,
        limit: u64,
    },
    /// The allocator refused memory below the limit (the machine ran out).
    #[error("cannot allocate {} for {what}: out of memory", format_bytes(*.bytes))]
    OutOfMemory { what: String, bytes: u64 },
    /// A `--max-memory` value that is not a size.
    #[error("`{text}` is not a memory size: {reason}; write e.g. `512M`, `2G`, `1.5GiB` or a number of bytes")]
    InvalidSize { text: String, reason: &'static str },
}

impl MemoryLimit {
    /// A limit of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> MemoryLimit {
        MemoryLimit { bytes }
    }

    /// No limit beyond what one allocation can address (`isize::MAX`).
    pub const fn unlimited() -> MemoryLimit {
        MemoryLimit {
            bytes: isize::MAX as u64,
        }
    }

    /// The machine's available memory (see the module doc); the limit nnc
    /// applies unless told otherwise.
    pub fn available() -> MemoryLimit {
        available_bytes().map_or_else(MemoryLimit::unlimited, MemoryLimit::from_bytes)
    }

    /// The limit in bytes.
    pub const fn bytes(self) -> u64 {
        self.bytes
    }

    /// Parses a size: a number (decimals allowed) with an optional unit,
    /// `K`, `M`, `G` or `T`, alone or followed by `B` or `iB`, in any case.
    /// Units are powers of 1024 whichever spelling is used (as in `ulimit`,
    /// Docker and the JVM); a bare number or `B` is bytes.
    pub fn parse(text: &str) -> Result<MemoryLimit, LimitError> {
        let invalid = |reason| LimitError::InvalidSize {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        if number.is_empty() {
            return Err(invalid("it does not start with a number"));
        }
        let unit = unit.trim().to_ascii_lowercase();
        let shift = match unit.as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(invalid("the unit must be one of B, K, M, G or T")),
        };
        let bytes = match number.split_once('.') {
            None => number
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(1 << shift))
                .ok_or_else(|| invalid("it is too large"))?,
            Some((whole, fraction)) => {
                if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
                    return Err(invalid("it is not a number"));
                }
                let value: f64 = number.parse().map_err(|_| invalid("it is not a number"))?;
                let bytes = (value * (1u64 << shift) as f64).round();
                if bytes >= u64::MAX as f64 {
                    return Err(invalid("it is too large"));
                }
                bytes as u64
            }
        };
        if bytes == 0 {
            return Err(invalid("it must be more than zero"));
        }
        Ok(MemoryLimit { bytes })
    }

    /// Checks that `bytes` for `what` fit under the limit. `bytes` is a
    /// `u128` so that products of a shape's dims cannot overflow on the way.
    pub fn check(self, what: impl FnOnce() -> String, bytes: u128) -> Result<(), LimitError> {
        if bytes <= u128::from(self.bytes) {
            Ok(())
        } else {
            Err(LimitError::Exceeded {
                what: what(),
                bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
                limit: self.bytes,
            })
        }
    }
}

impl Default for MemoryLimit {
    /// [`MemoryLimit::available`].
    fn default() -> MemoryLimit {
        MemoryLimit::available()
    }
}

impl FromStr for MemoryLimit {
    type Err = LimitError;

    fn from_str(text: &str) -> Result<MemoryLimit, LimitError> {
        MemoryLimit::parse(text)
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.bytes))
    }
}

/// `bytes` for people: `512 bytes`, `1.5 MiB (1572864 bytes)`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

/// The bytes of a tensor of `shape` with elements of `element_bytes`, as a
/// `u128` that cannot overflow for any shape of up to four 32-bit dims (and
/// saturates beyond).
pub fn tensor_bytes(shape: &[usize], element_bytes: usize) -> u128 {
    shape
        .iter()
        .try_fold(element_bytes as u128, |acc, &d| acc.checked_mul(d as u128))
        .unwrap_or(u128::MAX)
}

/// `len` zeros, or an error naming `what` if the allocator refuses: the
/// arena and other buffers whose size comes from a model are allocated
/// with this rather than `vec!`, which aborts the process on failure.
/// They are advised onto 2 MiB pages before they are zeroed, where the
/// system allows: large layers stream through tens of MB of the arena (a
/// UNet's Winograd input transform writes 36 matrices 2 MB apart), and
/// with 4 KiB pages every few cache lines were a TLB miss.
pub fn try_zeroed(len: usize, what: impl FnOnce() -> String) -> Result<Vec<f32>, LimitError> {
    let mut v: Vec<f32> = try_with_capacity(len, what)?;
    crate::pages::advise_huge_pages(v.as_ptr().cast(), 4 * len);
    v.resize(len, 0.0);
    Ok(v)
}

/// An empty vector with room for `len` elements, or an error naming `what`
/// if the allocator refuses.
pub fn try_with_capacity<T>(
    len: usize,
    what: impl FnOnce() -> String,
) -> Result<Vec<T>, LimitError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| LimitError::OutOfMemory {
            what: what(),
            bytes: u64::try_from(tensor_bytes(&[len], std::mem::size_of::<T>()))
                .unwrap_or(u64::MAX),
        })?;
    Ok(v)
}

/// The available bytes on Linux (see the module doc); `None` elsewhere or
/// when `/proc/meminfo` cannot be read.
fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = mem_available(&meminfo)?;
    Some(match cgroup_room() {
        Some(room) => available.min(room),
        None => available,
    })
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line
        .trim_start_matches("MemAvailable:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// What the process's memory cgroup still allows, if it sets a limit.
fn cgroup_room() -> Option<u64> {
    let read =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    // cgroup v2, the process's own group (its path is in /proc/self/cgroup
    // as `0::/path`), else the root of the hierarchy.
    let group = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        })
        .unwrap_or_default();
    for dir in [
        format!("/sys/fs/cgroup{group}"),
        "/sys/fs/cgroup".to_string(),
    ] {
        // `max` (no limit) does not parse, which is what we want.
        if let Some(max) = read(&format!("{dir}/memory.max")) {
            let current = read(&format!("{dir}/memory.current")).unwrap_or(0);
            return Some(max.saturating_sub(current));
        }
    }
    // cgroup v1: an unlimited group reports a huge number, which `min`
    // with MemAvailable ignores.
    let max = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?;
    let used = read("/sys/fs/cgroup/memory/memory.usage_in_bytes").unwrap_or(0);
    Some(max.saturating_sub(used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Result<u64, LimitError> {
        MemoryLimit::parse(text).map(MemoryLimit::bytes)
    }

    #[test]
    fn sizes_parse_with_binary_units_in_any_spelling() {
        assert_eq!(bytes("1048576"), Ok(1 << 20));
        assert_eq!(bytes("512M"), Ok(512 << 20));
        assert_eq!(bytes("512mb"), Ok(512 << 20));
        assert_eq!(bytes("2G"), Ok(2 << 30));
        assert_eq!(bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(bytes(" 64 KiB "), Ok(64 << 10));
        assert_eq!(bytes("3t"), Ok(3 << 40));
        assert_eq!(bytes("100B"), Ok(100));
        assert_eq!(bytes(".5K"), Ok(512));
    }

    #[test]
    fn bad_sizes_are_errors_that_say_why() {
        for (text, reason) in [
            ("", "it does not start with a number"),
            ("M", "it does not start with a number"),
            ("-1G", "it does not start with a number"),
            ("12X", "the unit must be one of B, K, M, G or T"),
            ("1.2.3M", "it is not a number"),
            (".", "it is not a number"),
            ("0", "it must be more than zero"),
            ("99999999999999999999", "it is too large"),
            ("16777216T", "it is too large"),
            ("1e30G", "the unit must be one of B, K, M, G or T"),
        ] {
            assert_eq!(
                MemoryLimit::parse(text),
                Err(LimitError::InvalidSize {
                    text: text.to_string(),
                    reason
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn check_refuses_only_what_is_over_the_limit() {
        let limit = MemoryLimit::from_bytes(1000);
        assert_eq!(limit.check(|| "x".into(), 1000), Ok(()));
        let err = limit.check(|| "tensor `x`".into(), 1001);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("tensor `x` needs 1001 bytes, more than the memory limit of 1000 bytes; raise it with `--max-memory`".to_string())
        );
        // Sizes past u64 are still refused, not wrapped.
        assert!(limit
            .check(|| "y".into(), tensor_bytes(&[usize::MAX, usize::MAX], 4))
            .is_err());
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       24683784 kB\nMemFree:        18251752 kB\nMemAvailable:   20401296 kB\n";
        assert_eq!(mem_available(text), Some(20401296 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn the_default_limit_is_positive() {
        assert!(MemoryLimit::available().bytes() > 0);
    }

    // Miri stops the program on an allocation it cannot make instead of
    // failing it, so this runs natively only.
    #[cfg(not(miri))]
    #[test]
    fn an_impossible_allocation_is_an_error() {
        let err = try_zeroed(usize::MAX / 8, || "the arena".into());
        assert!(
            matches!(err, Err(LimitError::OutOfMemory { ref what, .. }) if what == "the arena"),
            "{err:?}"
        );
        assert_eq!(try_zeroed(3, String::new), Ok(vec![0.0; 3]));
    }

    #[test]
    fn sizes_print_for_people() {
        assert_eq!(format_bytes(512), "512 bytes");
        assert_eq!(format_bytes(1 << 20), "1.0 MiB (1048576 bytes)");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB (1610612736 bytes)");
    }
}
