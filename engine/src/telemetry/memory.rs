//! This process's memory, from `/proc/self/status`: the peak resident set, and how much of what
//! is resident is mapped files (an input replayed through a mapping counts there, not as the
//! engine's own memory). Reads a file: for summaries at the end of a run, never on a hot path.

/// A `/proc/self/status` field in bytes (0 where /proc or the field is not there).
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with(field))?;
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// VmHWM: the most this process has had resident, bytes.
pub fn peak_rss_bytes() -> u64 {
    status_bytes("VmHWM:")
}

/// RssFile: resident pages of mapped files now (the binary, and a mapped input), bytes.
pub fn resident_file_bytes() -> u64 {
    status_bytes("RssFile:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_has_a_peak_and_mapped_files() {
        let keep = std::hint::black_box(vec![1u8; 8 << 20]);
        assert!(
            peak_rss_bytes() >= 8 << 20,
            "{}",
            keep.iter().map(|&b| b as u64).sum::<u64>()
        );
        assert!(resident_file_bytes() > 0, "the binary itself is mapped");
    }
}
