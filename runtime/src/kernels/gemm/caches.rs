//! The cache sizes of the CPU the GEMM runs on, read once.

use std::sync::OnceLock;

/// L1 data cache per core when the system does not say (the smallest of
/// the CPUs nnc is tuned on: AMD Zen 3 and 4).
const DEFAULT_L1D: usize = 32 * 1024;

/// L3 cache when the system does not say (less than any CPU nnc is tuned
/// on has: AMD Zen 3 to 5 have 32 MiB per CCD).
const DEFAULT_L3: usize = 8 * 1024 * 1024;

/// Bytes of L1 data cache per core: Linux's description of CPU 0's caches
/// (`/sys/devices/system/cpu/cpu0/cache/index*/`, level 1, type Data),
/// else [`DEFAULT_L1D`].
pub(crate) fn l1d_bytes() -> usize {
    static L1D: OnceLock<usize> = OnceLock::new();
    *L1D.get_or_init(|| read_cache(1, "Data").unwrap_or(DEFAULT_L1D))
}

/// Bytes of L3 cache (shared by the cores), as [`l1d_bytes`] (level 3,
/// unified), else [`DEFAULT_L3`].
pub(crate) fn l3_bytes() -> usize {
    static L3: OnceLock<usize> = OnceLock::new();
    *L3.get_or_init(|| read_cache(3, "Unified").unwrap_or(DEFAULT_L3))
}

fn read_cache(level: u32, kind: &str) -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(Result::ok).find_map(|entry| {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let found =
            read("level")?.trim().parse::<u32>().ok()? == level && read("type")?.trim() == kind;
        found
            .then(|| read("size"))
            .flatten()
            .and_then(|size| parse_size(size.trim()))
    })
}

/// `48K`, `1M` or a number of bytes.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    let scale = match unit {
        "" => 1,
        "K" => 1024,
        "M" => 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&bytes| bytes > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_linux_writes_them() {
        assert_eq!(parse_size("48K"), Some(48 * 1024));
        assert_eq!(parse_size("1M"), Some(1024 * 1024));
        assert_eq!(parse_size("32768"), Some(32768));
        assert_eq!(parse_size("0K"), None);
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn the_l1d_is_a_plausible_size() {
        let l1d = l1d_bytes();
        assert!((8 * 1024..=1024 * 1024).contains(&l1d), "{l1d}");
    }

    #[test]
    fn the_l3_is_a_plausible_size_larger_than_the_l1d() {
        let l3 = l3_bytes();
        assert!((1024 * 1024..=4096 * 1024 * 1024).contains(&l3), "{l3}");
        assert!(l3 > l1d_bytes(), "L3 {l3} bytes, L1d {}", l1d_bytes());
    }
}
